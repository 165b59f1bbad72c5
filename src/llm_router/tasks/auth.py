"""auth.codex-login, auth.copilot-login, auth.codex-import, auth.status"""
from invoke import Collection, task

from ..commands import auth as cmd
from ._common import JSON_HELP, run

TIMEOUT_HELP = "give up after this many seconds (default 180)"
POLL_HELP = "seconds between status checks (default 2)"


@task(help={"timeout": TIMEOUT_HELP, "poll_interval": POLL_HELP, "no_browser": "print the URL only",
            "callback_url": "finish a login with the address the browser ended on", "json": JSON_HELP},
      auto_shortflags=False)
def codex_login(c, timeout=180.0, poll_interval=2.0, no_browser=False, callback_url="", json=False):
    """Log a Codex (ChatGPT) account in through CLIProxyAPIPlus."""
    run("auth codex login", cmd.codex_login, json=json, timeout=timeout, poll_interval=poll_interval,
        no_browser=no_browser, callback_url=callback_url or None)


@task(help={"timeout": TIMEOUT_HELP, "poll_interval": POLL_HELP, "json": JSON_HELP}, auto_shortflags=False)
def copilot_login(c, timeout=180.0, poll_interval=2.0, json=False):
    """Log a GitHub Copilot account in with a device code."""
    run("auth copilot login", cmd.copilot_login, json=json, timeout=timeout, poll_interval=poll_interval)


@task(help={"source": "the Codex CLI's auth.json (default $CODEX_HOME/auth.json, else ~/.codex/auth.json)",
            "dest_dir": "default: the proxy's auth folder", "force": "replace a file whose token is newer",
            "json": JSON_HELP}, auto_shortflags=False)
def codex_import(c, source="", dest_dir="", force=False, json=False):
    """Import the Codex CLI's ChatGPT login for a machine without a browser."""
    run("auth codex import-headless", cmd.codex_import, json=json, source=source or None, dest_dir=dest_dir or None,
        force=force)


@task(default=True, help={"json": JSON_HELP, "quota": "also ask for each Copilot account's remaining quota"},
      auto_shortflags=False)
def status(c, json=False, quota=False):
    """Every account: provider, plan, expiry and time left, file mode, the proxy's status."""
    run("auth status", cmd.show_status, json=json, quota=quota)


ns = Collection("auth", codex_login, copilot_login, codex_import, status)
