"""connect.show, connect.write, connect.run: `llm-router connect CLIENT` and `llm-router run CLIENT -- ARGS`."""
import shlex

from invoke import Collection, task

from ..commands import connect as cmd
from ._common import JSON_HELP, run

CLIENT_HELP = f"the client: {', '.join(cmd.lib.CLIENTS)}"
MODEL_HELP = "a model name of models[] (default: the first)"


@task(help={"client": CLIENT_HELP, "model": MODEL_HELP, "env": "only the export lines", "json": JSON_HELP},
      auto_shortflags=False)
def show(c, client, model="", env=False, json=False):
    """Print a client's configuration for this stack (nothing is written)."""
    run("connect", cmd.connect, json=json, client=client, model=model or None, env_only=env)


@task(help={"client": CLIENT_HELP, "model": MODEL_HELP, "json": JSON_HELP}, auto_shortflags=False)
def write(c, client, model="", json=False):
    """Write the configuration into the client's config file (a backup first; codex, claude, llm)."""
    run("connect", cmd.connect, json=json, client=client, model=model or None, write=True)


@task(name="run", help={"client": CLIENT_HELP, "args": "the client's arguments, as one shell-quoted string",
                        "model": MODEL_HELP}, auto_shortflags=False)
def run_(c, client, args="", model=""):
    """Run a client with the configuration set for this one command; exits with the client's code."""
    run("run", cmd.run, client=client, args=shlex.split(args), model=model or None)


ns = Collection("connect", show, write, run_)
