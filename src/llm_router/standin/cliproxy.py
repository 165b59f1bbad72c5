"""A faithful stand-in for the CLIProxyAPIPlus binary (see docs/standins.md).

    python -m llm_router.standin.cliproxy -config PATH [-codex-login | -github-copilot-login] [-no-browser]

Reproduces the start-up output, flags, config handling (no default port, secret-key hashed and
written back, live reload), auth-dir pick-up, the client and management HTTP APIs and the OAuth
session traps of the real server, answering inference itself. It never contacts the network.
"""

from __future__ import annotations

import base64
import copy
import email.parser
import email.policy
import gzip
import hashlib
import hmac
import io
import json
import math
import os
import re
import secrets
import shlex
import signal
import sys
import tarfile
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, urlencode, urlsplit

import yaml

from llm_router.standin.httpbase import (
    Fault,
    RequestError,
    StandinHandler,
    StandinServer,
    install_stop_handlers,
    serve_until_stopped,
)

DEFAULT_VERSION = "6.9.28-0"
COMMIT = "standin"
BUILT_AT = "2026-04-17T00:00:00Z"
PROGRAM = "cli-proxy-api-plus"
POLL_INTERVAL = 0.5
CONFIG_DEBOUNCE = 0.15
OAUTH_TIMEOUT = 300.0
ERROR_RETENTION = 300.0
CODEX_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
CODEX_AUTHORIZE_URL = "https://auth.openai.com/oauth/authorize"
CODEX_REDIRECT_URI = "http://localhost:1455/auth/callback"
GITHUB_DEVICE_URL = "https://github.com/login/device"
DEVICE_USER_CODE = "ABCD-1234"
DEFAULT_EMAIL = "user@example.com"
DEFAULT_PLAN = "plus"
DEFAULT_LOGIN = "octocat"
STATE_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

# Reference §4: [P] v6.6.9-0 list plus the [U] v6.9.28 catalogue; spark needs a plus or pro plan.
CODEX_MODELS = (
    "gpt-5", "gpt-5-codex", "gpt-5-codex-mini", "gpt-5.1", "gpt-5.1-codex", "gpt-5.1-codex-mini",
    "gpt-5.1-codex-max", "gpt-5.2", "gpt-5.3-codex", "gpt-5.4", "gpt-5.4-mini",
)
CODEX_PAID_MODELS = ("gpt-5.3-codex-spark",)
COPILOT_MODELS = (
    "gpt-4.1", "gpt-5", "gpt-5-mini", "gpt-5-codex", "gpt-5.1", "gpt-5.1-codex", "gpt-5.1-codex-mini",
    "claude-haiku-4.5", "claude-opus-4.1", "claude-opus-4.5", "claude-sonnet-4", "claude-sonnet-4.5",
    "gemini-2.5-pro", "gemini-3-pro", "grok-code-fast-1", "raptor-mini",
)
PROVIDER_OWNERS = {"codex": "openai", "github-copilot": "github-copilot"}


# --- version and console output ------------------------------------------------------------


def standin_version() -> str:
    return os.environ.get("CLIPROXY_STANDIN_VERSION") or DEFAULT_VERSION


def version_at_least(version: str, minimum: tuple[int, int, int]) -> bool:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3]) >= minimum


def banner(version: str) -> str:
    return f"CLIProxyAPI Version: {version}-plus, Commit: {COMMIT}, BuiltAt: {BUILT_AT}"


def log(level: str, message: str) -> None:
    """A log line on stdout in the server's `[time] [level] message` shape."""
    print(f"[{datetime.now():%Y-%m-%d %H:%M:%S}] [{level}] {message}", flush=True)


def rfc3339(moment: datetime) -> str:
    """Go's RFC3339 rendering: local offset, `Z` for UTC."""
    text = moment.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# --- Go-style flags ----------------------------------------------------------------------------

BOOL_FLAGS = {
    "codex-login": "Login to Codex using OAuth",
    "github-copilot-login": "Login to GitHub Copilot using device flow",
    "local-model": "Use embedded model catalog only, skip remote model fetching",
    "no-browser": "Don't open browser automatically for OAuth",
}
STRING_FLAGS = {"config": "Configure File Path"}
GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class FlagError(Exception):
    """A command-line error, reported like Go's flag package (exit 2)."""


class HelpRequested(Exception):
    """-h or -help was given (exit 0)."""


def parse_flags(argv: list[str]) -> dict[str, Any]:
    """Parse like Go's `flag`: `-x`/`--x`, `-x=v`, `-x v` for strings; stop at the first non-flag."""
    values: dict[str, Any] = {name: False for name in BOOL_FLAGS} | {name: "" for name in STRING_FLAGS}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, has_value, value = name.partition("=")
        if name in BOOL_FLAGS:
            if has_value and value not in GO_TRUE | GO_FALSE:
                raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
            values[name] = not has_value or value in GO_TRUE
        elif name in STRING_FLAGS:
            if not has_value:
                index += 1
                if index == len(argv):
                    raise FlagError(f"flag needs an argument: -{name}")
                value = argv[index]
            values[name] = value
        elif name in ("h", "help"):
            raise HelpRequested
        else:
            raise FlagError(f"flag provided but not defined: -{name}")
        index += 1
    return values


