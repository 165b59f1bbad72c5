"""Codex and GitHub Copilot logins driven through CLIProxyAPIPlus's management API.

The proxy runs the OAuth flow and writes the auth file; llm-router starts it when needed, shows the URL or
device code, polls `get-auth-status`, and then trusts only what it can see: `ok` counts as success when a new or
rewritten auth file of the provider exists (the real server answers `ok` for states it does not know). The new
file's mode is fixed to 0600 (the binary writes first-login files 0644).

A proxy started for a login stays running after a success (auth files are picked up live) and is stopped again
after a failure, so a failed login leaves things as they were found.
"""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import webbrowser
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from .. import stack
from ..cliproxy import SERVICE, Management
from ..errors import AUTH, NOT_FOUND, UNAVAILABLE, USAGE, RouterError
from ..supervisor import services as supervisor
from ..supervisor.model import ServiceOutcome
from .files import CODEX, COPILOT, describe, private_folder, record_login, snapshot

INTERRUPTED = 130  # the shell's code for Ctrl-C
STATE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
LABEL = {CODEX: "Codex", COPILOT: "GitHub Copilot"}
LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*){1,2}")  # `[time] [level] ` of the binary's log lines
CHILD_READ = 0.5  # seconds between checks of the device-flow child's deadline
CHILD_STOP = 5.0

Notify = Callable[[str], None]


def _silent(_: str) -> None:
    pass


class LoginTimeout(RouterError):
    """The login did not finish within --timeout."""


def has_display(environ: dict | None = None, platform: str | None = None) -> bool:
    """Whether a browser can be opened here: always on macOS and Windows, else with an X11 or Wayland display."""
    platform = platform or sys.platform
    if platform == "darwin" or platform.startswith("win"):
        return True
    env = os.environ if environ is None else environ
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def open_in_browser(url: str) -> bool:
    if not has_display():
        return False
    try:
        return bool(webbrowser.open(url))
    except webbrowser.Error:
        return False


def callback_state(url: str) -> str:
    """The `state` of a pasted redirect URL (`http://localhost:1455/auth/callback?code=..&state=..`)."""
    query = parse_qs(urlsplit(url.strip()).query)
    state = (query.get("state") or [""])[-1]
    if not STATE.match(state) or not (query.get("code") or query.get("error")):
        raise RouterError("that is not the redirect URL of a Codex login (it needs code= and state=)",
                          hint="copy the whole address the browser ends on after the login: "
                               "http://localhost:1455/auth/callback?code=...&state=...", exit_code=USAGE)
    return state


