"""`llm-router run CLIENT -- ARGS`: run the client with the stack's configuration set for that one process.

The key's real value is only in the child's environment; Ctrl-C and SIGTERM are forwarded to the client, it is
never left running, and its exit code is returned.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .client_setup import ClientSetup, claude_env, codex_settings, toml_value
from .config import MASTER_KEY_ENV, RouterConfig
from .errors import NOT_FOUND, USAGE, RouterError

STOP_WAIT = 10.0  # seconds `run` waits for the client after a forwarded SIGTERM/SIGHUP before it kills it
EXECUTABLES = {"codex": "codex", "claude": "claude", "llm": "llm", "aider": "aider"}


@dataclass(frozen=True)
class RunResult:
    client: str
    argv: tuple[str, ...]
    returncode: int  # the client's exit code; 128+N when it died of signal N
    signal: int | None = None  # the signal forwarded to it, if any

    def to_dict(self) -> dict:
        return {"client": self.client, "argv": list(self.argv), "returncode": self.returncode, "signal": self.signal}


def run_env(cfg: RouterConfig, client_setup: ClientSetup, environ: dict | None = None) -> dict[str, str]:
    """The client's environment for one command: the current environment plus the setup's variables with the
    key's real value (held only by the child process)."""
    env = dict(os.environ if environ is None else environ)
    key = cfg.secret(MASTER_KEY_ENV, env)
    if not key:
        raise RouterError(f"no {MASTER_KEY_ENV} yet: it is generated when the stack first starts",
                          hint="llm-router service start all", exit_code=NOT_FOUND)
    s = client_setup
    ep = s.endpoint
    if s.client == "codex":
        env[ep.key.env] = key
    elif s.client == "claude":
        env.update(claude_env(ep, s.model))
        env["ANTHROPIC_AUTH_TOKEN"] = key
        env.pop("ANTHROPIC_API_KEY", None)  # it would be sent instead, as x-api-key
    elif s.client == "llm":
        env["OPENAI_API_KEY"] = key
    else:
        for var in s.env:
            env[var.name] = key if var.key else var.value
    return env


def run_argv(client_setup: ClientSetup, args: list[str], executable: str | None = None) -> list[str]:
    """The command line: `openai` runs ARGS as they are; codex gets `-c` overrides for our provider (its
    config.toml is not touched); aider gets `--model openai/<model>` unless ARGS name a model."""
    s = client_setup
    if s.client == "openai":
        if not args:
            raise RouterError("`run openai` needs a command to run with OPENAI_BASE_URL/OPENAI_API_KEY set",
                              hint="llm-router run openai -- python my_script.py", exit_code=USAGE)
        return list(args)
    exe = executable or shutil.which(EXECUTABLES[s.client])
    if not exe:
        raise RouterError(f"{EXECUTABLES[s.client]} is not on PATH",
                          hint=f"install {s.title} (see docs/clients.md)", exit_code=NOT_FOUND)
    if s.client == "codex":
        overrides = []
        for table, key, value in codex_settings(s.endpoint, s.model):
            overrides += ["-c", f"{table + '.' if table else ''}{key}={toml_value(value)}"]
        return [exe, *overrides, *args]
    if s.client == "aider" and not any(a == "--model" or a.startswith("--model=") for a in args):
        return [exe, "--model", f"openai/{s.model}", *args]
    return [exe, *args]


def _in_terminal_foreground() -> bool:
    """Whether a Ctrl-C typed in our terminal reaches the child by itself (we share its foreground group)."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _die_with_parent() -> None:  # in the child, before exec: Linux ends it if llm-router is killed outright
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run(cfg: RouterConfig, client_setup: ClientSetup, args: list[str], executable: str | None = None,
        environ: dict | None = None, cwd: Path | None = None) -> RunResult:
    """Run the client in the foreground (same terminal and process group, its own output) and return its exit
    code. SIGTERM and SIGHUP are forwarded to it, and SIGINT too unless it came from our terminal (which delivers
    it to the client itself: a TUI's Ctrl-C must arrive once). When the client has not exited STOP_WAIT seconds
    after a forwarded SIGTERM/SIGHUP it is killed; on Linux it also gets SIGTERM if llm-router itself is killed.
    So it is never left running."""
    argv = run_argv(client_setup, args, executable)
    env = run_env(cfg, client_setup, environ)
    try:
        child = subprocess.Popen(argv, env=env, cwd=cwd,
                                 preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    except OSError as exc:
        raise RouterError(f"cannot run {argv[0]}: {exc.strerror or exc}", hint="check the client's installation",
                          exit_code=NOT_FOUND) from exc
    forwarded: list[int] = []
    deadline: list[float] = []

    def forward(signum, _frame):
        forwarded.append(signum)
        if signum != signal.SIGINT and not deadline:
            deadline.append(time.monotonic() + STOP_WAIT)
        if signum == signal.SIGINT and _in_terminal_foreground():
            return
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, forward)
    except ValueError:  # not the main thread: no handlers (a terminal's Ctrl-C still reaches the child)
        pass
    try:
        while True:
            try:
                code = child.wait(timeout=0.5)  # a timeout, so that a forwarded signal's deadline is seen
                break
            except subprocess.TimeoutExpired:
                if deadline and time.monotonic() > deadline[0]:
                    child.kill()
    finally:
        if child.poll() is None:  # an exception of our own: never leave the client running
            child.kill()
            child.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    returncode = 128 - code if code < 0 else code
    return RunResult(client_setup.client, tuple(argv), returncode, forwarded[0] if forwarded else None)
