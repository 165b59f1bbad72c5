"""Validation of every section of a (migrated) routertool.yaml into the typed RouterConfig of config_schema.py.

`validate` collects every problem before failing, each with its dotted path and, where the YAML tells, its line
(`at_line`), and raises one RouterError listing them (`invalid_config`, exit 2).
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from .config_schema import (
    BOOTSTRAP_DEFAULTS,
    CURRENT_VERSION,
    DEFAULT_HEALTH_PATH,
    DEFAULT_TIER,
    ENV_NAME,
    EXTRA_SERVICE_KEYS,
    LITELLM_MODES,
    MAX_LITELLM_WORKERS,
    MAX_SECRET_BYTES,
    NAME,
    PROVIDER_KEYS,
    PROVIDER_TYPES,
    REDIS_DEFAULTS,
    REDIS_KEYS,
    REDIS_PASSWORD_ENV,
    REDIS_PERSISTENCE,
    RELEASE_PIN,
    REPOSITORY,
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
from .layout import DEFAULT_RUNTIME_DIR, SERVICES
from .yamlsafe import CONTROL, escape_char, kind_of, one_line, shown


class _Problems:
    def __init__(self, lines: dict[str, int]):
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(one_line(at_line(self.lines, path, f"{path}: {message}")))

    def unknown_keys(self, mapping: dict, allowed: set[str], prefix: str) -> None:
        for key in mapping:
            if key in allowed:
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(allowed))}"
            self.add(path, f"unknown key{hint}")


def at_line(lines: dict[str, int], path: str, message: str) -> str:
    line = lines.get(path)
    while line is None and path:
        path = re.sub(r"(\.[^.\[\]]+|\[\d+\])$", "", path) if re.search(r"(\.|\[)", path) else ""
        line = lines.get(path)
    return f"line {line}: {message}" if line else message


def _control_characters(p: _Problems, value: Any, path: str) -> None:
    """One rule for every string of the config, keys included: no control characters. A newline in a model, a
    group name or a variable name could otherwise start a new line, and so new entries, in a rendered config."""
    if isinstance(value, str):
        found = CONTROL.search(value)
        if found:
            excerpt = value if len(value) <= 120 else value[:117] + "..."
            p.add(path, f"contains a control character ({escape_char(found.group())}); names, ids, hosts, "
                        f"paths, models and URLs must be one line of printable text, got {shown(excerpt)}")
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and CONTROL.search(key):
                p.add(sub, "the key contains a control character; keys must be one line of printable text")
            _control_characters(p, item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _control_characters(p, item, f"{path}[{i}]")


def invalid_config(problems: list[str], path: Path | None = None) -> RouterError:
    where = f"{path}" if path else "the config"
    hint = "fix the lines listed, then run `llm-router config check`"
    if len(problems) == 1:
        return RouterError(f"{where}: {problems[0]}", hint=hint, exit_code=USAGE, details=problems)
    return RouterError(f"{where} is invalid ({len(problems)} problems):", hint=hint, exit_code=USAGE,
                       details=problems)


def validate(data: dict, path: Path, lines: dict[str, int] | None = None,
             warnings: list[str] | None = None) -> RouterConfig:
    """Check `data` (already migrated) and build the typed config, or raise one RouterError listing every problem."""
    p = _Problems(lines or {})
    warnings = list(warnings or ())
    root = root_for(path)
    _control_characters(p, data, "")
    p.unknown_keys(data, TOP_KEYS, "")

    version = data.get("config_version")
    if version != CURRENT_VERSION:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        p.add("config_version", f"unsupported version {shown(version)}; supported versions: {supported} "
                                f"(1 is migrated to {CURRENT_VERSION})")

    runtime_dir = _string(p, data, "runtime_dir", str(DEFAULT_RUNTIME_DIR), "")
    default_profile = _string(p, data, "default_profile", "balanced", "")
    if default_profile and not NAME.match(default_profile):
        p.add("default_profile", f"must be a profile name (letters, digits, . _ -), got {shown(default_profile)}")

    bootstrap_raw = _mapping(p, data, "bootstrap")
    p.unknown_keys(bootstrap_raw, set(BOOTSTRAP_DEFAULTS), "bootstrap")
    boot = {k: _string(p, bootstrap_raw, k, d, "bootstrap") for k, d in BOOTSTRAP_DEFAULTS.items()}
    if boot["cliproxy_repository"] and not REPOSITORY.match(boot["cliproxy_repository"]):
        p.add("bootstrap.cliproxy_repository", f"must look like OWNER/NAME, got {shown(boot['cliproxy_repository'])}")
    if boot["cliproxy_version"] and boot["cliproxy_version"] != "latest" \
            and not RELEASE_PIN.match(boot["cliproxy_version"]):
        p.add("bootstrap.cliproxy_version", "must be a release tag like v7.2.31, v6.9.28-0 or v7.1.5-0-plus, or "
              f"\"latest\", got {shown(boot['cliproxy_version'])}")
    if boot["github_api_url"] and not re.match(r"^https?://", boot["github_api_url"]):
        p.add("bootstrap.github_api_url", f"must be an http(s) URL, got {shown(boot['github_api_url'])}")

    services_raw = _mapping(p, data, "services")
    redis = _validate_redis(p, services_raw, warnings)
    services = _validate_services(p, {k: v for k, v in services_raw.items() if k != "redis"}, root)
    if redis is not None and redis.managed:
        services = {"redis": ServiceConfig(name="redis", host=redis.host, port=redis.port, readiness_path="/",
                                           health_path="/", startup_timeout=float(
                                               _mapping(p, services_raw, "redis", "services").get(
                                                   "startup_timeout", REDIS_DEFAULTS["startup_timeout"]))),
                    **services}
        for name, svc in services.items():
            if name != "redis" and svc.port == redis.port:
                p.add("services.redis.port", f"port {redis.port} is already used by services.{name}")
    providers = _validate_providers(p, _mapping(p, data, "providers"))
    models = _validate_models(p, data.get("models"), providers)

    secret_files: dict[str, Path] = {}
    for name, file in _mapping(p, data, "secret_files").items():
        if not ENV_NAME.match(str(name)):
            p.add(f"secret_files.{name}", "must be an environment variable name (letters, digits, _)")
        elif not isinstance(file, str) or not file.strip():
            p.add(f"secret_files.{name}", f"must be a file path, got {shown(file)}")
        else:
            secret_files[str(name)] = _resolve(root, file)
            unusable = _not_a_readable_file(secret_files[str(name)], MAX_SECRET_BYTES)
            if unusable:
                p.add(f"secret_files.{name}", unusable)

    if p.items:
        raise invalid_config(p.items, path)
    return RouterConfig(
        path=path, root=root, config_version=CURRENT_VERSION, runtime_dir=_resolve(root, runtime_dir),
        default_profile=default_profile, bootstrap=BootstrapConfig(**boot), services=services,
        providers=providers, models=tuple(models), secret_files=secret_files,
        warnings=tuple(warnings or ()), raw=data, redis=redis)


def _not_a_readable_file(path: Path, limit: int) -> str | None:
    """Why the existing `path` cannot be a secret file (a FIFO, a device, a folder, too large), else None. A stat
    only: it never opens the file, so a FIFO cannot block it."""
    import stat

    try:
        info = path.stat()
    except (OSError, ValueError):
        return None  # missing (reported as an unset secret) or unreadable: the read treats it as unset
    if stat.S_ISREG(info.st_mode):
        return f"{path} is larger than {limit} bytes" if info.st_size > limit else None
    kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
            else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "not a regular file")
    return f"{path} is {kind}; a secret file must be a regular file"


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def _mapping(p: _Problems, data: dict, key: str, prefix: str = "") -> dict:
    value = data.get(key)
    path = f"{prefix}.{key}" if prefix else key
    if value is None:
        return {}
    if not isinstance(value, dict):
        p.add(path, f"must be a mapping, got {kind_of(value)}")
        return {}
    return value


def _string(p: _Problems, data: dict, key: str, default: str | None, prefix: str) -> str:
    value = data.get(key, default)
    path = f"{prefix}.{key}" if prefix else key
    if value is None and default is None:
        return ""
    if not isinstance(value, str) or not value.strip():
        p.add(path, f"must be a non-empty string, got {shown(value)}")
        return ""
    return value.strip()


def _validate_services(p: _Problems, raw: dict, root: Path) -> dict[str, ServiceConfig]:
    p.unknown_keys(raw, set(SERVICES), "services")
    result: dict[str, ServiceConfig] = {}
    for name in SERVICES:
        prefix = f"services.{name}"
        given = _mapping(p, raw, name, "services")
        p.unknown_keys(given, SERVICE_KEYS | EXTRA_SERVICE_KEYS[name], prefix)
        merged = {**SERVICE_DEFAULTS[name], **given}
        host = _string(p, merged, "host", None, prefix)
        port = merged.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            p.add(f"{prefix}.port", f"must be an integer between 1 and 65535, got {shown(port)}")
            port = 0
        paths = {  # health_path is the readiness fallback
            "readiness_path": given.get("readiness_path", given.get("health_path", merged["readiness_path"])),
            "health_path": merged.get("health_path", DEFAULT_HEALTH_PATH),
        }
        for key, value in paths.items():
            if not isinstance(value, str) or not value.startswith("/"):
                p.add(f"{prefix}.{key}", f"must be a URL path starting with '/', got {shown(value)}")
                paths[key] = "/"
        timeout = merged.get("startup_timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            p.add(f"{prefix}.startup_timeout", f"must be a number of seconds between 1 and 3600, got {shown(timeout)}")
            timeout = 1
        config_file = None
        if name == "cliproxyapi_plus":
            value = merged.get("config_file")
            if value is not None and (not isinstance(value, str) or not value.strip()):
                p.add(f"{prefix}.config_file", f"must be a file path, got {shown(value)}")
            elif value:
                config_file = _resolve(root, value)
        extra: dict[str, Any] = {}
        if name == "litellm":
            extra = _validate_litellm_extras(p, merged, prefix)
        result[name] = ServiceConfig(name=name, host=host, port=port, startup_timeout=float(timeout),
                                     config_file=config_file, **paths, **extra)
    ports: dict[int, str] = {}
    for name, svc in result.items():
        if svc.port and svc.port in ports:
            p.add(f"services.{name}.port", f"port {svc.port} is already used by services.{ports[svc.port]}")
        ports.setdefault(svc.port, name)
    return result


def _validate_litellm_extras(p: _Problems, merged: dict, prefix: str) -> dict[str, Any]:
    mode = merged.get("mode")
    if mode not in LITELLM_MODES:
        p.add(f"{prefix}.mode", f"must be one of {', '.join(LITELLM_MODES)}, got {shown(mode)}")
    boot = merged.get("worker_boot_timeout")
    if isinstance(boot, bool) or not isinstance(boot, (int, float)) or not 1 <= boot <= 600:
        p.add(f"{prefix}.worker_boot_timeout", f"must be a number of seconds between 1 and 600, got {shown(boot)}")
        boot = 10
    rss = merged.get("max_rss_mb")
    if rss is not None and (isinstance(rss, bool) or not isinstance(rss, int) or rss < 64):
        p.add(f"{prefix}.max_rss_mb", f"must be a whole number of megabytes, at least 64, got {shown(rss)}")
        rss = None
    from .usage_schema import check_settings  # the usage store's retention (docs/usage.md); read from raw by usage.py
    for key, problem in check_settings(merged.get("usage_max_days", 30), merged.get("usage_max_mb", 64)):
        p.add(f"{prefix}.{key}", f"{problem}, got {shown(merged.get(key))}")
    workers = merged.get("workers")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_LITELLM_WORKERS:
        p.add(f"{prefix}.workers", f"must be a whole number of workers between 1 and {MAX_LITELLM_WORKERS}, "
                                   f"got {shown(workers)}")
        workers = 1
    elif workers > 1 and mode == "uvicorn":
        p.add(f"{prefix}.workers", f"needs mode: gunicorn (uvicorn runs one process), got {workers} workers")
    return {"mode": mode, "worker_boot_timeout": float(boot), "max_rss_mb": rss, "workers": workers}


REDIS_URL = re.compile(r"^(?P<scheme>rediss?)://(?P<auth>[^@/]*@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
                       r"(?::(?P<port>\d{1,5}))?(?:/(?P<db>\d{1,2}))?/?\Z")


def _validate_redis(p: _Problems, services_raw: dict, warnings: list[str] | None) -> RedisConfig | None:
    """services.redis: None when absent or `enabled: false`; an external one when `url` is given."""
    prefix = "services.redis"
    given = _mapping(p, services_raw, "redis", "services")
    p.unknown_keys(given, REDIS_KEYS, prefix)
    merged = {**REDIS_DEFAULTS, **given}
    enabled = merged.get("enabled")
    if not isinstance(enabled, bool):
        p.add(f"{prefix}.enabled", f"must be true or false, got {shown(enabled)}")
        return None
    url = given.get("url")
    if url is None and not enabled:
        return None
    host = _string(p, merged, "host", None, prefix)
    port = merged.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        p.add(f"{prefix}.port", f"must be an integer between 1 and 65535, got {shown(port)}")
        port = 0
    timeout = merged.get("startup_timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        p.add(f"{prefix}.startup_timeout", f"must be a number of seconds between 1 and 3600, got {shown(timeout)}")
    persistence = merged.get("persistence")
    if persistence not in REDIS_PERSISTENCE:
        p.add(f"{prefix}.persistence", f"must be one of {', '.join(REDIS_PERSISTENCE)}, got {shown(persistence)}")
    binary = _string(p, merged, "binary", None, prefix)
    if url is not None:
        for key in ("host", "port", "persistence", "binary", "startup_timeout"):
            if key in given:
                p.add(f"{prefix}.{key}", "applies to the Redis llm-router runs; with `url` it uses yours: remove it")
        match = REDIS_URL.match(url) if isinstance(url, str) else None
        if match is None:
            p.add(f"{prefix}.url", f"must look like redis://HOST:PORT/DB or rediss://HOST:PORT/DB (TLS), got "
                                   f"{shown(url) if not isinstance(url, str) or '@' not in url else 'a URL with @'}")
            return None
        if match.group("auth"):
            p.add(f"{prefix}.url", f"must not hold a user or password (routertool.yaml is not a secret): give the "
                                   f"password as {REDIS_PASSWORD_ENV} (environment or secret_files)")
            return None
        rhost = match.group("host").strip("[]")
        rport = int(match.group("port") or 6379)
        if not 1 <= rport <= 65535:
            p.add(f"{prefix}.url", f"port must be between 1 and 65535, got {rport}")
        if warnings is not None and not is_loopback_host(rhost) and match.group("scheme") == "redis":
            warnings.append(f"services.redis.url {url} is plain redis:// to another machine: the password and the "
                            "router state cross the network unencrypted; use rediss:// (TLS) or an SSH tunnel "
                            "(docs/scale-out.md)")
        return RedisConfig(managed=False, host=rhost, port=rport, url=url.rstrip("/"), db=int(match.group("db") or 0))
    if warnings is not None and host and not is_loopback_host(host):
        warnings.append(f"services.redis.host is {host}: Redis will be reachable from other machines (password "
                        "only, no TLS); keep 127.0.0.1 and use an SSH tunnel unless you mean it (docs/scale-out.md)")
    return RedisConfig(managed=True, host=host, port=port, persistence=str(persistence), binary=binary)


def _validate_providers(p: _Problems, raw: dict) -> dict[str, ProviderConfig]:
    result: dict[str, ProviderConfig] = {}
    for name, spec in raw.items():
        prefix = f"providers.{name}"
        if not NAME.match(str(name)):
            p.add(prefix, "provider names use letters, digits, . _ -")
            continue
        if not isinstance(spec, dict):
            p.add(prefix, f"must be a mapping, got {kind_of(spec)}")
            continue
        p.unknown_keys(spec, PROVIDER_KEYS, prefix)
        ptype = spec.get("type")
        if ptype not in PROVIDER_TYPES:
            close = difflib.get_close_matches(str(ptype), PROVIDER_TYPES, n=1)
            extra = f"; did you mean '{close[0]}'?" if close else ""
            p.add(f"{prefix}.type", f"must be one of {', '.join(PROVIDER_TYPES)}, got {shown(ptype)}{extra}")
            continue
        tier = spec.get("tier", DEFAULT_TIER[ptype])
        if tier not in TIERS:
            p.add(f"{prefix}.tier", f"must be one of {', '.join(TIERS)}, got {shown(tier)}")
        api_base = spec.get("api_base")
        key_env = spec.get("api_key_env")
        if ptype == "cliproxyapi_plus":
            for key in ("api_base", "api_key_env"):
                if key in spec:
                    p.add(f"{prefix}.{key}", "is set by llm-router for cliproxyapi_plus providers "
                                             f"(services.cliproxyapi_plus and {UPSTREAM_KEY_ENV}); remove it")
        else:
            if not isinstance(api_base, str) or not re.match(r"^https?://[^/\s]+", api_base):
                p.add(f"{prefix}.api_base", f"must be an http(s) URL, got {shown(api_base)}")
            if not isinstance(key_env, str) or not ENV_NAME.match(key_env):
                p.add(f"{prefix}.api_key_env",
                      f"must name an environment variable (letters, digits, _), got {shown(key_env)}")
        result[str(name)] = ProviderConfig(name=str(name), type=ptype, tier=str(tier),
                                           api_base=api_base.rstrip("/") if isinstance(api_base, str) else None,
                                           api_key_env=key_env if isinstance(key_env, str) else None)
    return result


def _validate_models(p: _Problems, raw: Any, providers: dict[str, ProviderConfig]) -> list[ModelGroup]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        p.add("models", f"must be a list of model groups, got {kind_of(raw)}")
        return []
    groups: list[ModelGroup] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        prefix = f"models[{i}]"
        if not isinstance(entry, dict):
            p.add(prefix, f"must be a mapping with name and deployments, got {kind_of(entry)}")
            continue
        p.unknown_keys(entry, {"name", "deployments"}, prefix)
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            p.add(f"{prefix}.name", f"must be a model name (letters, digits, . _ -), got {shown(name)}")
            name = None
        elif name in seen:
            p.add(f"{prefix}.name", f"duplicate model name '{name}' (also models[{seen[name]}])")
        else:
            seen[name] = i
        deployments_raw = entry.get("deployments")
        if not isinstance(deployments_raw, list) or not deployments_raw:
            p.add(f"{prefix}.deployments", "must be a non-empty list of {provider, model}"
                  + ("" if deployments_raw is None or isinstance(deployments_raw, list)
                     else f", got {kind_of(deployments_raw)}"))
            continue
        deployments = []
        for j, dep in enumerate(deployments_raw):
            dpath = f"{prefix}.deployments[{j}]"
            if not isinstance(dep, dict):
                p.add(dpath, f"must be a mapping with provider and model, got {kind_of(dep)}")
                continue
            p.unknown_keys(dep, {"provider", "model", "rpm", "tpm"}, dpath)
            provider, model = dep.get("provider"), dep.get("model")
            limits = {}
            for key in ("rpm", "tpm"):
                value = dep.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                    p.add(f"{dpath}.{key}", f"must be a whole number of {'requests' if key == 'rpm' else 'tokens'} "
                                            f"per minute, at least 1, got {shown(value)}")
                elif value is not None:
                    limits[key] = value
            if not isinstance(provider, str) or provider not in providers:
                known = ", ".join(sorted(providers)) or "none defined"
                close = difflib.get_close_matches(str(provider), sorted(providers), n=1)
                extra = f"; did you mean '{close[0]}'?" if close else ""
                p.add(f"{dpath}.provider", f"unknown provider {shown(provider)} (known: {known}){extra}")
            if not isinstance(model, str) or not model.strip():
                p.add(f"{dpath}.model", f"must be the upstream model id, got {shown(model)}")
            if isinstance(provider, str) and isinstance(model, str):
                deployments.append(Deployment(provider=provider, model=model.strip(), **limits))
        if name and deployments:
            keys = [(d.provider, d.model) for d in deployments]
            duplicates = {d for d in deployments if keys.count((d.provider, d.model)) > 1}
            for dup in duplicates:
                p.add(f"{prefix}.deployments", f"deployment {dup.provider}/{dup.model} is listed twice")
            groups.append(ModelGroup(name=name, deployments=tuple(deployments)))
    return groups
