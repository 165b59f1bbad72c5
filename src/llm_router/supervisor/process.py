"""Process identity: which processes are ours, and the only functions that send them signals.

A pid file is a claim, not a proof: pids are reused (after a reboot, or just by time), files get hand-edited or
corrupted. So every process llm-router launches carries a marker in its environment, `LLM_ROUTER_LAUNCH_ID=<random
id>`, and its pid file records that id and the boot id. A process is ours only when, on this boot, it carries the
recorded id (its children and a gunicorn master's workers inherit it, also across `exec`); the recorded leader
must also have the recorded create time. Nothing else is ever signalled: not a pid <= 1, not a process whose
environment we cannot read, not a pid file written by an older llm-router without a launch id.

The rules, in one place:
- `owned_leader(record)`: the recorded process itself, proven.
- `owned_members(record)`: every live process that carries the record's marker (a crashed master's workers, a
  binary that forked away into its own session), created no earlier than the leader.
- `send(record, pid, sig)` and `send_group(record, sig)` re-check the proof immediately before signalling.
- Reading state never signals: `status`, `health` and `doctor` only look.

Also here: who holds a port (`port_owner`) and the tail of a service log (`log_tail`).

psutil costs ~30 ms to import, so it is imported in the functions that use it (`status` of a stopped stack never
does).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CONFLICT, RouterError
from ..fsutil import atomic_write

if TYPE_CHECKING:
    import psutil

    from ..layout import Layout

LAUNCH_ENV = "LLM_ROUTER_LAUNCH_ID"
CREATE_TIME_SLACK = 0.05  # psutil's create time is rounded to the clock tick
POLL = 0.2


def new_launch_id() -> str:
    return secrets.token_hex(16)


def boot_id() -> str:
    """This boot's identity: the kernel's boot id on Linux, else the boot time to the second."""
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    import psutil

    return f"boot-time-{int(psutil.boot_time())}"


# --------------------------------------------------------------------------- the record (pid file)

@dataclass
class ProcessRecord:
    service: str
    pid: int
    create_time: float
    cmdline: list[str]
    port: int
    started_at: float
    log: str
    version: str | None = None
    profile: str | None = None
    mode: str | None = None  # litellm: gunicorn or uvicorn
    restarts: int = 0  # restarts by `service watch` since the first start
    env_fingerprint: str | None = None  # litellm: hash of the secrets it was started with (file is 0600)
    launch_id: str | None = None  # the marker in the process's environment (LAUNCH_ENV)
    boot_id: str | None = None  # the boot it was started in

    def save(self, layout: Layout) -> None:
        atomic_write(layout.pid_file(self.service), json.dumps(asdict(self), indent=2) + "\n", mode=0o600)

    @classmethod
    def from_dict(cls, data: object) -> ProcessRecord:
        """A record from parsed JSON, every field type-checked; ValueError says what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        for name in ("service", "pid", "create_time", "cmdline", "port", "started_at", "log"):
            if name not in data:
                raise ValueError(f"missing field {name!r}")
        checks = {
            "service": _is_str, "log": _is_str, "cmdline": lambda v: isinstance(v, list) and all(map(_is_str, v)),
            "pid": lambda v: _is_int(v) and v > 1, "port": lambda v: _is_int(v) and 0 <= v <= 65535,
            "restarts": lambda v: _is_int(v) and v >= 0,
            "create_time": _is_time, "started_at": _is_time,
            "version": _opt_str, "profile": _opt_str, "mode": _opt_str, "env_fingerprint": _opt_str,
            "launch_id": _opt_str, "boot_id": _opt_str,
        }
        for name, value in data.items():
            if not checks[name](value):
                raise ValueError(f"field {name!r} has an invalid value")
        return cls(**data)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _opt_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _is_time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def read_record(layout: Layout, service: str) -> tuple[ProcessRecord | None, str | None]:
    """The recorded process, or (None, why the file is unusable); (None, None) when there is no pid file.
    Anything but a well-typed record is reported as unusable, never trusted."""
    path = layout.pid_file(service)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"unreadable pid file {path} ({exc.strerror or type(exc).__name__})"
    try:
        return ProcessRecord.from_dict(json.loads(raw.decode("utf-8"))), None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) and not isinstance(exc, json.JSONDecodeError) else \
            "not valid JSON"
        return None, f"unreadable pid file {path} ({reason})"


