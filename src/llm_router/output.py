"""Rendering of command results: human text by default, or the versioned JSON envelope with `--json`.

`{"schema": 1, "command": ..., "ok": ..., "data": ..., "errors": [...], "warnings": [...]}`
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TextIO

from .errors import CHECK_FAILED, OK, RouterError

SCHEMA = 1


@dataclass
class Result:
    """What a command hands to a front end: data for `--json`, text for people, and the exit code.

    `stream` (optional) yields further items after the result is printed, for `--follow`; each is printed
    with `render_item` as text or as one JSON object per line.
    """

    command: str
    data: Any = None
    text: str = ""
    ok: bool = True
    exit_code: int | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    stream: Iterator[Any] | None = None
    render_item: Callable[[Any], str] = str

    @property
    def code(self) -> int:
        if self.exit_code is not None:
            return self.exit_code
        return OK if self.ok else CHECK_FAILED


def envelope(result: Result) -> dict:
    return {"schema": SCHEMA, "command": result.command, "ok": result.ok, "data": result.data,
            "errors": result.errors, "warnings": result.warnings}


def error_envelope(command: str, error: RouterError, warnings: Iterable[str] = ()) -> dict:
    return {"schema": SCHEMA, "command": command, "ok": False, "data": None, "errors": [error.to_dict()],
            "warnings": list(warnings)}


def emit(result: Result, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if as_json:
        out.write(json.dumps(envelope(result), indent=2, default=str) + "\n")
    else:
        for warning in result.warnings:
            err.write(f"warning: {warning}\n")
        if result.text:
            out.write(result.text.rstrip("\n") + "\n")
    out.flush()
    if result.stream is not None:
        try:
            for item in result.stream:
                out.write((json.dumps(item, default=str) if as_json else result.render_item(item)) + "\n")
                out.flush()
        except KeyboardInterrupt:
            pass
    return result.code


def emit_error(command: str, error: RouterError, as_json: bool, warnings: Iterable[str] = (),
               out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if as_json:
        out.write(json.dumps(error_envelope(command, error, warnings), indent=2, default=str) + "\n")
    else:
        for warning in warnings:
            err.write(f"warning: {warning}\n")
    err.write(f"error: {error.message}\n")
    if error.details != [] and not (len(error.details) == 1 and error.details[0] in error.message):
        for line in error.details:
            err.write(f"  {line}\n")
    if error.hint:
        err.write(f"hint: {error.hint}\n")
    return error.exit_code


def table(rows: list[list[Any]], headers: list[str] | None = None) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    all_rows = ([headers] if headers else []) + [["" if c is None else str(c) for c in r] for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows if i < len(r)) for i in range(max(len(r) for r in all_rows))]
    lines = []
    for row in all_rows:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    """`H:MM:SS`, like supervisor's uptime."""
    if seconds is None:
        return "-"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
