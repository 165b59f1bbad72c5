"""The state of profile switches: the active-profile record, and the journal of a switch in progress.

`read_active` is the one reader of `runtime/active_profile.json` (written by profiles.py): anything but an object
with a string `name` (and string fields) counts as no active profile, never as a crash.

The journal holds what to put back if a switch never finishes.

`profile set` writes it (atomically, 0600) before it changes a file, and removes it once the switch is served or
rolled back. A journal that is still there when the next command takes the runtime lock means that switch was
interrupted (Ctrl-C, kill -9, a crash, a reboot): `services.reconcile` puts the files back from it and makes
LiteLLM serve them again. The files it holds are rendered configs and the active-profile record: never a secret
(rendered configs hold only `os.environ/NAME` references).
"""
from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from .fsutil import atomic_write
from .layout import Layout

_WRITER = secrets.token_hex(8)  # this process: its own journal is a switch in progress, never an interrupted one


@dataclass
class Journal:
    profile: str  # the profile being switched to
    previous: str | None  # the profile that was active before
    files: dict[Path, bytes | None]  # each file's content before the switch (None: it did not exist)
    ours: bool = False  # written by this process: the switch is still in progress


ACTIVE_FIELDS = ("name", "sha256", "time", "template", "config")


def read_active(layout: Layout) -> dict | None:
    """The active profile (`name, sha256, time, template, config`), or None when none is (or the file is not a
    well-typed record)."""
    try:
        info = json.loads(layout.active_profile_file.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("name"), str) or not info["name"]:
        return None
    if any(not isinstance(info.get(key, ""), str) for key in ACTIVE_FIELDS):
        return None
    return info


def begin(layout: Layout, profile: str, previous: str | None, files: dict[Path, bytes | None]) -> None:
    data = {"profile": profile, "previous": previous, "writer": _WRITER,
            "files": {str(path): None if content is None else base64.b64encode(content).decode("ascii")
                      for path, content in files.items()}}
    atomic_write(layout.switch_journal, json.dumps(data, indent=2) + "\n", mode=0o600)


def read(layout: Layout) -> tuple[Journal | None, str | None]:
    """The pending journal, or (None, why it is unusable); (None, None) when there is none. Only paths under the
    runtime folder are ever restored from it."""
    try:
        data = json.loads(layout.switch_journal.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"unreadable switch journal {layout.switch_journal} ({type(exc).__name__})"
    try:
        files = {}
        for name, content in data["files"].items():
            path = Path(name)
            if not path.is_relative_to(layout.runtime_dir) or ".." in path.parts:
                raise ValueError(name)
            files[path] = None if content is None else base64.b64decode(content, validate=True)
        profile, previous = data["profile"], data["previous"]
        if not isinstance(profile, str) or not (previous is None or isinstance(previous, str)):
            raise ValueError("names")
    except (KeyError, TypeError, AttributeError, ValueError):
        return None, f"unusable switch journal {layout.switch_journal}"
    return Journal(profile, previous, files, ours=data.get("writer") == _WRITER), None


def restore(journal: Journal) -> None:
    """Put every file back as it was before the switch."""
    for path, content in journal.files.items():
        if content is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, content)


def clear(layout: Layout) -> None:
    layout.switch_journal.unlink(missing_ok=True)
