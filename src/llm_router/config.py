"""Load `routertool.yaml` into typed dataclasses: the public face of the config, and the only module that reads
that file. Locating it, reading it (bounded), the parse cache, `load`/`load_file`, `migrate_file` and the plain-data
views; every name of the parts below is re-exported here, so `from llm_router.config import X` keeps working.

The parts (foundation modules, none importing this one): config_schema.py (constants, defaults, typed dataclasses),
yamlsafe.py (the safe YAML loader and line index), config_migrate.py (legacy spellings), config_rules.py
(validation of every section: every problem at once, each with its dotted path and, where the YAML tells, its line).
Legacy spellings are migrated in memory with a one-line deprecation warning; the file itself is rewritten only
by `migrate_file(..., write=True)`, which keeps a backup.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .config_migrate import RENAMES, Rename, migrate, migrated_text
from .config_rules import REDIS_URL, validate
from .config_schema import (
    BOOTSTRAP_DEFAULTS,
    CONFIG_ENV,
    CURRENT_VERSION,
    DEFAULT_CONFIG,
    DEFAULT_HEALTH_PATH,
    DEFAULT_TIER,
    ENV_NAME,
    EXAMPLE_CONFIG,
    EXTRA_SERVICE_KEYS,
    GENERATED_SECRETS,
    LITELLM_MODES,
    MASTER_KEY_ENV,
    MAX_CONFIG_BYTES,
    MAX_LITELLM_WORKERS,
    MAX_SECRET_BYTES,
    NAME,
    PROVIDER_KEYS,
    PROVIDER_TYPES,
    REDIS_DEFAULTS,
    REDIS_KEYS,
    REDIS_PASSWORD_ENV,
    REDIS_PERSISTENCE,
    SERVICE_DEFAULTS,
    SERVICE_KEYS,
    SUPPORTED_VERSIONS,
    TIERS,
    TOP_KEYS,
    UPSTREAM_KEY_ENV,
    BootstrapConfig,
    Deployment,
    ModelGroup,
    ProviderConfig,
    RedisConfig,
    RouterConfig,
    ServiceConfig,
    is_loopback_host,
    root_for,
)
from .errors import USAGE, RouterError
from .fsutil import atomic_write, read_text_bounded, write_private
from .layout import DEFAULT_RUNTIME_DIR, Layout
from .yamlsafe import (
    CONTROL,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    YAMLProblem,
    index_lines,
    kind_of,
    load_yaml,
)

# The public API: what this module defines plus the names of its parts that callers import from here.
__all__ = ["BOOTSTRAP_DEFAULTS", "BootstrapConfig", "CONFIG_ENV", "CONTROL", "CURRENT_VERSION", "DEFAULT_CONFIG",
           "DEFAULT_HEALTH_PATH", "DEFAULT_TIER", "Deployment", "ENV_NAME", "EXAMPLE_CONFIG", "EXTRA_SERVICE_KEYS",
           "GENERATED_SECRETS", "LITELLM_MODES", "MASTER_KEY_ENV", "MAX_CONFIG_BYTES", "MAX_LITELLM_WORKERS",
           "MAX_SECRET_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "ModelGroup", "NAME", "PROVIDER_KEYS",
           "PROVIDER_TYPES", "ProviderConfig", "REDIS_DEFAULTS", "REDIS_KEYS", "REDIS_PASSWORD_ENV",
           "REDIS_PERSISTENCE", "REDIS_URL", "RENAMES", "RedisConfig", "Rename", "RouterConfig", "SERVICE_DEFAULTS",
           "SERVICE_KEYS", "SUPPORTED_VERSIONS", "ServiceConfig", "TIERS", "TOP_KEYS", "UPSTREAM_KEY_ENV",
           "YAMLProblem", "cached_parse", "effective", "is_loopback_host", "load", "load_file", "load_yaml", "migrate",
           "migrate_file", "models_view", "parse_cache_path", "parse_text", "providers_view", "redis_view",
           "remember_parse", "resolve_config_path", "root_for", "services_view", "validate"]

# --------------------------------------------------------------------------- locating and loading

def resolve_config_path(explicit: str | os.PathLike | None = None, cwd: Path | None = None) -> tuple[Path, str]:
    """The config file to use and why: `--config`, else $LLM_ROUTER_CONFIG, else `config/routertool.yaml`
    in the working folder or the nearest parent that has one."""
    cwd = Path.cwd() if cwd is None else cwd
    if explicit:
        return (cwd / Path(explicit).expanduser()).resolve(), "--config"
    if os.environ.get(CONFIG_ENV):
        return (cwd / Path(os.environ[CONFIG_ENV]).expanduser()).resolve(), f"${CONFIG_ENV}"
    for folder in (cwd, *cwd.parents):
        candidate = folder / DEFAULT_CONFIG
        if candidate.is_file():
            return candidate.resolve(), "default"
    return (cwd / DEFAULT_CONFIG).resolve(), "default"


def load(explicit: str | os.PathLike | None = None, cwd: Path | None = None) -> RouterConfig:
    path, source = resolve_config_path(explicit, cwd)
    return load_file(path, source)


def load_file(path: Path, source: str = "--config") -> RouterConfig:
    text = _read_config_text(path, source)
    raw, lines = cached_parse(path, text) or parse_text(text, path)
    migrated, lines, warnings = migrate(raw, lines)
    return validate(migrated, path, lines, warnings)


# PyYAML's import alone is ~30 ms of the ~150 ms an `llm-router status` takes (its modules compile a dozen regexes
# at import). So `service start`, which writes state anyway, keeps the parse of the config file it started from as
# JSON beside that state (`remember_parse`), and loading the very same text later reuses it without importing
# PyYAML. The cache is read only from the default state folder (`<root>/.router`) and only for identical text;
# read-only commands (status, doctor, config check) never write it.
def parse_cache_path(config_path: Path) -> Path:
    root = root_for(config_path)
    return Layout(root=root, runtime_dir=root / DEFAULT_RUNTIME_DIR).parse_cache


def cached_parse(path: Path, text: str) -> tuple[dict, dict[str, int]] | None:
    """The parse `remember_parse` stored for exactly this file and text, else None."""
    try:
        cached = json.loads(read_text_bounded(parse_cache_path(path), 4 * MAX_CONFIG_BYTES, "parse cache"))
        data, lines = cached["data"], cached["lines"]
        if (cached["path"] == str(path.resolve()) and cached["text"] == text and isinstance(data, dict)
                and isinstance(lines, dict)):
            return data, lines
    except (OSError, ValueError, KeyError, TypeError, RecursionError, RouterError):
        pass  # none yet, another file's, or damaged: parse the YAML
    return None


def remember_parse(cfg: RouterConfig) -> bool:
    """Store the parse of `cfg`'s file for `cached_parse` (0600 in a 0700 folder). Skipped, returning False, when
    the state folder is not the default one (the reader would not look there), the file cannot be read or written,
    or JSON would not give back exactly what PyYAML gave (non-string keys, dates)."""
    target = parse_cache_path(cfg.path)
    if cfg.layout.parse_cache != target:
        return False
    try:
        text = read_text_bounded(cfg.path, MAX_CONFIG_BYTES, "config file")
        data, lines = parse_text(text, cfg.path)
        entry = {"path": str(cfg.path.resolve()), "text": text, "data": data, "lines": lines}
        encoded = json.dumps(entry)
    except (OSError, UnicodeDecodeError, RouterError, TypeError, ValueError):
        return False
    if json.loads(encoded) != entry:
        return False
    try:
        write_private(target, encoded)
    except RouterError:  # a cache: failing to write it never fails the command that offered it
        return False
    return True


def _read_config_text(path: Path, source: str) -> str:
    try:  # a FIFO, a device or a huge file is refused (RouterError, exit 2) instead of hanging or filling memory
        return read_text_bounded(path, MAX_CONFIG_BYTES, "config file")
    except FileNotFoundError:
        root = root_for(path)
        raise RouterError(
            f"config file not found: {path} (from {source})",
            hint=f"create it from the example: cp {root / EXAMPLE_CONFIG} {path}", exit_code=USAGE) from None
    except IsADirectoryError:
        raise RouterError(f"config path is a folder, not a file: {path}", exit_code=USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RouterError(f"cannot read config file {path}: {reason}", exit_code=USAGE) from None


def parse_text(text: str, path: Path) -> tuple[dict, dict[str, int]]:
    """Parse YAML (JSON is a subset) into a dict plus a dotted-path → line index."""
    try:
        node, data = load_yaml(text)
    except YAMLProblem as exc:
        where = f"{path}:{exc.line}" if exc.line else str(path)
        raise RouterError(f"{where}: {exc.message}",
                          hint="fix the file; `llm-router config check` re-reads it", exit_code=USAGE) from None
    if data is None:
        raise RouterError(f"{path}: the config file is empty",
                          hint=f"start from {root_for(path) / EXAMPLE_CONFIG}", exit_code=USAGE)
    if not isinstance(data, dict):
        raise RouterError(f"{path}:1: the config must be a mapping of keys, got {kind_of(data)}", exit_code=USAGE)
    lines: dict[str, int] = {}
    index_lines(node, "", lines)
    return data, lines


def migrate_file(path: Path, write: bool = False) -> dict:
    """Migrate the file's text, keeping comments and layout: legacy keys are renamed in place and
    `config_version: 2` is added. With `write`, the original is kept as `<name>.bak-<time>` first."""
    text = _read_config_text(path, "--config")
    raw, lines = parse_text(text, path)
    migrated, _, warnings = migrate(raw, lines)
    new_text = migrated_text(text, raw)
    check, _ = parse_text(new_text, path)
    if check != migrated:  # the text edit must say exactly what the in-memory migration says
        raise RouterError(f"cannot migrate {path} automatically",
                          hint="rename the keys by hand; `llm-router config check` names them", exit_code=USAGE)
    changed = new_text != text
    backup = None
    if write and changed:
        backup = path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d%H%M%S')}")
        atomic_write(backup, text, mode=path.stat().st_mode & 0o777)
        atomic_write(path, new_text, mode=path.stat().st_mode & 0o777)
    return {"path": str(path), "changed": changed, "written": bool(write and changed),
            "backup": str(backup) if backup else None, "changes": warnings, "text": new_text}


# --------------------------------------------------------------------------- presentation data

def services_view(config: RouterConfig) -> dict:
    """The services as plain data (no secret among them)."""
    return {name: {"host": s.host, "port": s.port, "readiness_path": s.readiness_path,
                   "health_path": s.health_path, "startup_timeout": s.startup_timeout,
                   **({"config_file": str(s.config_file)} if s.config_file else {}),
                   **({"mode": s.mode, "worker_boot_timeout": s.worker_boot_timeout,
                       "max_rss_mb": s.max_rss_mb, "workers": s.workers} if s.mode else {})}
            for name, s in config.services.items() if name != "redis"} | redis_view(config)


def redis_view(config: RouterConfig) -> dict:
    """`{"redis": {...}}` when Redis is on (templates render LiteLLM's Redis settings from it), else {}: host and
    port (or the external URL, which never holds a password) and the *name* of the password variable."""
    r = config.redis
    if r is None:
        return {}
    # LiteLLM gets host, port and password (redis-py drops a password given beside a URL), plus TLS and the
    # database as RedisCache arguments
    view = {"managed": r.managed, "host": r.host, "port": r.port, "password_env": REDIS_PASSWORD_ENV,
            "url": r.url, "tls": r.tls, "db": r.db,
            "cache_kwargs": {**({"ssl": True} if r.tls else {}), **({"db": r.db} if r.db else {})}}
    if r.managed:
        view.update(persistence=r.persistence, binary=r.binary)
    return {"redis": view}


def providers_view(config: RouterConfig) -> dict:
    """The providers as plain data: api_base resolved, the *name* of the key variable, never its value."""
    return {name: {"type": pr.type, "tier": pr.tier,
                   "api_base": pr.api_base or f"{config.services['cliproxyapi_plus'].base_url}/v1",
                   "api_key_env": pr.key_env}
            for name, pr in config.providers.items()}


def models_view(config: RouterConfig) -> list:
    return [{"name": g.name, "deployments": [{"provider": d.provider, "model": d.model,
                                              **{k: v for k, v in (("rpm", d.rpm), ("tpm", d.tpm)) if v}}
                                             for d in g.deployments]}
            for g in config.models]


def effective(config: RouterConfig) -> dict:
    """The config after defaults and migration, as plain data; secrets appear only as <set>/<missing>."""
    return {
        "config_version": config.config_version,
        "path": str(config.path),
        "root": str(config.root),
        "runtime_dir": str(config.runtime_dir),
        "default_profile": config.default_profile,
        "bootstrap": vars(config.bootstrap).copy(),
        "services": services_view(config),
        "providers": providers_view(config),
        "models": models_view(config),
        "secret_files": {name: str(path) for name, path in config.secret_files.items()},
        "secrets": {name: "<set>" if config.secret_source(name) != "missing" else "<missing>"
                    for name in config.secret_names()},
    }
