"""LiteLLM under gunicorn: watch every worker boot and swap workers without dropping a request.

The gunicorn master preloads the app and holds the socket; each worker reads the active config when it boots.
Facts measured on LiteLLM 1.108.7 (reference: litellm.md §9):
- a freshly forked worker sometimes hangs at boot and gunicorn would not notice for 600 s, so a worker that has
  not logged `[<pid>] [INFO] Application startup complete.` within a few seconds of its fork is SIGKILLed and the
  master forks a fresh one;
- TTIN adds a worker (it loads the config file as it is now), TTOU retires the oldest one gracefully;
- SIGHUP swaps workers without waiting for readiness, so it is never used.
"""
from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .errors import UNAVAILABLE, RouterError

POLL = 0.05
STARTED = re.compile(rb"\[(\d+)\] \[INFO\] Application startup complete\.")


def worker_pids(master_pid: int) -> list[int]:
    """The master's live worker processes, oldest first."""
    try:
        children = psutil.Process(master_pid).children()
    except psutil.Error:
        return []
    alive = []
    for child in children:
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append((child.create_time(), child.pid))
        except psutil.Error:
            continue
    return [pid for _, pid in sorted(alive)]


@dataclass
class BootWatcher:
    """Tracks worker boots of one master by reading its log from `offset` on.

    `poll()` kills workers that did not finish startup within `boot_timeout` seconds of their fork and returns
    the pids it killed; `started` holds the workers that logged the end of their startup.
    """

    master_pid: int
    log_path: Path
    offset: int
    boot_timeout: float
    started: set[int] = field(default_factory=set)
    killed: list[int] = field(default_factory=list)
    _partial: bytes = b""

    @classmethod
    def from_now(cls, master_pid: int, log_path: Path, boot_timeout: float) -> "BootWatcher":
        """Watch only workers forked from now on: the log is read from its current end, so the workers that exist
        already (and are serving) are counted as started; they must never look hung."""
        offset = log_path.stat().st_size if log_path.exists() else 0
        return cls(master_pid, log_path, offset, boot_timeout, started=set(worker_pids(master_pid)))

    def _read_log(self) -> None:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        self.offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            match = STARTED.search(line)
            if match:
                self.started.add(int(match.group(1)))

    def poll(self) -> list[int]:
        self._read_log()
        killed_now = []
        for pid in worker_pids(self.master_pid):
            if pid in self.started:
                continue
            try:
                age = time.time() - psutil.Process(pid).create_time()
            except psutil.Error:
                continue
            if age > self.boot_timeout:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.killed.append(pid)
                killed_now.append(pid)
        return killed_now

    def serving(self) -> list[int]:
        """Workers that are alive and finished startup, oldest first."""
        return [pid for pid in worker_pids(self.master_pid) if pid in self.started]


def wait_for_new_worker(watcher: BootWatcher, exclude: set[int], timeout: float, max_kills: int) -> int:
    """Wait until a worker not in `exclude` has finished startup, replacing hung ones (at most `max_kills`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watcher.poll()
        fresh = [pid for pid in watcher.serving() if pid not in exclude]
        if fresh:
            return fresh[-1]
        if len(watcher.killed) > max_kills:
            break
        if not psutil.pid_exists(watcher.master_pid):
            raise RouterError("the LiteLLM gunicorn master exited during a worker swap",
                              hint="`llm-router service start litellm` starts it again", exit_code=UNAVAILABLE)
        time.sleep(POLL)
    raise RouterError(f"no new LiteLLM worker finished startup (replaced {len(watcher.killed)} hung worker(s))",
                      exit_code=UNAVAILABLE)


def wait_gone(pids: set[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return True
        time.sleep(POLL)
    return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def swap(master_pid: int, log_path: Path, boot_timeout: float, tries: int = 3, drain_timeout: float = 35.0) -> dict:
    """Add a worker (it loads the config file as it is now), wait until it serves, then retire the old ones.

    Raises RouterError when no new worker comes up after `tries` replacements; the old workers keep serving and
    the master is left with one extra worker slot, which `settle` removes."""
    watcher = BootWatcher.from_now(master_pid, log_path, boot_timeout)
    old = set(watcher.started)
    started = time.monotonic()
    os.kill(master_pid, signal.SIGTTIN)
    new = wait_for_new_worker(watcher, old, timeout=boot_timeout * (tries + 1) + 5, max_kills=tries - 1)
    ready_s = time.monotonic() - started
    retire(master_pid, old, drain_timeout)
    return {"new_worker": new, "retired": sorted(old), "replaced_hung": watcher.killed,
            "worker_ready_s": round(ready_s, 3), "switch_s": round(time.monotonic() - started, 3)}


def retire(master_pid: int, old: set[int], drain_timeout: float) -> None:
    """TTOU once per old worker: gunicorn stops the oldest gracefully (in-flight requests finish)."""
    for _ in old:
        os.kill(master_pid, signal.SIGTTOU)
    if not wait_gone(old, drain_timeout):
        raise RouterError(f"old LiteLLM worker(s) {sorted(old)} did not exit within {drain_timeout:g} s",
                          exit_code=UNAVAILABLE)


def settle(master_pid: int, log_path: Path, boot_timeout: float, keep: set[int]) -> None:
    """After a failed swap: kill the extra (unready) workers so the master forks replacements that read the
    restored config, wait for one to serve, then drop back to one worker. `keep` are the workers that served
    before the swap; gunicorn retires the oldest on TTOU, so they go once a replacement serves."""
    extra = [pid for pid in worker_pids(master_pid) if pid not in keep]
    for pid in extra:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    watcher = BootWatcher.from_now(master_pid, log_path, boot_timeout)
    watcher.started -= set(extra)  # killed, never serving
    wait_for_new_worker(watcher, keep | set(extra), timeout=boot_timeout * 4 + 5, max_kills=3)
    retire(master_pid, keep, drain_timeout=35.0)
