"""check.security, check.doctor, check.smoke"""
from invoke import Collection, task

from ..commands import check as cmd
from ._common import JSON_HELP, run


@task(help={"fix": "repair modes and append missing ignore rules (never deletes files)", "json": JSON_HELP},
      auto_shortflags=False)
def security(c, fix=False, json=False):
    """Secrets tracked by git, file modes, .gitignore rules; fails on any finding."""
    run("check security", cmd.security, json=json, fix=fix)


@task(help={"json": JSON_HELP}, auto_shortflags=False)
def doctor(c, json=False):
    """Preflight checks, each ok/warn/fail with the command that fixes it; fails if any check fails."""
    run("doctor", cmd.doctor, json=json)


@task(help={"profile": "profile to test (default: the active one, else default_profile)",
            "live": "send one real request (max_tokens 1) upstream instead of a mocked answer",
            "standin": "run in a temporary stack with the CLIProxyAPIPlus stand-in (offline, no accounts)",
            "model": "model group to call (default: the first in routertool.yaml)",
            "timeout": "readiness timeout per service in seconds (default: startup_timeout or $STARTUP_TIMEOUT)",
            "json": JSON_HELP}, auto_shortflags=False)
def smoke(c, profile="", live=False, standin=False, model="", timeout=0.0, json=False):
    """doctor, profile set, service start, health, a chat and a streamed completion, stop what it started."""
    run("smoke", cmd.smoke, json=json, profile=profile or None, live=live, standin=standin, model=model or None,
        timeout=timeout or None)


ns = Collection("check", security, doctor, smoke)
