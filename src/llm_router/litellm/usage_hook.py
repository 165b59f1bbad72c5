"""`usage_recorder`: the LiteLLM callback (`litellm_settings.callbacks`) that feeds the usage store (usage.py).

Runs inside each LiteLLM worker. Per deployment attempt LiteLLM calls `async_log_success_event` or
`async_log_failure_event`; the hook turns `kwargs["standard_logging_object"]` (model group, `model_id` = the
deployment id of `model_info.id`, call type, stream flag, times, token counts) and the exception's status and
class into one row and hands it to the store's queue. That is all it does on the request path (a dict and a
`put_nowait`; measured by `inv bench.usage`); everything else happens in the store's thread.

Cooldowns: LiteLLM 1.108.7 tells no callback when it cools a deployment (`router_cooldown_event_callback` only
updates Prometheus) and exposes no route for them (BerriAI/litellm#25504), so the store's thread reads the router's
own cooldown cache (`router.cooldown_cache`, keys `deployment:<id>:cooldown` holding `timestamp`,
`cooldown_time`, `status_code`) every 0.5 s without changing it, and records each episode's start and end. A
`cooldown reset` request (control.json) is applied by deleting those keys and the deployment's fail counters
(`deployment:<id>:allowed_fails*`, `<id>:fails`) from the router's caches, in this process: the next request may go
to the deployment again, with no restart.

Where: `$LLM_ROUTER_USAGE_DIR` if set, else `<runtime_dir>/usage` derived from the config LiteLLM loaded
(`<runtime_dir>/litellm/<name>.yaml`); any other config path (a hand-run LiteLLM) records nothing. Retention:
`services.litellm.usage_max_days` / `usage_max_mb` from the parse of routertool.yaml that `service start` leaves in
`<state>/cache/` ($LLM_ROUTER_USAGE_MAX_DAYS / $LLM_ROUTER_USAGE_MAX_MB override), else the defaults.

Shared: when that parse has `services.redis` (managed, or an external `url`), the store's thread also shares rows
with the other instances through Redis (usage_share.py), authenticating with the REDIS_PASSWORD LiteLLM was given
(litellm/env.py); `LLM_ROUTER_USAGE_SHARE=0` keeps the rows local.

Importing this module does not import LiteLLM: `usage_recorder` is built on first attribute access.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from .. import usage as store
from ..config_rules import REDIS_URL
from ..config_schema import REDIS_DEFAULTS, REDIS_PASSWORD_ENV
from ..layout import Layout
from ..usage_share import RedisTarget

DIR_ENV = "LLM_ROUTER_USAGE_DIR"
MAX_DAYS_ENV = "LLM_ROUTER_USAGE_MAX_DAYS"
MAX_MB_ENV = "LLM_ROUTER_USAGE_MAX_MB"
SHARE_ENV = "LLM_ROUTER_USAGE_SHARE"
CALL_PROTOCOLS = {"acompletion": "chat", "completion": "chat", "aresponses": "responses", "responses": "responses",
                  "anthropic_messages": "messages", "atext_completion": "completions",
                  "text_completion": "completions", "aembedding": "embeddings", "embedding": "embeddings"}
ROUTE_PROTOCOLS = (("/chat/completions", "chat"), ("/responses", "responses"), ("/messages", "messages"),
                   ("/completions", "completions"), ("/embeddings", "embeddings"))

_lock = threading.Lock()
_state: dict[str, Any] = {}  # pid -> the writer (None when the store is off), "instance" -> the callback


# --------------------------------------------------------------------------- where and how (pure)

def usage_dir_for(config_path: str | os.PathLike | None, env: dict | None = None) -> Path | None:
    env = os.environ if env is None else env
    if env.get(DIR_ENV):
        return Path(env[DIR_ENV])
    if not config_path:
        return None
    layout = Layout.of_litellm_config(Path(config_path))
    return layout.usage_dir if layout else None


def _services(usage_dir: Path) -> dict:
    """`services` of the routertool.yaml parse `service start` left (config.remember_parse); {} when none."""
    cache = Layout.of_runtime_dir(usage_dir.parent).parse_cache  # usage_dir is <runtime>/usage
    try:
        with open(cache, "rb") as handle:
            data = json.loads(handle.read(8 << 20)).get("data") or {}
        services = data.get("services") or {}
        return services if isinstance(services, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def settings_for(usage_dir: Path, env: dict | None = None) -> store.Settings:
    env = os.environ if env is None else env
    max_days: Any = store.DEFAULT_MAX_DAYS
    max_mb: Any = store.DEFAULT_MAX_MB
    litellm = _services(usage_dir).get("litellm") or {}
    if isinstance(litellm, dict):
        max_days = litellm.get("usage_max_days", max_days)
        max_mb = litellm.get("usage_max_mb", max_mb)
    for name, current in ((MAX_DAYS_ENV, "d"), (MAX_MB_ENV, "m")):
        if env.get(name):
            try:
                value = float(env[name])
            except ValueError:
                continue
            if current == "d":
                max_days = value
            else:
                max_mb = value
    return store.settings_from(max_days, max_mb)


def redis_for(usage_dir: Path, env: dict | None = None) -> RedisTarget | None:
    """The stack's Redis (as config_rules reads `services.redis`) with REDIS_PASSWORD from the environment; None
    when the parse has no Redis (or a bad one) or $LLM_ROUTER_USAGE_SHARE is 0."""
    env = os.environ if env is None else env
    if str(env.get(SHARE_ENV, "")).strip().lower() in ("0", "off", "false", "no"):
        return None
    given = _services(usage_dir).get("redis")
    if not isinstance(given, dict):
        return None
    secret = env.get(REDIS_PASSWORD_ENV) or None
    url = given.get("url")
    if isinstance(url, str):
        match = REDIS_URL.match(url)
        if match is None or match.group("auth"):
            return None
        return RedisTarget(host=match.group("host").strip("[]"), port=int(match.group("port") or 6379),
                           password=secret, tls=match.group("scheme") == "rediss", db=int(match.group("db") or 0))
    merged = {**REDIS_DEFAULTS, **given}
    host, port = merged.get("host"), merged.get("port")
    if merged.get("enabled") is not True or not isinstance(host, str) or isinstance(port, bool) \
            or not isinstance(port, int) or not 1 <= port <= 65535:
        return None
    return RedisTarget(host=host, port=port, password=secret)


def outcome_of(exception: BaseException | None) -> tuple[str, int | None, str | None]:
    """(outcome, HTTP status, exception class) of a failed attempt; never the message."""
    if exception is None:
        return "error", None, None
    name = type(exception).__name__
    status = getattr(exception, "status_code", None)
    try:
        status = int(status) if status not in (None, "") else None
    except (TypeError, ValueError):
        status = None
    lowered = name.lower()
    if "timeout" in lowered or status == 408:
        return "timeout", status, name
    if name == "APIConnectionError" or "connection" in lowered:
        return "refused", status, name
    if status == 429 or "ratelimit" in lowered:
        return "429", status or 429, name
    if status is not None and status >= 500:
        return "5xx", status, name
    if status is not None and 400 <= status < 500:
        return "client_error", status, name
    return "error", status, name


def protocol_of(kwargs: dict, slo: dict) -> str:
    params = kwargs.get("litellm_params") or {}
    request = params.get("proxy_server_request") or {}
    url = str(request.get("url") or "") if isinstance(request, dict) else ""
    for suffix, protocol in ROUTE_PROTOCOLS:
        if suffix in url:
            return protocol
    call_type = str(slo.get("call_type") or kwargs.get("call_type") or "")
    return CALL_PROTOCOLS.get(call_type, "other")


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    timestamp = getattr(value, "timestamp", None)
    return float(timestamp()) if callable(timestamp) else None


def row_for(kwargs: dict, start_time: Any, end_time: Any, exception: BaseException | None = None) -> dict:
    slo = kwargs.get("standard_logging_object") or {}
    params = kwargs.get("litellm_params") or {}
    model_info = params.get("model_info") or {}
    metadata = params.get("metadata") or {}
    start = _seconds(start_time) or _seconds(slo.get("startTime"))
    end = _seconds(end_time) or _seconds(slo.get("endTime"))
    stream = bool(slo.get("stream") if slo.get("stream") is not None else kwargs.get("stream"))
    first = _seconds(slo.get("completionStartTime")) or _seconds(kwargs.get("completion_start_time"))
    if exception is None:
        outcome, status, error = "ok", 200, None
    else:
        outcome, status, error = outcome_of(exception)
    headers = (slo.get("hidden_params") or {}).get("additional_headers") or {}
    tokens_in, tokens_out = slo.get("prompt_tokens"), slo.get("completion_tokens")
    if exception is not None and not tokens_in and not tokens_out:
        tokens_in = tokens_out = None
    return {
        "ts": start, "model": slo.get("model_group") or metadata.get("model_group") or kwargs.get("model"),
        "deployment": slo.get("model_id") or model_info.get("id"),
        "provider": slo.get("custom_llm_provider") or params.get("custom_llm_provider"),
        "protocol": protocol_of(kwargs, slo), "stream": stream, "outcome": outcome, "status": status,
        "latency_ms": round((end - start) * 1000, 2) if start is not None and end is not None else None,
        "ttft_ms": round((first - start) * 1000, 2) if stream and first and start and exception is None else None,
        "tokens_in": tokens_in, "tokens_out": tokens_out, "trace": slo.get("trace_id"), "error": error,
        "rl_requests": headers.get("x_ratelimit_remaining_requests"),
        "rl_tokens": headers.get("x_ratelimit_remaining_tokens"),
    }


def is_mocked(kwargs: dict) -> bool:
    """`llm-router smoke`'s mocked requests (litellm_hooks.MOCK_KEY) are not usage: they are not recorded."""
    from .hooks import MOCK_KEY

    params = kwargs.get("litellm_params") or {}
    for source in (params.get("metadata"), params.get("litellm_metadata"), kwargs.get("metadata")):
        if isinstance(source, dict) and source.get(MOCK_KEY):
            return True
    return False


