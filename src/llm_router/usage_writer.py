"""The usage store's writer (`Writer`, inside each LiteLLM worker): queue, writer thread, batching, bounds.

Callers `submit()` plain dict rows into a bounded queue, which never blocks and never raises; one daemon thread
drains it in batches (one transaction each). A locked, full, read-only or missing database costs rows, which are
dropped and counted (`workers.dropped`), never a request. A file that is not a database is moved aside
(`usage.db.corrupt-<time>`) with a warning and a new one is started. The same thread watches the router's
cooldowns through `cooldown_source` (start and end of each episode go to the `cooldowns` table and are handed to
`on_event` for the event log) and applies reset requests from `control.json` (usage_control.py); each worker
acknowledges the sequence number it applied in `workers`. With a `redis` target the same thread shares rows with
the other instances through a Redis stream (usage_share.py); each row has a uuid (`uid`) and an `instance`.

Bounds: rows older than `max_days` are deleted, and when the file grows past `max_mb` (checked after every
batch) the oldest rows go until it is under 80 % of it (auto_vacuum=INCREMENTAL gives the pages back). Never
recorded: prompt or answer text, error messages, headers, keys; a failure is its status code and exception class.
"""
from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .usage_control import read_control
from .usage_schema import ADDED_COLUMNS, COLUMNS, INDEXES, SCHEMA, Settings, control_path, db_path
from .usage_share import RedisTarget, Share, instance_id, stream_length

QUEUE_SIZE = 10_000  # rows waiting for the writer; beyond this they are dropped and counted
BATCH = 500  # rows per transaction at most
FLUSH_INTERVAL = 0.25  # seconds a row may wait for its batch
POLL_INTERVAL = 0.5  # seconds between looks at the cooldowns and the control file
HEARTBEAT_INTERVAL = 2.0  # seconds between a worker's `workers` row updates
PRUNE_INTERVAL = 30.0  # seconds between age checks (also after every BATCH * 10 rows; size: every batch)
WAL_PAGES = 256  # pages (4 KiB) after which the WAL is checkpointed into the database
BUSY_TIMEOUT_MS = 200  # the writer thread waits this long for a lock, then drops the batch


class CorruptDatabase(Exception):
    pass


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass


def open_writer_db(path: Path, instance: str | None = None) -> sqlite3.Connection:
    """Open (creating 0600 in a 0700 folder), set up and migrate the database for writing (a store made before
    `instance` existed gets it, its rows labelled `instance`); CorruptDatabase when the file is not a SQLite
    database."""
    path = Path(path)
    _private_dir(path.parent)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    try:
        os.chmod(path, 0o600)
    except OSError:
        pass
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect before the first table
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode is {mode}")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")  # the WAL stays near 1 MiB
        conn.execute(f"PRAGMA journal_size_limit = {WAL_PAGES * 4096}")
        conn.executescript(SCHEMA)
        migrate(conn, instance)
        quick = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if quick != "ok":
            raise CorruptDatabase(str(quick))
    except sqlite3.DatabaseError as exc:
        conn.close()
        if _is_corrupt(exc):
            raise CorruptDatabase(str(exc)) from exc
        raise
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            os.chmod(side, 0o600)
        except OSError:
            pass
    return conn


def migrate(conn: sqlite3.Connection, instance: str | None = None) -> list[str]:
    """Add the ADDED_COLUMNS a store lacks, label its old rows with `instance`, create INDEXES; what was added."""
    added = []
    for table, column, kind in ADDED_COLUMNS:
        present = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:  # another worker added it a moment ago
                if "duplicate column" not in str(exc).lower():
                    raise
                continue
            added.append(f"{table}.{column}")
    if "requests.instance" in added and instance:
        conn.execute("UPDATE requests SET instance = ? WHERE instance IS NULL", (instance,))
    conn.executescript(INDEXES)
    return added


def _is_corrupt(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, CorruptDatabase) or "not a database" in text or "malformed" in text or \
        "file is encrypted" in text


def move_aside(path: Path) -> Path:
    """Rename a corrupt database (and its -wal/-shm) to `<name>.corrupt-<unix time>`; the new name."""
    target = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, target.with_name(target.name + suffix))
    return target


@dataclass
class CooldownState:
    started: float
    until: float
    status: int | None = None


