"""A faithful stand-in for the CLIProxyAPIPlus binary (see docs/standins.md).

    python -m llm_router.standin.cliproxy -config PATH [-codex-login | -github-copilot-login] [-no-browser]

Reproduces the start-up output, flags, config handling (no default port, secret-key hashed and
written back, live reload), auth-dir pick-up, the client and management HTTP APIs and the OAuth
session traps of the real server, answering inference itself. It never contacts the network.
"""

from __future__ import annotations

import base64
import contextlib
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

from llm_router.cliproxy_lines import (
    CODEX_MODELS,
    CODEX_PAID_MODELS,
    COPILOT,
    COPILOT_MODELS,
    LINES,
    MAINLINE_7,
    PLUS_6,
    PLUS_FORK_7,
    PROVIDER_OWNERS,
    Features,
    classify,
    expected_features,
    is_sample_key,
)
from llm_router.standin.httpbase import (
    Fault,
    RequestError,
    StandinHandler,
    StandinServer,
    install_stop_handlers,
    serve_until_stopped,
)

DEFAULT_VERSION = "6.9.28-0"
# The builds the stand-in emulates, one per line and era (docs/standins.md): the version alone picks the line,
# as with the real tags (Plus builds carry a `-N` build number, mainline tags do not).
EMULATED_VERSIONS = {
    "6.6.9-0": PLUS_6,  # the newest Plus source ([P] v6.6.9-0)
    "6.9.28-0": PLUS_6,  # about the last official Plus build
    "7.2.140": MAINLINE_7,  # router-for-me/CLIProxyAPI v7.2.140 (a7e3596b, 2026-08-22)
    "7.1.68-6": PLUS_FORK_7,  # kaitranntt/CLIProxyAPIPlus, a Plus fork on 7.x
}
COMMIT = "standin"
BUILT_AT = "2026-04-17T00:00:00Z"
PROGRAM = "cli-proxy-api-plus"
MAINLINE_PROGRAM = "cli-proxy-api"
BAN_FAILURES = 5
BAN_SECONDS = 30 * 60
SAFE_MODE_MESSAGE = ("Proxy API endpoints are disabled because api-keys contains template values. Open "
                     "/management.html?safe-mode=configure, update api-keys in Management, then retry.")
POLL_INTERVAL = 0.5
CONFIG_DEBOUNCE = 0.15
OAUTH_TIMEOUT = 300.0
ERROR_RETENTION = 300.0
CODEX_CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
CODEX_AUTHORIZE_URL = "https://auth.openai.com/oauth/authorize"
CODEX_REDIRECT_URI = "http://localhost:1455/auth/callback"
GITHUB_DEVICE_URL = "https://github.com/login/device"
CODEX_DEVICE_URL = "https://auth.openai.com/codex/device"
DEVICE_USER_CODE = "ABCD-1234"
DEFAULT_EMAIL = "user@example.com"
DEFAULT_PLAN = "plus"
DEFAULT_LOGIN = "octocat"
STATE_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

# The model catalogue lives in llm_router.cliproxy_lines (imported above, re-exported here).


# --- version and console output ------------------------------------------------------------


def standin_version() -> str:
    return os.environ.get("CLIPROXY_STANDIN_VERSION") or DEFAULT_VERSION


def version_at_least(version: str, minimum: tuple[int, int, int]) -> bool:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3]) >= minimum


@dataclass(frozen=True)
class Emulation:
    """What the emulated build is: its line, the version it reports, its program name and its features."""

    version: str
    line: str
    features: Features

    @property
    def reported(self) -> str:
        """Banner and X-CPA-VERSION: Plus 6.x adds `-plus` (GoReleaser ldflags); 7.x builds use the tag as is."""
        return f"{self.version}-plus" if self.line == PLUS_6 else self.version

    @property
    def program(self) -> str:
        return MAINLINE_PROGRAM if self.line == MAINLINE_7 else PROGRAM

    @property
    def v7(self) -> bool:
        return self.line != PLUS_6


def emulation(version: str | None = None) -> Emulation:
    version = (version or standin_version()).removeprefix("v")
    line = os.environ.get("CLIPROXY_STANDIN_LINE") or EMULATED_VERSIONS.get(version) or classify(version).key
    if line not in LINES:
        line = classify(version).key
    features = expected_features(version, LINES[line].binary)
    if os.environ.get("CLIPROXY_STANDIN_NO_GITHUB_AUTH_URL") == "1":
        features.github_auth_url = False
    return Emulation(version, line, features)


def banner(version: str) -> str:
    return f"CLIProxyAPI Version: {emulation(version).reported}, Commit: {COMMIT}, BuiltAt: {BUILT_AT}"


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
DEVICE_FLAG = {"codex-device-login": "Login to Codex using device code flow"}  # from 6.8.27
V7_STRING_FLAGS = {"home-jwt": "Home control plane JWT for mTLS certificate bootstrap and connection"}