# --------------------------------------------------------------------------- inside LiteLLM

def _router():
    try:
        from litellm.proxy import proxy_server
    except ImportError:
        return None
    return getattr(proxy_server, "llm_router", None)


def _config_path() -> str | None:
    try:
        from litellm.proxy import proxy_server
    except ImportError:
        return None
    return getattr(proxy_server, "user_config_file_path", None) or os.environ.get("CONFIG_FILE_PATH")


def read_cooldowns() -> dict[str, store.CooldownState]:
    """The router's active cooldowns, read from its in-memory cooldown cache without changing it."""
    import time

    router = _router()
    if router is None:
        return {}
    cache = router.cooldown_cache.in_memory_cache
    now = time.time()
    result = {}
    for model_id in router.get_model_ids():
        value = cache.cache_dict.get(f"deployment:{model_id}:cooldown")
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if not isinstance(value, dict):
            continue
        try:
            started = float(value["timestamp"])
            until = started + float(value["cooldown_time"])
        except (KeyError, TypeError, ValueError):
            continue
        expiry = cache.ttl_dict.get(f"deployment:{model_id}:cooldown")
        if until <= now or (expiry is not None and expiry <= now):
            continue
        status = str(value.get("status_code") or "")
        result[model_id] = store.CooldownState(started=started, until=until,
                                               status=int(status) if status.isdigit() else None)
    return result


