"""Doctor's checks of what the stack will serve and who may use it: the profile LiteLLM will load, the secrets it
and the providers need (by source, never a value), file modes, loopback and remote management, the accounts that
serve the CLIProxyAPIPlus models (with token expiry), and Redis when the router state is shared.

Read-only like all of doctor (see checks/doctor.py): no key is generated, no file written.
"""
from __future__ import annotations

import re

from .. import config as config_mod
from .. import stack
from ..config import GENERATED_SECRETS, RouterConfig
from ..errors import RouterError
from ..litellm import env as litellm_env
from . import FAIL, OK, WARN, Finding
from .doctor_runtime import compat_models, rel

_ENV_REF = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")


# --------------------------------------------------------------------------- profile and secrets

def _profile_name(cfg: RouterConfig) -> tuple[str, bool]:
    from .. import profiles

    info = profiles.active(cfg)
    return (info["name"], True) if info else (cfg.default_profile, False)


def check_profile(cfg: RouterConfig) -> tuple[list[Finding], str | None]:
    """The active (else default) profile renders a valid config; returns the text LiteLLM will load."""
    from .. import profiles

    name, is_active = _profile_name(cfg)
    which = "active" if is_active else "default, not activated yet"
    try:
        text = profiles.render(cfg, name)
    except RouterError as exc:
        detail = exc.message + (f" ({exc.details[0]})" if len(exc.details) > 1 else "")
        return [Finding("profile", FAIL, detail, fix=exc.hint or f"llm-router profile show {name}")], None
    active_path = cfg.layout.active_config
    if is_active and active_path.is_file():
        current = active_path.read_text(encoding="utf-8")
        if current != text:
            return [Finding("profile", WARN, f"{name} ({which}): the active config differs from what its template "
                            "renders now (template or routertool.yaml changed)",
                            fix=f"llm-router profile set {name}", path=str(active_path))], current
        return [Finding("profile", OK, f"{name} ({which}) renders a valid config", path=str(active_path))], current
    return [Finding("profile", OK, f"{name} ({which}) renders a valid config")], text


def check_secrets(cfg: RouterConfig, profile_text: str | None) -> list[Finding]:
    """Every key the profile's config references, plus every provider key the model groups use; never a value."""
    needed: dict[str, str] = {}
    for name in _ENV_REF.findall(profile_text or ""):
        needed.setdefault(name, "the profile")
    for var, provider in litellm_env.required_secrets(cfg).items():
        needed[var] = f"provider {provider}"
    present, findings = [], []
    for name, who in needed.items():
        source = cfg.secret_source(name)
        if source == "missing" and name in GENERATED_SECRETS:
            present.append(f"{name} (generated at first start)")
        elif source == "missing":
            where = cfg.secret_files.get(name)
            detail = f"{name} ({who}) is not set" + (f" and {where} is missing or empty" if where else "")
            fix = (f"export {name}=...  or put it in {where} (chmod 600)" if where else
                   f"export {name}=...  or add `secret_files: {{{name}: path/to/file}}` to {rel(cfg, cfg.path)}")
            findings.append(Finding("secrets", FAIL, detail, fix=fix))
        else:
            present.append(f"{name} ({source})")
    if present:
        findings.insert(0, Finding("secrets", OK, "set: " + ", ".join(present)))
    return findings


def check_permissions(cfg: RouterConfig) -> list[Finding]:
    from .security import permission_findings

    return permission_findings(cfg, fix=False)


