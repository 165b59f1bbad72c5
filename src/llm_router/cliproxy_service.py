"""CLIProxyAPIPlus as a service: its launch (the installed binary on the enforced runtime config), the version
from its banner, which CLIProxyAPI line it is and what that line lacks (probed once it is ready, never fatal).

`SPEC` is what the supervisor needs to know (stack.py lists it).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from . import keys
from .config import UPSTREAM_KEY_ENV, RouterConfig
from .errors import NOT_FOUND, USAGE, RouterError
from .supervisor import health
from .supervisor import services as supervisor
from .supervisor.model import Launch, ServiceSpec, ServiceStatus
from .supervisor.process import ProcessRecord, log_tail

NAME = "cliproxyapi_plus"


def prepare(cfg: RouterConfig) -> Launch:
    from . import cliproxy  # PyYAML: only when starting (`status` never does)

    layout, svc = cfg.layout, cfg.services[NAME]
    binary = layout.cliproxy_binary
    if not binary.exists():
        raise RouterError(f"CLIProxyAPIPlus is not installed ({binary} is missing)",
                          hint="run `llm-router bootstrap download`", exit_code=NOT_FOUND)
    if not os.access(binary, os.X_OK):
        raise RouterError(f"{binary} is not executable", hint=f"chmod 755 {binary}, or run "
                          "`llm-router bootstrap download --force`", exit_code=USAGE)
    if svc.config_file is not None and not svc.config_file.exists() and \
            "config_file" in (cfg.raw.get("services", {}).get(NAME) or {}):
        raise RouterError(f"services.cliproxyapi_plus.config_file {svc.config_file} does not exist",
                          hint="cp config/examples/cliproxyapi.yaml config/cliproxyapi.yaml", exit_code=USAGE)
    config_path = cliproxy.write_runtime_config(cfg)
    key = keys.ensure_key(cfg, UPSTREAM_KEY_ENV)
    return Launch(argv=[str(binary), "-config", config_path], env=supervisor.child_env({}),
                  ready_url=svc.base_url + svc.readiness_path, ready_key=key)


def banner_version(log_path: Path, offset: int) -> str | None:
    """The version the binary printed at start (`CLIProxyAPI Version: 6.9.28, Commit: ...`)."""
    for line in log_tail(log_path, lines=200, since=offset):
        if line.startswith("CLIProxyAPI Version:"):
            return line.split(":", 1)[1].split(",")[0].strip()
    return None


def line_notes(cfg: RouterConfig) -> list[str]:
    """Which CLIProxyAPI line was started and what it lacks, probed from the running binary (read-only, never
    fatal: a probe that fails says nothing)."""
    from . import cliproxy, cliproxy_lines

    try:
        features = cliproxy.installed_features(cfg, ask_server=True)
    except (RouterError, OSError, ValueError):
        return []
    if features is None:
        return []
    gaps = cliproxy_lines.missing(features)
    return [cliproxy_lines.describe(features) + (f"; lacks: {'; '.join(gaps)}" if gaps else "")]


def _after_ready(cfg: RouterConfig, record: ProcessRecord, offset: int) -> list[str]:
    record.version = banner_version(Path(record.log), offset)
    return line_notes(cfg)


def _describe(cfg: RouterConfig, record: ProcessRecord, status: ServiceStatus) -> None:
    if record.version:  # from the recorded banner: no probe, nothing started
        from .cliproxy_lines import classify

        with contextlib.suppress(ValueError, KeyError):
            status.line = classify(record.version).title


def probe(cfg: RouterConfig) -> health.Probe:
    svc = cfg.services[NAME]
    return health.probe(svc.base_url + svc.readiness_path, cfg.secret(UPSTREAM_KEY_ENV))


SPEC = ServiceSpec(name=NAME, prepare=prepare, probe=probe, after_ready=_after_ready, describe=_describe)
