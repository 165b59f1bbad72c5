"""The usage store's control file (`control.json`, CLI -> writers): `request_reset` appends a cooldown reset
request atomically, each LiteLLM worker's writer reads it (`read_control`) and applies what it has not applied yet.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable

from .usage_schema import control_path

MAX_CONTROL_BYTES = 256 * 1024
KEEP_RESETS = 50


def read_control(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read(MAX_CONTROL_BYTES + 1)[:MAX_CONTROL_BYTES] or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def request_reset(usage_dir: Path, deployments: Iterable[str] | None) -> int:
    """Append a reset request (None: every deployment) to control.json atomically; its sequence number."""
    from .fsutil import ensure_private_dir, write_private

    usage_dir = Path(usage_dir)
    ensure_private_dir(usage_dir)
    path = control_path(usage_dir)
    control = read_control(path)
    seq = int(control.get("seq") or 0) + 1
    resets = [r for r in control.get("resets", []) if isinstance(r, dict)][-(KEEP_RESETS - 1):]
    resets.append({"seq": seq, "deployments": "*" if deployments is None else sorted(set(deployments)),
                   "at": time.time()})
    write_private(path, json.dumps({"seq": seq, "at": time.time(), "resets": resets}, indent=1) + "\n")
    return seq

