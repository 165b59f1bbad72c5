"""Preflight checks (`llm-router doctor`): is this machine ready to run the stack?

Each check returns `Finding`s with a status (ok / warn / fail), one line of detail and the exact command that fixes
it. Doctor reads only: it writes no file, creates no folder, removes no stale pid file, generates no key and starts
nothing (it says what will be created). It never prints a secret's value, only where the secret comes from.

This module holds the order of the checks (`run`), the config check and the summary; the checks of the machine and
its programs are in `doctor_runtime`, those of the profile, secrets, exposure, accounts and Redis in
`doctor_access`. Their public names are re-exported here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..config import RouterConfig
from ..errors import RouterError
from . import FAIL, OK, WARN, Finding
from .doctor_access import (
    check_accounts,
    check_exposure,
    check_permissions,
    check_profile,
    check_redis,
    check_secrets,
)
from .doctor_runtime import (
    CODEX_CALLBACK_PORT,
    DISK_FAIL_BYTES,
    DISK_WARN_BYTES,
    RUNTIME_HINT,
    check_binary,
    check_callback_port,
    check_disk,
    check_folders,
    check_line,
    check_litellm,
    check_ports,
    check_stale_downloads,
    check_stale_pids,
    rel,
)

__all__ = [
    "CODEX_CALLBACK_PORT", "DISK_FAIL_BYTES", "DISK_WARN_BYTES", "RUNTIME_HINT", "check_accounts", "check_binary",
    "check_callback_port", "check_config", "check_disk", "check_exposure", "check_folders", "check_line",
    "check_litellm", "check_permissions", "check_ports", "check_profile", "check_redis", "check_secrets",
    "check_stale_downloads", "check_stale_pids", "run", "summary",
]


# --------------------------------------------------------------------------- config

def check_config(cfg: RouterConfig | None, error: RouterError | None = None,
                 config_path: Path | None = None) -> list[Finding]:
    if cfg is None:
        detail = error.message if error else "no configuration"
        if error and len(error.details) > 1:
            detail += " " + "; ".join(error.details)
        return [Finding("config", FAIL, detail, fix=(error.hint if error else None)
                        or "llm-router config check", path=str(config_path) if config_path else None)]
    findings = [Finding("config", OK, f"{rel(cfg, cfg.path)} is valid (config_version {cfg.config_version})",
                        path=str(cfg.path))]
    for warning in cfg.warnings:
        findings.append(Finding("config", WARN, warning, fix="llm-router config migrate --write", path=str(cfg.path)))
    svc = cfg.services["cliproxyapi_plus"]
    explicit = "config_file" in ((cfg.raw.get("services") or {}).get("cliproxyapi_plus") or {})
    if svc.config_file is not None and not svc.config_file.is_file():
        example = cfg.root / "config" / "examples" / "cliproxyapi.yaml"
        fix = f"cp {example} {svc.config_file}"
        if explicit:
            findings.append(Finding("config", FAIL, "services.cliproxyapi_plus.config_file "
                                    f"{rel(cfg, svc.config_file)} does not exist: CLIProxyAPIPlus will not start",
                                    fix=fix))
        else:
            findings.append(Finding("config", WARN, f"{rel(cfg, svc.config_file)} does not exist: CLIProxyAPIPlus "
                                    "runs on llm-router's defaults", fix=fix))
    return findings


# --------------------------------------------------------------------------- all of it

def run(cfg: RouterConfig | None, config_error: RouterError | None = None,
        config_path: Path | None = None) -> list[Finding]:
    """Every check, in the order an operator fixes things. Without a usable config only the checks that need
    none run."""
    findings = check_config(cfg, config_error, config_path)
    if cfg is None:
        return findings + _guarded("litellm-runtime", lambda: _litellm_only()) + check_callback_port()
    profile_findings, profile_text = _guarded_pair(lambda: check_profile(cfg))
    steps: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("runtime-folders", lambda: check_folders(cfg)),
        ("cliproxy-binary", lambda: check_binary(cfg)),
        ("cliproxy-line", lambda: check_line(cfg)),
        ("litellm-runtime", lambda: check_litellm(cfg)),
        ("ports", lambda: check_ports(cfg)),
        ("stale-pids", lambda: check_stale_pids(cfg)),
        ("profile", lambda: profile_findings),
        ("secrets", lambda: check_secrets(cfg, profile_text)),
        ("permissions", lambda: check_permissions(cfg)),
        ("loopback", lambda: check_exposure(cfg)),
        ("redis", lambda: check_redis(cfg)),
        ("oauth-callback-port", lambda: check_callback_port(cfg)),
        ("accounts", lambda: check_accounts(cfg)),
        ("disk-space", lambda: check_disk(cfg)),
        ("temp-files", lambda: check_stale_downloads(cfg)),
    ]
    for name, step in steps:
        findings += _guarded(name, step)
    return findings


def _litellm_only() -> list[Finding]:
    from ..litellm.runner import litellm_available

    installed, version = litellm_available()
    if installed:
        return [Finding("litellm-runtime", OK, f"LiteLLM {version} importable")]
    return [Finding("litellm-runtime", FAIL, "LiteLLM (the `runtime` dependency group) is not installed",
                    fix=RUNTIME_HINT)]


def _guarded(name: str, step: Callable[[], list[Finding]]) -> list[Finding]:
    """A check that raises is a failed check, not a crashed doctor."""
    try:
        return step()
    except RouterError as exc:
        return [Finding(name, FAIL, exc.message, fix=exc.hint)]
    except OSError as exc:
        return [Finding(name, FAIL, f"{type(exc).__name__}: {exc}")]


def _guarded_pair(step):
    try:
        return step()
    except RouterError as exc:
        return [Finding("profile", FAIL, exc.message, fix=exc.hint)], None


def summary(findings: list[Finding]) -> dict[str, int]:
    counts = {OK: 0, WARN: 0, FAIL: 0}
    for f in findings:
        counts[f.status] = counts.get(f.status, 0) + 1
    return counts
