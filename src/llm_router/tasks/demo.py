"""demo: a top-level task (`inv demo`) over `commands.demo`."""
from invoke import task

from ..commands import demo as cmd
from ._common import JSON_HELP, run


@task(help={"keep": "leave it running and print OPENAI_BASE_URL/OPENAI_API_KEY",
            "port": "preferred LiteLLM port (default 4000; a free port is used when it is taken)",
            "timeout": "readiness timeout per service in seconds", "json": JSON_HELP}, auto_shortflags=False)
def demo(c, keep=False, port=0, timeout=0.0, json=False):
    """The whole stack offline with no accounts, in a temporary folder: chat, stream, a 429 and its fallback."""
    run("demo", cmd.demo, json=json, keep=keep, port=port or None, timeout=timeout or None)