def flag_sets(emu: Emulation) -> tuple[dict[str, str], dict[str, str]]:
    """(bool flags, string flags) of the emulated build (mainline 7.x has no -github-copilot-login)."""
    bools = dict(BOOL_FLAGS)
    if not emu.features.copilot_login:
        del bools["github-copilot-login"]
    if emu.features.codex_device_login:
        bools |= DEVICE_FLAG
    strings = dict(STRING_FLAGS) | (V7_STRING_FLAGS if emu.v7 else {})
    return bools, strings
GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class FlagError(Exception):
    """A command-line error, reported like Go's flag package (exit 2)."""


class HelpRequested(Exception):
    """-h or -help was given (exit 0)."""


def parse_flags(argv: list[str], emu: Emulation | None = None) -> dict[str, Any]:
    """Parse like Go's `flag`: `-x`/`--x`, `-x=v`, `-x v` for strings; stop at the first non-flag."""
    bool_flags, string_flags = flag_sets(emu or emulation())
    values: dict[str, Any] = {name: False for name in bool_flags} | {name: "" for name in string_flags}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, has_value, value = name.partition("=")
        if name in bool_flags:
            if has_value and value not in GO_TRUE | GO_FALSE:
                raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
            values[name] = not has_value or value in GO_TRUE
        elif name in string_flags:
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


def usage(emu: Emulation | None = None) -> str:
    """Go's `flag.PrintDefaults` layout (6.x); 7.x prints its own `Usage of <program>` header and lines."""
    emu = emu or emulation()
    bool_flags, string_flags = flag_sets(emu)
    lines = [f"Usage of {emu.program}" if emu.v7 else f"Usage of {emu.program}:"]
    for name in sorted(bool_flags | string_flags):
        kind = " string" if name in string_flags else ""
        text = bool_flags.get(name) or string_flags[name]
        lines.append(f"  -{name}{kind}\n    {text}" if emu.v7 else f"  -{name}{kind}\n    \t{text}")
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
    completed: bool = False


class OAuthSessions:
    """Pending logins by state. Finished ones are forgotten, so an unknown state reads as "ok"."""

    def __init__(self, timeout: float, keep_completed: bool = False) -> None:
        self.timeout = timeout
        self.keep_completed = keep_completed  # v7: finished sessions read "ok", unknown ones an error
        self._lock = threading.Lock()
        self._sessions: dict[str, OAuthSession] = {}

    def _expire(self) -> None:
        now = time.monotonic()
        for state, session in list(self._sessions.items()):
            age = now - session.created
            if age > self.timeout + ERROR_RETENTION:
                del self._sessions[state]
            elif age > self.timeout and not session.error and not session.completed:
                session.error = "Timeout waiting for OAuth callback"

    def start(self, state: str, provider: str) -> None:
        with self._lock:
            self._sessions[state] = OAuthSession(provider)

    def status(self, state: str) -> dict[str, str]:
        with self._lock:
            self._expire()
            session = self._sessions.get(state)
        if session is None:
            if self.keep_completed and state:
                return {"status": "error", "error": "unknown or expired state"}
            return {"status": "ok"}
        if session.completed:
            return {"status": "ok"}
        if session.error:
            return {"status": "error", "error": session.error}
        return {"status": "wait"}

    def pending(self, state: str, provider: str | None = None) -> OAuthSession:
        """The waiting session for `state` (404 otherwise)."""
        with self._lock:
            self._expire()
            session = self._sessions.get(state)
        if session is None or session.error or session.completed or (provider and session.provider != provider):
            raise RequestError(404, {"error": "unknown or expired state"})
        return session

    def list_pending(self) -> list[dict[str, Any]]:
        with self._lock:
            self._expire()
            return [
                {"state": state, "provider": session.provider, "age": round(time.monotonic() - session.created, 3)}
                for state, session in self._sessions.items()
                if not session.error and not session.completed
            ]

    def finish(self, state: str) -> None:
        with self._lock:
            if self.keep_completed and state in self._sessions:
                self._sessions[state].completed = True
            else:
                self._sessions.pop(state, None)

    def cancel(self, state: str) -> bool:
        with self._lock:
            return self._sessions.pop(state, None) is not None

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


# --- account choice: round-robin or fill-first, and session affinity -----------------------------
#
# Upstream's selectors (sdk/cliproxy/auth/selector.go): the candidates are the usable auths of the provider for the
# model, sorted by ID; round-robin keeps one cursor per provider:model, fill-first takes the first. With
# routing.session-affinity (7c24d54ca, first tag v6.9.27) a SessionAffinitySelector wraps either: it keys a session
# on the request (`session_ids`), keeps session -> auth for session-affinity-ttl (default 1h, refreshed by each hit),
# and when the bound auth is no longer usable picks again with the wrapped selector and binds the new one.
# `previous_response_id` is not a session key on any line (and the Codex executor deletes it from the body it sends).