def check_exposure(cfg: RouterConfig) -> list[Finding]:
    """Both services on loopback; CLIProxyAPIPlus remote management off."""
    import yaml

    findings = []
    for name in stack.ORDER:
        svc = cfg.services[name]
        if not svc.is_loopback:
            findings.append(Finding("loopback", FAIL, f"services.{name}.host is {svc.host}: reachable from other "
                                    "machines", fix=f"set services.{name}.host: 127.0.0.1 in {rel(cfg, cfg.path)}"))
    user_file = cfg.services["cliproxyapi_plus"].config_file
    if user_file is not None and user_file.is_file():
        try:
            data = yaml.safe_load(user_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            return findings + [Finding("loopback", FAIL, f"cannot read {rel(cfg, user_file)}: "
                                       f"{str(exc).splitlines()[0]}",
                                       fix="fix its YAML (start from config/examples/cliproxyapi.yaml)")]
        remote = data.get("remote-management") if isinstance(data, dict) else None
        if isinstance(remote, dict) and remote.get("allow-remote"):
            findings.append(Finding("loopback", WARN, f"{rel(cfg, user_file)} sets remote-management.allow-remote: "
                                    "true (llm-router overrides it with false)",
                                    fix=f"set remote-management.allow-remote: false in {rel(cfg, user_file)}"))
    runtime = cfg.layout.cliproxy_runtime_config
    if runtime.is_file():
        try:
            data = yaml.safe_load(runtime.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            data = {}
        remote = data.get("remote-management") if isinstance(data, dict) else None
        host = str(data.get("host", "")) if isinstance(data, dict) else ""
        if (isinstance(remote, dict) and remote.get("allow-remote")) or not config_mod.is_loopback_host(host or "-"):
            findings.append(Finding("loopback", FAIL, f"{rel(cfg, runtime)} (what CLIProxyAPIPlus runs on) is not "
                                    "loopback-only with remote management off",
                                    fix="llm-router service restart cliproxyapi_plus  (rewrites it)"))
    if not findings:
        findings.append(Finding("loopback", OK, "both services listen on loopback; CLIProxyAPIPlus remote management "
                                "is off"))
    return findings


# --------------------------------------------------------------------------- accounts

def _oauth_providers_for(model: str) -> set[str]:
    """Which OAuth account types CLIProxyAPIPlus can serve `model` with (the catalogue in cliproxy_lines)."""
    from ..cliproxy_lines import oauth_providers_for

    return oauth_providers_for(model)


def _accounts(cfg: RouterConfig) -> list[dict]:
    from .. import auth, keys
    from ..auth.files import auth_files, describe

    # auth.status asks a running proxy, which would generate the management key if it were missing: doctor writes
    # nothing, so in that (odd) case it reads the files only.
    if stack.is_running(cfg, "cliproxyapi_plus") and not cfg.secret(keys.MANAGEMENT_KEY):
        return [describe(p) for p in auth_files(cfg.layout.auths_dir)]
    return auth.status(cfg)["accounts"]


def _usable(info: dict) -> bool:
    left = info.get("seconds_left")
    return bool(info.get("provider")) and (left is None or left > 0) and \
        info.get("proxy_status") not in ("disabled", "unavailable")


def check_accounts(cfg: RouterConfig) -> list[Finding]:
    """At least one usable account for every CLIProxyAPIPlus model the model groups use, with token expiry."""
    from ..auth.files import CODEX, COPILOT, span

    login = {CODEX: "llm-router auth codex login", COPILOT: "llm-router auth copilot login"}
    cliproxy = {name for name, p in cfg.providers.items() if p.type == "cliproxyapi_plus"}
    used = {d.model for g in cfg.models for d in g.deployments if d.provider in cliproxy}
    models = sorted(used - compat_models(cfg))
    if not models:
        return [Finding("accounts", OK, "no model group uses a CLIProxyAPIPlus account")]
    accounts = _accounts(cfg)
    usable = [a for a in accounts if _usable(a)]
    by_provider: dict[str, list[dict]] = {}
    for info in usable:
        by_provider.setdefault(info["provider"], []).append(info)
    findings = []
    needed: set[str] = set()
    unserved: dict[tuple[str, ...], list[str]] = {}  # account types that could serve them -> models
    for model in models:
        providers = _oauth_providers_for(model)
        needed |= providers
        if not any(by_provider.get(p) for p in providers) and (providers or not usable):
            unserved.setdefault(tuple(sorted(providers)) or (CODEX, COPILOT), []).append(model)
    for providers, names in unserved.items():
        findings.append(Finding("accounts", FAIL, f"no usable {' or '.join(providers)} account for "
                                f"{', '.join(names)}", fix=" or ".join(login[p] for p in providers)))
    for provider in sorted(needed | set(by_provider)):
        mine = by_provider.get(provider, [])
        if not mine:
            continue
        parts = []
        for info in mine:
            left = info.get("seconds_left")
            parts.append(f"{info.get('account') or info.get('file')} "
                         f"({'no expiry' if left is None else 'expires in ' + span(left)})")
        findings.append(Finding("accounts", OK, f"{provider}: {len(mine)} usable: {', '.join(parts)}"))
    for info in accounts:
        for problem in info.get("problems") or []:
            if problem.startswith("mode "):
                continue  # the permissions check reports modes, with the chmod fix
            provider = info.get("provider")
            fix = login.get(provider, "llm-router auth status")
            findings.append(Finding("accounts", WARN, f"{info.get('file')}: {problem}", fix=fix,
                                    path=info.get("path")))
    return findings


# --------------------------------------------------------------------------- redis

def check_redis(cfg: RouterConfig) -> list[Finding]:
    """services.redis (shared router state): the binary, loopback, the password, and whether Redis answers
    AUTH + PING (read-only: a RESP probe; no password is generated). Nothing when Redis is off."""
    from .. import redis_service

    redis = cfg.redis
    if redis is None:
        return []
    findings = []
    where = f"{redis.host}:{redis.port}" if redis.managed else str(redis.url)
    if redis.managed:
        binary = redis_service.find_binary(redis)
        findings.append(Finding("redis-binary", OK, f"{binary} found") if binary else Finding(
            "redis-binary", FAIL, f"{redis.binary} is not installed (services.redis.enabled is true)",
            fix="sudo apt-get install redis-server  (or set services.redis.url to an external Redis)"))
        if not redis.is_loopback:
            findings.append(Finding("redis-loopback", WARN, f"services.redis.host is {redis.host}: Redis is reachable "
                                    "from other machines, protected by its password only (no TLS)",
                                    fix="set services.redis.host: 127.0.0.1 and reach it through an SSH tunnel "
                                        "(docs/scale-out.md)"))
    elif not redis.is_loopback and not redis.tls:
        findings.append(Finding("redis-loopback", WARN, f"services.redis.url {redis.url} is plain redis:// to "
                                "another machine: the password and the router state are sent unencrypted",
                                fix="use rediss:// (TLS) or an SSH tunnel to 127.0.0.1 (docs/scale-out.md)"))
    source = cfg.secret_source(config_mod.REDIS_PASSWORD_ENV)
    if source == "missing":
        if redis.managed:
            findings.append(Finding("redis-password", OK, "REDIS_PASSWORD will be generated into secrets/ (0600) "
                                    "at the first `service start`"))
        else:
            findings.append(Finding("redis-password", FAIL, f"REDIS_PASSWORD is not set for the external Redis "
                                    f"{redis.url}", fix="export REDIS_PASSWORD, or name a file for it under "
                                    "secret_files (copy it from the first host's .router/secrets/REDIS_PASSWORD)"))
            return findings
    else:
        findings.append(Finding("redis-password", OK, f"REDIS_PASSWORD is set ({source})"))
    probe = redis_service.probe_config(cfg)
    if probe.ready:
        findings.append(Finding("redis", OK, f"Redis {where} answers (PING in {probe.latency_ms:.0f} ms): LiteLLM's "
                                "cooldowns and rpm/tpm counters are shared by every worker and instance"))
    elif redis.managed and not stack.is_running(cfg, "redis"):
        findings.append(Finding("redis", WARN if stack.is_running(cfg, "litellm") else OK,
                                f"Redis {where} is not running" + (": LiteLLM serves from each worker's in-memory "
                                "state (cooldowns and rpm limits are per worker)" if stack.is_running(
                                    cfg, "litellm") else "; `service start` starts it"),
                                fix="llm-router service start redis"))
    else:
        findings.append(Finding("redis", FAIL if "password" in (probe.error or "") else WARN,
                                f"Redis {where}: {probe.error}; LiteLLM serves from each worker's in-memory state",
                                fix="check REDIS_PASSWORD and services.redis (docs/scale-out.md)"))
    return findings
