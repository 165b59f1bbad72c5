"""service.start, service.stop, service.restart, service.status, service.logs, service.health"""
from invoke import Collection, task

from ..commands import service as cmd
from ..commands import status as status_cmd
from ..commands.status import NAMES_HELP as NAME_HELP
from ._common import JSON_HELP, run


def _names(name: str) -> list[str]:
    return [n for n in name.replace(",", " ").split() if n] or ["all"]


@task(help={"name": NAME_HELP, "timeout": "readiness timeout in seconds", "json": JSON_HELP},
      auto_shortflags=False)
def start(c, name="all", timeout=0.0, json=False):
    """Start services (CLIProxyAPIPlus first, then LiteLLM)."""
    run("service start", cmd.start, json=json, names=_names(name), timeout=timeout or None)


@task(help={"name": NAME_HELP, "json": JSON_HELP}, auto_shortflags=False)
def stop(c, name="all", json=False):
    """Stop services (LiteLLM first)."""
    run("service stop", cmd.stop, json=json, names=_names(name))


@task(help={"name": NAME_HELP, "timeout": "readiness timeout in seconds", "json": JSON_HELP},
      auto_shortflags=False)
def restart(c, name="all", timeout=0.0, json=False):
    """Stop then start services."""
    run("service restart", cmd.restart, json=json, names=_names(name), timeout=timeout or None)


@task(default=True, help={"name": NAME_HELP, "json": JSON_HELP}, auto_shortflags=False)
def status(c, name="all", json=False):
    """Supervisor-style state of each service."""
    run("status", status_cmd.show_status, json=json, names=_names(name))


@task(help={"name": NAME_HELP, "json": JSON_HELP}, auto_shortflags=False)
def health(c, name="all", json=False):
    """Liveness and readiness; fails unless every service is ready."""
    run("health", status_cmd.check_health, json=json, names=_names(name))


@task(help={"name": "cliproxyapi_plus or litellm", "n": "how many lines", "follow": "keep printing new lines",
            "json": JSON_HELP}, auto_shortflags=False)
def logs(c, name, n=50, follow=False, json=False):
    """Print a service's log."""
    run("service logs", cmd.logs, json=json, name=name, lines=n, follow=follow)


@task(help={"name": NAME_HELP, "interval": "check period in seconds",
            "max_failures": "failed restarts within 5 minutes before FATAL", "json": JSON_HELP},
      auto_shortflags=False)
def watch(c, name="all", interval=5.0, max_failures=5, json=False):
    """Foreground supervisor: restart crashed or wedged services with backoff."""
    run("service watch", cmd.watch, json=json, names=_names(name), interval=interval, max_failures=max_failures)


UNIT_HELP = {"systemd": "a systemd unit (Linux default)", "launchd": "a launchd agent (macOS default)",
             "system": "system-wide instead of per-user", "unit_dir": "write the unit into this folder",
             "json": JSON_HELP}


def _kind(systemd: bool, launchd: bool) -> str | None:
    return "systemd" if systemd else "launchd" if launchd else None


@task(help=UNIT_HELP, auto_shortflags=False)
def install(c, systemd=False, launchd=False, system=False, unit_dir="", json=False):
    """Run `service watch all` at login/boot."""
    run("service install", cmd.install, json=json, kind=_kind(systemd, launchd), user=not system,
        unit_dir=unit_dir or None)


@task(help=UNIT_HELP, auto_shortflags=False)
def uninstall(c, systemd=False, launchd=False, system=False, unit_dir="", json=False):
    """Remove the unit installed by service.install."""
    run("service uninstall", cmd.uninstall, json=json, kind=_kind(systemd, launchd), user=not system,
        unit_dir=unit_dir or None)


ns = Collection("service", start, stop, restart, status, health, logs, watch, install, uninstall)