FILL_FIRST = ("fill-first", "fillfirst", "ff")  # sdk/cliproxy/builder.go
DEFAULT_AFFINITY_TTL = 3600.0
MAX_BINDINGS = 4096  # expired bindings are dropped past this many
CODEX_SESSION_HEADERS = (6, 9, 42)  # 3ac39dcc7: Session_id (Codex), X-Amp-Thread-Id, X-Client-Request-Id headers
CODEX_SESSION_ID_HEADER = (7, 1, 37)  # 05b972479: Session-Id, before Session_id
NATIVE_SESSION_SIGNALS = (7, 2, 103)  # a97b1ae62 (+ f6c32ec3f's derived identity): the order of v7.2.140
CLAUDE_SESSION = re.compile(r"_session_([a-f0-9-]+)$")
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: Any) -> float | None:
    """Seconds of a Go `time.ParseDuration` string ("1h", "90m", "1h30m", "0"); None when it does not parse."""
    text = str(text or "").strip()
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("+-")
    if text == "0":
        return 0.0
    if not text or _GO_DURATION.sub("", text):
        return None
    return sign * sum(float(number) * _GO_UNITS[unit] for number, unit in _GO_DURATION.findall(text))


@dataclass(frozen=True)
class Routing:
    """The `routing` settings the selector is built from; a change rebuilds it (sdk/cliproxy/service.go)."""

    fill_first: bool = False
    affinity: bool = False
    ttl: float = DEFAULT_AFFINITY_TTL

    @classmethod
    def from_config(cls, public: dict[str, Any], features: Features) -> Routing:
        routing = public.get("routing")
        routing = routing if isinstance(routing, dict) else {}
        strategy = str(routing.get("strategy") or "").strip().lower() if features.routing_strategy else ""
        if not features.session_affinity:
            return cls(fill_first=strategy in FILL_FIRST)
        affinity = routing.get("session-affinity") is True or routing.get("claude-code-session-affinity") is True
        ttl = go_duration(routing.get("session-affinity-ttl")) if routing.get("session-affinity-ttl") else None
        return cls(strategy in FILL_FIRST, affinity, ttl if ttl and ttl > 0 else DEFAULT_AFFINITY_TTL)


def _text(value: Any) -> str:
    """What gjson's `.String()` gives for a JSON value (a string as is, other values as JSON, null: empty)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _path(body: dict[str, Any], dotted: str) -> str:
    value: Any = body
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return _text(value)


def _explicit(raw: str) -> str:
    """sdk/cliproxy/session NormalizeExplicitID (v7.2.103+): no control characters, trimmed, at most 256."""
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in raw):
        return ""
    raw = raw.strip()
    return raw if len(raw) <= 256 else ""


def _fnv1a64(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def _session_hash(system: bytes, user: bytes, assistant: bytes) -> str:
    data = b""
    if system:
        data += b"sys:" + system + b"\n"
    if user:
        data += b"usr:" + user + b"\n"
    if assistant:
        data += b"ast:" + assistant + b"\n"
    return f"msg:{_fnv1a64(data):016x}"


def _joined(content: Any, kinds: tuple[str, ...]) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") in kinds]
    return " ".join(text for text in texts if isinstance(text, str) and text)


def message_hash_ids(body: dict[str, Any]) -> tuple[str, str]:
    """extractMessageHashIDs: an FNV-1a hash of the system prompt and the first user and assistant messages (100
    bytes each) of `messages`, Claude's `system` or a Responses `input` array (a string `input` gives none).
    (primary, fallback): the full hash and, once an assistant message is there, the hash without it, so the second
    turn finds the binding the first made."""
    first: dict[str, bytes] = {}

    def take(role: str, text: str) -> None:
        if text and role not in first:
            first[role] = text.encode()[:100]

    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, dict) and message.get("role") in ("system", "user", "assistant"):
            take(str(message["role"]), _joined(message.get("content"), ("text",)))
            if len(first) == 3:
                break
    if "system" not in first:
        system = body.get("system")
        if isinstance(system, list):
            take("system", next((p["text"] for p in system if isinstance(p, dict) and isinstance(p.get("text"), str)
                                 and p["text"]), ""))
        elif isinstance(system, str):
            take("system", system)
    items = body.get("input")
    if "system" not in first and "user" not in first and isinstance(items, list):
        if isinstance(body.get("instructions"), str):
            take("system", body["instructions"])
        for item in items:
            if not isinstance(item, dict) or item.get("type") not in (None, "", "message") or not item.get("role"):
                continue
            role = {"developer": "system"}.get(item["role"], item["role"])
            if role in ("system", "user", "assistant"):
                take(role, _joined(item.get("content"), ("input_text", "output_text", "text")))
            if "user" in first and "assistant" in first:
                break
    if "system" not in first and "user" not in first:
        return "", ""
    short = _session_hash(first.get("system", b""), first.get("user", b""), b"")
    if "assistant" not in first:
        return short, ""
    return _session_hash(first.get("system", b""), first.get("user", b""), first["assistant"]), short


def _first_user_input(items: Any, instructions: list[Any]) -> Any:
    """The content of the first user item of a Responses `input` or a `messages` list, collecting the system and
    developer contents before it into `instructions`; None without one."""
    for item in items if isinstance(items, list) else ():
        role = item.get("role") if isinstance(item, dict) else None
        if role in ("system", "developer"):
            instructions.append(item.get("content"))
        elif role == "user":
            return item.get("content")
    return None


def derived_session_id(body: dict[str, Any], caller: str) -> str:
    """sdk/cliproxy/session DeriveID (v7.2.101+): the leading instructions and the first user input, scoped to the
    caller's key; empty without a user input. The stand-in hashes its own canonical form of the same parts."""
    instructions: list[Any] = []
    responses = "input" in body
    leading = body.get("instructions" if responses else "system")
    if leading is not None:
        instructions.append(leading)
    items = body["input"] if responses else body.get("messages")
    user = items if responses and isinstance(items, str) else _first_user_input(items, instructions)
    if user in (None, "", []):
        return ""
    texts = [_joined(part, ("text", "input_text", "output_text")) or _text(part) for part in instructions]
    canonical = json.dumps({"scope": hashlib.sha256(caller.encode()).hexdigest(), "instructions": texts,
                            "user": _joined(user, ("text", "input_text")) or _text(user)}, sort_keys=True)
    return "ctx:v1:" + hashlib.sha256(canonical.encode()).hexdigest()


