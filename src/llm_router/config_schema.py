"""The schema of routertool.yaml: its versions, keys, defaults and secret names, and the typed dataclasses it is
loaded into (RouterConfig and its parts, with the secret lookup env → secret_files → generated).

No parsing or validating of its own; `config.py` is the public face and re-exports every name.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RouterError
from .fsutil import read_text_bounded
from .layout import Layout

CURRENT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)  # 1 (and a missing version) is migrated in memory to 2
CONFIG_ENV = "LLM_ROUTER_CONFIG"
DEFAULT_CONFIG = Path("config/routertool.yaml")
EXAMPLE_CONFIG = Path("config/examples/routertool.yaml")

UPSTREAM_KEY_ENV = "ROUTER_UPSTREAM_API_KEY"  # clients of CLIProxyAPIPlus (LiteLLM) present this key
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"  # northbound clients present this key to LiteLLM
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"  # the Redis password (generated for a managed Redis; LiteLLM reads it)
GENERATED_SECRETS = (UPSTREAM_KEY_ENV, MASTER_KEY_ENV, REDIS_PASSWORD_ENV)  # local keys: generated into secrets/
PROVIDER_TYPES = ("cliproxyapi_plus", "openai_compatible")
TIERS = ("subscription", "paid")
DEFAULT_TIER = {"cliproxyapi_plus": "subscription", "openai_compatible": "paid"}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z, not $: "$" also matches before a trailing newline
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# A release a user may pin (bootstrap.cliproxy_version, --cliproxy-version): mainline v7.2.31, Plus v6.9.28-0, and
# the Plus forks' v7.1.5-0-plus / v7.1.5-plus
RELEASE_PIN = re.compile(r"^v?\d+\.\d+\.\d+(-\d+)?(-plus)?\Z")
REPOSITORY = re.compile(r"^[\w.-]+/[\w.-]+\Z")  # OWNER/NAME on GitHub
MAX_CONFIG_BYTES = 1 << 20  # routertool.yaml, and the Codex CLI's auth.json
MAX_SECRET_BYTES = 64 << 10  # a secret file

SERVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cliproxyapi_plus": {"host": "127.0.0.1", "port": 8317, "config_file": "config/cliproxyapi.yaml",
                         "readiness_path": "/v1/models", "startup_timeout": 30},
    "litellm": {"host": "127.0.0.1", "port": 4000, "readiness_path": "/health/readiness", "startup_timeout": 90,
                "mode": "gunicorn", "worker_boot_timeout": 10, "workers": 1},
}
# services.redis: optional; llm-router runs Debian's redis-server (managed), or LiteLLM uses an external `url`.
REDIS_DEFAULTS: dict[str, Any] = {"enabled": False, "host": "127.0.0.1", "port": 6379, "startup_timeout": 30,
                                  "persistence": "off", "binary": "redis-server"}
REDIS_KEYS = set(REDIS_DEFAULTS) | {"url"}
REDIS_PERSISTENCE = ("off", "aof")
MAX_LITELLM_WORKERS = 16
DEFAULT_HEALTH_PATH = "/v1/models"
SERVICE_KEYS = {"host", "port", "readiness_path", "health_path", "startup_timeout"}
EXTRA_SERVICE_KEYS = {"cliproxyapi_plus": {"config_file"},
                      "litellm": {"mode", "worker_boot_timeout", "max_rss_mb", "workers", "usage_max_days",
                                  "usage_max_mb"}}
LITELLM_MODES = ("gunicorn", "uvicorn")  # gunicorn: profile switches swap workers live; uvicorn: they restart
# The Plus fork on 7.x (Copilot needs a Plus line; router-for-me/CLIProxyAPIPlus is gone): cliproxy_lines.py.
BOOTSTRAP_DEFAULTS = {"cliproxy_repository": "kaitranntt/CLIProxyAPIPlus", "cliproxy_version": "latest",
                      "github_api_url": "https://api.github.com"}
TOP_KEYS = {"config_version", "runtime_dir", "default_profile", "bootstrap", "services", "providers", "models",
            "secret_files"}
PROVIDER_KEYS = {"type", "api_base", "api_key_env", "tier"}


# --------------------------------------------------------------------------- dataclasses

@dataclass(frozen=True)
class ServiceConfig:
    name: str
    host: str
    port: int
    readiness_path: str
    health_path: str
    startup_timeout: float
    config_file: Path | None = None
    mode: str | None = None  # litellm only
    worker_boot_timeout: float = 10.0  # litellm only: a worker not serving this long after its fork is replaced
    max_rss_mb: int | None = None  # litellm only: `service watch` recycles the worker above this
    workers: int = 1  # litellm only (gunicorn mode): worker processes behind the one socket

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class RedisConfig:
    """Shared router state for LiteLLM (cooldowns, allowed_fails and rpm/tpm counters across workers and hosts).

    managed: llm-router runs `binary` on host:port (a ServiceConfig named "redis" is in `services` too);
    otherwise `url` names an external Redis (no password in it: the password is the REDIS_PASSWORD secret)."""
    managed: bool
    host: str
    port: int
    url: str | None = None  # external only: redis[s]://host:port[/db], never with a password
    persistence: str = "off"  # managed only: off (nothing on disk) or aof (appendonly, everysec)
    binary: str = "redis-server"
    db: int = 0  # external only: the database number of the URL

    @property
    def tls(self) -> bool:
        return bool(self.url and self.url.startswith("rediss://"))

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    type: str
    tier: str
    api_base: str | None = None  # openai_compatible only; cliproxy's comes from services
    api_key_env: str | None = None

    @property
    def key_env(self) -> str:
        """The environment variable that holds this provider's key."""
        return UPSTREAM_KEY_ENV if self.type == "cliproxyapi_plus" else str(self.api_key_env)


