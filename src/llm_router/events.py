"""The JSON-lines event log: append (one write per event), read, follow, rotate by size, redact secrets.

Each line is one object with exactly the fields `event, service, profile, provider, result, detail, timestamp`.
A reader skips (and counts) every line that is not such an object: not JSON, not an object, no string `event`, or a
field other than `detail` that is neither a string nor null.

Appending never raises: the event log records what happened, so a read-only folder or a full disk must not turn
a finished action (or the report of a failed one) into a crash. A failed append is kept as a warning that the
front end prints (`take_warnings`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

FIELDS = ("event", "service", "profile", "provider", "result", "detail", "timestamp")
MAX_BYTES = 5 * 1024 * 1024
KEEP = 3
REDACTED = "<redacted>"
MIN_SECRET_LEN = 6  # shorter values are too likely to match ordinary words
TEXT_FIELDS = ("event", "service", "profile", "provider", "result", "timestamp")
_WARNINGS: list[str] = []  # failed appends of this process, until a front end takes them


def take_warnings() -> list[str]:
    """The warnings of failed appends since the last call (one per distinct problem), and forget them."""
    taken = list(dict.fromkeys(_WARNINGS))
    _WARNINGS.clear()
    return taken


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """Replace every occurrence of a known secret in strings, recursively."""
    secrets = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
    if not secrets:
        return value
    return _redact(value, secrets)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, secrets) for v in value]
    return value


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(event: str, *, service: str | None = None, profile: str | None = None, provider: str | None = None,
           result: str | None = None, detail: Any = None, timestamp: str | None = None) -> dict:
    return {"event": event, "service": service, "profile": profile, "provider": provider, "result": result,
            "detail": detail, "timestamp": timestamp or now_iso()}


class EventLog:
    def __init__(self, path: Path, secrets: Iterable[str] = (), max_bytes: int = MAX_BYTES, keep: int = KEEP):
        self.path = Path(path)
        self.secrets = list(secrets)
        self.max_bytes = max_bytes
        self.keep = keep

    def append(self, event: str, **fields: Any) -> dict:
        """Write one event as a single `write()` on an O_APPEND descriptor, so concurrent writers never interleave.

        Never raises: when the event cannot be written (read-only folder, full disk, ...) it is dropped and a
        warning is kept for `take_warnings()`. Returns the entry either way."""
        entry = record(event, **fields)
        try:
            entry = redact(entry, self.secrets)
            line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode("utf-8", "replace")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_if_needed(len(line))
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            warning = f"event {event!r} not recorded in {self.path}: {reason}"
            if warning not in _WARNINGS and len(_WARNINGS) < 20:  # bounded: `service watch` runs for days
                _WARNINGS.append(warning)
        return entry

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            if self.path.stat().st_size + incoming <= self.max_bytes:
                return
        except FileNotFoundError:
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # another writer may have rotated while we waited
                if self.path.stat().st_size + incoming <= self.max_bytes:
                    return
            except FileNotFoundError:
                return
            for i in range(self.keep - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    skipped = 0  # bad lines the last `read()` skipped

    def read(self, limit: int | None = None, event: str | None = None) -> list[dict]:
        """The newest `limit` events (oldest first), optionally only those of one type. Bad lines are skipped and
        counted in `self.skipped`."""
        self.skipped = 0
        entries = [e for e in self._entries(self.path) if event is None or e.get("event") == event]
        return entries[-limit:] if limit else entries

    def _entries(self, path: Path) -> Iterator[dict]:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    entry = _parse(line)
                    if entry is None:
                        self.skipped += 1
                    else:
                        yield entry
        except FileNotFoundError:
            return

    def follow(self, event: str | None = None, poll: float = 0.25, stop: Any = None) -> Iterator[dict]:
        """Yield events appended from now on, surviving rotation. `stop()` returning true ends the loop."""
        handle, inode, pending, first_open = None, None, b"", True
        try:
            while not (stop and stop()):
                if handle is None:
                    try:
                        handle = open(self.path, "rb")
                    except FileNotFoundError:
                        first_open = False  # a file created later is read from its start
                        time.sleep(poll)
                        continue
                    inode = os.fstat(handle.fileno()).st_ino
                    if first_open:
                        handle.seek(0, os.SEEK_END)
                    first_open = False
                chunk = handle.read(65536)
                if chunk:
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        entry = _parse(line.decode("utf-8", "replace"))
                        if entry is not None and (event is None or entry.get("event") == event):
                            yield entry
                    continue
                try:
                    rotated = os.stat(self.path).st_ino != inode
                except FileNotFoundError:
                    rotated = True
                if rotated:
                    handle.close()
                    handle, pending = None, b""
                    continue
                time.sleep(poll)
        finally:
            if handle is not None:
                handle.close()


def _parse(line: str) -> dict | None:
    """An event line as a dict, or None unless it is an object with a string `event` and string-or-null fields."""
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("event"), str) or not entry["event"]:
        return None
    if any(not isinstance(entry.get(key), (str, type(None))) for key in TEXT_FIELDS):
        return None
    return entry


def for_config(config) -> EventLog:
    """The event log of a loaded config, redacting every secret the config knows plus generated keys."""
    layout = config.layout
    secrets = list(config.known_secrets())
    with contextlib.suppress(OSError):
        for file in layout.secrets_dir.iterdir():
            with contextlib.suppress(OSError):
                value = file.read_text(encoding="utf-8").strip()
                if value:
                    secrets.append(value)
    return EventLog(layout.events_log, secrets)