def session_ids(version: str, headers: Any, body: dict[str, Any], caller: str = "") -> tuple[str, str]:
    """extractSessionIDs of the emulated version: (primary, fallback) session keys of a request, ("", "") when it
    has none (then the wrapped selector alone chooses). `headers` is case-insensitive (an http.client message)."""
    def header(name: str) -> str:
        return _explicit(str(headers.get(name) or "")) if headers is not None else ""

    vt = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    user_id = _path(body, "metadata.user_id")
    if vt >= NATIVE_SESSION_SIGNALS:
        return _native_session_ids(header, body, user_id, caller)
    if user_id:
        match = CLAUDE_SESSION.search(user_id)
        if match:
            return "claude:" + match.group(1), ""
        if user_id.startswith("{"):
            with contextlib.suppress(ValueError):
                sid = _text(json.loads(user_id).get("session_id"))
                if sid:
                    return "claude:" + sid, ""
    signals = [("X-Session-ID", "header:")]
    if vt >= CODEX_SESSION_HEADERS:
        signals += ([("Session-Id", "codex:")] if vt >= CODEX_SESSION_ID_HEADER else []) + [
            ("Session_id", "codex:"), ("X-Amp-Thread-Id", "amp:"), ("X-Client-Request-Id", "clientreq:")]
    for name, prefix in signals:
        value = str(headers.get(name) or "") if headers is not None else ""
        if value:
            return prefix + value, ""
    if user_id:
        return "user:" + user_id, ""
    conversation = _path(body, "conversation_id")
    if conversation:
        return "conv:" + conversation, ""
    return message_hash_ids(body)


def _native_session_ids(header: Any, body: dict[str, Any], user_id: str, caller: str) -> tuple[str, str]:
    """v7.2.103+ (as at v7.2.140): explicit client signals first, then the derived identity, then the hash."""
    if header("X-Claude-Code-Session-Id"):
        return "claude:" + header("X-Claude-Code-Session-Id"), ""
    if user_id.strip().startswith("{"):
        with contextlib.suppress(ValueError):
            sid = _explicit(_text(json.loads(user_id.strip()).get("session_id")))
            if sid:
                return "claude:" + sid, ""
    elif CLAUDE_SESSION.search(user_id.strip()):
        return "claude:" + CLAUDE_SESSION.search(user_id.strip()).group(1), ""
    for name, prefix in (("Session-Id", "codex:"), ("Session_id", "codex:"), ("X-Session-ID", "header:"),
                         ("X-Session-Affinity", "affinity:"), ("X-Client-Request-Id", "clientreq:")):
        if header(name):
            return prefix + header(name), ""
    for name in ("session_id", "sessionId"):
        if _explicit(_path(body, name)):
            return "session:" + _explicit(_path(body, name)), ""
    conversation = body.get("conversation")
    conversation_id = _explicit(_path(body, "conversation.id")) or (
        _explicit(conversation) if isinstance(conversation, str) else "")
    conversation_id = "conv:" + conversation_id if conversation_id else ""
    if _explicit(_path(body, "prompt_cache_key")):
        return "pck:" + _explicit(_path(body, "prompt_cache_key")), conversation_id
    if conversation_id:
        return conversation_id, ""
    if _explicit(user_id):
        return "user:" + _explicit(user_id), ""
    if _explicit(_path(body, "conversation_id")):
        return "conv:" + _explicit(_path(body, "conversation_id")), ""
    derived = derived_session_id(body, caller)
    if derived:
        return "derived:" + derived, ""
    return message_hash_ids(body)


