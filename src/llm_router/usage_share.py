"""The usage store shared through Redis: every instance's rows in every instance's store (docs/usage.md).

When the stack has Redis (`services.redis`), each writer thread (usage_writer.py) also appends every row it stored
to one capped Redis stream (`XADD llm-router:usage MAXLEN ~ N`, N from `usage_max_mb`), tagged with its
instance id, and reads that stream from the last id its store has seen (`meta.share_last_id`) to insert the rows
of the *other* instances. Each row carries a uuid (`requests.uid`, UNIQUE) and goes in with INSERT OR IGNORE, so
two workers of one instance reading the same entries never duplicate a row, and an instance skips its own.

The instance id (`<host>-<8 hex>`, random, in `<runtime>/usage/instance.id`, 0600) names a runtime folder, not a
person or a secret. A stream entry holds the row's columns only (no prompt, answer, header or key) and the
instance id. Only the writer thread talks to Redis, with a 1 s timeout: a Redis that is down or refuses costs
nothing on the request path; the rows it did not get stay pending in the store (counted as `workers.unshared`)
and go with a later push: the high-water rowid of this instance's rows in the stream is `meta.share_pushed_rowid`.
After a failure the thread tries again after RETRY_AFTER seconds. The wire format is resp.py's (standard library
only: this runs inside LiteLLM, and redis_service.py is a layer above the store).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import resp
from .usage_schema import COLUMNS, Settings

STREAM = "llm-router:usage"
INSTANCE_NAME = "instance.id"
LAST_ID_KEY = "share_last_id"
PUSHED_KEY = "share_pushed_rowid"  # this instance's rows up to this rowid are in the stream
PUSH_COUNT = 500  # rows per XADD round trip
TIMEOUT = 1.0  # seconds for a connect, a send or a reply
RETRY_AFTER = 5.0  # seconds without Redis after a failure
READ_COUNT = 500  # entries per XREAD
MAX_READS = 20  # XREADs per poll at most (the rest waits for the next poll)
MIN_STREAM, MAX_STREAM = 1_000, 50_000
_INSTANCE = re.compile(r"^[A-Za-z0-9._-]{1,80}$")
_STREAM_ID = re.compile(r"^\d+-\d+$")
SHARED_COLUMNS = tuple(c for c in COLUMNS if c != "instance")


def stream_length(settings: Settings) -> int:
    """Entries the stream keeps (approximately): one per KiB of the store's size bound, within 1 000..50 000. The
    stream is a transport, not an archive: an instance away for longer than it holds misses the older rows."""
    return max(MIN_STREAM, min(MAX_STREAM, settings.max_bytes // 1024))


def instance_id(usage_dir: Path) -> str:
    """This runtime folder's instance id, created (0600) on first use."""
    path = Path(usage_dir) / INSTANCE_NAME
    for _ in range(3):
        try:
            value = path.read_text(encoding="ascii").strip()
            if _INSTANCE.match(value):
                return value
            path.unlink()  # damaged: make a new one
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError):
            break
        host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40].strip(".-") or "host"
        value = f"{host}-{secrets.token_hex(4)}"
        # written whole under a private name, then linked into place: a worker racing us never reads a file that
        # exists but is still empty (which it would take for damaged, and replace with an id of its own)
        draft = path.with_name(f".{INSTANCE_NAME}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            fd = os.open(draft, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(value + "\n")
            os.link(draft, path)
        except FileExistsError:
            continue  # another worker made it first: read theirs
        except OSError:
            break
        finally:
            with contextlib.suppress(OSError):
                draft.unlink()
        return value
    return "local"


@dataclass(frozen=True)
class RedisTarget:
    host: str
    port: int
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    db: int = 0


class RedisError(Exception):
    """Redis could not be reached or refused a command."""


class Connection:
    """One RESP connection, opened on first use and dropped on any error."""

    def __init__(self, target: RedisTarget, timeout: float = TIMEOUT):
        self.target = target
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file = None

    def close(self) -> None:
        for item in (self._file, self._sock):
            try:
                if item is not None:
                    item.close()
            except OSError:
                pass
        self._sock = self._file = None

    def _open(self) -> None:
        sock = resp.connect(self.target.host, self.target.port, self.timeout, self.target.tls)
        self._sock, self._file = sock, sock.makefile("rb")
        hello = ([("AUTH", self.target.password)] if self.target.password else []) + \
            ([("SELECT", str(self.target.db))] if self.target.db else [])
        if hello:
            self._send(hello)

    def _send(self, commands: list[tuple[str, ...]]) -> list[object]:
        assert self._sock is not None
        replies = resp.exchange(self._sock, self._file, commands)
        for reply in replies:
            if isinstance(reply, resp.ReplyError):
                raise RedisError(str(reply))
        return replies

    def execute(self, commands: list[tuple[str, ...]]) -> list[object]:
        """Send `commands` in one round trip; their replies. RedisError on any failure (the connection is then
        dropped; a stale one is retried once: a repeated XADD is harmless, its rows go in with INSERT OR IGNORE)."""
        for attempt in (0, 1):
            fresh = self._sock is None
            try:
                if fresh:
                    self._open()
                return self._send(commands)
            except (OSError, ValueError, RedisError) as exc:
                self.close()
                if fresh or attempt:
                    raise exc if isinstance(exc, RedisError) else RedisError(_reason(exc)) from exc
        raise RedisError("unreachable")  # not reached


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class Share:
    """One writer's side of the stream: `push` the rows it stored, `pull` the other instances' rows."""

    def __init__(self, target: RedisTarget, instance: str, maxlen: int, clock=time.monotonic):
        self.connection = Connection(target)
        self.instance = instance
        self.maxlen = maxlen
        self.clock = clock
        self.published = 0
        self.unshared = 0  # this instance's rows in the store that the stream does not have yet
        self.imported = 0  # rows of other instances inserted here
        self.error: str | None = None  # the last failure (no secret: a reason like "Connection refused")
        self._retry_at = 0.0

    def available(self) -> bool:
        return self.clock() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        self.error = _reason(exc)
        self._retry_at = self.clock() + RETRY_AFTER

    def close(self) -> None:
        self.connection.close()

    def push(self, conn: sqlite3.Connection) -> bool:
        """XADD this instance's rows the stream does not have yet, from the store, oldest first; False when Redis
        did not take them (they stay pending and go with a later push, so a Redis outage only delays sharing).

        Several workers of one instance share the store: a batch is claimed (the high-water rowid moved past it in
        one transaction) before it is sent, and handed back when the send fails, so no row is sent twice."""
        while self.available():
            conn.execute("BEGIN IMMEDIATE")
            try:
                mark = _pushed(conn)
                rows = conn.execute(f"SELECT rowid, {', '.join(SHARED_COLUMNS)} FROM requests WHERE rowid > ? AND "
                                    "instance = ? AND uid IS NOT NULL ORDER BY rowid LIMIT ?",
                                    (mark, self.instance, PUSH_COUNT)).fetchall()
                if rows:
                    _set_meta(conn, PUSHED_KEY, str(rows[-1][0]))
                conn.execute("COMMIT")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise
            if not rows:
                break
            commands = []
            for values in rows:
                data = json.dumps({c: v for c, v in zip(SHARED_COLUMNS, values[1:]) if v is not None},
                                  separators=(",", ":"))
                commands.append(("XADD", STREAM, "MAXLEN", "~", str(self.maxlen), "*", "i", self.instance, "r", data))
            try:
                self.connection.execute(commands)
            except RedisError as exc:
                conn.execute("BEGIN IMMEDIATE")  # hand the batch back unless another worker moved on meanwhile
                conn.execute("UPDATE meta SET value = ? WHERE key = ? AND value = ?",
                             (str(mark), PUSHED_KEY, str(rows[-1][0])))
                conn.execute("COMMIT")
                self._failed(exc)
                break
            self.published += len(rows)
            self.error = None
            if len(rows) < PUSH_COUNT:
                break
        self.unshared = conn.execute("SELECT COUNT(*) FROM requests WHERE rowid > ? AND instance = ? AND "
                                     "uid IS NOT NULL", (_pushed(conn), self.instance)).fetchone()[0]
        return self.unshared == 0

    def pull(self, conn: sqlite3.Connection, cutoff: float) -> int:
        """Insert the other instances' rows newer than `cutoff` from the stream into `conn`; how many went in."""
        if not self.available():
            return 0
        added = 0
        for _ in range(MAX_READS):
            last = _last_id(conn)
            try:
                reply = self.connection.execute([("XREAD", "COUNT", str(READ_COUNT), "STREAMS", STREAM, last)])[0]
            except RedisError as exc:
                self._failed(exc)
                return added
            entries = reply[0][1] if isinstance(reply, list) and reply and isinstance(reply[0], list) else []
            if not entries:
                break
            rows = [r for r in (self._row(entry, cutoff) for entry in entries) if r is not None]
            newest = str(entries[-1][0])
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(f"INSERT OR IGNORE INTO requests ({', '.join(COLUMNS)}) VALUES "
                                 f"({', '.join('?' * len(COLUMNS))})", [tuple(r.get(c) for c in COLUMNS)
                                                                        for r in rows])
                inserted = conn.total_changes - before
                if _STREAM_ID.match(newest) and _id_key(newest) > _id_key(_last_id(conn)):
                    _set_meta(conn, LAST_ID_KEY, newest)
                conn.execute("COMMIT")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise
            added += inserted
            self.imported += inserted
            if len(entries) < READ_COUNT:
                break
        return added

    def _row(self, entry: object, cutoff: float) -> dict | None:
        """A stream entry as a row, or None when it is this instance's, too old, or not one of ours."""
        try:
            _, fields = entry  # type: ignore[misc]
            values = dict(zip(fields[::2], fields[1::2]))
            instance, data = values.get("i"), json.loads(values.get("r") or "")
        except (TypeError, ValueError):
            return None
        if not isinstance(instance, str) or not _INSTANCE.match(instance) or instance == self.instance \
                or not isinstance(data, dict):
            return None
        row = {c: _value(data.get(c)) for c in SHARED_COLUMNS}
        if not isinstance(row["uid"], str) or not isinstance(row["ts"], (int, float)) or row["ts"] < cutoff:
            return None
        row["instance"] = instance
        return row


def _value(value: object) -> object:
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return int(value)
    return str(value)[:200]


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                 (key, value))


def _pushed(conn: sqlite3.Connection) -> int:
    found = conn.execute("SELECT value FROM meta WHERE key = ?", (PUSHED_KEY,)).fetchone()
    try:
        return int(found[0]) if found else 0
    except (TypeError, ValueError):
        return 0


def _last_id(conn: sqlite3.Connection) -> str:
    found = conn.execute("SELECT value FROM meta WHERE key = ?", (LAST_ID_KEY,)).fetchone()
    return found[0] if found and isinstance(found[0], str) and _STREAM_ID.match(found[0]) else "0-0"
