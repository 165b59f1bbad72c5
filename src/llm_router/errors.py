"""RouterError and the stable exit codes every front end uses."""
from __future__ import annotations

OK = 0
CHECK_FAILED = 1
USAGE = 2  # usage or configuration error
AUTH = 3
NOT_FOUND = 4
CONFLICT = 5  # port busy, lock held, already running
UNAVAILABLE = 6  # not ready in time, upstream unreachable

EXIT_CODE_NAMES = {
    OK: "ok",
    CHECK_FAILED: "check failed",
    USAGE: "usage or config error",
    AUTH: "auth",
    NOT_FOUND: "not found",
    CONFLICT: "conflict",
    UNAVAILABLE: "unavailable",
}


class RouterError(Exception):
    """A failure the user can act on: a one-line message, an optional hint and a stable exit code.

    `details` holds extra lines (for example every problem of an invalid config), printed after the message.
    """

    def __init__(self, message: str, hint: str | None = None, exit_code: int = USAGE,
                 details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
        self.details = list(details or [])

    def to_dict(self) -> dict:
        return {"message": self.message, "hint": self.hint, "exit_code": self.exit_code,
                "details": self.details}


FS_HINT = "check that the folder exists, is writable and the disk is not full"


def from_os_error(exc: OSError) -> RouterError:
    """An OSError that reached a front end (EROFS, ENOSPC, EACCES, ...) as a one-line RouterError with a stable
    code: 4 for a missing file, 6 for a network failure or timeout, 2 for every other local problem (a closed
    output pipe included)."""
    import errno as errno_mod

    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    name = errno_mod.errorcode.get(code) if isinstance(code, int) else None
    where = [str(f) for f in (getattr(exc, "filename", None), getattr(exc, "filename2", None)) if f is not None]
    message = f"{reason}{f' ({name})' if name else ''}" + (f": {' -> '.join(where)}" if where else "")
    message = "".join(c if c.isprintable() else "?" for c in message)[:400]
    if isinstance(exc, FileNotFoundError):
        return RouterError(message, hint="check the path", exit_code=NOT_FOUND)
    if isinstance(exc, (ConnectionError, TimeoutError)) and not isinstance(exc, BrokenPipeError) or (
            code is None and "requests" in type(exc).__module__):
        return RouterError(message, hint="check the network and that the service is up", exit_code=UNAVAILABLE)
    return RouterError(message, hint=FS_HINT, exit_code=USAGE)
