"""events.tail"""
from invoke import Collection, task

from ..commands import events as cmd
from ._common import JSON_HELP, run


@task(default=True, help={"n": "how many recent events", "follow": "keep printing new events",
                          "event": "only events of this type", "json": JSON_HELP}, auto_shortflags=False)
def tail(c, n=20, follow=False, event="", json=False):
    """Show the newest events of the JSON-lines event log."""
    run("events", cmd.show, json=json, limit=n, follow=follow, event=event or None)


ns = Collection("events", tail)