def usage() -> str:
    """Go's `flag.PrintDefaults` layout."""
    lines = [f"Usage of {PROGRAM}:"]
    for name in sorted(BOOL_FLAGS | STRING_FLAGS):
        kind = " string" if name in STRING_FLAGS else ""
        text = BOOL_FLAGS.get(name) or STRING_FLAGS[name]
        lines.append(f"  -{name}{kind}\n    \t{text}")
    return "\n".join(lines)


# --- config --------------------------------------------------------------------------------------


class ConfigError(Exception):
    """The config file is missing or invalid."""


@dataclass
class ProxyConfig:
    """The config keys the stand-in uses."""

    host: str
    port: int
    auth_dir: Path | None
    api_keys: list[str]
    secret_hash: str
    debug: bool
    compat_models: list[tuple[str, str]]
    public: dict[str, Any]


def hash_secret(plaintext: str, salt: str | None = None) -> str:
    """Stand-in for bcrypt: `$2a$10$<salt>$<sha256(salt + plaintext)>`."""
    salt = salt or secrets.token_hex(8)
    return f"$2a$10${salt}${hashlib.sha256((salt + plaintext).encode()).hexdigest()}"


def verify_secret(candidate: str, hashed: str) -> bool:
    parts = hashed.split("$")
    return len(parts) == 5 and hmac.compare_digest(hash_secret(candidate, parts[3]).encode(), hashed.encode())


def is_hashed(secret: str) -> bool:
    return secret.startswith(("$2a$", "$2b$", "$2y$"))


def load_config(path: Path) -> ProxyConfig:
    """Read and validate the YAML config; a plaintext secret-key is hashed and written back."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"open {path}: {exc.strerror.lower() if exc.strerror else exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"yaml: {exc}") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError("yaml: the config must be a mapping")
    port = data.get("port") or 0
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigError(f"invalid port: {data.get('port')!r}")
    management = data.get("remote-management") or {}
    api_keys = data.get("api-keys") or []
    if not isinstance(management, dict) or not isinstance(api_keys, list):
        raise ConfigError("yaml: remote-management must be a mapping and api-keys a list")
    secret = str(management.get("secret-key") or "")
    if secret and not is_hashed(secret):
        secret = hash_secret(secret)
        write_hashed_secret(path, text, data, secret)
    auth_dir = str(data.get("auth-dir") or "")
    hidden = ("host", "port", "auth-dir", "remote-management")
    return ProxyConfig(
        host=str(data.get("host") or ""),
        port=port,
        auth_dir=Path(auth_dir).expanduser() if auth_dir else None,
        api_keys=[str(key) for key in api_keys if key],
        secret_hash=secret,
        debug=bool(data.get("debug")),
        compat_models=compat_models(data.get("openai-compatibility")),
        public={key: copy.deepcopy(value) for key, value in data.items() if key not in hidden},
    )


def compat_models(entries: Any) -> list[tuple[str, str]]:
    """(model id, provider name) for openai-compatibility entries that have a base-url."""
    models = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not entry.get("base-url"):
            continue
        provider = str(entry.get("name") or "openai-compatibility")
        for model in entry.get("models") or []:
            if isinstance(model, dict) and (model.get("alias") or model.get("name")):
                models.append((str(model.get("alias") or model.get("name")), provider))
    return models


SECRET_LINE = re.compile(r"^(\s+secret-key:[ \t]*).*$", re.MULTILINE)


def write_hashed_secret(path: Path, text: str, data: dict[str, Any], hashed: str) -> None:
    """Replace the plaintext secret-key in place, keeping comments; re-dump the YAML if that fails."""
    new_text, replaced = SECRET_LINE.subn(lambda match: match.group(1) + json.dumps(hashed), text, count=1)
    try:
        reparsed = yaml.safe_load(new_text) if replaced else None
    except yaml.YAMLError:
        reparsed = None
    if not isinstance(reparsed, dict) or (reparsed.get("remote-management") or {}).get("secret-key") != hashed:
        updated = copy.deepcopy(data)
        updated.setdefault("remote-management", {})["secret-key"] = hashed
        new_text = yaml.safe_dump(updated, sort_keys=False)
    path.write_text(new_text)


# --- auth files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthFile:
    """A usable credential file from the top level of auth-dir."""

    name: str
    path: Path
    data: dict[str, Any]
    size: int
    modtime: float

    @property
    def type(self) -> str:
        return str(self.data["type"])

    @property
    def email(self) -> str:
        return str(self.data.get("email") or "")

    @property
    def disabled(self) -> bool:
        return bool(self.data.get("disabled"))

    def models(self) -> tuple[str, ...]:
        if self.disabled:
            return ()
        if self.type == "codex":
            plan = jwt_claims(str(self.data.get("id_token") or "")).get("https://api.openai.com/auth", {})
            paid = isinstance(plan, dict) and plan.get("chatgpt_plan_type") in ("plus", "pro")
            return CODEX_MODELS + (CODEX_PAID_MODELS if paid else ())
        if self.type == "github-copilot":
            return COPILOT_MODELS
        return ()

    def describe(self) -> dict[str, Any]:
        """The `GET /v0/management/auth-files` entry."""
        modtime = rfc3339(datetime.fromtimestamp(self.modtime).astimezone())
        return {
            "id": self.name,
            "auth_index": hashlib.sha256(self.name.encode()).hexdigest()[:16],
            "name": self.name,
            "type": self.type,
            "provider": self.type,
            "label": self.email,
            "status": "disabled" if self.disabled else "active",
            "status_message": "",
            "disabled": self.disabled,
            "unavailable": False,
            "runtime_only": False,
            "source": "file",
            "size": self.size,
            "email": self.email,
            "account_type": "oauth",
            "account": self.email or str(self.data.get("username") or ""),
            "created_at": modtime,
            "modtime": modtime,
            "updated_at": modtime,
            "last_refresh": self.data.get("last_refresh", ""),
            "path": str(self.path),
        }


def scan_auth_dir(auth_dir: Path | None) -> dict[str, AuthFile]:
    """Top-level `*.json` files of auth-dir that carry a `"type"`."""
    found: dict[str, AuthFile] = {}
    if auth_dir is None or not auth_dir.is_dir():
        return found
    for path in sorted(auth_dir.glob("*.json")):
        try:
            stat = path.stat()
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if path.is_file() and isinstance(data, dict) and isinstance(data.get("type"), str) and data["type"]:
            found[path.name] = AuthFile(path.name, path, data, stat.st_size, stat.st_mtime)
    return found


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (as the real jwt_parser does)."""
    parts = token.split(".")
    if len(parts) < 2:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


