"""`llm-router models`: every northbound model -> its deployments in failover order for the active profile -> the
provider and the accounts behind each -> the live state of each deployment (from the usage store: serving or
cooling down until when after what error, last error, requests and failures in the last hour), and the quota
where the upstream tells it.

Nothing here talks to LiteLLM: the live state is what LiteLLM's workers wrote to the usage store (usage.py). A
cooldown counts as live only while the worker that recorded it is alive (its `workers` row is fresh and its pid
exists); LiteLLM keeps cooldowns in each worker's memory, so a restarted worker has none.
"""
from __future__ import annotations

import os
import time
from typing import Any

from . import usage as store
from .cliproxy_lines import COPILOT
from .config import RouterConfig

WORKER_STALE = 15.0  # seconds without a heartbeat after which a worker (and its cooldowns) count as gone
HOUR = 3600.0


def split_id(deployment_id: str) -> tuple[str, str, str]:
    """(group, provider, upstream model) of a deployment id `group/provider/model` (profiles.context)."""
    group, _, rest = str(deployment_id).partition("/")
    provider, _, model = rest.partition("/")
    return group, provider, model


def deployment_ids(cfg: RouterConfig) -> list[str]:
    return [f"{g.name}/{d.provider}/{d.model}" for g in cfg.models for d in g.deployments]


def active_profile(cfg: RouterConfig) -> str:
    from .journal import read_active

    info = read_active(cfg.layout)
    return info["name"] if info else cfg.default_profile


def failover_order(cfg: RouterConfig) -> tuple[str, dict[str, list[dict]], str]:
    """(profile, {group: [{id, order, cooldown_time}, ...] in order}, source): from the active rendered config
    when there is one, else rendered now from the active (or default) profile."""
    import yaml

    profile = active_profile(cfg)
    path = cfg.layout.active_config
    text, source = None, str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        pass
    if text is None:
        from . import profiles

        text, source = profiles.render(cfg, profile), f"profile {profile} (rendered; not active yet)"
    data = yaml.safe_load(text) or {}
    groups: dict[str, list[dict]] = {}
    for entry in data.get("model_list") or []:
        params = entry.get("litellm_params") or {}
        groups.setdefault(str(entry.get("model_name")), []).append(
            {"id": str((entry.get("model_info") or {}).get("id")), "order": params.get("order"),
             "cooldown_time": params.get("cooldown_time")})
    for deps in groups.values():
        deps.sort(key=lambda d: (d["order"] is None, d["order"] or 0))
    return profile, groups, source


def accounts_for(cfg: RouterConfig, provider: str, model: str, now: float | None = None) -> list[dict]:
    """The accounts behind one deployment: CLIProxyAPIPlus auth files that can serve the model (plan, expiry),
    or a paid provider's key by variable name (set or not, never the value)."""
    from .auth.files import auth_files, describe
    from .cliproxy_lines import oauth_providers_for

    spec = cfg.providers.get(provider)
    if spec is None:
        return []
    if spec.type != "cliproxyapi_plus":
        present = bool(os.environ.get(spec.key_env)) or spec.key_env in cfg.secret_files
        return [{"kind": "api_key", "variable": spec.key_env, "set": present}]
    serving = oauth_providers_for(model)
    result = []
    for path in auth_files(cfg.layout.auths_dir):
        info = describe(path)
        if serving and info.get("provider") not in serving:
            continue
        result.append({"kind": "oauth", "file": info["file"], "provider": info["provider"],
                       "account": info["account"], "plan": info["plan"], "expires_at": info["expires_at"],
                       "seconds_left": info["seconds_left"]})
    return result


def live_workers(workers: list[dict], now: float) -> list[dict]:
    alive = []
    for worker in workers:
        if (worker.get("seen") or 0) < now - WORKER_STALE:
            continue
        try:
            os.kill(int(worker["pid"]), 0)
        except ProcessLookupError:
            continue
        except (PermissionError, TypeError, ValueError, OverflowError):
            pass
        alive.append(worker)
    return alive


def live_cooldowns(reader: store.Reader, now: float) -> dict[str, dict]:
    """{deployment: the cooldown in force (latest end)} among the cooldowns recorded by live workers."""
    pids = {w["pid"] for w in live_workers(reader.workers(), now)}
    result: dict[str, dict] = {}
    for row in reader.cooldowns(since=now):
        if row.get("ended") is not None or (row.get("until") or 0) <= now or row.get("pid") not in pids:
            continue
        known = result.get(row["deployment"])
        if known is None or row["until"] > known["until"]:
            result[row["deployment"]] = row
    return result


