"""`service watch`: a foreground supervisor loop (for systemd, launchd, tmux or nohup).

Every `interval` seconds each watched service is checked for liveness (the recorded process is alive) and
readiness (HTTP 2xx). A crashed service, or one that stayed unready for `unready_limit` checks in a row, is
restarted with exponential backoff; after `max_failures` failed restarts within `failure_window` seconds it is
FATAL and left alone (supervisor's states: STARTING, RUNNING, BACKOFF, FATAL). LiteLLM's gunicorn workers are
watched too: a hung worker boot is replaced, and above `max_rss_mb` the worker is recycled through the same
add-then-retire swap as a profile switch. SIGTERM/SIGINT end the loop and stop the services the watch started.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from . import events, stack
from .config import RouterConfig
from .errors import CONFLICT, RouterError
from .litellm import service as litellm_service
from .litellm.workers import BootWatcher
from .supervisor.model import ServiceStatus
from .supervisor.process import log_tail, read_record
from .supervisor.services import reaped_exit_status
from .supervisor.states import ServiceState, WatchState

STARTING, RUNNING, BACKOFF, FATAL = WatchState.STARTING, WatchState.RUNNING, WatchState.BACKOFF, WatchState.FATAL


@dataclass
class Policy:
    interval: float = 5.0
    unready_limit: int = 3
    max_failures: int = 5
    failure_window: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0


@dataclass
class Watched:
    name: str
    state: WatchState = STARTING
    failures: list[float] = field(default_factory=list)
    next_attempt: float = 0.0
    unready: int = 0
    boot_watcher: object | None = None


def transition(entry: Watched, state: WatchState, **fields) -> dict:
    """The one place a watched service changes state; returns the status line the watch yields for it."""
    entry.state = state
    if state == RUNNING:
        entry.unready = 0
    return {"service": entry.name, "state": state, **fields}


class WatchLock:
    """At most one watch per runtime folder: a non-blocking flock held for the life of the loop."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> "WatchLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode().strip()
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RouterError(f"service watch is already running (pid {holder or 'unknown'})",
                                  hint="stop that watch first (it stops on SIGTERM or Ctrl-C)",
                                  exit_code=CONFLICT) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class Watch:
    def __init__(self, cfg: RouterConfig, names: list[str] | str = "all", policy: Policy | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.names = stack.expand(names, cfg)
        self.policy = policy or Policy()
        self.clock = clock
        self.watched = {name: Watched(name) for name in self.names}
        self.started: set[str] = set()  # services this watch (re)started: stopped again when it ends
        self.stop_event = threading.Event()
        self.log = events.for_config(cfg)

    # ------------------------------------------------------------------ the loop
    def run(self) -> Iterator[dict]:
        """Yield a status dict whenever a service changes state; returns when stopped."""
        with WatchLock(self.cfg.layout.watch_lock):
            previous = self._install_signal_handlers()
            try:
                yield {"watch": "started", "services": self.names, "pid": os.getpid()}
                while not self.stop_event.is_set():
                    for name in self.names:
                        if self.stop_event.is_set():
                            break
                        yield from self.check(name)
                    self.stop_event.wait(self.policy.interval)
            finally:
                self._restore_signal_handlers(previous)
                stopped = self._stop_started()
        yield {"watch": "stopped", "stopped": stopped}

    def stop(self) -> None:
        self.stop_event.set()

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: self.stop())
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _stop_started(self) -> list[str]:
        names = [n for n in self.names if n in self.started]
        if names:
            with contextlib.suppress(RouterError):
                stack.stop(self.cfg, names)
        return names

    # ------------------------------------------------------------------ one service
    def check(self, name: str) -> Iterator[dict]:
        entry = self.watched[name]
        if entry.state == FATAL:
            return
        status = stack.inspect(self.cfg, name, clean=False)
        now = self.clock()
        if status.state == ServiceState.RUNNING:
            yield from self._check_running(entry, status, now)
            return
        if entry.state == RUNNING:  # it was up under our watch: a crash
            detail = self._crash_detail(name)
            self.log.append("service_crash", service=name, result="crashed", detail=detail)
            entry.next_attempt = now
            yield transition(entry, BACKOFF, detail=f"crashed ({detail.get('exit_status')})")
        if now >= entry.next_attempt:
            yield from self._restart(entry, now, reason="not running")

    def _check_running(self, entry: Watched, status: ServiceStatus, now: float) -> Iterator[dict]:
        name = entry.name
        if entry.state != RUNNING:
            yield transition(entry, RUNNING, pid=status.pid)
        svc = self.cfg.services[name]
        if status.mode == "gunicorn":
            self._watch_worker_boots(entry, status)
        probe = stack.probe_ready(self.cfg, name)  # HTTP, or AUTH + PING for Redis
        if probe.ready:
            entry.unready = 0
        else:
            entry.unready += 1
            if entry.unready >= self.policy.unready_limit:
                self.log.append("service_crash", service=name, result="unready",
                                detail={"probe": probe.error, "checks": entry.unready,
                                        "last_log_lines": log_tail(Path(status.log), 10)})
                yield transition(entry, BACKOFF, detail=f"not ready ({probe.error})")
                entry.unready = 0
                yield from self._restart(entry, now, reason="wedged", stop_first=True)
                return
        limit = svc.max_rss_mb
        if name == "litellm" and limit and status.rss_bytes and status.rss_bytes > limit * 1_048_576:
            rss_mb = status.rss_bytes // 1_048_576
            try:
                outcome = litellm_service.recycle_worker(self.cfg)
                self.log.append("service_restart", service=name, result="ok",
                                detail={"reason": f"rss {rss_mb} MB > max_rss_mb {limit}", "how": outcome["how"]})
                yield transition(entry, RUNNING, detail=f"recycled at {rss_mb} MB ({outcome['how']})")
            except RouterError as exc:
                self.log.append("service_restart", service=name, result="failed",
                                detail={"reason": f"rss {rss_mb} MB", "error": exc.message})

    def _watch_worker_boots(self, entry: Watched, status: ServiceStatus) -> None:
        watcher = entry.boot_watcher
        if not isinstance(watcher, BootWatcher) or watcher.master.pid != status.pid:
            master, _ = read_record(self.cfg.layout, entry.name)
            if master is None or master.pid != status.pid:
                return
            watcher = entry.boot_watcher = BootWatcher.from_now(master, Path(status.log),
                                                                self.cfg.services[entry.name].worker_boot_timeout)
        for pid in watcher.poll():
            self.log.append("service_crash", service=entry.name, result="worker_hung",
                            detail={"worker": pid, "action": "killed; the master forks a fresh worker"})

    def _restart(self, entry: Watched, now: float, reason: str, stop_first: bool = False) -> Iterator[dict]:
        name = entry.name
        transition(entry, STARTING)
        before, _ = read_record(self.cfg.layout, name)
        try:
            if stop_first:
                stack.stop(self.cfg, [name])
            stack.start(self.cfg, [name])
        except RouterError as exc:
            entry.failures = [t for t in entry.failures if now - t < self.policy.failure_window] + [now]
            if len(entry.failures) >= self.policy.max_failures:
                self.log.append("service_fatal", service=name, result="fatal",
                                detail={"failures": len(entry.failures), "error": exc.message})
                yield transition(entry, FATAL, detail=f"{len(entry.failures)} failed starts; giving up: {exc.message}")
                return
            delay = min(self.policy.backoff_initial * 2 ** (len(entry.failures) - 1), self.policy.backoff_max)
            entry.next_attempt = now + delay
            yield transition(entry, BACKOFF, detail=f"start failed ({exc.message}); next try in {delay:g} s")
            return
        self.started.add(name)
        record, _ = read_record(self.cfg.layout, name)
        if record is not None:
            record.restarts = (before.restarts if before else 0) + 1
            record.save(self.cfg.layout)
            self.log.append("service_restart", service=name, result="ok",
                            detail={"reason": reason, "pid": record.pid, "by": "watch"})
        yield transition(entry, RUNNING, detail=f"started ({reason})", pid=record.pid if record else None)

    def _crash_detail(self, name: str) -> dict:
        record, _ = read_record(self.cfg.layout, name)
        exit_status = reaped_exit_status(record.pid) if record is not None else None
        log = self.cfg.layout.log_file(name)
        return {"pid": record.pid if record else None, "exit_status": exit_status,
                "last_log_lines": log_tail(log, 10)}