class _Login:
    """One login attempt: the proxy it needs, the auth files it started from, polling and clean-up."""

    def __init__(self, cfg, provider: str, timeout: float, poll_interval: float, notify: Notify,
                 sleep: Callable[[float], None], clock: Callable[[], float]):
        if not (timeout > 0 and poll_interval > 0):
            raise RouterError("--timeout and --poll-interval must be positive numbers of seconds", exit_code=USAGE)
        self.cfg, self.provider, self.label = cfg, provider, LABEL[provider]
        self.timeout, self.interval = timeout, poll_interval
        self.notify, self.sleep, self.clock = notify, sleep, clock
        self.auth_dir = cfg.layout.auths_dir
        self.mgmt = Management(cfg)
        self.started: ServiceOutcome | None = None  # the proxy's start outcome when this login started it
        self.method = ""
        self.before: dict[str, str] = {}

    def ensure_proxy(self) -> None:
        if stack.is_running(self.cfg, SERVICE):
            return
        self.notify(f"CLIProxyAPIPlus is not running; starting it for the {self.label} login...")
        try:
            outcome = stack.start(self.cfg, [SERVICE])[0]
        except RouterError as exc:
            raise RouterError(f"the {self.label} login needs CLIProxyAPIPlus, which could not be started: "
                              f"{exc.message}", hint=exc.hint, exit_code=exc.exit_code, details=exc.details) from None
        if outcome.result == "started":
            self.started = outcome
            self.notify(f"Started CLIProxyAPIPlus (pid {outcome.pid}, port {outcome.port}).")

    def check_management(self) -> None:
        """One cheap call that tells a rejected key (401, raised by the client) from a disabled API (404)."""
        status, _ = self.mgmt.request("GET", "auth-files", allow=(404,))
        if status == 404:
            port = self.cfg.services[SERVICE].port
            raise RouterError("the CLIProxyAPIPlus management API is disabled (HTTP 404 on /v0/management/auth-files)",
                              hint="llm-router enables it with its own key when it starts the proxy: run "
                                   "`llm-router service restart cliproxyapi_plus`; if that does not help, another "
                                   f"program answers on port {port}", exit_code=UNAVAILABLE)

    @staticmethod
    def session(route: str, answer: object) -> dict:
        """A login started at the proxy; its state must be valid (polling an empty or unknown one reads `ok`)."""
        if not isinstance(answer, dict) or not STATE.match(str(answer.get("state") or "")):
            raise RouterError(f"unexpected answer from CLIProxyAPIPlus {route}: no valid login state",
                              hint="check `llm-router service logs cliproxyapi_plus`", exit_code=UNAVAILABLE)
        return answer

    def wait(self, state: str, on_tick: Callable[[], None] | None = None) -> None:
        """Poll `get-auth-status` until `ok`, `error` or the timeout."""
        deadline = self.clock() + self.timeout
        self.notify(f"Waiting for the login to finish (up to {self.timeout:g} s; Ctrl-C aborts)...")
        while True:
            answer = self.mgmt.get("get-auth-status", state=state)
            status = answer.get("status") if isinstance(answer, dict) else None
            if status == "ok":
                return
            if status == "error":
                raise RouterError(f"{self.label} login failed: {answer.get('error') or 'no reason given'}",
                                  hint=f"start again with `llm-router auth {self.command}`", exit_code=AUTH)
            if self.clock() >= deadline:
                raise LoginTimeout(f"{self.label} login timed out after {self.timeout:g} s",
                                   hint="finish the login in the browser sooner, or raise --timeout",
                                   exit_code=UNAVAILABLE)
            if on_tick is not None:
                on_tick()
            self.sleep(max(0.0, min(self.interval, deadline - self.clock())))

    @property
    def command(self) -> str:
        return "codex login" if self.provider == CODEX else "copilot login"

    def new_file(self) -> tuple[Path, str]:
        """The auth file this login wrote (the newest new or rewritten one) and whether it was added or updated."""
        for attempt in range(2):
            after = snapshot(self.auth_dir, self.provider)
            changed = [name for name, digest in after.items() if self.before.get(name) != digest]
            if changed:
                path = max((self.auth_dir / name for name in changed), key=lambda p: p.stat().st_mtime)
                return path, "updated" if path.name in self.before else "added"
            if attempt == 0:
                self.sleep(self.interval)
        raise RouterError(f"CLIProxyAPIPlus reported the {self.label} login as done, but no new or updated "
                          f"{self.provider} auth file appeared in {self.auth_dir}",
                          hint="the proxy answers `ok` for logins it does not know (was it restarted meanwhile?); "
                               f"start again with `llm-router auth {self.command}`", exit_code=AUTH)

    def finish(self) -> dict:
        path, change = self.new_file()
        private_folder(self.auth_dir)
        try:
            os.chmod(path, 0o600)
        except OSError as exc:
            raise RouterError(f"cannot make {path} private: {exc.strerror or exc}", exit_code=USAGE) from None
        info = describe(path)
        record_login(self.cfg, self.provider, "ok", method=self.method, email=info["email"],
                     account=info["account"] if info["account"] != info["email"] else None, file=info["file"])
        started = self.started
        return {**info, "change": change, "method": self.method, "proxy_started": started is not None,
                "proxy_pid": started.pid if started else None, "proxy_port": started.port if started else None}

    def abandon(self, error: RouterError, result: str) -> None:
        """Record the failure and stop the proxy again if this login started it."""
        if self.started:
            try:
                stack.stop(self.cfg, [SERVICE])
                self.notify("Stopped CLIProxyAPIPlus again: it had been started for this login.")
            except RouterError as exc:
                self.notify(f"could not stop CLIProxyAPIPlus: {exc.message}")
        record_login(self.cfg, self.provider, result, method=self.method or None, error=error.message)


def _run(login: _Login, flow: Callable[[_Login], None]) -> dict:
    try:
        login.ensure_proxy()
        login.check_management()
        login.before = snapshot(login.auth_dir, login.provider)
        flow(login)
        return login.finish()
    except KeyboardInterrupt:
        error = RouterError(f"{login.label} login interrupted: no account was added",
                            hint=f"run `llm-router auth {login.command}` again when ready", exit_code=INTERRUPTED)
        login.abandon(error, "interrupted")
        raise error from None
    except RouterError as exc:
        login.abandon(exc, "timeout" if isinstance(exc, LoginTimeout) else "failed")
        raise