def build(cfg: RouterConfig, quota: dict | None = None, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    profile, groups, source = failover_order(cfg)
    reader = store.Reader(cfg.layout.usage_dir)
    try:
        recent = reader.requests(now - HOUR)
        last_failures: dict[str, dict] = {}
        for row in reader._rows("SELECT deployment, ts, outcome, status, error FROM requests "
                                "WHERE outcome != 'ok' AND id IN (SELECT MAX(id) FROM requests "
                                "WHERE outcome != 'ok' GROUP BY deployment)"):
            last_failures[row["deployment"]] = row
        limits: dict[str, dict] = {}
        for row in reader._rows("SELECT deployment, ts, rl_requests, rl_tokens FROM requests WHERE id IN "
                                "(SELECT MAX(id) FROM requests WHERE rl_requests IS NOT NULL "
                                "OR rl_tokens IS NOT NULL GROUP BY deployment)"):
            limits[row["deployment"]] = row
        cooling = live_cooldowns(reader, now)
        workers = live_workers(reader.workers(), now)
        exists = reader.exists
    finally:
        reader.close()
    models = []
    for group in cfg.models:
        ordered = groups.get(group.name) or [{"id": f"{group.name}/{d.provider}/{d.model}", "order": i + 1,
                                              "cooldown_time": None} for i, d in enumerate(group.deployments)]
        deployments = []
        for dep in ordered:
            _, provider, model = split_id(dep["id"])
            rows = [r for r in recent if r.get("deployment") == dep["id"]]
            cooldown = cooling.get(dep["id"])
            failure = last_failures.get(dep["id"])
            state = {"state": "cooling_down" if cooldown else "serving", "cooling_until": None,
                     "cooling_after": None, "cooldown_seconds_left": None}
            if cooldown:
                state.update(cooling_until=cooldown["until"], cooling_after=cooldown.get("status"),
                             cooldown_seconds_left=round(cooldown["until"] - now, 1))
            limit = limits.get(dep["id"])
            accounts = accounts_for(cfg, provider, model, now)
            deployments.append({
                "id": dep["id"], "order": dep["order"], "provider": provider, "model": model,
                "provider_type": cfg.providers[provider].type if provider in cfg.providers else None,
                "tier": cfg.providers[provider].tier if provider in cfg.providers else None,
                "cooldown_time": dep["cooldown_time"], "accounts": accounts,
                **state,
                "last_error": None if failure is None else {
                    "at": failure["ts"], "outcome": failure["outcome"], "status": failure["status"],
                    "error": failure["error"]},
                "last_hour": {"requests": len(rows), "failures": sum(1 for r in rows if r.get("outcome") != "ok")},
                "quota": _quota_for(quota, provider, model, cfg, limit, accounts),
            })
        models.append({"name": group.name, "deployments": deployments})
    return {"profile": profile, "order_source": source, "store": str(store.db_path(cfg.layout.usage_dir)),
            "store_exists": exists, "live_workers": [w["pid"] for w in workers], "now": now, "models": models}


def _quota_for(quota: dict | None, provider: str, model: str, cfg: RouterConfig, limit: dict | None,
               accounts: list[dict]) -> dict:
    """What is known about the remaining quota: rate-limit headers seen on answers, else (with --quota, on a line
    with `/copilot-quota`) the premium requests left on the Copilot accounts behind the deployment, else
    unknown. `cliproxy` is CLIProxyAPIPlus's answer narrowed to those accounts."""
    result: dict[str, Any] = {"remaining": "unknown", "resets_at": "unknown", "source": None}
    if limit is not None:
        result.update(remaining={"requests": limit.get("rl_requests"), "tokens": limit.get("rl_tokens")},
                      source="x-ratelimit headers", seen_at=limit.get("ts"))
    spec = cfg.providers.get(provider)
    if not quota or spec is None or spec.type != "cliproxyapi_plus":
        return result
    if not quota.get("available"):
        result["cliproxy"] = quota
        return result
    files = {a["file"] for a in accounts if a.get("kind") == "oauth" and a.get("provider") == COPILOT}
    mine = [entry for entry in quota.get("accounts") or [] if entry.get("name") in files]
    result["cliproxy"] = {**quota, "accounts": mine}
    if limit is None and mine:
        known = [e["remaining"] for e in mine if e["remaining"] != "unknown"]
        if "unlimited" in known:
            result["remaining"] = "unlimited"
        elif known:
            result["remaining"] = {"premium_requests": sum(known),
                                   "entitlement": sum(e["entitlement"] or 0 for e in mine
                                                      if e["remaining"] != "unknown")}
        resets = sorted(e["resets_at"] for e in mine if e["resets_at"] != "unknown")
        if known:
            result.update(source="copilot-quota", resets_at=resets[0] if resets else "unknown")
    return result


def cliproxy_quota(cfg: RouterConfig) -> dict:
    """Ask the running CLIProxyAPIPlus what its line tells about quota: `/copilot-quota` (Plus forks), one call per
    Copilot account (auth.status.copilot_quotas), and whether `reset-quota` (mainline v7.2.22+) exists. Never
    raises; `{"available": False, "reason": ...}` when it cannot."""
    from . import stack
    from .auth.status import copilot_quotas
    from .cliproxy import SERVICE, Management, installed_features
    from .errors import RouterError

    if not stack.is_running(cfg, SERVICE):
        return {"available": False, "reason": "CLIProxyAPIPlus is not running"}
    try:
        features = installed_features(cfg, ask_server=True)
    except (RouterError, OSError, ValueError) as exc:  # the `-h` probe of the binary failed
        return {"available": False, "reason": getattr(exc, "message", None) or str(exc)[:200]}
    if features is None:
        return {"available": False, "reason": "the CLIProxyAPIPlus binary is not installed"}
    result: dict[str, Any] = {"available": False, "line": features.line, "version": features.version,
                              "reset_quota": features.reset_quota, "copilot_quota": features.copilot_quota}
    if not features.copilot_quota:
        result["reason"] = f"{features.line} {features.version} has no /copilot-quota route"
        return result
    try:
        accounts = copilot_quotas(Management(cfg, timeout=30))
    except RouterError as exc:
        result["reason"] = exc.message
        return result
    result.update(available=True, accounts=accounts)
    return result


def format_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def text(view: dict) -> str:
    lines = [f"profile {view['profile']} (order from {view['order_source']})"]
    if not view["store_exists"]:
        lines.append(f"no usage recorded yet ({view['store']}); live state appears after LiteLLM's first request")
    for group in view["models"]:
        lines.append(f"{group['name']}")
        for dep in group["deployments"]:
            if dep["state"] == "cooling_down":
                state = (f"COOLING until {format_time(dep['cooling_until'])} ({dep['cooldown_seconds_left']:.0f} s, "
                         f"after {dep['cooling_after'] or 'an error'})")
            else:
                state = "serving"
            hour = dep["last_hour"]
            lines.append(f"  {dep['order']}. {dep['id']}  {dep['tier'] or '-'}  {state}  "
                         f"last hour: {hour['requests']} requests, {hour['failures']} failed")
            if dep["last_error"]:
                err = dep["last_error"]
                lines.append(f"     last error {format_time(err['at'])}: {err['outcome']} "
                             f"{err['status'] or ''} {err['error'] or ''}".rstrip())
            for account in dep["accounts"]:
                if account["kind"] == "api_key":
                    lines.append(f"     key ${account['variable']} ({'set' if account['set'] else 'NOT SET'})")
                else:
                    expiry = account["expires_at"] or "no expiry"
                    lines.append(f"     account {account['account'] or account['file']} ({account['provider']}, "
                                 f"plan {account['plan'] or '-'}, expires {expiry})")
            lines += _quota_lines(dep["quota"])
    return "\n".join(lines)


def _quota_lines(quota: dict) -> list[str]:
    from .auth.status import quota_summary

    lines = []
    if quota["source"] == "x-ratelimit headers":
        lines.append(f"     quota: {quota['remaining']} (x-ratelimit headers)")
    cliproxy = quota.get("cliproxy") or {}
    for entry in cliproxy.get("accounts") or []:
        notes = "; ".join(entry["notes"])
        lines.append(f"     quota {entry['account'] or entry['name']}: {quota_summary(entry)}"
                     + (f" ({notes})" if notes else ""))
    return lines
