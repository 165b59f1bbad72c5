"""LiteLLM's environment: the offline switches, the secrets the rendered config references as os.environ/NAME,
and the fingerprint of those secrets (a change needs a restart: a worker swap keeps the master's environment)."""
from __future__ import annotations

from .. import keys
from ..config import MASTER_KEY_ENV, REDIS_PASSWORD_ENV, UPSTREAM_KEY_ENV, RouterConfig
from ..supervisor.services import child_env

# LiteLLM makes no outbound call except to its upstreams with these (reference: litellm.md §4).
LITELLM_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "true",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_OFFLINE_MODE": "true",  # not read by 1.108.7 (the LITELLM_LOCAL_* switches above are); harmless
    "LITELLM_LOG": "INFO",
}


def required_secrets(cfg: RouterConfig) -> dict[str, str]:
    """Provider key variables that the configured model groups use: {VAR: provider}."""
    used = {d.provider for group in cfg.models for d in group.deployments}
    return {cfg.providers[p].key_env: p for p in sorted(used) if cfg.providers[p].type != "cliproxyapi_plus"}


def litellm_env(cfg: RouterConfig) -> dict[str, str]:
    """LiteLLM's environment: ours without stray keys, the offline switches, and every secret the config names
    (the local keys generated when unset), which rendered configs reference as os.environ/NAME."""
    secrets_env = {name: cfg.secret(name) or "" for name in cfg.secret_names()}
    secrets_env[UPSTREAM_KEY_ENV] = keys.ensure_key(cfg, UPSTREAM_KEY_ENV)
    secrets_env[MASTER_KEY_ENV] = keys.ensure_key(cfg, MASTER_KEY_ENV)
    if cfg.redis is not None and cfg.redis.managed:  # so a LiteLLM started before its Redis still gets in later
        secrets_env[REDIS_PASSWORD_ENV] = keys.ensure_key(cfg, REDIS_PASSWORD_ENV)
    return child_env({**LITELLM_OFFLINE_ENV, **{k: v for k, v in secrets_env.items() if v}})


def env_fingerprint(cfg: RouterConfig) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(cfg.secret_names()):
        digest.update(f"{name}\0{cfg.secret(name) or ''}\0".encode())
    return digest.hexdigest()
