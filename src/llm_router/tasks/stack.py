"""up, down: top-level tasks (`inv up`, `inv down`) over `commands.stack`."""
from invoke import task

from ..commands import stack as cmd
from ._common import JSON_HELP, run


@task(help={"profile": "activate this profile first (default: keep the active one, else default_profile)",
            "timeout": "readiness timeout per service in seconds", "json": JSON_HELP}, auto_shortflags=False)
def up(c, profile="", timeout=0.0, json=False):
    """Bootstrap if the binary is missing, activate the default profile if none is active, start all, health."""
    run("up", cmd.up, json=json, profile=profile or None, timeout=timeout or None)


@task(help={"json": JSON_HELP}, auto_shortflags=False)
def down(c, json=False):
    """Stop all services (LiteLLM first)."""
    run("down", cmd.down, json=json)