class Writer:
    """The store's single writer in one process. `submit` is the only call on the request path."""

    def __init__(self, usage_dir: Path, settings: Settings = Settings(),
                 cooldown_source: Callable[[], dict[str, CooldownState]] | None = None,
                 reset: Callable[[list[str]], list[str]] | None = None,
                 on_event: Callable[[str, dict], None] | None = None,
                 clock: Callable[[], float] = time.time, redis: RedisTarget | None = None):
        self.usage_dir = Path(usage_dir)
        self.path = db_path(self.usage_dir)
        self.settings = settings
        self.cooldown_source = cooldown_source
        self.reset = reset
        self.on_event = on_event or (lambda kind, detail: None)
        self.clock = clock
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self.pid = os.getpid()
        self.started = clock()
        self.written = 0
        self.dropped = 0
        self.warnings: list[str] = []
        self.applied_seq = 0
        self._control_mtime: float | None = None
        self._cooling: dict[str, tuple[int | None, CooldownState]] = {}  # deployment -> (row id, state)
        self._conn: sqlite3.Connection | None = None
        self._last_prune = 0.0
        self._last_beat = 0.0
        self._since_prune = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.redis = redis
        self._instance: str | None = None
        self.share: Share | None = None  # made by the thread, with the instance id, when `redis` is given

    @property
    def instance(self) -> str:
        """This runtime folder's instance id (usage_share.instance_id), read or made on first use (in the thread)."""
        if self._instance is None:
            try:
                _private_dir(self.usage_dir)
            except OSError:
                pass
            self._instance = instance_id(self.usage_dir)
            if self.redis is not None:
                self.share = Share(self.redis, self._instance, stream_length(self.settings))
        return self._instance

    @property
    def unshared(self) -> int:
        return self.share.unshared if self.share is not None else 0

    # -- request path
    def submit(self, row: dict) -> None:
        try:
            self.queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1

    # -- lifecycle
    def start(self) -> "Writer":
        self._thread = threading.Thread(target=self._run, name="llm-router-usage", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and written (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    # -- the thread
    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            batch = self._collect()
            if batch:
                self._write(batch)
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + POLL_INTERVAL
                self._guard(self._poll)
        batch = self._collect(wait=False)
        if batch:
            self._write(batch)
        self._guard(self._poll)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.share is not None:
            self.share.close()

    def _collect(self, wait: bool = True) -> list[dict]:
        batch: list[dict] = []
        try:
            batch.append(self.queue.get(timeout=POLL_INTERVAL) if wait else self.queue.get_nowait())
        except queue.Empty:
            return batch
        deadline = time.monotonic() + FLUSH_INTERVAL
        while len(batch) < BATCH:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _db(self) -> sqlite3.Connection | None:
        if self._conn is not None:
            if self.path.exists():
                return self._conn
            self._conn.close()  # the file was removed under us: start a new one
            self._conn = None
        try:
            self._conn = open_writer_db(self.path, self.instance)
        except CorruptDatabase as exc:
            self._corrupt(exc)
        except (sqlite3.Error, OSError) as exc:
            self._warn(f"usage store {self.path} is unavailable ({exc}); rows are dropped and counted")
            self._conn = None
        return self._conn

    def _corrupt(self, exc: BaseException) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            aside = move_aside(self.path)
        except OSError as move_exc:
            self._warn(f"usage store {self.path} is corrupt ({exc}) and could not be moved aside ({move_exc})")
            return
        self._warn(f"usage store {self.path} was corrupt ({exc}); moved to {aside.name}, a new one was started")
        self.on_event("usage_store_corrupt", {"moved_to": aside.name})
        try:
            self._conn = open_writer_db(self.path, self.instance)
        except (sqlite3.Error, OSError, CorruptDatabase) as again:
            self._warn(f"usage store {self.path} could not be started again ({again})")

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            del self.warnings[:-20]
            self.on_event("usage_store_warning", {"message": message})

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            action()
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                self._corrupt(exc)
        except (sqlite3.Error, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 - this thread must not die on an unexpected value
            self._warn(f"usage store: {type(exc).__name__}: {exc}")

    def _write(self, batch: list[dict]) -> None:
        try:
            conn = self._db()
            if conn is None:
                self.dropped += len(batch)
                return
            instance = self.instance  # uid and instance are the writer's, whatever a row says
            values = [tuple(_clean(row.get(c)) for c in COLUMNS[:-2]) + (uuid.uuid4().hex, instance) for row in batch]
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES "
                                 f"({', '.join('?' * len(COLUMNS))})", values)
                conn.execute("COMMIT")
                self.written += len(batch)
                self._since_prune += len(batch)
            except sqlite3.DatabaseError as exc:
                _rollback(conn)
                self.dropped += len(batch)
                if _is_corrupt(exc):
                    self._corrupt(exc)
                elif "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                    self._warn(f"usage store {self.path}: {exc}; rows are dropped and counted")
            else:
                if self.share is not None:  # after the commit, from the store: what Redis missed goes too
                    self._guard(lambda: self.share.push(conn))
            now = time.monotonic()
            if self._since_prune >= BATCH * 10 or now - self._last_prune >= PRUNE_INTERVAL \
                    or self._size(conn) > self.settings.max_bytes:  # three cheap PRAGMAs per batch
                self._guard(self.prune)
        finally:
            for _ in batch:
                self.queue.task_done()

    def prune(self) -> None:
        """Delete rows older than max_days, then the oldest rows while the file is above max_mb."""
        conn = self._db()
        if conn is None:
            return
        self._last_prune, self._since_prune = time.monotonic(), 0
        cutoff = self.clock() - self.settings.max_days * 86400
        conn.execute("DELETE FROM requests WHERE ts < ?", (cutoff,))
        conn.execute("DELETE FROM cooldowns WHERE COALESCE(ended, until) < ?", (cutoff,))
        limit = self.settings.max_bytes
        for _ in range(50):
            if self._size(conn) <= limit:
                break
            total = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            if not total:
                break
            target = int(limit * 0.8)
            fraction = max(0.05, 1 - target / max(self._size(conn), 1))
            count = max(1, int(total * fraction))
            conn.execute("DELETE FROM requests WHERE id IN (SELECT id FROM requests ORDER BY id LIMIT ?)", (count,))
            conn.executescript("PRAGMA incremental_vacuum;")  # execute() would free a single page
        if conn.execute("PRAGMA freelist_count").fetchone()[0]:
            conn.executescript("PRAGMA incremental_vacuum;")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    @staticmethod
    def _size(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return pages * conn.execute("PRAGMA page_size").fetchone()[0]

    # -- cooldowns, resets, heartbeat
    def _poll(self) -> None:
        conn = self._db()
        if conn is None:
            return
        changed = self._apply_control(conn)
        self._watch_cooldowns(conn)
        now = time.monotonic()
        if changed or now - self._last_beat >= HEARTBEAT_INTERVAL:
            self._last_beat = now
            self.heartbeat(conn)
        if self.share is not None:
            self.share.push(conn)  # rows a Redis outage held back
            self.share.pull(conn, self.clock() - self.settings.max_days * 86400)

    def heartbeat(self, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO workers (pid, started, seen, written, dropped, reset_seq, max_mb, max_days, "
                     "unshared) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(pid) DO UPDATE SET "
                     "seen = excluded.seen, started = excluded.started, written = excluded.written, "
                     "dropped = excluded.dropped, reset_seq = excluded.reset_seq, max_mb = excluded.max_mb, "
                     "max_days = excluded.max_days, unshared = excluded.unshared",
                     (self.pid, self.started, self.clock(), self.written, self.dropped, self.applied_seq,
                      self.settings.max_mb, self.settings.max_days, self.unshared))

    def _watch_cooldowns(self, conn: sqlite3.Connection, reason: str = "expired") -> None:
        if self.cooldown_source is None:
            return
        current = self.cooldown_source()
        now = self.clock()
        for deployment, state in current.items():
            known = self._cooling.get(deployment)
            if known is not None and abs(known[1].started - state.started) < 1e-6:
                continue
            if known is not None:  # cooled again: the earlier episode ended when this one started
                self._end(conn, deployment, known, state.started, "re-cooled")
            cur = conn.execute("INSERT INTO cooldowns (deployment, pid, started, until, status) VALUES (?, ?, ?, ?, ?)",
                               (deployment, self.pid, state.started, state.until, state.status))
            self._cooling[deployment] = (cur.lastrowid, state)
            self.on_event("deployment_cooldown", {"deployment": deployment, "status": state.status,
                                                  "until": state.until,
                                                  "seconds": round(state.until - state.started, 3)})
        for deployment in [d for d in self._cooling if d not in current]:
            known = self._cooling[deployment]
            self._end(conn, deployment, known, min(now, known[1].until) if reason == "expired" else now, reason)

    def _end(self, conn, deployment: str, known: tuple[int | None, CooldownState], when: float, reason: str) -> None:
        row_id, state = known
        conn.execute("UPDATE cooldowns SET ended = ?, end_reason = ? WHERE id = ?", (when, reason, row_id))
        self._cooling.pop(deployment, None)
        self.on_event("deployment_recovered", {"deployment": deployment, "reason": reason,
                                               "after_seconds": round(when - state.started, 3)})

    def _apply_control(self, conn: sqlite3.Connection) -> bool:
        """Apply the reset requests this worker has not applied yet; True when there were any. A request clears
        only the cooldowns that had started when it was made."""
        path = control_path(self.usage_dir)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return False
        if mtime == self._control_mtime:
            return False
        self._control_mtime = mtime
        control = read_control(path)
        requests = [r for r in control.get("resets", []) if isinstance(r, dict) and isinstance(r.get("seq"), int)
                    and r["seq"] > self.applied_seq]
        if not requests:
            return False
        for request in sorted(requests, key=lambda r: r["seq"]):
            targets = request.get("deployments")
            wanted = None if targets == "*" else {str(t) for t in targets or []}
            at = request.get("at") if isinstance(request.get("at"), (int, float)) else self.clock()
            current = self.cooldown_source() if self.cooldown_source is not None else {}
            clear = [d for d, state in current.items() if (wanted is None or d in wanted) and state.started <= at]
            cleared = self.reset(clear) if self.reset is not None and clear else []
            for deployment in cleared:
                known = self._cooling.get(deployment)
                if known is not None:
                    self._end(conn, deployment, known, self.clock(), "reset")
            self.applied_seq = request["seq"]
        return True


def _clean(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, (int, float)):
        return value
    return str(value)[:200]


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass

