"""Our stack: the services llm-router runs (Redis when configured, CLIProxyAPIPlus, LiteLLM), as specs handed to
the supervisor, and the actions every front end and feature uses on them: start, stop, restart, status, health
and logs.

Start and stop first finish a profile switch that was interrupted (switch.reconcile, under the same hold of the
runtime lock). Health probes every service in parallel and says where LiteLLM keeps its router state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from . import cliproxy_service, redis_service
from .config import MASTER_KEY_ENV, UPSTREAM_KEY_ENV, RouterConfig, remember_parse
from .litellm import service as litellm_service
from .supervisor import health, logs
from .supervisor import services as supervisor
from .supervisor.model import ServiceOutcome, ServiceStatus
from .supervisor.states import ServiceState

SPECS = {"redis": redis_service.SPEC, "cliproxyapi_plus": cliproxy_service.SPEC, "litellm": litellm_service.SPEC}
ORDER = supervisor.ORDER
RUNNING, STOPPED, STALE = ServiceState.RUNNING, ServiceState.STOPPED, ServiceState.STALE
expand, names_for = supervisor.expand, supervisor.names_for


def _before(cfg: RouterConfig) -> supervisor.Before:
    """What start and stop do first, under the lock: finish a switch that was interrupted."""
    def reconcile(event: str) -> list[str]:
        from . import switch  # here: the switch loads Jinja2 (profiles), which `status` never needs

        return switch.reconcile(cfg, workers_too=event != "service_stop")
    return reconcile


def start(cfg: RouterConfig, names: list[str] | str = "all", timeout: float | None = None) -> list[ServiceOutcome]:
    """Start services in order (CLIProxyAPIPlus first, ready before LiteLLM starts). Running ones are left alone."""
    outcomes = supervisor.start(cfg, SPECS, names, timeout, before=_before(cfg))
    remember_parse(cfg)  # so that `status` on this stack need not import PyYAML (config.cached_parse)
    return outcomes


def stop(cfg: RouterConfig, names: list[str] | str = "all") -> list[ServiceOutcome]:
    """Stop services in reverse order (LiteLLM first)."""
    return supervisor.stop(cfg, SPECS, names, before=_before(cfg))


def restart(cfg: RouterConfig, names: list[str] | str = "all", timeout: float | None = None) -> list[ServiceOutcome]:
    """Stop then start the named services under one hold of the runtime lock."""
    outcomes = supervisor.restart(cfg, SPECS, names, timeout, before=_before(cfg))
    remember_parse(cfg)
    return outcomes


def inspect(cfg: RouterConfig, name: str, clean: bool = True) -> ServiceStatus:
    return supervisor.inspect(cfg, SPECS[name], clean=clean)


def status(cfg: RouterConfig, names: list[str] | str = "all") -> list[ServiceStatus]:
    return [inspect(cfg, name) for name in expand(names, cfg)]


def is_running(cfg: RouterConfig, name: str) -> bool:
    return inspect(cfg, name, clean=False).state == RUNNING


def pending_switch(cfg: RouterConfig) -> str | None:
    """A warning when an interrupted profile switch waits to be rolled back (read-only)."""
    if cfg.layout.switch_journal.exists():
        return "an interrupted profile switch is pending: the next `service start`, `service stop` or " \
               "`profile set` rolls it back"
    return None


def probe_ready(cfg: RouterConfig, name: str) -> health.Probe:
    """One readiness probe of a configured service: AUTH + PING for Redis, else GET on its readiness path."""
    return SPECS[name].probe(cfg)


def health_check(cfg: RouterConfig, names: list[str] | str = "all") -> list[dict]:
    """Liveness (the recorded process is alive) and readiness (2xx on the readiness path), probed in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    ordered = expand(names, cfg)
    states = {name: inspect(cfg, name) for name in ordered}
    key_for = {"cliproxyapi_plus": cfg.secret(UPSTREAM_KEY_ENV), "litellm": cfg.secret(MASTER_KEY_ENV)}
    targets = {}
    for name in ordered:
        if name == "redis":
            continue
        svc = cfg.services[name]
        targets[name] = (svc.base_url + svc.readiness_path, key_for[name])
    shared = None
    if cfg.redis is not None and ("litellm" in ordered or "redis" in ordered):
        with ThreadPoolExecutor(1) as pool:  # beside the HTTP probes
            pending = pool.submit(redis_service.probe_config, cfg)
            probes = health.probe_all(targets)
            shared = pending.result()
    else:
        probes = health.probe_all(targets)
    results = []
    for name in ordered:
        probe = shared if name == "redis" else probes[name]
        # an external Redis (services.redis.url) is not ours to run: only its answer counts
        live = states[name].state == RUNNING
        entry = {"service": name, "live": live, "ready": live and probe.ready, "state": states[name].state,
                 "probe": probe.to_dict()}
        if name == "litellm" and shared is not None:
            entry["shared_state"] = shared_state(cfg, shared)
        results.append(entry)
    return results


def shared_state(cfg: RouterConfig, probe: health.Probe) -> dict:
    """Where LiteLLM keeps its router state (cooldowns, allowed_fails, rpm/tpm counters): in Redis, shared by
    every worker and instance, or, when Redis cannot be reached, in each worker's memory (it keeps serving)."""
    where = "external" if cfg.redis is not None and not cfg.redis.managed else "managed"
    if probe.ready:
        return {"redis": where, "ok": True, "detail": f"shared through Redis ({probe.url})"}
    return {"redis": where, "ok": False,
            "detail": f"Redis {probe.url} {probe.error}: LiteLLM serves from each worker's in-memory state "
                      "(cooldowns and rpm limits are per worker until Redis is back)"}


def log_path(cfg: RouterConfig, name: str) -> Path:
    expand([name], cfg)
    return cfg.layout.log_file(name)


def tail_log(cfg: RouterConfig, name: str, lines: int = 50) -> list[str]:
    return logs.tail_log(log_path(cfg, name), name, lines)


def follow_log(cfg: RouterConfig, name: str, poll: float = 0.25) -> Iterator[str]:
    return logs.follow_log(log_path(cfg, name), poll)
