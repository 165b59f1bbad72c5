"""Start, stop, restart and inspect any service described by a `ServiceSpec`, as a detached process group.

A service's record is its pid file `.router/runtime/pids/<service>.json`; it is a claim, proven only by the rules
of process.py (the launch marker in the process's environment, the boot id, the create time), so a recycled pid,
a hand-edited file or a process group that is not ours is never signalled. Reading state never signals: a stale
pid file is reported and removed, and what its launch left running is ended by the next `start` or `stop`.
Start, stop and restart hold the runtime lock (taken once, here), so concurrent callers are serialised; the
`*_held` variants are for a caller that already holds it (the profile switch). A service is ready when its
readiness check passes AND a process of its own launch holds the listening socket (another program answering on
the port does not count); the CLIProxyAPIPlus binary exits 0 even when it fails to start.

This module knows no service by name: what to run, how to check readiness and what to report come from the spec
(`stack.SPECS` lists ours).
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

from .. import events
from ..config import RouterConfig
from ..errors import CONFLICT, UNAVAILABLE, USAGE, RouterError
from ..fsutil import ensure_dir
from ..layout import ALL_SERVICES, SERVICES, Layout
from . import health, process
from .model import Launch, ServiceOutcome, ServiceSpec, ServiceStatus, Specs
from .process import ProcessRecord, log_tail, port_owner, read_record
from .states import ServiceState

# psutil costs ~30 ms to import, so the functions that use it import it themselves (process.py too):
# `llm-router status` of a stopped stack never does.
STOPPED, RUNNING, STALE = ServiceState.STOPPED, ServiceState.RUNNING, ServiceState.STALE
ORDER = SERVICES  # start order of the services every config has; stop goes in reverse
# Optional services (Redis) come first when routertool.yaml turns them on: `expand(names, cfg)`.
STOP_TIMEOUT = 35.0  # LiteLLM drains in-flight requests for up to GRACEFUL_SHUTDOWN_TIMEOUT (30 s)
POLL = 0.2
LOCK_TIMEOUT_ENV = "LLM_ROUTER_LOCK_TIMEOUT"
STARTUP_TIMEOUT_ENV = "STARTUP_TIMEOUT"
# Never handed to children: a stray OpenAI key would be sent upstream; MANAGEMENT_PASSWORD forces allow-remote.
SCRUBBED_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MANAGEMENT_PASSWORD", "LITELLM_MASTER_KEY", "PORT", "HOST")

_children: dict[int, subprocess.Popen] = {}  # processes this interpreter spawned, reaped when they exit


# --------------------------------------------------------------------------- names and status

def names_for(cfg: RouterConfig | None) -> list[str]:
    """Every service of this config in start order: Redis first when llm-router runs it."""
    if cfg is None:
        return list(ORDER)
    return [name for name in ALL_SERVICES if name in cfg.services]


def expand(names: list[str] | tuple[str, ...] | str, cfg: RouterConfig | None = None) -> list[str]:
    """`all` or service names → service names in start order; unknown names are a usage error. With `cfg`,
    `all` includes the optional services it turns on (Redis)."""
    if isinstance(names, str):
        names = [names]
    known = names_for(cfg)
    if not names or "all" in names:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        if unknown[0] in ALL_SERVICES:
            raise RouterError(f"service '{unknown[0]}' is not enabled in this config",
                              hint=f"set services.{unknown[0]}.enabled: true in routertool.yaml", exit_code=USAGE)
        raise RouterError(f"unknown service '{unknown[0]}'", hint=f"services: all, {', '.join(known)}",
                          exit_code=USAGE)
    return [n for n in known if n in names]


def inspect(cfg: RouterConfig, spec: ServiceSpec, clean: bool = True) -> ServiceStatus:
    """A service's state from its pid file and the live process. A stale pid file is removed when `clean`
    and nobody holds the runtime lock (a start in progress may be about to rewrite it)."""
    name = spec.name
    layout, svc = cfg.layout, cfg.services[name]
    status = ServiceStatus(name=name, state=STOPPED, host=svc.host, port=svc.port, log=str(layout.log_file(name)))
    record, problem = read_record(layout, name)
    if record is None and problem is None:
        return status
    proc = process.owned_leader(record) if record else None
    if proc is None:
        status.state = STALE
        status.detail = problem or stale_detail(record)
        if record is not None and process.owned_members(record):
            status.detail += f"; processes of that launch are still running: `llm-router service stop {name}` " \
                             "ends them"
        elif clean:
            _clean_stale(layout, name)
        return status
    status.state = RUNNING
    status.pid = record.pid
    status.port = record.port
    status.uptime = time.time() - record.started_at
    status.rss_bytes = process.group_rss(record)
    status.version = record.version
    status.mode = record.mode
    status.restarts = record.restarts
    spec.describe(cfg, record, status)
    return status


def stale_detail(record: ProcessRecord) -> str:
    if process.legacy_alive(record):
        return (f"pid {record.pid} was started by an older llm-router (no launch id): not proven ours, so it is "
                "never signalled; stop it yourself, then remove its pid file")
    why = process.unproven_reason(record)
    return f"stale pid file (pid {record.pid}): {why}" if why else f"stale pid file, process gone (pid {record.pid})"


def _clean_stale(layout: Layout, name: str) -> None:
    """Forget a stale pid file (read-only commands call this): nothing is signalled here, ever. Whatever that
    launch left running carries its marker, and `start`/`stop` end it (process.end_leftovers) before forgetting."""
    lock = layout.lock()
    try:
        lock.timeout = 0
        lock.acquire()
    except RouterError:
        return
    try:
        record, _ = read_record(layout, name)  # again, under the lock
        if record is None or not (process.owned_leader(record) or process.owned_members(record)
                                  or process.legacy_alive(record)):
            with contextlib.suppress(OSError):
                layout.pid_file(name).unlink()
    except OSError:
        pass
    finally:
        lock.release()


def running_record(layout: Layout, name: str) -> ProcessRecord | None:
    """The record of a running service, proven ours; None when it is not running."""
    record, _ = read_record(layout, name)
    if record is None or process.owned_leader(record) is None:
        return None
    return record


# --------------------------------------------------------------------------- start

def child_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a service: ours without stray keys (SCRUBBED_ENV), loopback exempt from proxies."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    if any(os.environ.get(k) for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")):
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost,::1"]))
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env.update(extra)
    return env


def exposure_notes(cfg: RouterConfig, name: str) -> list[str]:
    """The warning a start gives when a service will listen beyond this machine."""
    svc = cfg.services[name]
    if svc.is_loopback:
        return []
    return [f"{name} listens on {svc.host}, reachable from other machines: set services.{name}.host to 127.0.0.1 "
            "unless you mean it"]


def _check_port(cfg: RouterConfig, name: str) -> None:
    svc = cfg.services[name]
    if 0 < svc.port < 1024 and hasattr(os, "geteuid") and os.geteuid() != 0:
        raise RouterError(f"port {svc.port} is privileged (below 1024): only root may listen on it",
                          hint=f"set services.{name}.port to 1024 or above", exit_code=USAGE)
    owner = port_owner(svc.host, svc.port)
    if owner:
        raise RouterError(f"port {svc.port} is in use by {owner}",
                          hint=f"stop that program, or set services.{name}.port to a free port",
                          exit_code=CONFLICT)


def startup_timeout(cfg: RouterConfig, name: str, override: float | None = None) -> float:
    if override:
        return float(override)
    env = os.environ.get(STARTUP_TIMEOUT_ENV)
    if env:
        try:
            return float(env)
        except ValueError:
            raise RouterError(f"{STARTUP_TIMEOUT_ENV} must be a number of seconds, got {env!r}",
                              exit_code=USAGE) from None
    return cfg.services[name].startup_timeout


def start_one(cfg: RouterConfig, spec: ServiceSpec, timeout: float | None = None) -> ServiceOutcome:
    """Start one service (the caller holds the runtime lock); a running one is left alone."""
    import psutil

    name, layout = spec.name, cfg.layout
    current = inspect(cfg, spec, clean=False)
    if current.state == RUNNING:
        return ServiceOutcome(name, "already running", pid=current.pid, port=current.port)
    notes = [current.detail] if current.state == STALE else []
    if current.state == STALE:
        forget(cfg, name)  # ends what that launch left running (proven by its marker), then drops the file
    launch = spec.prepare(cfg)
    _check_port(cfg, name)
    launch.notes += exposure_notes(cfg, name)
    ensure_dir(layout.logs_dir)
    log_path = layout.log_file(name)
    offset = log_path.stat().st_size if log_path.exists() else 0
    launch_id = process.new_launch_id()
    with open(log_path, "ab") as handle:
        handle.write(f"--- llm-router: starting {name} at {events.now_iso()} ---\n".encode())
        handle.flush()
        try:
            proc = subprocess.Popen(launch.argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                    env={**launch.env, process.LAUNCH_ENV: launch_id}, cwd=layout.runtime_dir,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            raise RouterError(f"cannot start {name}: {exc.strerror or exc} ({launch.argv[0]})",
                              hint="run `llm-router bootstrap download`", exit_code=USAGE) from None
    _children[proc.pid] = proc
    record = None
    try:
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = time.time()
        record = ProcessRecord(service=name, pid=proc.pid, create_time=create_time, cmdline=launch.argv,
                               port=cfg.services[name].port, started_at=time.time(), log=str(log_path),
                               profile=launch.profile, mode=launch.mode, env_fingerprint=launch.env_fingerprint,
                               launch_id=launch_id, boot_id=process.boot_id())
        record.save(layout)
        _wait_ready(cfg, name, proc, record, launch, startup_timeout(cfg, name, timeout), log_path, offset)
        launch.notes += spec.after_ready(cfg, record, offset)
        record.save(layout)
    except BaseException:  # not ready, an error, Ctrl-C: nothing of this launch is left running or recorded
        _abort_start(cfg, spec, proc, record)
        raise
    return ServiceOutcome(name, "started", pid=proc.pid, port=record.port, mode=launch.mode,
                          profile=launch.profile, version=record.version, notes=notes + launch.notes)


def _abort_start(cfg: RouterConfig, spec: ServiceSpec, proc: subprocess.Popen, record: ProcessRecord | None) -> None:
    """End a launch that did not become ready: its group and everything that carries its marker; the Popen handle
    is the last resort (an unreaped child's pid cannot have been reused)."""
    try:
        if record is not None:
            with contextlib.suppress(RouterError):
                process.terminate(record, timeout=10.0, wait_leader=proc.wait)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # our own unreaped child leads this group
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        _children.pop(proc.pid, None)
        spec.before_stop(cfg)
        with contextlib.suppress(OSError):
            cfg.layout.pid_file(spec.name).unlink()


def _wait_ready(cfg: RouterConfig, name: str, proc: subprocess.Popen, record: ProcessRecord, launch: Launch,
                timeout: float, log_path: Path, offset: int) -> None:
    """Until the readiness path answers 2xx from a socket this launch holds (another program answering on the
    port is not readiness), the process exits, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    port = cfg.services[name].port
    serving = launch.serving(record, log_path, offset) if launch.serving else None
    foreign = None
    while True:
        code = proc.poll()
        if code is not None:
            _children.pop(proc.pid, None)
            details = ["last log lines:", *log_tail(log_path, since=offset)]
            # ours has exited, so whoever holds the port now took it while we started (e.g. "address in use")
            foreign = foreign or port_owner(cfg.services[name].host, port)
            raise RouterError(f"{name} exited during start-up (exit status {code})"
                              + (f"; port {port} is held by {foreign}" if foreign else ""),
                              hint=f"read the log: {log_path}", exit_code=CONFLICT if foreign else UNAVAILABLE,
                              details=details)
        if serving is not None and not serving():
            last = health.Probe(launch.ready_url, False, None, None, "no LiteLLM worker serving yet")
        elif launch.ready_probe is not None:
            last = launch.ready_probe()
        else:
            last = health.probe(launch.ready_url, launch.ready_key, timeout=min(2.0, max(timeout, 0.5)))
        answered = last.ready or last.status is not None or \
            (launch.ready_probe is not None and last.latency_ms is not None)
        if answered:
            if process.listens_on(record, port):
                if last.ready:
                    return
            else:
                foreign = port_owner(cfg.services[name].host, port) or "another program"
                last = health.Probe(launch.ready_url, False, last.status, last.latency_ms,
                                    f"answered by {foreign}, not by the started {name}")
        if time.monotonic() >= deadline:
            raise RouterError(
                f"{name} was not ready within {timeout:g} s "
                f"({'' if launch.ready_probe else 'GET '}{launch.ready_url}: {last.error})",
                hint=f"raise services.{name}.startup_timeout (or set {STARTUP_TIMEOUT_ENV}); log: {log_path}",
                exit_code=UNAVAILABLE, details=["last log lines:", *log_tail(log_path, since=offset)])
        time.sleep(POLL)


# --------------------------------------------------------------------------- stop

def terminate(record: ProcessRecord, timeout: float = STOP_TIMEOUT) -> int | None:
    """End a launch through process.terminate (only what is proven ours is signalled); the leader's exit status
    when known. A child this interpreter started is reaped through its Popen handle."""
    child = _children.pop(record.pid, None)
    return process.terminate(record, timeout, wait_leader=child.wait if child is not None else None)


def reaped_exit_status(pid: int) -> int | None:
    """The exit status of a process this interpreter started and that has exited (None if unknown)."""
    child = _children.get(pid)
    if child is None or child.poll() is None:
        return None
    del _children[pid]
    return child.returncode


def forget(cfg: RouterConfig, name: str) -> str | None:
    """Drop a stale record after ending whatever its launch left running (processes carrying its marker).
    Returns why the record was stale."""
    record, problem = read_record(cfg.layout, name)
    if record is not None:
        process.end_leftovers(record)
        problem = stale_detail(record)
        if process.legacy_alive(record):
            return problem  # kept: the only record of a live process that is not proven ours
    cfg.layout.pid_file(name).unlink(missing_ok=True)
    return problem


def stop_one(cfg: RouterConfig, spec: ServiceSpec) -> ServiceOutcome:
    """Stop one service (the caller holds the runtime lock)."""
    name, layout = spec.name, cfg.layout
    spec.before_stop(cfg)
    record, problem = read_record(layout, name)
    if record is None:
        if problem:
            layout.pid_file(name).unlink(missing_ok=True)
        return ServiceOutcome(name, "not running", notes=[problem] if problem else [])
    if process.owned_leader(record) is None:
        return ServiceOutcome(name, "not running", notes=[forget(cfg, name)])
    exit_status = terminate(record)
    layout.pid_file(name).unlink(missing_ok=True)
    clean = exit_status in (0, -signal.SIGTERM, 128 + signal.SIGTERM, None)
    return ServiceOutcome(name, "stopped", pid=record.pid, exit_status=exit_status,
                          notes=[] if clean else [f"exit status {exit_status}"])


# --------------------------------------------------------------------------- public actions

def lock_timeout() -> float:
    try:
        return float(os.environ.get(LOCK_TIMEOUT_ENV, "300"))
    except ValueError:
        return 300.0


def locked(cfg: RouterConfig):
    """The runtime lock, as start, stop, restart and the profile switch take it."""
    return cfg.layout.lock(lock_timeout())


def _record_event(log: events.EventLog, event: str, outcome: dict, profile: str | None = None) -> None:
    result = {"started": "ok", "stopped": "ok", "restarted": "ok", "already running": "noop",
              "not running": "noop"}.get(outcome.get("result"), outcome.get("result"))
    detail = {k: v for k, v in outcome.items() if k not in ("service", "result") and v not in (None, [], "")}
    log.append(event, service=outcome["service"], profile=profile or outcome.get("profile"), result=result,
               detail=detail or None)


Before = Callable[[str], list[str]]  # called under the lock before any action, with the event: notes


def _each(cfg: RouterConfig, specs: Specs, event: str, names: list[str], action: Callable[[str], ServiceOutcome],
          before: Before | None) -> list[ServiceOutcome]:
    """Run `action` per service (the caller holds the runtime lock), recording one event per service (a failure
    too). `before` runs first (the stack finishes an interrupted switch there); its notes go on the first
    outcome. When a start fails (or is interrupted), the services this same call started are stopped again, so
    a failed `start all` leaves things as they were; the error says so."""
    log = events.for_config(cfg)
    outcomes: list[ServiceOutcome] = []
    recovered = before(event) if before else []
    for name in names:
        try:
            outcome = action(name)
        except BaseException as exc:
            error = exc.message if isinstance(exc, RouterError) else "interrupted"
            _record_event(log, event, {"service": name, "result": "failed", "error": error})
            if event == "service_start":
                _undo_starts(cfg, specs, log, outcomes, exc)
            raise
        _record_event(log, event, outcome.to_dict())
        outcomes.append(outcome)
    if outcomes and recovered:
        outcomes[0].notes = [*recovered, *outcomes[0].notes]
    return outcomes


def _undo_starts(cfg: RouterConfig, specs: Specs, log: events.EventLog, outcomes: list[ServiceOutcome],
                 error: BaseException) -> None:
    for outcome in reversed(outcomes):
        if outcome.result != "started":
            continue
        name = outcome.service
        try:
            stopped = stop_one(cfg, specs[name])
            _record_event(log, "service_stop", {**stopped.to_dict(), "reason": "a later service failed to start"})
            line = f"{name} was started by this command and has been stopped again"
        except RouterError as again:
            line = f"{name} was started by this command and is still running: {again.message}"
        if isinstance(error, RouterError):
            error.details.insert(0, line)


def start(cfg: RouterConfig, specs: Specs, names: list[str] | str = "all", timeout: float | None = None,
          before: Before | None = None) -> list[ServiceOutcome]:
    """Start services in order (each ready before the next starts). Running ones are left alone."""
    ordered = expand(names, cfg)
    with locked(cfg):
        return _each(cfg, specs, "service_start", ordered, lambda name: start_one(cfg, specs[name], timeout), before)


def stop(cfg: RouterConfig, specs: Specs, names: list[str] | str = "all",
         before: Before | None = None) -> list[ServiceOutcome]:
    """Stop services in reverse order (LiteLLM first)."""
    ordered = list(reversed(expand(names, cfg)))
    with locked(cfg):
        return _each(cfg, specs, "service_stop", ordered, lambda name: stop_one(cfg, specs[name]), before)


def restart_held(cfg: RouterConfig, specs: Specs, names: list[str] | str = "all", timeout: float | None = None,
                 before: Before | None = None) -> list[ServiceOutcome]:
    """Stop then start the named services (reverse order down, forward order up); the caller holds the lock."""
    ordered = expand(names, cfg)
    stopped = {name: stop_one(cfg, specs[name]) for name in reversed(ordered)}

    def restart_named(name: str) -> ServiceOutcome:
        outcome = start_one(cfg, specs[name], timeout)
        outcome.result, outcome.previous = "restarted", stopped[name].result
        return outcome
    return _each(cfg, specs, "service_restart", ordered, restart_named, before)


def restart(cfg: RouterConfig, specs: Specs, names: list[str] | str = "all", timeout: float | None = None,
            before: Before | None = None) -> list[ServiceOutcome]:
    """`restart_held` under one hold of the runtime lock."""
    with locked(cfg):
        return restart_held(cfg, specs, names, timeout, before)
