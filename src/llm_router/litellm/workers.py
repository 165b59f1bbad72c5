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

import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ..errors import UNAVAILABLE, RouterError
from ..supervisor import process
from ..supervisor.process import ProcessRecord

POLL = 0.05
STARTED = re.compile(rb"\[(\d+)\] \[INFO\] Application startup complete\.")


def worker_pids(master: ProcessRecord) -> list[int]:
    """The proven master's live worker processes, oldest first."""
    return [child.pid for child in process.children(master) if _in_group(child.pid, master.pid)]


def _in_group(pid: int, pgid: int) -> bool:
    """gunicorn's workers stay in the master's process group; a warm proof's fork leaves it (prove_worker)."""
    try:
        return os.getpgid(pid) == pgid
    except OSError:
        return False


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
         drain_timeout: float = 35.0, target: int | None = None) -> dict:
    """Replace every serving worker, one at a time, by one that loads the config file as it is now: add a worker
    (TTIN), wait until it serves, retire the oldest (TTOU), wait until it is gone; then the next. At no moment are
    fewer than the old count serving, so no request is refused.

    Raises RouterError when a new worker does not come up after `tries` replacements; the workers that still
    serve keep serving and `settle` puts the master back to `target` workers."""
    watcher = BootWatcher.from_now(master, log_path, boot_timeout)
    old = worker_pids(master)  # oldest first: gunicorn's TTOU retires the oldest, so they go in this order
    started = time.monotonic()
    fresh, first_ready = [], None
    for stale in old:
        new = _add_worker(master, watcher, set(old) | set(fresh), boot_timeout, tries)
        fresh.append(new)
        if first_ready is None:
            first_ready = time.monotonic() - started
        retire(master, {stale}, drain_timeout)
    if not old:  # no serving worker (all died): just bring one up
        fresh.append(_add_worker(master, watcher, set(), boot_timeout, tries))
        first_ready = time.monotonic() - started
    _adjust(master, watcher, target or max(1, len(old)), boot_timeout, tries, drain_timeout)
    return {"new_worker": fresh[-1], "new_workers": fresh, "retired": old, "replaced_hung": watcher.killed,
            "worker_ready_s": round(first_ready or 0.0, 3), "switch_s": round(time.monotonic() - started, 3)}


def _add_worker(master: ProcessRecord, watcher: BootWatcher, exclude: set[int], boot_timeout: float,
                tries: int) -> int:
    """TTIN, then wait until the added worker serves (a hung boot is replaced; at most `tries - 1` times)."""
    _signal_master(master, signal.SIGTTIN)
    return wait_for_new_worker(watcher, exclude, timeout=boot_timeout * (tries + 1) + 5,
                               max_kills=len(watcher.killed) + tries - 1)


def _adjust(master: ProcessRecord, watcher: BootWatcher, target: int, boot_timeout: float, tries: int,
            drain_timeout: float) -> None:
    """Bring the worker count to `target`: TTOU retires the oldest, TTIN adds one and waits until it serves."""
    _wait_booted(watcher, boot_timeout * (tries + 1) + 5)
    pids = worker_pids(master)
    while len(pids) > target:
        retire(master, {pids[0]}, drain_timeout)
        pids = worker_pids(master)
    while len(pids) < target:
        _add_worker(master, watcher, set(pids), boot_timeout, tries)
        pids = worker_pids(master)


def _wait_booted(watcher: BootWatcher, timeout: float) -> None:
    """Until every live worker finished its startup (hung boots are replaced by the watcher's poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watcher.poll()
        if set(worker_pids(watcher.master)) <= watcher.started:
            return
        time.sleep(POLL)
    raise RouterError("a LiteLLM worker did not finish startup", exit_code=UNAVAILABLE)


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


def settle(master: ProcessRecord, log_path: Path, boot_timeout: float, keep: set[int],
           target: int | None = None) -> None:
    """After a failed swap (the config is restored by then): every worker forked during the swap may have read
    the config being undone. Unready ones are killed (they serve nothing); then every worker is replaced, one at
    a time, by a fresh one that reads the restored config, ending with `target` workers (the count before)."""
    reconcile(master, log_path, boot_timeout, target=target or max(1, len(keep)))


def reconcile(master: ProcessRecord, log_path: Path, boot_timeout: float, drain_timeout: float = 35.0,
              target: int = 1) -> dict:
    """Bring the master back to `target` workers that all booted from the config file as it is now (after an
    interrupted or failed swap left extra workers, or workers that read a config since put back).

    Workers forked before now that never logged the end of their startup (an interrupted swap's worker, which may
    hang at boot as any fork can) serve nothing and are SIGKILLed; the master forks replacements, which read the
    file as it is now. Every other worker forked before now is then replaced one at a time (TTIN, wait until the
    new one serves, TTOU retires the oldest, which is always one of them: they are older than any new worker), so
    the ones still serving keep serving throughout. Finally TTIN/TTOU bring the count to `target`."""
    initial = worker_pids(master)  # forked before the restore: each may have read the config being undone
    booted = booted_workers(log_path)
    unbooted = [pid for pid in initial if pid not in booted]
    for pid in unbooted:
        process.send(master, pid, signal.SIGKILL)
    wait_gone(set(unbooted), 5.0)
    watcher = BootWatcher.from_now(master, log_path, boot_timeout)
    watcher.started &= booted  # a worker counts as serving only once its startup line is seen
    stale = [pid for pid in initial if pid not in unbooted]
    fresh: list[int] = []
    retired: list[int] = []
    tries = 4
    for pid in stale:
        if not _alive(pid):
            continue
        # replacements of killed unbooted workers count as new capacity: wait for them first
        _wait_booted(watcher, boot_timeout * (tries + 1) + 5)
        fresh.append(_add_worker(master, watcher, set(initial) | set(fresh), boot_timeout, tries))
        oldest = worker_pids(master)[0]
        retire(master, {oldest}, drain_timeout)
        retired.append(oldest)
    if not stale and not [p for p in worker_pids(master) if p not in initial]:
        fresh.append(_add_worker(master, watcher, set(initial), boot_timeout, tries))  # none was forked after
    _adjust(master, watcher, target, boot_timeout, tries, drain_timeout)
    pids = worker_pids(master)
    if any(pid in initial for pid in pids) or len(pids) != target:
        raise RouterError(f"LiteLLM did not come back to {target} worker(s) serving the active profile",
                          hint="`llm-router service restart litellm`", exit_code=UNAVAILABLE)
    return {"new_worker": pids[-1], "workers": pids, "retired": sorted(retired), "killed_unbooted": unbooted}


def booted_workers(log_path: Path, window: int = 8 << 20) -> set[int]:
    """Workers that logged the end of their startup in the last `window` bytes of the master's log."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - window))
            return {int(m.group(1)) for m in STARTED.finditer(handle.read())}
    except OSError:
        return set()