def unsigned_jwt(claims: dict[str, Any]) -> str:
    def encode(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()

    return f"{encode({'alg': 'none', 'typ': 'JWT'})}.{encode(claims)}."


def codex_auth_record(email: str, plan: str) -> dict[str, Any]:
    """A Codex auth file as the real login writes it (reference §6), with stand-in tokens."""
    now = datetime.now().astimezone()
    expires = now + timedelta(days=10)
    account_id = str(uuid.uuid4())
    auth_claims = {
        "chatgpt_account_id": account_id,
        "chatgpt_plan_type": plan,
        "chatgpt_user_id": f"user-{secrets.token_hex(12)}",
    }
    common = {
        "iss": "https://auth.openai.com",
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "https://api.openai.com/auth": auth_claims,
    }
    id_token = unsigned_jwt({**common, "aud": [CODEX_CLIENT_ID], "email": email, "email_verified": True})
    access_token = unsigned_jwt(
        {**common, "aud": ["https://api.openai.com/v1"], "https://api.openai.com/profile": {"email": email}}
    )
    return {
        "id_token": id_token,
        "access_token": access_token,
        "refresh_token": f"rt_{secrets.token_urlsafe(32)}",
        "account_id": account_id,
        "last_refresh": rfc3339(now),
        "email": email,
        "type": "codex",
        "expired": rfc3339(expires),
    }


def codex_file_name(email: str, plan: str, account_id: str) -> str:
    if plan == "team":
        return f"codex-{hashlib.sha256(account_id.encode()).hexdigest()[:8]}-{email}-team.json"
    return f"codex-{email}-{plan}.json" if plan else f"codex-{email}.json"


def copilot_auth_record(login: str, email: str = "") -> dict[str, Any]:
    record = {
        "access_token": f"gho_{secrets.token_hex(18)}",
        "token_type": "bearer",
        "scope": "user:email",
        "username": login,
        "type": "github-copilot",
    }
    return record | ({"email": email} if email else {})


def check_file_name(name: str) -> str:
    if not name or Path(name).name != name or name.startswith("."):
        raise RequestError(400, {"error": f"invalid file name: {name!r}"})
    return name


def write_login_file(auth_dir: Path, name: str, record: dict[str, Any]) -> Path:
    """Write a first-login token file the way the real server does: plain create, mode 0644."""
    auth_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = auth_dir / check_file_name(name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o644)
        handle.write(json.dumps(record) + "\n")
    return path


def write_codex_login(auth_dir: Path, email: str, plan: str) -> Path:
    record = codex_auth_record(email, plan)
    return write_login_file(auth_dir, codex_file_name(email, plan, record["account_id"]), record)


def write_copilot_login(auth_dir: Path, login: str, email: str = "") -> Path:
    return write_login_file(auth_dir, f"github-copilot-{login}.json", copilot_auth_record(login, email))


def write_private_file(auth_dir: Path, name: str, data: bytes) -> Path:
    """Atomic 0600 write (management uploads)."""
    path = auth_dir / check_file_name(name)
    fd, tmp = tempfile.mkstemp(dir=auth_dir, prefix=".upload-", suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return path


# --- OAuth sessions ------------------------------------------------------------------------------


@dataclass
class OAuthSession:
    provider: str
    created: float = field(default_factory=time.monotonic)
    error: str = ""


class OAuthSessions:
    """Pending logins by state. Finished ones are forgotten, so an unknown state reads as "ok"."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sessions: dict[str, OAuthSession] = {}

    def _expire(self) -> None:
        now = time.monotonic()
        for state, session in list(self._sessions.items()):
            age = now - session.created
            if age > self.timeout + ERROR_RETENTION:
                del self._sessions[state]
            elif age > self.timeout and not session.error:
                session.error = "Timeout waiting for OAuth callback"

    def start(self, state: str, provider: str) -> None:
        with self._lock:
            self._sessions[state] = OAuthSession(provider)

    def status(self, state: str) -> dict[str, str]:
        with self._lock:
            self._expire()
            session = self._sessions.get(state)
        if session is None:
            return {"status": "ok"}
        if session.error:
            return {"status": "error", "error": session.error}
        return {"status": "wait"}

    def pending(self, state: str, provider: str | None = None) -> OAuthSession:
        """The waiting session for `state` (404 otherwise)."""
        with self._lock:
            self._expire()
            session = self._sessions.get(state)
        if session is None or session.error or (provider and session.provider != provider):
            raise RequestError(404, {"error": "unknown or expired state"})
        return session

    def list_pending(self) -> list[dict[str, Any]]:
        with self._lock:
            self._expire()
            return [
                {"state": state, "provider": session.provider, "age": round(time.monotonic() - session.created, 3)}
                for state, session in self._sessions.items()
                if not session.error
            ]

    def finish(self, state: str) -> None:
        with self._lock:
            self._sessions.pop(state, None)

    def fail(self, state: str, error: str) -> None:
        with self._lock:
            if state in self._sessions:
                self._sessions[state].error = error


def codex_auth_url(state: str) -> str:
    """The authorize URL, encoded like Go's url.Values.Encode (sorted keys)."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "client_id": CODEX_CLIENT_ID,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "codex_cli_simplified_flow": "true",
        "id_token_add_organizations": "true",
        "prompt": "login",
        "redirect_uri": CODEX_REDIRECT_URI,
        "response_type": "code",
        "scope": "openid email profile offline_access",
        "state": state,
    }
    return f"{CODEX_AUTHORIZE_URL}?{urlencode(sorted(params.items()))}"


# --- server state ---------------------------------------------------------------------------------


class ProxyState:
    """Config, credentials and login sessions, refreshed by `watch`."""

    def __init__(self, config_path: Path, config: ProxyConfig, version: str) -> None:
        self.config_path = config_path
        self.config = config
        self.version = version
        self.auth_dir = config.auth_dir
        self.auths = scan_auth_dir(self.auth_dir)
        self.sessions = OAuthSessions(float(os.environ.get("CLIPROXY_STANDIN_OAUTH_TIMEOUT") or OAUTH_TIMEOUT))
        self._config_digest = self._digest()
        self._lock = threading.Lock()
        self._turns: dict[tuple[str | None, str], int] = {}

    def _digest(self) -> str:
        try:
            return hashlib.sha256(self.config_path.read_bytes()).hexdigest()
        except OSError:
            return ""

    def watch(self, stop: threading.Event) -> None:
        """Poll the config file and auth-dir until `stop` is set."""
        while not stop.wait(POLL_INTERVAL):
            self.reload_config_if_changed()
            self.rescan_auths()

    def reload_config_if_changed(self) -> None:
        if self._digest() == self._config_digest:
            return
        time.sleep(CONFIG_DEBOUNCE)
        self._config_digest = self._digest()  # a hashed secret written back shows up as one more change
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log("error", f"failed to reload config: {exc}")
            return
        # host, port and auth-dir are bound once; the rest applies live.
        self.config = config
        log("info", "config file changed, reloaded (api-keys, management key, debug, openai-compatibility)")

    def rescan_auths(self) -> None:
        with self._lock:
            found = scan_auth_dir(self.auth_dir)
            for name in found.keys() - self.auths.keys():
                log("info", f"auth file added: {name}")
            for name in self.auths.keys() - found.keys():
                log("info", f"auth file removed: {name}")
            self.auths = found

    def models(self) -> list[tuple[str, str, str]]:
        """(id, owned_by, provider) of every model with a usable credential, first provider wins."""
        listed: dict[str, tuple[str, str, str]] = {}
        for auth in self.auths.values():
            for model in auth.models():
                listed.setdefault(model, (model, PROVIDER_OWNERS.get(auth.type, auth.type), auth.type))
        for model, provider in self.config.compat_models:
            listed.setdefault(model, (model, provider, provider))
        return list(listed.values())

    def pick_account(self, model: str, provider: str | None) -> str | None:
        """The credential that answers `model`: round-robin over the auth files sorted by name."""
        base = re.sub(r"\([^()]*\)$", "", model)
        names = sorted(auth.name for auth in self.auths.values() if auth.type == provider and base in auth.models())
        if not names:
            return provider  # an openai-compatibility entry answers under its provider name
        with self._lock:
            turn = self._turns.get((provider, base), 0)
            self._turns[(provider, base)] = turn + 1
        return names[turn % len(names)]

    def provider_for(self, model: str) -> str | None:
        base = re.sub(r"\([^()]*\)$", "", model)  # thinking suffix: model(high), model(8192)
        return next((provider for listed, _, provider in self.models() if listed == base), None)

    def management_enabled(self) -> bool:
        return bool(self.config.secret_hash or os.environ.get("MANAGEMENT_PASSWORD"))

    def management_key_ok(self, key: str) -> bool:
        password = os.environ.get("MANAGEMENT_PASSWORD", "")
        if password and hmac.compare_digest(key.encode(), password.encode()):
            return True
        return bool(self.config.secret_hash) and verify_secret(key, self.config.secret_hash)

    def require_auth_dir(self) -> Path:
        if self.auth_dir is None:
            raise RequestError(500, {"error": "auth-dir is not configured"})
        self.auth_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.auth_dir


class CliProxyServer(StandinServer):
    def __init__(self, port: int, state: ProxyState) -> None:
        self.state = state
        super().__init__(port, CliProxyHandler, "cliproxy")


def bearer_or_raw(value: str | None) -> str:
    """`Bearer <token>` -> token; any other header value is used as is."""
    scheme, _, token = (value or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else (value or "").strip()


# --- HTTP handler ------------------------------------------------------------------------------


class CliProxyHandler(StandinHandler):
    server: CliProxyServer

    @property
    def state(self) -> ProxyState:
        return self.server.state

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        if self.url_path.startswith("/v0/management/") and self.state.management_enabled():
            self.send_header("X-CPA-VERSION", f"{self.state.version}-plus")
            self.send_header("X-CPA-COMMIT", COMMIT)
            self.send_header("X-CPA-BUILD-DATE", BUILT_AT)

    def log_message(self, format: str, *args: Any) -> None:
        if self.state.config.debug:
            super().log_message(format, *args)

    # public API

    def handle_api(self) -> None:
        if self.url_path.startswith("/v0/management/"):
            self.handle_management(self.url_path[len("/v0/management") :])
            return
        routes = {
            ("GET", "/"): self.root,
            ("GET", "/v1/models"): self.list_models,
            ("POST", "/v1/chat/completions"): lambda: self.inference("chat"),
            ("POST", "/v1/responses"): lambda: self.inference("responses"),
            ("POST", "/v1/messages"): lambda: self.inference("messages"),
            ("POST", "/v1/messages/count_tokens"): lambda: self.inference("count_tokens"),
            ("POST", "/v1/completions"): lambda: self.inference("completions"),
        }
        if version_at_least(self.state.version, (6, 9, 10)):
            routes[("GET", "/healthz")] = lambda: self.send_json(200, {"status": "ok"})
        route = routes.get((self.command, self.url_path))
        if route is None:
            self.not_found()
        else:
            route()

    def root(self) -> None:
        endpoints = ["POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models"]
        self.send_json(200, {"message": "CLI Proxy API Server", "endpoints": endpoints})

    def require_client_key(self) -> None:
        keys = self.state.config.api_keys
        if not keys:
            return
        candidates = [
            bearer_or_raw(self.headers.get("Authorization")),
            self.headers.get("X-Goog-Api-Key"),
            self.headers.get("X-Api-Key"),
            self.query.get("key"),
            self.query.get("auth_token"),
        ]
        provided = [candidate for candidate in candidates if candidate]
        if not provided:
            raise RequestError(401, {"error": "Missing API key"})
        if not any(candidate in keys for candidate in provided):
            raise RequestError(401, {"error": "Invalid API key"})

    def list_models(self) -> None:
        self.require_client_key()
        self.send_models([(model, owner) for model, owner, _ in self.state.models()])

    def inference(self, protocol: str) -> None:
        self.require_client_key()  # the access middleware: its 401 bodies are the same on every route
        self.answer_inference(protocol, self._check_provider)

    def _check_provider(self, model: str) -> None:
        if self.state.provider_for(model) is None:
            raise RequestError(400, f"unknown provider for model {model}")

    def answering(self, model: str) -> dict[str, Any]:
        provider = self.state.provider_for(model)
        return {"provider": provider, "account": self.state.pick_account(model, provider)}

    def fault_error(self, fault: Fault, model: str) -> RequestError:
        """Injected 429s look like the real "all credentials cooling down" answer."""
        if fault.status != 429:
            return super().fault_error(fault, model)
        provider = self.state.provider_for(model) or "codex"
        seconds = math.ceil(fault.retry_after) if fault.retry_after is not None else 1
        reset = datetime.now().astimezone() + timedelta(seconds=seconds)
        body = {
            "error": {
                "code": "model_cooldown",
                "message": f"All credentials for model {model} are cooling down via provider {provider}",
                "model": model,
                "provider": provider,
                "reset_time": rfc3339(reset),
                "reset_seconds": seconds,
            }
        }
        return RequestError(429, body, {"Retry-After": str(seconds)})

    # management API

    def handle_management(self, sub: str) -> None:
        routes = {
            ("GET", "/auth-files"): self.list_auth_files,
            ("POST", "/auth-files"): self.upload_auth_file,
            ("DELETE", "/auth-files"): self.delete_auth_files,
            ("GET", "/api-keys"): lambda: self.send_json(200, {"api-keys": self.state.config.api_keys}),
            ("GET", "/config"): lambda: self.send_json(200, self.state.config.public),
            ("GET", "/usage"): self.usage,
            ("GET", "/latest-version"): lambda: self.send_json(200, {"latest-version": f"v{self.state.version}"}),
            ("GET", "/codex-auth-url"): self.codex_auth_url,
            ("GET", "/get-auth-status"): self.auth_status,
            ("POST", "/oauth-callback"): self.oauth_callback,
        }
        github_switched_off = os.environ.get("CLIPROXY_STANDIN_NO_GITHUB_AUTH_URL") == "1"
        if version_at_least(self.state.version, (6, 9, 0)) and not github_switched_off:
            routes[("GET", "/github-auth-url")] = self.github_auth_url
        route = routes.get((self.command, sub))
        if route is None or not self.state.management_enabled():
            self.not_found()
            return
        key = bearer_or_raw(self.headers.get("Authorization")) or (self.headers.get("X-Management-Key") or "").strip()
        if not key:
            raise RequestError(401, {"error": "missing management key"})
        if not self.state.management_key_ok(key):
            raise RequestError(401, {"error": "invalid management key"})
        route()

    def list_auth_files(self) -> None:
        self.send_json(200, {"files": [auth.describe() for auth in self.state.auths.values()]})

    def upload_auth_file(self) -> None:
        auth_dir = self.state.require_auth_dir()
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            name, data = self._multipart_file()
        else:
            name, data = self.query.get("name", ""), self.body
        if not name.endswith(".json"):
            raise RequestError(400, {"error": "file must be .json"})
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise RequestError(400, {"error": f"invalid auth file: {exc}"}) from exc
        if not isinstance(parsed, dict):
            raise RequestError(400, {"error": "invalid auth file: not a JSON object"})
        write_private_file(auth_dir, name, data)
        self.state.rescan_auths()
        self.send_json(200, {"status": "ok"})

    def _multipart_file(self) -> tuple[str, bytes]:
        head = f"Content-Type: {self.headers.get('Content-Type')}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.body)
        for part in message.iter_parts() if message.is_multipart() else []:
            if part.get_param("name", header="content-disposition") == "file":
                return part.get_filename() or "", part.get_payload(decode=True) or b""
        raise RequestError(400, {"error": "no file uploaded"})

    def delete_auth_files(self) -> None:
        auth_dir = self.state.require_auth_dir()
        if self.query.get("all", "").lower() in ("true", "1", "yes"):
            deleted = 0
            for path in auth_dir.glob("*.json"):
                path.unlink(missing_ok=True)
                deleted += 1
            self.state.rescan_auths()
            self.send_json(200, {"status": "ok", "deleted": deleted})
            return
        name = self.query.get("name", "")
        if not name:
            raise RequestError(400, {"error": "invalid name"})
        path = auth_dir / check_file_name(name)
        if not path.is_file():
            raise RequestError(404, {"error": "file not found"})
        path.unlink()
        self.state.rescan_auths()
        self.send_json(200, {"status": "ok"})

    def usage(self) -> None:
        stats = {"total_requests": 0, "success_count": 0, "failure_count": 0, "total_tokens": 0, "apis": {}}
        stats |= {key: {} for key in ("requests_by_day", "requests_by_hour", "tokens_by_day", "tokens_by_hour")}
        self.send_json(200, {"usage": stats, "failed_requests": 0})

    def codex_auth_url(self) -> None:
        # With is_webui the real server also listens on 127.0.0.1:1455; the stand-in never does.
        state = secrets.token_hex(16)
        self.state.sessions.start(state, "codex")
        self.send_json(200, {"status": "ok", "url": codex_auth_url(state), "state": state})

    def github_auth_url(self) -> None:
        state = f"gh-{time.time_ns()}"
        self.state.sessions.start(state, "github-copilot")
        device = {"user_code": DEVICE_USER_CODE, "verification_uri": GITHUB_DEVICE_URL}
        self.send_json(200, {"status": "ok", "url": GITHUB_DEVICE_URL, "state": state, **device})

    def auth_status(self) -> None:
        self.send_json(200, self.state.sessions.status(self.query.get("state", "")))

    def oauth_callback(self) -> None:
        body = self.json_body()
        fields = {key: str(body.get(key) or "") for key in ("code", "state", "error")}
        if body.get("redirect_url"):
            query = parse_qs(urlsplit(str(body["redirect_url"])).query)
            fields |= {key: query[key][-1] for key in fields if query.get(key)}
        if not STATE_PATTERN.match(fields["state"]):
            raise RequestError(400, {"error": "invalid state"})
        if not fields["code"] and not fields["error"]:
            raise RequestError(400, {"error": "code or error is required"})
        self.state.sessions.pending(fields["state"], "codex")
        if fields["error"]:
            self.state.sessions.fail(fields["state"], "Bad Request")
        else:
            self.complete_login(fields["state"], {})
        self.send_json(200, {"status": "ok"})

    def complete_login(self, state: str, account: dict[str, Any]) -> Path:
        """Finish a pending login as the token exchange would: write the auth file, forget the state."""
        session = self.state.sessions.pending(state)
        auth_dir = self.state.require_auth_dir()
        email = str(account.get("email") or "")
        if session.provider == "codex":
            path = write_codex_login(auth_dir, email or DEFAULT_EMAIL, str(account.get("plan", DEFAULT_PLAN) or ""))
        else:
            path = write_copilot_login(auth_dir, str(account.get("login") or DEFAULT_LOGIN), email)
        self.state.sessions.finish(state)
        self.state.rescan_auths()
        log("info", f"authentication saved to {path}")
        return path

    # test-only routes

    def handle_control(self) -> None:
        route = (self.command, self.url_path)
        if route == ("POST", "/_standin/oauth/complete"):
            body = self.json_body()
            path = self.complete_login(str(body.get("state") or ""), body)
            self.send_json(200, {"status": "ok", "name": path.name, "path": str(path)})
        elif route == ("POST", "/_standin/oauth/fail"):
            body = self.json_body()
            state = str(body.get("state") or "")
            self.state.sessions.pending(state)
            self.state.sessions.fail(state, str(body.get("error") or "Token exchange failed with status 400"))
            self.send_json(200, {"status": "ok"})
        elif route == ("GET", "/_standin/oauth/pending"):
            self.send_json(200, {"pending": self.state.sessions.list_pending()})
        else:
            super().handle_control()


# --- entry points ------------------------------------------------------------------------------


def run_server(config_path: Path, config: ProxyConfig, version: str) -> int:
    stop = threading.Event()
    install_stop_handlers(stop)
    if config.auth_dir is not None:
        config.auth_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    state = ProxyState(config_path, config, version)
    try:
        server = CliProxyServer(config.port, state)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        log("error", f"failed to start server: listen tcp {config.host}:{config.port}: bind: {reason}")
        return 0
    print(f"API server started successfully on: {config.host}:{server.server_port}", flush=True)
    threading.Thread(target=state.watch, args=(stop,), daemon=True).start()
    serve_until_stopped(server, stop)
    log("info", "server stopped")
    return 0


def run_login(provider: str, config: ProxyConfig) -> int:
    """The one-shot `-codex-login` / `-github-copilot-login` modes, steered by CLIPROXY_STANDIN_DEVICE_FLOW."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if config.auth_dir is None:
        log("error", "auth-dir is not configured")
        return 1
    if provider == "codex":
        print("Visit the following URL to continue authentication:", flush=True)
        print(codex_auth_url(secrets.token_hex(16)), flush=True)
    else:
        print(f"To authenticate, please visit: {GITHUB_DEVICE_URL}", flush=True)
        print(f"And enter the code: {DEVICE_USER_CODE}", flush=True)
        print("Waiting for authorization...", flush=True)
    action, _, argument = os.environ.get("CLIPROXY_STANDIN_DEVICE_FLOW", "hang").partition(":")
    if action == "hang":
        while True:
            time.sleep(3600)
    if action == "deny":
        if provider == "codex":
            log("error", "Codex authentication failed: Token exchange failed with status 400")
        else:
            log("error", "GitHub Copilot authentication failed: access_denied: the user has denied your request")
        return 1
    if action != "approve":
        log("error", f"unknown CLIPROXY_STANDIN_DEVICE_FLOW action: {action!r}")
        return 1
    time.sleep(1.0)
    if provider == "codex":
        email, _, plan = argument.partition(":")
        path = write_codex_login(config.auth_dir, email or DEFAULT_EMAIL, plan or DEFAULT_PLAN)
        print(f"Authentication saved to {path}", flush=True)
        print("Codex authentication successful!", flush=True)
    else:
        path = write_copilot_login(config.auth_dir, argument or DEFAULT_LOGIN)
        print(f"Authentication saved to {path}", flush=True)
        print("GitHub Copilot authentication successful!", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    version = standin_version()
    print(banner(version), flush=True)
    try:
        flags = parse_flags(sys.argv[1:] if argv is None else argv)
    except HelpRequested:
        print(usage(), file=sys.stderr)
        return 0
    except FlagError as exc:
        print(exc, file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    config_path = Path(flags["config"] or "config.yaml").absolute()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log("error", f"failed to load config: {exc}")
        return 0
    if flags["codex-login"]:
        return run_login("codex", config)
    if flags["github-copilot-login"]:
        return run_login("github-copilot", config)
    return run_server(config_path, config, version)


# --- fake binary and release assets ---------------------------------------------------------------

ARCHIVE_MTIME = int(datetime(2026, 4, 17, tzinfo=timezone.utc).timestamp())
CONFIG_EXAMPLE = """\
# Server host/interface to bind to. Default is empty ("") to bind all interfaces (IPv4 + IPv6).
host: ""

# Server port
port: 8317

remote-management:
  # Whether to allow remote (non-localhost) management access.
  allow-remote: false
  # Management key. If a plaintext value is provided here, it will be hashed on startup.
  secret-key: ""
  # Disable the bundled management control panel asset download and HTTP route when true.
  disable-control-panel: false

# Authentication directory (supports ~ for home directory)
auth-dir: "~/.cli-proxy-api"

# API keys for authentication
api-keys:
  - "your-api-key-1"
  - "your-api-key-2"

debug: false
logging-to-file: false
usage-statistics-enabled: false
proxy-url: ""
request-retry: 3
max-retry-interval: 30
"""
ARCHIVE_DOCS = {
    "LICENSE": "MIT License\n\nStand-in archive built by llm-router for tests; not the CLIProxyAPIPlus release.\n",
    "README.md": "# CLIProxyAPI Plus (llm-router stand-in)\n\nTest double of the CLIProxyAPIPlus release archive.\n",
    "README_CN.md": "# CLIProxyAPI Plus（llm-router 测试替身）\n\n用于测试的 CLIProxyAPIPlus 发布包替身。\n",
}


def fake_binary_script(version: str = DEFAULT_VERSION, python: str = sys.executable) -> str:
    """A POSIX shell script that runs this stand-in with `version` baked in."""
    src_dir = Path(__file__).resolve().parents[2]
    return (
        "#!/bin/sh\n"
        f"# llm-router stand-in for {PROGRAM} {version} (not the real binary)\n"
        f"CLIPROXY_STANDIN_VERSION={shlex.quote(version.removeprefix('v'))}\n"
        "export CLIPROXY_STANDIN_VERSION\n"
        f"PYTHONPATH={shlex.quote(str(src_dir))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f'exec {shlex.quote(python)} -m llm_router.standin.cliproxy "$@"\n'
    )


def install_fake_binary(dest: Path, version: str = DEFAULT_VERSION, python: str = sys.executable) -> Path:
    """Write the fake `cli-proxy-api-plus` executable (0755) at `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(fake_binary_script(version, python))
    dest.chmod(0o755)
    return dest


def release_asset_name(version: str, os_name: str, arch: str) -> str:
    """GoReleaser's `CLIProxyAPIPlus_<version>_<os>_<arch>.tar.gz` (`.zip` on windows)."""
    extension = "zip" if os_name == "windows" else "tar.gz"
    return f"CLIProxyAPIPlus_{version.removeprefix('v')}_{os_name}_{arch}.{extension}"


def build_release_archive(
    dest_dir: Path,
    version: str = DEFAULT_VERSION,
    os_name: str = "linux",
    arch: str = "amd64",
    python: str = sys.executable,
) -> Path:
    """A GoReleaser-shaped archive holding the fake binary and the extra files at its root."""
    binary = f"{PROGRAM}.exe" if os_name == "windows" else PROGRAM
    members = [(binary, fake_binary_script(version, python).encode(), 0o755)]
    extras = {"config.example.yaml": CONFIG_EXAMPLE, **ARCHIVE_DOCS}
    members += [(name, text.encode(), 0o644) for name, text in extras.items()]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / release_asset_name(version, os_name, arch)
    if os_name == "windows":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data, mode in members:
                info = zipfile.ZipInfo(name, date_time=(2026, 4, 17, 0, 0, 0))
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)
        return path
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=ARCHIVE_MTIME) as packed:
        with tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for name, data, mode in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), mode, ARCHIVE_MTIME
                archive.addfile(info, io.BytesIO(data))
    return path


def write_checksums(dest_dir: Path, files: Iterable[Path]) -> Path:
    """GoReleaser `checksums.txt`: `<sha256hex>  <filename>` per file, sorted by name."""
    paths = sorted((Path(file) for file in files), key=lambda path: path.name)
    lines = [f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}" for path in paths]
    path = Path(dest_dir) / "checksums.txt"
    path.write_text("".join(line + "\n" for line in lines))
    return path


if __name__ == "__main__":
    sys.exit(main())