class AccountChooser:
    """The selector of one `routing` setting: round-robin (or fill-first), wrapped by session affinity when on."""

    def __init__(self, routing: Routing, version: str) -> None:
        self.routing = routing
        self.version = version
        self._cursors: dict[str, int] = {}
        self._bindings: dict[str, tuple[str, float]] = {}  # provider::session::model -> (auth, expires, monotonic)
        self._lock = threading.Lock()

    def _wrapped(self, provider: str, model: str, names: list[str]) -> str:
        if self.routing.fill_first:
            return names[0]
        key = f"{provider}:{model}"
        index = self._cursors.get(key, 0)
        self._cursors[key] = index + 1
        return names[index % len(names)]

    def _get(self, key: str, now: float, refresh: bool) -> str | None:
        entry = self._bindings.get(key)
        if entry is None or now > entry[1]:
            self._bindings.pop(key, None)
            return None
        if refresh:
            self._bindings[key] = (entry[0], now + self.routing.ttl)
        return entry[0]

    def _bind(self, auth: str, now: float, *keys: str) -> None:
        if len(self._bindings) >= MAX_BINDINGS:  # upstream's cleanup loop drops expired entries every ttl/2
            self._bindings = {k: v for k, v in self._bindings.items() if v[1] >= now}
        for key in keys:
            self._bindings[key] = (auth, now + self.routing.ttl)

    def pick(self, provider: str, model: str, names: list[str], headers: Any, body: dict[str, Any],
             caller: str = "") -> tuple[str, str | None]:
        """(auth, affinity outcome: None when off or the request has no session, else hit | fallback-hit | new |
        rebound) among `names`, the usable auths sorted by ID."""
        with self._lock:
            if not self.routing.affinity:
                return self._wrapped(provider, model, names), None
            primary, fallback = session_ids(self.version, headers, body, caller)
            if not primary:
                return self._wrapped(provider, model, names), None
            now = time.monotonic()
            key = f"{provider}::{primary}::{model}"
            fallback_key = f"{provider}::{fallback}::{model}" if fallback and fallback != primary else ""
            aliases = (key, fallback_key) if fallback_key and self._aliases() else (key,)
            bound = self._get(key, now, refresh=True)
            if bound is not None:
                if bound in names:
                    self._bind(bound, now, *aliases)
                    return bound, "hit"
                chosen = self._wrapped(provider, model, names)  # the bound auth is cooling down or gone
                self._bind(chosen, now, *aliases)
                return chosen, "rebound"
            if fallback_key:
                bound = self._get(fallback_key, now, refresh=False)
                if bound is not None and bound in names:
                    self._bind(bound, now, *aliases)
                    return bound, "fallback-hit"
            chosen = self._wrapped(provider, model, names)
            self._bind(chosen, now, *aliases)
            return chosen, "new"

    def _aliases(self) -> bool:
        """v7.2.103+ binds the primary and the fallback key together (SetAliases); before, the primary alone."""
        return tuple(int(part) for part in re.findall(r"\d+", self.version)[:3]) >= NATIVE_SESSION_SIGNALS


# --- server state ---------------------------------------------------------------------------------


