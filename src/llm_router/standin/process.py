"""Run the stand-ins as real processes and drive their test-only `/_standin/*` routes.

Used by the tests, the demo and the smoke check. Standard library only.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Iterable

SRC_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
UPSTREAM_READY = re.compile(r"standin upstream listening on [\d.]+:(\d+)")
CLIPROXY_READY = re.compile(r"API server started successfully on: [^\n]*:(\d+)")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never use a proxy


class StandinError(RuntimeError):
    """A stand-in did not start, or a control call failed."""


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> Reply:
    """One HTTP request; any status comes back as a Reply (`body` bytes are sent raw, else as JSON)."""
    headers = dict(headers or {})
    data = None
    if isinstance(body, bytes):
        data = body
    elif body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, error.headers, error.read())


_HANDED_OUT: set[int] = set()  # ports this process already picked: the kernel may offer one again once it is free


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago and that this process has not handed out before, so
    two calls for the services of one config never give the same port."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    return port


class StandinProcess:
    """A running stand-in in its own session; stop() ends its process group."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path, owns_log: bool) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.port = 0
        self._owns_log = owns_log
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the process group, wait, then SIGKILL; safe to call twice. Returns the exit code."""
        if not self._stopped:
            self._stopped = True
            if self.popen.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    self.popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.popen.wait()
            if self._owns_log:
                self.log_path.unlink(missing_ok=True)
        return self.popen.returncode

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass

    def __enter__(self) -> StandinProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_ready(self, ready: re.Pattern[str], timeout: float) -> None:
        """Wait for the ready line (which names the port) and for HTTP to answer on that port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = ready.search(self.output())
            if match and self._answers(int(match.group(1))):
                self.port = int(match.group(1))
                return
            if self.popen.poll() is not None:
                raise StandinError(
                    f"{self.name} exited with code {self.popen.returncode} before serving; last output:\n{self.tail()}"
                )
            time.sleep(0.05)
        raise StandinError(f"{self.name} did not answer HTTP within {timeout:.0f} s; last output:\n{self.tail()}")

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            call("GET", f"http://127.0.0.1:{port}/", timeout=2.0)
        except (OSError, http.client.HTTPException):
            return False
        return True


def _spawn(
    name: str,
    module: str,
    args: list[str],
    ready: re.Pattern[str],
    log_path: Path | None,
    env: dict[str, str] | None,
    timeout: float,
) -> StandinProcess:
    owns_log = log_path is None
    if log_path is None:
        fd, temp = tempfile.mkstemp(prefix=f"standin-{name}-", suffix=".log")
        os.close(fd)
        log_path = Path(temp)
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), child_env.get("PYTHONPATH")]))
    with open(log_path, "wb") as log_file:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )
    process = StandinProcess(name, popen, Path(log_path), owns_log)
    try:
        process.wait_ready(ready, timeout)
    except BaseException:
        process.stop()
        raise
    return process


def start_upstream(
    port: int | None = None,
    api_key: str = "sk-standin-upstream",
    models: Iterable[str] = ("standin-model",),
    name: str = "upstream",
    log_path: Path | None = None,
    timeout: float = START_TIMEOUT,
    apis: Iterable[str] | None = None,
) -> StandinProcess:
    """Start the OpenAI-compatible upstream stand-in (`port=None` picks a free port; `apis`: chat, responses...)."""
    args = ["--port", str(port or 0), "--api-key", api_key, "--name", name]
    if apis is not None:
        args += ["--api", ",".join(apis)]
    for model in models:
        args += ["--model", model]
    return _spawn(name, "llm_router.standin.upstream", args, UPSTREAM_READY, log_path, None, timeout)


def start_cliproxy(
    config_path: Path, log_path: Path | None = None, env: dict[str, str] | None = None, timeout: float = START_TIMEOUT
) -> StandinProcess:
    """Start the CLIProxyAPIPlus stand-in on `config_path` (extra `env`, e.g. CLIPROXY_STANDIN_VERSION)."""
    args = ["-config", str(config_path)]
    return _spawn("cliproxy", "llm_router.standin.cliproxy", args, CLIPROXY_READY, log_path, env, timeout)


def _control(method: str, base_url: str, path: str, body: Any = None) -> Any:
    reply = call(method, base_url.rstrip("/") + path, body)
    if reply.status != 200:
        raise StandinError(f"{method} {path} answered {reply.status}: {reply.text}")
    return reply.json()


def set_fault(base_url: str, model: str = "*", **fault: Any) -> dict[str, Any]:
    """Inject a fault: status, retry_after, count (-1 = forever), delay, drop_stream, tool_call, command."""
    return _control("POST", base_url, "/_standin/fault", {"model": model, **fault})


def reset(base_url: str) -> None:
    """Clear faults and request counters."""
    _control("POST", base_url, "/_standin/reset", {})


def stats(base_url: str) -> dict[str, Any]:
    """`{"requests": {model: n}, "total": n}`."""
    return _control("GET", base_url, "/_standin/stats")


def requests_log(base_url: str, since: int = 0) -> list[dict[str, Any]]:
    """The request log (`GET /_standin/requests`): entries with `seq` above `since`, oldest first."""
    return _control("GET", base_url, f"/_standin/requests?since={int(since)}")["requests"]


def clear_requests(base_url: str) -> None:
    """Empty the request log only (faults and counters stay)."""
    _control("DELETE", base_url, "/_standin/requests")


def complete_oauth(base_url: str, state: str, **account: str) -> dict[str, Any]:
    """Finish a pending CLIProxyAPIPlus login (email, plan for Codex; login for Copilot)."""
    return _control("POST", base_url, "/_standin/oauth/complete", {"state": state, **account})


def fail_oauth(base_url: str, state: str, error: str = "Token exchange failed with status 400") -> None:
    _control("POST", base_url, "/_standin/oauth/fail", {"state": state, "error": error})


def pending_oauth(base_url: str) -> list[str]:
    """States of the logins still waiting."""
    return [session["state"] for session in _control("GET", base_url, "/_standin/oauth/pending")["pending"]]