# --------------------------------------------------------------------------- proof

def _carries(proc: psutil.Process, launch_id: str) -> bool:
    import psutil

    try:
        return proc.environ().get(LAUNCH_ENV) == launch_id
    except (psutil.Error, OSError):
        return False  # gone, or not ours to read: never ours


def _provable(record: ProcessRecord) -> bool:
    return bool(record.launch_id) and record.pid > 1 and record.boot_id == boot_id()


def unproven_reason(record: ProcessRecord) -> str | None:
    """Why a record can never prove a process ours (None when it can)."""
    if not record.launch_id:
        return "written without a launch id (an older llm-router): not proven ours, never signalled"
    if record.boot_id != boot_id():
        return "from an earlier boot"
    return None


def legacy_alive(record: ProcessRecord) -> bool:
    """A record from an older llm-router (no launch id) whose pid still names a process of the recorded create
    time: likely that service, but unproven, so it is neither signalled nor forgotten (the user stops it)."""
    import psutil

    if record.launch_id:
        return False
    try:
        proc = psutil.Process(record.pid)
        return abs(proc.create_time() - record.create_time) <= CREATE_TIME_SLACK and \
            proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def owned_leader(record: ProcessRecord) -> psutil.Process | None:
    """The live process the record describes, proven ours; None otherwise (gone, zombie, recycled pid)."""
    import psutil

    if not _provable(record):
        return None
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > CREATE_TIME_SLACK:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc if _carries(proc, record.launch_id) else None


def owned_members(record: ProcessRecord) -> list[psutil.Process]:
    """Every live process (the leader included) that carries the record's marker and was created no earlier
    than the leader: the whole of what one launch left running, wherever it went."""
    import psutil

    if not _provable(record):
        return []
    found = []
    not_before = record.create_time - CREATE_TIME_SLACK
    for proc in psutil.process_iter(["create_time", "status"]):
        try:
            if proc.pid <= 1 or proc.info["create_time"] < not_before or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except (KeyError, TypeError):
            continue
        if _carries(proc, record.launch_id):
            found.append(proc)
    return found


def children(record: ProcessRecord) -> list[psutil.Process]:
    """The proven leader's direct children that carry its marker (a gunicorn master's workers), oldest first."""
    import psutil

    leader = owned_leader(record)
    if leader is None:
        return []
    alive = []
    with contextlib.suppress(psutil.Error):
        for child in leader.children():
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE and _carries(child, record.launch_id):
                    alive.append((child.create_time(), child))
    return [child for _, child in sorted(alive, key=lambda pair: pair[0])]


def listens_on(record: ProcessRecord, port: int) -> bool:
    """True when a process of this launch holds a listening TCP socket on `port`: readiness that another
    program's answer cannot fake."""
    import psutil

    leader = owned_leader(record)
    if leader is None:
        return False
    candidates = [leader]
    with contextlib.suppress(psutil.Error):
        candidates += [child for child in leader.children(recursive=True) if _carries(child, record.launch_id)]
    for proc in candidates:
        try:
            conns = proc.net_connections(kind="tcp") if hasattr(proc, "net_connections") else \
                proc.connections(kind="tcp")
        except (psutil.Error, OSError):
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
            return True
    return False


# --------------------------------------------------------------------------- the only signal senders