class ProxyState:
    """Config, credentials and login sessions, refreshed by `watch`."""

    def __init__(self, config_path: Path, config: ProxyConfig, version: str) -> None:
        self.config_path = config_path
        self.config = config
        self.version = version
        self.emu = emulation(version)
        self.features = self.emu.features
        self.auth_dir = config.auth_dir
        self.auths = scan_auth_dir(self.auth_dir)
        self.sessions = OAuthSessions(float(os.environ.get("CLIPROXY_STANDIN_OAUTH_TIMEOUT") or OAUTH_TIMEOUT),
                                      keep_completed=self.emu.v7)
        self._failures: dict[str, int] = {}
        self._banned_until: dict[str, float] = {}
        self._config_digest = self._digest()
        self._lock = threading.Lock()
        self.chooser = AccountChooser(Routing.from_config(config.public, self.features), self.emu.version)

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
        routing = Routing.from_config(config.public, self.features)
        if routing != self.chooser.routing:  # a new selector, as upstream's reload callback builds (service.go)
            self.chooser = AccountChooser(routing, self.emu.version)
            log("info", f"routing changed: fill-first {routing.fill_first}, session-affinity {routing.affinity}")

    def rescan_auths(self) -> None:
        with self._lock:
            found = scan_auth_dir(self.auth_dir)
            for name in found.keys() - self.auths.keys():
                log("info", f"auth file added: {name}")
            for name in self.auths.keys() - found.keys():
                log("info", f"auth file removed: {name}")
            self.auths = found

    def served_auths(self) -> list[AuthFile]:
        """The auth files whose provider this line has: mainline 7.x has no GitHub Copilot executor, so a
        `github-copilot` file is listed but registers no models (router-for-me/CLIProxyAPI
        sdk/cliproxy/service_models.go, `registerModelsForAuthWithCache`: no such case, and an unknown provider
        only gets models from an openai-compatibility entry of that name)."""
        copilot = LINES[self.emu.line].copilot
        return [auth for auth in self.auths.values() if copilot or auth.type != COPILOT]

    def models(self) -> list[tuple[str, str, str]]:
        """(id, owned_by, provider) of every model with a usable credential, first provider wins."""
        listed: dict[str, tuple[str, str, str]] = {}
        for auth in self.served_auths():
            for model in auth.models():
                listed.setdefault(model, (model, PROVIDER_OWNERS.get(auth.type, auth.type), auth.type))
        for model, provider in self.config.compat_models:
            listed.setdefault(model, (model, provider, provider))
        return list(listed.values())

    def pick_account(self, model: str, provider: str | None, headers: Any = None, body: dict[str, Any] | None = None,
                     caller: str = "") -> tuple[str | None, str | None]:
        """(the credential that answers `model`, the session-affinity outcome): the chooser's pick among the usable
        auth files of the provider for the model, sorted by name (their ID)."""
        base = re.sub(r"\([^()]*\)$", "", model)
        names = sorted(auth.name for auth in self.auths.values() if auth.type == provider and base in auth.models())
        if not names:
            return provider, None  # an openai-compatibility entry answers under its provider name
        return self.chooser.pick(str(provider), base, names, headers, body or {}, caller)

    def provider_for(self, model: str) -> str | None:
        base = re.sub(r"\([^()]*\)$", "", model)  # thinking suffix: model(high), model(8192)
        return next((provider for listed, _, provider in self.models() if listed == base), None)

    def management_enabled(self) -> bool:
        return bool(self.config.secret_hash or os.environ.get("MANAGEMENT_PASSWORD"))

    def safe_mode(self) -> bool:
        """v7.1.46+: sample api-keys from config.example.yaml disable the proxy routes."""
        return self.features.safe_mode and any(is_sample_key(key) for key in self.config.api_keys)

    def check_management_key(self, client: str, key: str) -> None:
        """The management middleware: 401 for a missing or wrong key; after five failures a 30 min ban (403),
        for non-local clients only before v7 and for localhost too from v7."""
        now = time.monotonic()
        banned_until = self._banned_until.get(client, 0.0)
        if banned_until > now:
            left = int(banned_until - now)
            raise RequestError(403, {"error": "IP banned due to too many failed attempts. "
                                              f"Try again in {left // 60}m{left % 60}s"})
        local = client in ("127.0.0.1", "::1")
        if key and self.management_key_ok(key):
            self._failures.pop(client, None)
            return
        if self.features.localhost_ban or not local:
            with self._lock:
                self._failures[client] = self._failures.get(client, 0) + 1
                if self._failures[client] >= BAN_FAILURES:
                    self._failures[client] = 0
                    self._banned_until[client] = now + BAN_SECONDS
        raise RequestError(401, {"error": "invalid management key" if key else "missing management key"})

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
            self.send_header("X-CPA-VERSION", self.state.emu.reported)
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
        if self.state.safe_mode() and self.safe_mode_answer():
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
        if self.state.features.healthz:
            routes[("GET", "/healthz")] = lambda: self.send_json(200, {"status": "ok"})
        if self.state.features.healthz_head:
            routes[("HEAD", "/healthz")] = lambda: self.send_json(200, {"status": "ok"})
        route = routes.get((self.command, self.url_path))
        if route is None:
            self.not_found()
        else:
            route()

    def safe_mode_answer(self) -> bool:
        """v7.1.46 safe mode: `GET /` shows a warning page; `/v1/*` answers 403 `unsafe_example_api_key`."""
        if self.url_path == "/" and self.command in ("GET", "HEAD"):
            page = "<!doctype html><html><body><h1>Example API key detected</h1></body></html>"
            self._send_bytes(200, page.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})
            return True
        if self.url_path == "/v1" or self.url_path.startswith(("/v1/", "/v1beta")):
            raise RequestError(403, {"error": "unsafe_example_api_key", "message": SAFE_MODE_MESSAGE},
                               {"X-CPA-SAFE-MODE": "example-api-key"})
        return False

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

    def serve_inference(self, protocol: str, body: dict[str, Any], model: str) -> None:
        if protocol == "responses" and self.state.provider_for(model) == "codex":
            # The Codex executor deletes previous_response_id before it calls the ChatGPT backend (12c09f1a4, in
            # every line since 6.x): the backend is store=false, so an earlier response id means nothing to it.
            body = {key: value for key, value in body.items() if key != "previous_response_id"}
        self._inference_body = body
        super().serve_inference(protocol, body, model)

    def answering(self, model: str) -> dict[str, Any]:
        provider = self.state.provider_for(model)
        caller = bearer_or_raw(self.headers.get("Authorization")) or str(self.headers.get("X-Api-Key") or "")
        account, affinity = self.state.pick_account(model, provider, self.headers,
                                                    getattr(self, "_inference_body", None), caller)
        record = {"provider": provider, "account": account}
        if affinity is not None:
            record["affinity"] = affinity
        return record

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
            ("GET", "/latest-version"): lambda: self.send_json(200, {"latest-version": f"v{self.state.version}"}),
            ("GET", "/codex-auth-url"): self.codex_auth_url,
            ("GET", "/get-auth-status"): self.auth_status,
            ("POST", "/oauth-callback"): self.oauth_callback,
        }
        features = self.state.features
        if features.usage:
            routes[("GET", "/usage")] = self.usage
        if features.github_auth_url:
            routes[("GET", "/github-auth-url")] = self.github_auth_url
        if features.copilot_quota:
            routes[("GET", "/copilot-quota")] = self.copilot_quota
        if features.reset_quota:
            routes[("POST", "/reset-quota")] = self.reset_quota
        if features.routing_strategy:
            routes[("GET", "/routing/strategy")] = self.routing_strategy
        if self.state.emu.v7:
            routes[("DELETE", "/oauth-session")] = self.cancel_session
        if not self.state.management_enabled():
            self.management_not_found()
            return
        route = routes.get((self.command, sub))
        if route is None and not self.state.emu.v7:
            self.not_found()  # 6.x: unknown routes answer before the key is checked
            return
        key = bearer_or_raw(self.headers.get("Authorization")) or (self.headers.get("X-Management-Key") or "").strip()
        self.state.check_management_key(self.client_address[0], key)
        if route is None:
            self.management_not_found()  # v7: the NoRoute handler checks the key first
            return
        route()

    def management_not_found(self) -> None:
        """v7 answers `AbortWithStatus(404)` (no body); 6.x has no route at all (Gin's `404 page not found`)."""
        if self.state.emu.v7:
            self.send_text(404, "")
        else:
            self.not_found()

    def copilot_quota(self) -> None:
        """Plus forks, `GetCopilotQuota` (api_tools.go, docs/standins.md): ONE Copilot account's answer from
        GitHub's `/copilot_internal/user`, re-marshalled through the fork's `CopilotUsageResponse` struct (every
        field, Go zero values for what GitHub left out, unknown fields dropped). The account is `?auth_index=`
        (`authIndex`, `AuthIndex`), else the first Copilot account, as `findCopilotAuth` does. No network: what
        GitHub would answer is the auth file's `standin_github_user` (default: a Pro plan with 300 premium
        requests left) and `standin_github_status` (default 200)."""
        index = next((v.strip() for v in map(self.query.get, ("auth_index", "authIndex", "AuthIndex")) if v
                      and v.strip()), "")
        copilots = [a for a in self.state.auths.values() if a.type.strip().lower() in ("copilot", "github",
                                                                                        "github-copilot")]
        auth = next((a for a in copilots if index and a.describe()["auth_index"] == index),
                    copilots[0] if copilots else None)
        if auth is None:
            raise RequestError(400, {"error": "no github copilot credential found"})
        if not str(auth.data.get("access_token") or "").strip():
            raise RequestError(400, {"error": "copilot token not found"})
        now = datetime.now(timezone.utc)
        reset = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
        unlimited = {"entitlement": 0, "overage_count": 0, "overage_permitted": False, "percent_remaining": 100,
                     "remaining": 0, "quota_remaining": 0, "unlimited": True}
        github = auth.data.get("standin_github_user", {
            "access_type_sku": "copilot_pro", "copilot_plan": "individual", "chat_enabled": True,
            "assigned_date": "2026-01-01T00:00:00Z", "quota_reset_date": reset.strftime("%Y-%m-%d"),
            "quota_reset_date_utc": reset.strftime("%Y-%m-%dT00:00:00.000Z"),
            "quota_snapshots": {"chat": {**unlimited, "quota_id": "chat"},
                                "completions": {**unlimited, "quota_id": "completions"},
                                "premium_interactions": {"entitlement": 300, "overage_count": 0,
                                                         "overage_permitted": False, "percent_remaining": 100,
                                                         "quota_id": "premium_interactions", "remaining": 300,
                                                         "quota_remaining": 300, "unlimited": False}}})
        status = auth.data.get("standin_github_status", 200)
        if status != 200:
            raise RequestError(502, {"error": "github api request failed", "status_code": status,
                                     "body": github if isinstance(github, str) else json.dumps(github)})

        def field(obj: Any, name: str, kind: str) -> Any:  # Go's json.Unmarshal into one typed field
            value = obj.get(name) if isinstance(obj, dict) else None
            zero = {"float": 0, "bool": False, "string": "", "list": None}[kind]
            ok = {"float": isinstance(value, (int, float)) and not isinstance(value, bool),
                  "bool": isinstance(value, bool), "string": isinstance(value, str),
                  "list": isinstance(value, list)}[kind]
            if value is None:
                return zero
            if not ok:
                raise ValueError(name)
            return (int(value) if float(value).is_integer() else float(value)) if kind == "float" else value

        detail = (("entitlement", "float"), ("overage_count", "float"), ("overage_permitted", "bool"),
                  ("percent_remaining", "float"), ("quota_id", "string"), ("quota_remaining", "float"),
                  ("remaining", "float"), ("unlimited", "bool"))
        try:
            if not isinstance(github, dict) or not isinstance(github.get("quota_snapshots") or {}, dict):
                raise ValueError("body")
            snapshots = github.get("quota_snapshots") or {}
            for key in ("chat", "completions", "premium_interactions"):
                if not isinstance(snapshots.get(key) or {}, dict):
                    raise ValueError(key)
            usage = {name: field(github, name, kind) for name, kind in (
                ("access_type_sku", "string"), ("analytics_tracking_id", "string"), ("assigned_date", "string"),
                ("can_signup_for_limited", "bool"), ("chat_enabled", "bool"), ("copilot_plan", "string"),
                ("organization_login_list", "list"), ("organization_list", "list"), ("quota_reset_date", "string"))}
            usage["quota_snapshots"] = {key: {name: field(snapshots.get(key), name, kind) for name, kind in detail}
                                        for key in ("chat", "completions", "premium_interactions")}
        except ValueError:
            raise RequestError(500, {"error": "failed to parse response"}) from None
        self.send_json(200, usage)

    def reset_quota(self) -> None:
        """v7.2.22+: clear an auth's cooldowns by `auth_index` (400 without one, 404 for an unknown one)."""
        try:
            body = json.loads(self.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RequestError(400, {"error": "invalid request body"})
        index = str(body.get("auth_index") or "").strip()
        if not index:
            raise RequestError(400, {"error": "auth_index is required"})
        auth = next((a for a in self.state.auths.values() if a.describe()["auth_index"] == index), None)
        if auth is None:
            raise RequestError(404, {"error": "auth not found"})
        self.send_json(200, {"status": "ok", "auth_index": index, "models": list(auth.models())})

    def routing_strategy(self) -> None:
        routing = self.state.config.public.get("routing")
        strategy = routing.get("strategy") if isinstance(routing, dict) else None
        self.send_json(200, {"strategy": strategy or "round-robin"})

    def cancel_session(self) -> None:
        state = self.query.get("state", "")
        if not self.state.sessions.cancel(state):
            raise RequestError(404, {"error": "unknown or expired state"})
        self.send_json(200, {"status": "ok"})

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
    if state.safe_mode():
        log("error", "unsafe example API key configured; proxy API endpoints disabled until api-keys is updated")
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
    elif provider == "codex-device":
        print(f"To authenticate, please visit: {CODEX_DEVICE_URL}", flush=True)
        print(f"And enter the code: {DEVICE_USER_CODE}", flush=True)
        provider = "codex"
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
    emu = emulation(version)
    print(banner(version), flush=True)
    try:
        flags = parse_flags(sys.argv[1:] if argv is None else argv, emu)
    except HelpRequested:
        print(usage(emu), file=sys.stderr)
        return 0
    except FlagError as exc:
        print(exc, file=sys.stderr)
        print(usage(emu), file=sys.stderr)
        return 2
    config_path = Path(flags["config"] or "config.yaml").absolute()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log("error", f"failed to load config: {exc}")
        return 0
    if flags["codex-login"]:
        return run_login("codex", config)
    if flags.get("github-copilot-login"):
        return run_login("github-copilot", config)
    if flags.get("codex-device-login"):
        return run_login("codex-device", config)
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


def fake_binary_script(version: str = DEFAULT_VERSION, python: str = sys.executable, line: str | None = None) -> str:
    """A POSIX shell script that runs this stand-in with `version` (and `line`, when given) baked in."""
    src_dir = Path(__file__).resolve().parents[2]
    pinned_line = f"CLIPROXY_STANDIN_LINE={shlex.quote(line)}\nexport CLIPROXY_STANDIN_LINE\n" if line else ""
    return (
        "#!/bin/sh\n"
        f"# llm-router stand-in for {LINES[line].binary if line else PROGRAM} {version} (not the real binary)\n"
        f"CLIPROXY_STANDIN_VERSION={shlex.quote(version.removeprefix('v'))}\n"
        "export CLIPROXY_STANDIN_VERSION\n"
        f"{pinned_line}"
        f"PYTHONPATH={shlex.quote(str(src_dir))}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export PYTHONPATH\n"
        f'exec {shlex.quote(python)} -m llm_router.standin.cliproxy "$@"\n'
    )


def install_fake_binary(dest: Path, version: str = DEFAULT_VERSION, python: str = sys.executable,
                        line: str | None = None) -> Path:
    """Write the fake `cli-proxy-api-plus` (or, for mainline, `cli-proxy-api`) executable (0755) at `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(fake_binary_script(version, python, line))
    dest.chmod(0o755)
    return dest


def release_asset_name(version: str, os_name: str, arch: str, line: str | None = None,
                       no_plugin: bool = False) -> str:
    """`<Project>_<version>_<os>_<arch>[_no-plugin].tar.gz` (`.zip` on windows). Plus 6.x (GoReleaser) spells
    arm64 `arm64`; the 7.x release workflows (mainline from 2026-06-07, and the forks) spell it `aarch64`."""
    version = version.removeprefix("v")
    line = line or emulation(version).line
    project = LINES[line].project
    if line != PLUS_6 and arch == "arm64":
        arch = "aarch64"
    extension = "zip" if os_name == "windows" else "tar.gz"
    return f"{project}_{version}_{os_name}_{arch}{'_no-plugin' if no_plugin else ''}.{extension}"


def build_release_archive(
    dest_dir: Path,
    version: str = DEFAULT_VERSION,
    os_name: str = "linux",
    arch: str = "amd64",
    python: str = sys.executable,
    line: str | None = None,
    no_plugin: bool = False,
    binary_version: str | None = None,
) -> Path:
    """A release-shaped archive holding the fake binary (named as the line names it) and the extra files at its
    root. `binary_version` bakes another version into the binary than the archive's name says (for tests)."""
    version = version.removeprefix("v")
    line = line or emulation(version).line
    program = LINES[line].binary
    binary = f"{program}.exe" if os_name == "windows" else program
    members = [(binary, fake_binary_script(binary_version or version, python, line).encode(), 0o755)]
    extras = {"config.example.yaml": CONFIG_EXAMPLE, **ARCHIVE_DOCS}
    members += [(name, text.encode(), 0o644) for name, text in extras.items()]
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / release_asset_name(version, os_name, arch, line, no_plugin)
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
