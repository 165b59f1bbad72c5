"""LiteLLM under gunicorn: watch every worker boot and swap workers without dropping a request.

The gunicorn master preloads the app and holds the socket; each worker reads the active config when it boots.
Facts measured on LiteLLM 1.108.7 (reference: litellm.md §9):
- a freshly forked worker sometimes hangs at boot and gunicorn would not notice for 600 s, so a worker that has
  not logged `[<pid>] [INFO] Application startup complete.` within a few seconds of its fork is SIGKILLed and the
  master forks a fresh one;
- TTIN adds a worker (it loads the config file as it is now), TTOU retires the oldest one gracefully;
- SIGHUP swaps workers without waiting for readiness, so it is never used.

The master is known by its ProcessRecord, and every signal goes through process.send, which proves the target
carries the master's launch marker (a worker is a forked master, so it does) before sending.
"""
from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from . import process
from .errors import UNAVAILABLE, RouterError
from .process import ProcessRecord

POLL = 0.05
STARTED = re.compile(rb"\[(\d+)\] \[INFO\] Application startup complete\.")


def worker_pids(master: ProcessRecord) -> list[int]:
    """The proven master's live worker processes, oldest first."""
    return [child.pid for child in process.children(master)]


@dataclass
class BootWatcher:
    """Tracks worker boots of one master by reading its log from `offset` on.

    `poll()` kills workers that did not finish startup within `boot_timeout` seconds of their fork and returns
    the pids it killed; `started` holds the workers that logged the end of their startup.
    """

    master: ProcessRecord
    log_path: Path
    offset: int
    boot_timeout: float
    started: set[int] = field(default_factory=set)
    killed: list[int] = field(default_factory=list)
    _partial: bytes = b""

    @classmethod
    def from_now(cls, master: ProcessRecord, log_path: Path, boot_timeout: float) -> "BootWatcher":
        """Watch only workers forked from now on: the log is read from its current end, so the workers that exist
        already (and are serving) are counted as started; they must never look hung."""
        offset = log_path.stat().st_size if log_path.exists() else 0
        return cls(master, log_path, offset, boot_timeout, started=set(worker_pids(master)))

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
        for pid in worker_pids(self.master):
            if pid in self.started:
                continue
            try:
                age = time.time() - psutil.Process(pid).create_time()
            except psutil.Error:
                continue
            if age > self.boot_timeout:
                if not process.send(self.master, pid, signal.SIGKILL):
                    continue
                self.killed.append(pid)
                killed_now.append(pid)
        return killed_now

    def serving(self) -> list[int]:
        """Workers that are alive and finished startup, oldest first."""
        return [pid for pid in worker_pids(self.master) if pid in self.started]


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
        if process.owned_leader(watcher.master) is None:
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


def swap(master: ProcessRecord, log_path: Path, boot_timeout: float, tries: int = 3,
         drain_timeout: float = 35.0) -> dict:
    """Add a worker (it loads the config file as it is now), wait until it serves, then retire the old ones.

    Raises RouterError when no new worker comes up after `tries` replacements; the old workers keep serving and
    the master is left with one extra worker slot, which `settle` removes."""
    watcher = BootWatcher.from_now(master, log_path, boot_timeout)
    old = set(watcher.started)
    started = time.monotonic()
    _signal_master(master, signal.SIGTTIN)
    new = wait_for_new_worker(watcher, old, timeout=boot_timeout * (tries + 1) + 5, max_kills=tries - 1)
    ready_s = time.monotonic() - started
    retire(master, old, drain_timeout)
    return {"new_worker": new, "retired": sorted(old), "replaced_hung": watcher.killed,
            "worker_ready_s": round(ready_s, 3), "switch_s": round(time.monotonic() - started, 3)}


def _signal_master(master: ProcessRecord, sig: int) -> None:
    if not process.send(master, master.pid, sig):
        raise RouterError(f"the LiteLLM gunicorn master (pid {master.pid}) is gone or not ours",
                          hint="`llm-router service start litellm` starts it again", exit_code=UNAVAILABLE)


