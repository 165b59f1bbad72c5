"""The CLIProxyAPI binary as found on disk: its manifest (`manifest.json`, written by `bootstrap`), what it says
it is (run its `-h` and read the `CLIProxyAPI Version:` banner it prints before parsing flags), and the check that a
binary about to be installed names its release and exits 0 as the real one does.

The `-h` probe runs the binary in a process group of its own and kills that group (found by the pid of the probe
this function started, never by name) before reaping it: on a timeout, a failure or Ctrl-C nothing it started is
left running.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path

from .errors import CHECK_FAILED, RouterError

BANNER = re.compile(r"CLIProxyAPI Version: ([^,\s]+)")
RUN_CHECK_TIMEOUT = 30.0
MAX_PROBE_OUTPUT = 1024 * 1024  # bytes of `-h` output read; the real binary prints about 3 KB


def read_manifest(path: Path) -> dict | None:
    """The manifest.json at `path` as a dict; None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def probe(path: Path, timeout: float | None = None) -> tuple[int, str]:
    """Run `path -h` in a new session and return (exit code, stdout and stderr).

    The probe's process group is killed before the probe is reaped, always: its group id is then still the probe's
    own pid (an unreaped process keeps its pid reserved), so the signal reaches only what the probe started.
    A probe still running after `timeout`, or interrupted, raises RouterError or KeyboardInterrupt after that."""
    try:
        proc = subprocess.Popen([str(path), "-h"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, cwd=path.parent, start_new_session=True)
    except OSError as exc:
        raise RouterError(f"the CLIProxyAPIPlus binary does not run: {exc.strerror or exc}", exit_code=CHECK_FAILED,
                          hint="the archive does not hold a build for this machine") from None
    output = bytearray()
    timeout = RUN_CHECK_TIMEOUT if timeout is None else timeout
    try:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while len(output) <= MAX_PROBE_OUTPUT and time.monotonic() < deadline:
                if selector.select(min(max(deadline - time.monotonic(), 0), 0.1)):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    output += chunk
                elif _exited(proc.pid):
                    break  # whatever it left holding the pipe dies with its group below
        while len(output) <= MAX_PROBE_OUTPUT and not _exited(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        timed_out = len(output) <= MAX_PROBE_OUTPUT and not _exited(proc.pid)
    finally:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group this Popen created; its leader is not reaped yet
        proc.wait()
        proc.stdout.close()
    text = output.decode("utf-8", "replace")
    if len(output) > MAX_PROBE_OUTPUT:
        raise RouterError(f"the CLIProxyAPIPlus binary printed more than {MAX_PROBE_OUTPUT // 1024} KiB for `-h`; "
                          "it was stopped", exit_code=CHECK_FAILED,
                          hint="the archive does not hold a CLIProxyAPIPlus build for this machine")
    if timed_out:
        raise RouterError(f"the CLIProxyAPIPlus binary did not exit within {timeout:g} s of `-h`; it was stopped",
                          exit_code=CHECK_FAILED, hint="the archive does not hold a CLIProxyAPIPlus build for this "
                                                       "machine (the real one prints its usage and exits)")
    return proc.returncode, text


def _exited(pid: int) -> bool:
    """Whether our child `pid` has exited, without reaping it (so its pid, our group id, stays reserved)."""
    if not hasattr(os, "waitid"):  # pragma: no cover - every supported platform has it
        return False
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def binary_version(path: Path, returncode: list | None = None, timeout: float | None = None) -> str:
    """The version in the banner the binary prints before parsing flags (`CLIProxyAPI Version: 6.9.28-0-plus, ...`).
    `returncode`, when given, receives the exit code of `-h`; `timeout` is the probe's (default RUN_CHECK_TIMEOUT)."""
    code, output = probe(path, timeout)
    if returncode is not None:
        returncode.append(code)
    match = BANNER.search(output)
    if not match:
        raise RouterError(f"the CLIProxyAPIPlus binary did not print its `CLIProxyAPI Version:` banner "
                          f"(`-h` exited {code})", exit_code=CHECK_FAILED,
                          hint="the archive does not hold a CLIProxyAPIPlus build for this machine")
    return match.group(1)


def checked_version(path: Path, tag: str, timeout: float | None = None) -> str:
    """The banner's version of the binary about to be installed as release `tag`: it must name that release
    (`6.9.28-0-plus` or `6.9.28-0` for v6.9.28-0) and `-h` must exit 0, as the real binary's does (Go's flag
    package exits 0 for -h)."""
    codes: list[int] = []
    version = binary_version(path, codes, timeout)
    wanted = tag.removeprefix("v").removesuffix("-plus")
    if version.removeprefix("v").removesuffix("-plus") != wanted:
        raise RouterError(f"the binary in the {tag} archive says it is version {version[:40]!r}, not {wanted}: "
                          "refusing to install it", exit_code=CHECK_FAILED,
                          hint="the release was assembled wrongly or tampered with: do not use it")
    if codes[0] != 0:
        raise RouterError(f"the binary in the {tag} archive printed its banner but `-h` exited {codes[0]} (the real "
                          "binary exits 0): refusing to install it", exit_code=CHECK_FAILED,
                          hint="the archive does not hold a working CLIProxyAPIPlus build for this machine")
    return version