def send(record: ProcessRecord, pid: int, sig: int) -> bool:
    """Signal one process of this launch, after proving it ours; False (nothing sent) when it is not."""
    import psutil

    if not _is_int(pid) or pid <= 1 or not _provable(record):
        return False
    try:
        proc = psutil.Process(pid)
        created = proc.create_time()
    except psutil.Error:
        return False
    if pid == record.pid and abs(created - record.create_time) > CREATE_TIME_SLACK:
        return False
    if created < record.create_time - CREATE_TIME_SLACK or not _carries(proc, record.launch_id):
        return False
    try:
        proc.send_signal(sig)  # psutil refuses if the pid was reused since `proc` was made
    except psutil.Error:
        return False
    return True


def send_group(record: ProcessRecord, sig: int) -> bool:
    """Signal the launch's process group, only while its proven leader is alive (then the group id cannot have
    been reused, and only processes of the leader's own session can be in it)."""
    if owned_leader(record) is None:
        return False
    try:
        os.killpg(record.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def terminate(record: ProcessRecord, timeout: float, wait_leader=None) -> int | None:
    """SIGTERM the launch's group, wait for the leader, SIGKILL what is left, then end every other process that
    carries the launch's marker. Returns the leader's exit status when known.

    `wait_leader(timeout)` waits for the leader and returns its exit status (the supervisor's reaper for its own
    children); without it, psutil waits."""
    import psutil

    exit_status = None
    leader = owned_leader(record)
    if leader is not None:
        send_group(record, signal.SIGTERM)
        exit_status = _wait(leader, timeout, wait_leader)
        if exit_status is _TIMEOUT:
            send_group(record, signal.SIGKILL)
            exit_status = _wait(leader, 5.0, wait_leader)
            if exit_status is _TIMEOUT:
                exit_status = None
    end_leftovers(record, grace=5.0 if leader is not None else 0.0)
    with contextlib.suppress(psutil.Error):
        if leader is not None and leader.is_running() and leader.status() != psutil.STATUS_ZOMBIE:
            raise RouterError(f"{record.service}: pid {record.pid} survived SIGKILL", exit_code=CONFLICT)
    return exit_status


_TIMEOUT = object()


def _wait(proc: psutil.Process, timeout: float, wait_leader):
    import subprocess

    import psutil

    try:
        if wait_leader is not None:
            return wait_leader(timeout)
        return proc.wait(timeout)
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        return _TIMEOUT
    except psutil.NoSuchProcess:
        return None


def end_leftovers(record: ProcessRecord, grace: float = 0.0) -> None:
    """Processes of this launch that outlived its leader (a crashed master's workers, a forked-away child) are
    ours by their marker: wait `grace` for them to go, then SIGTERM, then SIGKILL, each one proven again."""
    import psutil

    members = owned_members(record)
    deadline = time.monotonic() + grace
    while members and time.monotonic() < deadline:
        time.sleep(POLL)
        members = owned_members(record)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not members:
            return
        for member in members:
            send(record, member.pid, sig)
        _, members = psutil.wait_procs(members, timeout=3)
    if members:
        raise RouterError(f"{record.service}: processes {', '.join(str(m.pid) for m in members)} of this launch "
                          "survived SIGKILL", exit_code=CONFLICT)


def group_rss(record: ProcessRecord) -> int | None:
    import psutil

    leader = owned_leader(record)
    if leader is None:
        return None
    try:
        procs = [leader, *leader.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())
    except psutil.Error:
        return None


def port_owner(host: str, port: int) -> str | None:
    """None when `host:port` can be bound; else who holds it (`pid 812 (python3)` when the OS tells)."""
    import socket  # here, not at the top: `status` never binds

    import psutil

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return None
        except OSError:
            pass
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return "another program"


def log_tail(path: Path, lines: int = 15, since: int = 0) -> list[str]:
    """The last non-blank lines of a log, optionally only those written after byte `since`."""
    try:
        with open(path, "rb") as handle:
            handle.seek(since)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]
