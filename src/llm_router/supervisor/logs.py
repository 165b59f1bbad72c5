"""Service logs: the path of a service's log, its last lines, and following it (`service logs [-f]`)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

from ..errors import NOT_FOUND, USAGE, RouterError


def tail_log(path: Path, name: str, lines: int = 50) -> list[str]:
    """The last `lines` lines of a service log (read from its end)."""
    if not path.exists():
        raise RouterError(f"no log yet for {name} ({path})", hint=f"start it: `llm-router service start {name}`",
                          exit_code=NOT_FOUND)
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max(lines, 1) * 512))
            text = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        raise RouterError(f"cannot read {path}: {exc.strerror}", exit_code=USAGE) from None
    return text.splitlines()[-lines:] if lines > 0 else []


def follow_log(path: Path, poll: float = 0.25) -> Iterator[str]:
    """Yield lines appended to the service log from now on (Ctrl-C stops)."""
    position = path.stat().st_size if path.exists() else 0
    pending = b""
    while True:
        try:
            with open(path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < position:
                    position = 0  # truncated or replaced
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")
        else:
            time.sleep(poll)
