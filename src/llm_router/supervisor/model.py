"""What a service is to the supervisor: its spec (`ServiceSpec`: how to prepare, probe, describe and stop it),
how one launch runs (`Launch`), what `status` reports (`ServiceStatus`) and what start, stop and restart did
(`ServiceOutcome`, turned into the envelope's dict by `to_dict`, whose keys per kind are fixed).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..config import RouterConfig
from . import health
from .process import ProcessRecord
from .states import ServiceState


@dataclass
class ServiceStatus:
    name: str
    state: ServiceState
    host: str
    port: int
    log: str
    pid: int | None = None
    uptime: float | None = None
    rss_bytes: int | None = None
    profile: str | None = None
    version: str | None = None
    line: str | None = None  # cliproxyapi_plus: which CLIProxyAPI line (cliproxy_lines)
    mode: str | None = None
    restarts: int = 0
    detail: str | None = None
    workers: list[dict] = field(default_factory=list)  # litellm (gunicorn): {pid, uptime, rss_bytes, serving}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Launch:
    """What a spec's `prepare` returns: how to run the service and how to tell it is ready."""
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    ready_key: str | None
    profile: str | None = None
    mode: str | None = None
    notes: list[str] = field(default_factory=list)
    # A service that does not speak HTTP (Redis): called instead of the GET on ready_url; "answered" means
    # the returned Probe has a latency (something replied on the port), ready means the reply was right.
    ready_probe: Callable[[], health.Probe] | None = None
    # Extra readiness before the probe (LiteLLM under gunicorn: a worker finished booting), built once the
    # record exists: (record, log path, log offset) -> a poll returning True when serving.
    serving: Callable[[ProcessRecord, Path, int], Callable[[], bool]] | None = None
    env_fingerprint: str | None = None


def _nothing(*_args) -> None:
    return None


def _no_notes(*_args) -> list[str]:
    return []


@dataclass(frozen=True)
class ServiceSpec:
    """One kind of service, as the supervisor needs to know it."""
    name: str
    prepare: Callable[[RouterConfig], Launch]
    probe: Callable[[RouterConfig], health.Probe]  # one readiness probe of the running service (health, watch)
    # after readiness: (cfg, record, log offset) -> notes; may set record.version (saved afterwards)
    after_ready: Callable[[RouterConfig, ProcessRecord, int], list[str]] = _no_notes
    before_stop: Callable[[RouterConfig], None] = _nothing  # end helper jobs (LiteLLM's prover); on abort too
    describe: Callable[[RouterConfig, ProcessRecord, ServiceStatus], None] = _nothing  # extra status fields


Specs = Mapping[str, ServiceSpec]

# The keys each kind of outcome has in the JSON envelope (`service start --json` ...), in order.
_OUTCOME_KEYS = {
    "already running": ("service", "result", "pid", "port"),
    "started": ("service", "result", "pid", "port", "mode", "profile", "version", "notes"),
    "restarted": ("service", "result", "pid", "port", "mode", "profile", "version", "notes", "previous"),
    "not running": ("service", "result", "notes"),
    "stopped": ("service", "result", "pid", "exit_status", "notes"),
}


@dataclass
class ServiceOutcome:
    """What start, stop or restart did to one service."""
    service: str
    result: str  # started, restarted, already running, stopped, not running
    pid: int | None = None
    port: int | None = None
    mode: str | None = None
    profile: str | None = None
    version: str | None = None
    notes: list[str] = field(default_factory=list)
    exit_status: int | None = None
    previous: str | None = None  # restart: what the stop before it did

    def to_dict(self) -> dict:
        keys = _OUTCOME_KEYS[self.result]
        if "notes" not in keys and self.notes:  # notes of a reconciled switch on an already running service
            keys = (*keys, "notes")
        return {key: getattr(self, key) for key in keys}
