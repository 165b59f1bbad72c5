"""config.check, config.show, config.migrate"""
from invoke import Collection, task

from ..commands import config as cmd
from ._common import JSON_HELP, run


@task(help={"json": JSON_HELP}, auto_shortflags=False)
def check(c, json=False):
    """Validate routertool.yaml and report every problem."""
    run("config check", cmd.check, json=json)


@task(help={"json": JSON_HELP}, auto_shortflags=False)
def show(c, json=False):
    """Print the effective config after defaults and migration (secrets hidden)."""
    run("config show", cmd.show, json=json)


@task(help={"write": "save the migrated file (the original is backed up)", "json": JSON_HELP},
      auto_shortflags=False)
def migrate(c, write=False, json=False):
    """Rewrite legacy keys to config_version 2."""
    run("config migrate", cmd.migrate, json=json, write=write)


ns = Collection("config", check, show, migrate)
