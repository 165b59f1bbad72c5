"""Local keys llm-router generates and keeps in the private secrets folder (0600 files in a 0700 folder)."""
from __future__ import annotations

from .config import REDIS_PASSWORD_ENV, RouterConfig
from .fsutil import write_private

MANAGEMENT_KEY = "CLIPROXY_MANAGEMENT_KEY"  # plaintext CLIProxyAPIPlus management key; only we keep it


def ensure_key(cfg: RouterConfig, name: str) -> str:
    """The secret `name` from the environment, `secret_files` or a previous generation; generated once if unset."""
    value = cfg.secret(name)
    if value:
        return value
    import secrets  # here, not at the top: `status` and most commands never generate a key

    # The Redis password (services.redis) is a password, not an API key: no "sk-" prefix. It is written to
    # runtime/redis/redis.conf (0600) for redis-server and handed to LiteLLM in its environment, never on a
    # command line.
    value = ("" if name == REDIS_PASSWORD_ENV else "sk-") + secrets.token_urlsafe(32)
    write_private(cfg.layout.secret_file(name), value + "\n")
    return value
