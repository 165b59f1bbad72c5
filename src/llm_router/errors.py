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