# --------------------------------------------------------------------------- Codex

PASTE_HELP = ("No browser here? Open the URL on any machine, log in, then paste the address the browser ends on "
              "(http://localhost:1455/auth/callback?code=...) here and press Enter.")


def codex_login(cfg, *, timeout: float = 180.0, poll_interval: float = 2.0, open_browser: bool = True,
                callback_url: str | None = None, notify: Notify = _silent,
                read_pasted: Callable[[], str | None] | None = None,
                opener: Callable[[str], bool] = open_in_browser,
                sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> dict:
    """Log a Codex (ChatGPT) account in through the proxy's web flow; returns the account (never a token).

    `callback_url` finishes a login started earlier (its URL was shown, the browser's redirect failed) by
    sending the redirect URL to the proxy. `read_pasted()` returns a line the user pasted, or None; it is
    offered when no browser was opened. `opener(url)` opens a browser and says whether it did.
    """
    login = _Login(cfg, CODEX, timeout, poll_interval, notify, sleep, clock)
    given_state = callback_state(callback_url) if callback_url else None

    def send(url: str) -> None:
        status, payload = login.mgmt.request("POST", "oauth-callback", body={"provider": "codex", "redirect_url": url},
                                             allow=(400, 404))
        reason = payload.get("error") if isinstance(payload, dict) else None
        if status == 404 and reason:
            raise RouterError(f"CLIProxyAPIPlus does not know this login ({reason})",
                              hint="the proxy forgets a login 5 minutes after its URL was made: start again with "
                                   "`llm-router auth codex login` and paste the new redirect URL", exit_code=AUTH)
        if status == 404:
            raise RouterError("this CLIProxyAPIPlus release cannot take a pasted redirect URL (no /oauth-callback)",
                              hint="forward the callback port instead: `ssh -L 1455:127.0.0.1:1455 HOST`, then "
                                   "open the URL on your machine", exit_code=UNAVAILABLE)
        if status == 400:
            raise RouterError(f"CLIProxyAPIPlus rejected the redirect URL: {reason or payload}", exit_code=AUTH)

    def flow(login: _Login) -> None:
        if callback_url:
            login.method = "callback-url"
            notify("Sending the redirect URL to CLIProxyAPIPlus...")
            send(callback_url.strip())
            login.wait(given_state)
            return
        login.method = "browser"
        answer = login.session("codex-auth-url", login.mgmt.get("codex-auth-url", is_webui="true"))
        state = answer["state"]
        notify("Open this URL in a browser to log in to Codex (ChatGPT account):")
        notify(f"    {answer.get('url')}")
        if open_browser and opener(str(answer.get("url"))):
            notify("Opened it in your browser.")
            login.wait(state)
            return
        if read_pasted is not None:
            notify(PASTE_HELP)
        else:
            notify("No browser here? Open the URL on any machine, log in, then run "
                   "`llm-router auth codex login --callback-url 'URL'` with the address the browser ends on.")

        def take_paste() -> None:
            line = read_pasted()
            if not line:
                return
            try:
                pasted = callback_state(line)
            except RouterError as exc:
                notify(f"{exc.message}; paste it again, or keep waiting")
                return
            if pasted != state:
                notify("that redirect URL belongs to another login attempt; paste the one of this login")
                return
            login.method = "pasted"
            send(line.strip())
            notify("Redirect URL sent; CLIProxyAPIPlus is finishing the login...")

        login.wait(state, on_tick=take_paste if read_pasted is not None else None)

    return _run(login, flow)


# --------------------------------------------------------------------------- GitHub Copilot

def _show_device_code(notify: Notify, uri: str | None, code: str | None) -> None:
    notify("To log in to GitHub Copilot, open this page in any browser and enter the code:")
    notify(f"    {uri or 'https://github.com/login/device'}")
    notify(f"    code:  {code or '(see above)'}")


def require_copilot_line(cfg) -> None:
    """Refuse a Copilot login up front when the installed binary's line has no Copilot (mainline CLIProxyAPI):
    RouterError exit 4 naming the Plus line and the bootstrap command. A missing or unreadable binary passes
    (starting the proxy reports that)."""
    from .. import cliproxy, cliproxy_lines

    try:
        features = cliproxy.installed_features(cfg)
    except (RouterError, OSError):
        return
    if features is None or features.copilot_login:
        return
    line = cliproxy_lines.LINES[features.line]
    plus = [name for name, (key, _) in cliproxy_lines.KNOWN_REPOSITORIES.items() if cliproxy_lines.LINES[key].copilot]
    raise RouterError(f"the installed {line.title} {features.version} has no GitHub Copilot login (no "
                      "-github-copilot-login): Copilot needs a Plus line such as " + " or ".join(plus),
                      hint="install one with " + "; ".join(f"`llm-router bootstrap download --repository {name}`"
                                                             for name in plus)
                           + ", then `llm-router service restart cliproxyapi_plus` and log in again",
                      exit_code=NOT_FOUND)


def copilot_login(cfg, *, timeout: float = 180.0, poll_interval: float = 2.0, notify: Notify = _silent,
                  sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> dict:
    """Log a GitHub account with Copilot in (device flow); returns the account (never a token).

    Newer proxies start the flow with `GET /github-auth-url`; older ones (404) only have the binary's one-shot
    `-github-copilot-login`, run here as a child whose prompts are relayed and whose run is bounded by `timeout`.
    A line without Copilot (mainline CLIProxyAPI) is refused before anything starts (`require_copilot_line`).
    """
    try:
        require_copilot_line(cfg)
    except RouterError as exc:
        record_login(cfg, COPILOT, "failed", error=exc.message)
        raise
    login = _Login(cfg, COPILOT, timeout, poll_interval, notify, sleep, clock)

    def flow(login: _Login) -> None:
        status, answer = login.mgmt.request("GET", "github-auth-url", allow=(404,))
        if status == 404:
            login.method = "binary-device-flow"
            notify("This CLIProxyAPIPlus release has no GitHub login route; running its own device flow...")
            _binary_device_flow(login)
            return
        login.method = "device-code"
        answer = login.session("github-auth-url", answer)
        _show_device_code(notify, answer.get("verification_uri") or answer.get("url"), answer.get("user_code"))
        login.wait(answer["state"])

    return _run(login, flow)


def _binary_device_flow(login: _Login) -> None:
    layout = login.cfg.layout
    argv = [str(layout.cliproxy_binary), "-github-copilot-login", "-config", str(layout.cliproxy_runtime_config)]
    env = {k: v for k, v in os.environ.items() if k not in supervisor.SCRUBBED_ENV}
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                cwd=layout.runtime_dir, env=env, start_new_session=True)
    except OSError as exc:
        raise RouterError(f"cannot run {argv[0]}: {exc.strerror or exc}", hint="run `llm-router bootstrap download`",
                          exit_code=UNAVAILABLE) from None
    relay = _Relay(login.notify)
    deadline = login.clock() + login.timeout
    try:
        fd, pending = proc.stdout.fileno(), b""
        while True:
            remaining = deadline - login.clock()
            if remaining <= 0:
                raise LoginTimeout(f"GitHub Copilot login timed out after {login.timeout:g} s",
                                   hint="enter the code sooner, or raise --timeout", exit_code=UNAVAILABLE)
            if not select.select([fd], [], [], min(remaining, CHILD_READ))[0]:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                relay(line.decode("utf-8", "replace").strip())
        relay(pending.decode("utf-8", "replace").strip())
        code = proc.wait(CHILD_STOP)
    finally:
        _end_child(proc)
    if code != 0:
        raise RouterError(f"GitHub Copilot login failed (the binary's device flow exited with status {code}): "
                          f"{relay.last or 'no output'}", hint="start again with `llm-router auth copilot login`",
                          exit_code=AUTH)


class _Relay:
    """Passes the device-flow child's lines on, showing its verification page and code prominently."""

    def __init__(self, notify: Notify):
        self.notify, self.uri, self.last = notify, None, ""

    def __call__(self, line: str) -> None:
        if not line or line.startswith("CLIProxyAPI Version:"):
            return
        visit = re.search(r"please visit:\s*(\S+)", line)
        code = re.search(r"enter the code:\s*(\S+)", line)
        if visit:
            self.uri = visit.group(1)
        elif code:
            _show_device_code(self.notify, self.uri, code.group(1))
        else:
            self.last = LOG_PREFIX.sub("", line)
            self.notify(f"  CLIProxyAPIPlus: {self.last}")


def _end_child(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(CHILD_STOP)
                break
            except subprocess.TimeoutExpired:
                continue
    proc.wait()
    proc.stdout.close()
