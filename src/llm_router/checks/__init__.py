"""Operator checks: doctor (preflight), smoke (the operator flow end to end), security (secrets hygiene)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

OK, WARN, FAIL, FIXED = "ok", "warn", "fail", "fixed"


@dataclass
class Finding:
    """One check's verdict: status, one line of detail, and the exact command (or step) that fixes it."""

    check: str
    status: str
    detail: str
    fix: str | None = None
    path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)