def clear_cooldowns(deployments: list[str]) -> list[str]:
    """Delete the cooldown and fail counters of `deployments` from this worker's router; the ids cleared."""
    router = _router()
    if router is None:
        return []
    cleared = []
    counters = router.cache.in_memory_cache
    for model_id in deployments:
        router.cooldown_cache.cooldown_store.delete_cache(f"deployment:{model_id}:cooldown")
        prefixes = (f"deployment:{model_id}:allowed_fails", f"{model_id}:fails")
        for key in [k for k in list(counters.cache_dict) if isinstance(k, str) and k.startswith(prefixes)]:
            router.cache.delete_cache(key)
        cleared.append(model_id)
    return cleared


def _event_writer(usage_dir: Path):
    from ..events import EventLog

    log = EventLog(usage_dir.parent / "events.log")

    def write(kind: str, detail: dict) -> None:
        log.append(kind, service="litellm", provider=None, result="ok", detail={**detail, "pid": os.getpid()})
    return write


def writer() -> store.Writer | None:
    """This process's writer, started on first use (after a fork too); None when the store is off."""
    pid = os.getpid()
    current = _state.get(pid, False)
    if current is not False:
        return current
    with _lock:
        if pid in _state:
            return _state[pid]
        usage_dir = usage_dir_for(_config_path())
        instance = None
        if usage_dir is not None:
            instance = store.Writer(usage_dir, settings_for(usage_dir), cooldown_source=read_cooldowns,
                                    reset=clear_cooldowns, on_event=_event_writer(usage_dir),
                                    redis=redis_for(usage_dir)).start()
        _state[pid] = instance
        return instance


def _build():
    from litellm.integrations.custom_logger import CustomLogger  # inside the proxy: already imported

    class UsageRecorder(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102
            _record(kwargs, start_time, end_time, None)

        async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102
            _record(kwargs, start_time, end_time, kwargs.get("exception") or _Unknown())

    return UsageRecorder()


class _Unknown(Exception):
    pass


def _record(kwargs: dict, start_time, end_time, exception) -> None:
    try:
        if is_mocked(kwargs):
            return
        target = writer()
        if target is not None:
            target.submit(row_for(kwargs, start_time, end_time, exception))
    except Exception:  # noqa: BLE001 - recording must never fail a request
        pass


def __getattr__(name: str):
    if name == "usage_recorder":
        if "instance" not in _state:
            _state["instance"] = _build()
        return _state["instance"]
    raise AttributeError(name)
