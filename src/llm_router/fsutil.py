"""Atomic writes, private files and folders, and an exclusive file lock that names its holder."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from pathlib import Path

from .errors import CONFLICT, USAGE, RouterError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_dir(path: Path, mode: int = 0o755) -> Path:
    """Create `path` (and parents) if missing; an existing folder keeps its mode."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise RouterError(f"cannot create folder {path}: {exc.strerror or exc}",
                          hint="check the folder's owner and permissions", exit_code=USAGE) from exc
    return path


def ensure_private_dir(path: Path) -> Path:
    """Create `path` as a 0700 folder, tightening an existing one."""
    ensure_dir(path, PRIVATE_DIR_MODE)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    """Write `data` to `path` so readers see the old content or the new one, never a part.

    A temp file in the same folder is written, fsynced, given `mode`, and renamed over `path`; on any
    failure the temp file is removed and the previous file is untouched.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = Path(path)
    ensure_dir(path.parent)
    import tempfile  # here, not at the top: read-only commands such as `status` never write

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise RouterError(f"cannot write {path}: {exc.strerror or exc}",
                          hint="check that the folder is writable and the disk is not full") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise RouterError(f"cannot write {path}: {exc.strerror or exc}",
                              hint="check that the folder is writable and the disk is not full") from exc
        raise
    _fsync_dir(path.parent)
    return path


def write_private(path: Path, data: bytes | str) -> Path:
    """Atomically write a secret: 0600 file in a 0700 folder."""
    ensure_private_dir(Path(path).parent)
    return atomic_write(path, data, PRIVATE_FILE_MODE)


def file_mode(path: Path) -> int:
    return Path(path).stat().st_mode & 0o777


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FileLock:
    """An exclusive advisory lock (flock) on `path`; the holder's pid is written into the file.

    Re-entrant within one thread: nested `with lock:` blocks share the outer hold. Another thread of the same
    process waits (up to `timeout`) like another process would.
    """

    def __init__(self, path: Path, timeout: float = 30.0, purpose: str = "the router"):
        self.path = Path(path)
        self.timeout = timeout
        self.purpose = purpose
        self._fd: int | None = None
        self._depth = 0
        self._owner = threading.RLock()  # the thread holding it; the flock only tells processes apart

    def acquire(self) -> None:
        if not self._owner.acquire(self.timeout > 0, self.timeout if self.timeout > 0 else -1):
            raise RouterError(f"{self.purpose} is locked by another thread of pid {os.getpid()} ({self.path})",
                              hint="wait for the other llm-router command to finish, then try again",
                              exit_code=CONFLICT)
        if self._fd is not None:
            self._depth += 1
            return
        try:
            self._acquire_flock()
        except BaseException:
            self._owner.release()
            raise

    def _acquire_flock(self) -> None:
        ensure_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    who = f"pid {holder}" if holder else "another process"
                    raise RouterError(
                        f"{self.purpose} is locked by {who} ({self.path})",
                        hint="wait for the other llm-router command to finish, then try again",
                        exit_code=CONFLICT) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self._depth -= 1
            if self._depth > 0:
                return
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        finally:
            self._owner.release()

    def holder(self) -> int | None:
        try:
            text = self.path.read_text().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_text_bounded(path: Path, limit: int, what: str = "file") -> str:
    """The UTF-8 text of the regular file `path`, refusing anything that could hang or read without bound.

    The file is opened with O_NONBLOCK (a FIFO without a writer does not block the open), fstat-checked to be a
    regular file (a FIFO, a device such as /dev/zero or a socket is refused) and read up to `limit` bytes (a
    longer file is refused). A missing file raises FileNotFoundError and a folder IsADirectoryError, as
    `Path.read_text` does; other OSErrors and UnicodeDecodeError pass through too. What is not a regular file or is
    too large raises RouterError (exit 2) naming `what` and the path. Line ends are translated as `read_text`
    translates them.
    """
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(info.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a character device" if stat.S_ISCHR(info.st_mode)
                    else "a block device" if stat.S_ISBLK(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode)
                    else "not a regular file")
            raise RouterError(f"{what} {path} is {kind}, not a regular file; refusing to read it",
                              hint="point it at an ordinary file", exit_code=USAGE)
        if info.st_size > limit:
            raise RouterError(f"{what} {path} is larger than {limit} bytes ({info.st_size}); refusing to read it",
                              hint="point it at the right file", exit_code=USAGE)
        chunks: list[bytes] = []
        remaining = limit + 1  # a file that grows (or a /proc file reporting size 0) is still read only this far
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise RouterError(f"{what} {path} is larger than {limit} bytes; refusing to read it",
                          hint="point it at the right file", exit_code=USAGE)
    return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as read_text