def retire(master: ProcessRecord, old: set[int], drain_timeout: float) -> None:
    """TTOU once per old worker: gunicorn stops the oldest gracefully (in-flight requests finish)."""
    for _ in old:
        _signal_master(master, signal.SIGTTOU)
    if not wait_gone(old, drain_timeout):
        raise RouterError(f"old LiteLLM worker(s) {sorted(old)} did not exit within {drain_timeout:g} s",
                          exit_code=UNAVAILABLE)


def settle(master: ProcessRecord, log_path: Path, boot_timeout: float, keep: set[int]) -> None:
    """After a failed swap: kill the extra (unready) workers so the master forks replacements that read the
    restored config, wait for one to serve, then drop back to one worker. `keep` are the workers that served
    before the swap; gunicorn retires the oldest on TTOU, so they go once a replacement serves."""
    extra = [pid for pid in worker_pids(master) if pid not in keep]
    for pid in extra:
        process.send(master, pid, signal.SIGKILL)
    watcher = BootWatcher.from_now(master, log_path, boot_timeout)
    watcher.started -= set(extra)  # killed, never serving
    wait_for_new_worker(watcher, keep | set(extra), timeout=boot_timeout * 4 + 5, max_kills=3)
    retire(master, keep, drain_timeout=35.0)


def reconcile(master: ProcessRecord, log_path: Path, boot_timeout: float, drain_timeout: float = 35.0) -> dict:
    """Bring the master back to one worker that booted from the config file as it is now (after an interrupted
    swap left an extra worker, or workers that read a config since put back).

    Workers forked before now that never logged the end of their startup (an interrupted swap's worker, which may
    hang at boot as any fork can) serve nothing and are SIGKILLed; the master forks replacements. Then the newest
    worker is the keeper: once it serves (a hung boot is replaced, as in every swap), TTOU retires the others,
    oldest first as gunicorn does, until the keeper is the only worker. A TTIN adds a fresh worker when none was
    forked after the restore."""
    initial = worker_pids(master)  # forked before the restore: each may have read the config being undone
    booted = _booted_workers(log_path)
    unbooted = [pid for pid in initial if pid not in booted]
    for pid in unbooted:
        process.send(master, pid, signal.SIGKILL)
    wait_gone(set(unbooted), 5.0)
    watcher = BootWatcher.from_now(master, log_path, boot_timeout)
    watcher.started &= booted  # a worker counts as serving only once its startup line is seen
    if all(pid in initial for pid in worker_pids(master)):
        _signal_master(master, signal.SIGTTIN)
    retired: set[int] = set()
    deadline = time.monotonic() + boot_timeout * 4 + drain_timeout + 10
    while time.monotonic() < deadline:
        watcher.poll()
        pids = worker_pids(master)
        keeper = pids[-1] if pids else None
        if keeper is None or keeper in initial or keeper not in watcher.started:
            time.sleep(POLL)  # the fresh worker is still booting (or being forked)
            continue
        others = [pid for pid in pids if pid != keeper]
        if not others:
            return {"new_worker": keeper, "retired": sorted(retired), "killed_unbooted": unbooted}
        for _ in others:
            _signal_master(master, signal.SIGTTOU)
        if not wait_gone(set(others), drain_timeout):
            for pid in others:
                process.send(master, pid, signal.SIGKILL)
            wait_gone(set(others), 5.0)
        retired.update(others)
    raise RouterError("LiteLLM did not come back to one worker serving the active profile",
                      hint="`llm-router service restart litellm`", exit_code=UNAVAILABLE)


def _booted_workers(log_path: Path, window: int = 8 << 20) -> set[int]:
    """Workers that logged the end of their startup in the last `window` bytes of the master's log."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - window))
            return {int(m.group(1)) for m in STARTED.finditer(handle.read())}
    except OSError:
        return set()

