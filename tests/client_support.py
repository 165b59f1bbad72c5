"""The real agent clients for the integration tests: pinned Codex CLI and Claude Code from npm, installed once
into a cache folder outside the checkout (`.ci/run` does it too, with the same pins and folder).

`clients()` is the session-wide fixture: it returns the executables, installing what the cache lacks (the npm
registry is allowed); it raises `unittest.SkipTest` with the reason only when node or npm is missing.
`python -m tests.client_support` installs them from the command line.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

# Keep these in step with .ci/run (tests/test_connect.py checks it).
PINS = {"codex": ("@openai/codex", "0.171.0"), "claude": ("@anthropic-ai/claude-code", "2.1.197")}
CACHE_ENV = "LLM_ROUTER_CLIENT_CACHE"
INSTALL_TIMEOUT = 900.0
_found: dict[str, Path] | None = None


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "llm-router-clients").expanduser()


def installed_version(package: str, cache: Path | None = None) -> str | None:
    try:
        return json.loads(((cache or cache_dir()) / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def missing(cache: Path | None = None) -> list[str]:
    """`package@version` specs the cache lacks."""
    return [f"{pkg}@{ver}" for pkg, ver in PINS.values() if installed_version(pkg, cache) != ver]


def install(cache: Path | None = None) -> Path:
    """npm install the pinned clients into the cache (under a lock; nothing happens when they are there)."""
    cache = cache or cache_dir()
    npm = shutil.which("npm")
    if not shutil.which("node") or not npm:
        raise unittest.SkipTest("node/npm not found: the real Codex CLI and Claude Code cannot be installed")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        specs = missing(cache)
        if specs:
            subprocess.run([npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--save-exact", *specs],
                           check=True, stdin=subprocess.DEVNULL, timeout=INSTALL_TIMEOUT)
    still = missing(cache)
    if still:
        raise RuntimeError(f"npm install left {', '.join(still)} missing in {cache}")
    return cache


def clients() -> dict[str, Path]:
    """{'codex': path, 'claude': path} of the pinned clients (installed on first use in this test run)."""
    global _found
    if _found is None:
        cache = install()
        found = {name: cache / "node_modules" / ".bin" / name for name in PINS}
        for name, path in found.items():
            if not path.exists():
                raise RuntimeError(f"{path} is missing after the install of {PINS[name][0]}")
        _found = found
    return dict(_found)


def base_env(home: Path) -> dict[str, str]:
    """A clean environment for a client: a temporary HOME, node on PATH, no proxies, no keys or client settings
    inherited from the developer's shell, and nothing that points a client at the internet."""
    node_dir = str(Path(shutil.which("node") or "/usr/bin/node").parent)
    path = os.pathsep.join(dict.fromkeys([str(Path(sys.executable).parent), node_dir, "/usr/local/bin", "/usr/bin",
                                          "/bin"]))
    env = {"PATH": path, "HOME": str(home), "TMPDIR": os.environ.get("TMPDIR", "/tmp"), "LANG": "C.UTF-8",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "TERM": "dumb", "NO_COLOR": "1",
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
           "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_STATE_HOME": str(home / ".local" / "state")}
    return env


if __name__ == "__main__":
    print(install())