@dataclass(frozen=True)
class Deployment:
    provider: str
    model: str
    rpm: int | None = None  # requests per minute LiteLLM lets through to it (a profile enforces it; shared via Redis)
    tpm: int | None = None  # tokens per minute, likewise


@dataclass(frozen=True)
class ModelGroup:
    name: str
    deployments: tuple[Deployment, ...]


@dataclass(frozen=True)
class BootstrapConfig:
    cliproxy_repository: str
    cliproxy_version: str
    github_api_url: str


@dataclass(frozen=True)
class RouterConfig:
    path: Path
    root: Path
    config_version: int
    runtime_dir: Path
    default_profile: str
    bootstrap: BootstrapConfig
    services: dict[str, ServiceConfig]
    providers: dict[str, ProviderConfig]
    models: tuple[ModelGroup, ...]
    secret_files: dict[str, Path]
    warnings: tuple[str, ...] = ()
    raw: dict = field(default_factory=dict, repr=False, compare=False)
    redis: RedisConfig | None = None  # None: no Redis; LiteLLM keeps its router state in each worker's memory

    @property
    def layout(self) -> Layout:
        return Layout(root=self.root, runtime_dir=self.runtime_dir)

    def service(self, name: str) -> ServiceConfig:
        return self.services[name]

    def secret_names(self) -> list[str]:
        """Every environment variable this configuration treats as a secret."""
        names = [UPSTREAM_KEY_ENV, MASTER_KEY_ENV] + ([REDIS_PASSWORD_ENV] if self.redis else [])
        names += [p.key_env for p in self.providers.values() if p.type != "cliproxyapi_plus"]
        names += list(self.secret_files)
        return list(dict.fromkeys(names))

    def secret(self, name: str, environ: dict | None = None) -> str | None:
        """A secret's value: the environment, else its `secret_files` entry, else the key llm-router generated
        into the secrets folder (only the local keys in GENERATED_SECRETS are ever generated). None when unset."""
        return self._secret_with_source(name, environ)[0]

    def secret_source(self, name: str, environ: dict | None = None) -> str:
        """Where a secret comes from, never its value: `env`, `file`, `generated` or `missing`."""
        return self._secret_with_source(name, environ)[1]

    def _secret_with_source(self, name: str, environ: dict | None) -> tuple[str | None, str]:
        env = os.environ if environ is None else environ
        if env.get(name):
            return env[name], "env"
        for path, source in ((self.secret_files.get(name), "file"), (self.layout.secret_file(name), "generated")):
            if path is None:
                continue
            try:  # bounded and regular files only: a FIFO or /dev/zero here must not hang every command
                text = read_text_bounded(path, MAX_SECRET_BYTES, "secret file").strip()
            except (OSError, UnicodeDecodeError, RouterError):
                continue  # never raises: redaction on error paths asks for every secret (validate reports it)
            if text:
                return text, source
        return None, "missing"

    def known_secrets(self) -> list[str]:
        """Values to redact from logs and output (the generated keys are added by their owners)."""
        values = [self.secret(name) for name in self.secret_names()]
        values.append(os.environ.get("GITHUB_TOKEN"))
        return [v for v in values if v]


def is_loopback_host(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def root_for(config_path: Path) -> Path:
    """The repo root: the folder holding `config/`, else the config file's own folder."""
    parent = config_path.parent
    return parent.parent if parent.name == "config" else parent
