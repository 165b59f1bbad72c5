"""`usage [--since 24h] [--by model|deployment|provider|protocol|instance] [--html FILE]`, `models [--quota]` and
`cooldown reset [DEPLOYMENT | --all]` (docs/usage.md)."""
from __future__ import annotations

import re
import sqlite3
import time

from .. import usage as store
from ..errors import NOT_FOUND, UNAVAILABLE, USAGE, RouterError, from_os_error
from ..output import Result
from . import Ctx

SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])\Z")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SPARK = " ▁▂▃▄▅▆▇█"
RESET_TIMEOUT = 10.0


def parse_since(text: str) -> float:
    """Seconds back from now for `--since` (`30m`, `24h`, `7d`, `all`)."""
    text = (text or "").strip().lower()
    if text == "all":
        return float("inf")
    match = SINCE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise RouterError(f"--since must be a duration such as 30m, 24h or 7d (or all), got {text!r}",
                          hint="units: s, m, h, d", exit_code=USAGE)
    return float(match.group(1)) * UNITS[match.group(2)]


def _unreadable(path, exc: Exception) -> RouterError:
    return RouterError(f"the usage store {path} cannot be read: {exc}",
                       hint="LiteLLM moves a corrupt store aside on its next write and starts a new one; "
                            "`llm-router events --event usage_store_corrupt` shows when it did", exit_code=UNAVAILABLE)


def report(cfg, since: str = "24h", by: str = "deployment", now: float | None = None) -> dict:
    from ..models_view import deployment_ids, live_workers, split_id

    if by not in store.BY_KEYS:
        raise RouterError(f"--by must be one of {', '.join(store.BY_KEYS)}, got {by!r}", exit_code=USAGE)
    now = time.time() if now is None else now
    back = parse_since(since)
    reader = None
    try:
        reader = store.Reader(cfg.layout.usage_dir)
        rows = reader.requests(0.0 if back == float("inf") else now - back)
        workers = reader.workers()
        size = reader.size_bytes()
    except sqlite3.DatabaseError as exc:
        raise _unreadable(store.db_path(cfg.layout.usage_dir), exc) from None
    finally:
        if reader is not None:
            reader.close()
    known = set(deployment_ids(cfg))
    for row in rows:
        if row.get("deployment") in known:
            row["provider"] = split_id(row["deployment"])[1]  # the routertool.yaml provider, not LiteLLM's "openai"
    # the chart starts at the first recorded row at the earliest (retention bounds it), whatever --since says
    start = max(now - back, min((r["ts"] for r in rows), default=now))
    models = sorted({str(r.get("model") or "-") for r in rows})
    totals = store.summarize([{**r, "all": "all"} for r in rows], "all")
    alive = {w["pid"] for w in live_workers(workers, now)}
    return {
        "store": {"path": str(reader.path), "exists": reader.exists, "size_bytes": size,
                  "dropped": sum(w.get("dropped") or 0 for w in workers),
                  "written": sum(w.get("written") or 0 for w in workers),
                  "workers": [{**w, "alive": w["pid"] in alive} for w in workers]},
        "since": start, "until": now, "by": by,
        "rows": store.summarize(rows, by),
        "total": totals[0] if totals else {"all": "all", **dict.fromkeys(("requests", "ok", "failures"), 0),
                                           "by_outcome": {}},
        "tables": {key: store.summarize(rows, key) for key in store.BY_KEYS},
        "per_hour": _hours(rows, start, now),
        "per_hour_by_model": {m: _hours([r for r in rows if str(r.get("model") or "-") == m], start, now)
                              for m in models},
    }


def _hours(rows: list[dict], start: float, now: float) -> list[dict]:
    hours = store.per_hour(rows, start, now)
    return hours[-24 * 31:]  # a chart of at most a month of hours


def spark(hours: list[dict]) -> str:
    top = max([h["requests"] for h in hours] + [0])
    if not top:
        return ""
    return "".join(SPARK[min(8, -(-h["requests"] * 8 // top))] if h["requests"] else SPARK[0] for h in hours)


def _fmt(value) -> str:
    return "-" if value is None else str(value)


def text(data: dict) -> str:
    by = data["by"]
    if not data["store"]["exists"]:
        return (f"no usage recorded yet: {data['store']['path']} does not exist "
                "(LiteLLM creates it on its first request)")
    header = [by, "requests", "ok", "failed", "failures by kind", "tokens in/out", "p50 ms", "p95 ms"]
    table = [header]
    for row in data["rows"] + ([{**data["total"], by: "total"}] if len(data["rows"]) > 1 else []):
        kinds = ", ".join(f"{k} {v}" for k, v in row["by_outcome"].items()) or "-"
        table.append([str(row[by]), str(row["requests"]), str(row["ok"]), str(row["failures"]), kinds,
                      f"{row.get('tokens_in', 0)}/{row.get('tokens_out', 0)}", _fmt(row.get("p50_ms")),
                      _fmt(row.get("p95_ms"))])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in table]
    hours = data["per_hour"]
    if hours and data["total"]["requests"]:
        first = time.strftime("%m-%d %H:00", time.localtime(hours[0]["hour"]))
        peak = max(h["requests"] for h in hours)
        lines += ["", f"requests per hour since {first} (peak {peak}):", f"  |{spark(hours)}|"]
    store_info = data["store"]
    lines.append(f"store {store_info['path']}: {store_info['size_bytes'] // 1024} KiB, "
                 f"{store_info['dropped']} rows dropped")
    return "\n".join(lines)


def usage(ctx: Ctx, since: str = "24h", by: str = "deployment", html: str | None = None) -> Result:
    data = report(ctx.config, since=since, by=by)
    out = text(data)
    if html:
        from pathlib import Path

        from ..fsutil import atomic_write
        from ..usage_report import page

        target = Path(html).expanduser()
        if not target.parent.is_dir():
            raise RouterError(f"--html: the folder {target.parent} does not exist", exit_code=NOT_FOUND)
        if target.is_dir():
            raise RouterError(f"--html: {target} is a folder; name a file", exit_code=USAGE)
        try:
            atomic_write(target, page(data), mode=0o600)
        except OSError as exc:
            raise from_os_error(exc) from None
        data["html"] = str(target)
        out += f"\nwrote {target}"
    return Result("usage", data=data, text=out)


def models(ctx: Ctx, quota: bool = False) -> Result:
    from .. import models_view

    cfg = ctx.config
    quota_info = models_view.cliproxy_quota(cfg) if quota else None
    try:
        view = models_view.build(cfg, quota=quota_info)
    except sqlite3.DatabaseError as exc:
        raise _unreadable(store.db_path(cfg.layout.usage_dir), exc) from None
    if quota_info is not None:
        view["cliproxy_quota"] = quota_info
    out = models_view.text(view)
    if quota_info is not None and not quota_info.get("available"):
        out += f"\nquota: unknown ({quota_info.get('reason')})"
    return Result("models", data=view, text=out)


def cooldown_reset(ctx: Ctx, deployment: str | None = None, all: bool = False,  # noqa: A002
                   timeout: float = RESET_TIMEOUT) -> Result:
    from .. import events, models_view

    cfg = ctx.config
    if bool(deployment) == bool(all):
        raise RouterError("name one deployment or pass --all", hint="`llm-router models` lists the deployment ids",
                          exit_code=USAGE)
    ids = models_view.deployment_ids(cfg)
    if deployment and deployment not in ids:
        raise RouterError(f"no deployment {deployment!r} in {cfg.path}",
                          hint="deployment ids are GROUP/PROVIDER/MODEL: " + ", ".join(ids[:6])
                               + (" ..." if len(ids) > 6 else ""), exit_code=NOT_FOUND)
    targets = None if all else [deployment]
    usage_dir = cfg.layout.usage_dir
    now = time.time()
    try:
        with store.Reader(usage_dir) as reader:
            cooling = models_view.live_cooldowns(reader, now)
            workers = models_view.live_workers(reader.workers(), now)
    except sqlite3.DatabaseError as exc:
        raise _unreadable(store.db_path(usage_dir), exc) from None
    try:
        seq = store.request_reset(usage_dir, targets)
    except OSError as exc:
        raise from_os_error(exc) from None
    pending = {w["pid"] for w in workers}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            with store.Reader(usage_dir) as reader:
                rows = reader.workers()
        except sqlite3.DatabaseError:
            continue
        alive = {w["pid"] for w in models_view.live_workers(rows, time.time())}
        pending = {w["pid"] for w in rows if w["pid"] in pending and w["pid"] in alive
                   and (w.get("reset_seq") or 0) < seq}
    was_cooling = sorted(d for d in cooling if targets is None or d in targets)
    cliproxy = _reset_cliproxy(cfg, targets)
    data = {"deployments": "all" if targets is None else targets, "seq": seq, "was_cooling": was_cooling,
            "workers": sorted(w["pid"] for w in workers), "not_acknowledged": sorted(pending), "cliproxy": cliproxy}
    result = "timeout" if pending else "ok"
    events.for_config(cfg).append("cooldown_reset", service="litellm", result=result,
                                  detail={"deployments": data["deployments"], "was_cooling": was_cooling,
                                          "workers": data["workers"], "cliproxy": cliproxy.get("reset", [])})
    if pending:
        raise RouterError(f"LiteLLM worker(s) {', '.join(map(str, sorted(pending)))} did not apply the reset "
                          f"within {timeout:.0f} s", hint="they apply it on their next poll; check "
                          "`llm-router status` and `llm-router service logs litellm`", exit_code=UNAVAILABLE)
    what = "every deployment" if targets is None else targets[0]
    lines = [f"cooldown reset for {what}: " + (f"cleared {', '.join(was_cooling)}" if was_cooling
                                                else "nothing was cooling down")
             + (f" (applied by LiteLLM worker(s) {', '.join(map(str, data['workers']))})" if workers else
                " (no LiteLLM worker has recorded a request yet)")]
    if cliproxy.get("reset"):
        lines.append(f"CLIProxyAPIPlus reset-quota: {', '.join(cliproxy['reset'])}")
    elif cliproxy.get("reason"):
        lines.append(f"CLIProxyAPIPlus: {cliproxy['reason']}")
    return Result("cooldown", data=data, text="\n".join(lines), warnings=list(cliproxy.get("warnings", [])))


def _reset_cliproxy(cfg, targets: list[str] | None) -> dict:
    """CLIProxyAPIPlus's own cooldowns (mainline v7.2.22+ `POST /v0/management/reset-quota {auth_index}`) for the
    accounts behind the targets that are cliproxyapi_plus deployments; never raises."""
    from .. import stack
    from ..cliproxy import SERVICE, Management, installed_features
    from ..cliproxy_lines import oauth_providers_for
    from ..models_view import deployment_ids, split_id

    chosen = [split_id(d) for d in (targets or deployment_ids(cfg))]
    models = [m for _, p, m in chosen if p in cfg.providers and cfg.providers[p].type == "cliproxyapi_plus"]
    if not models:
        return {"reason": "no CLIProxyAPIPlus deployment among them"}
    if not stack.is_running(cfg, SERVICE):
        return {"reason": "not running, nothing to reset there"}
    features = installed_features(cfg, ask_server=True)
    if features is None or not features.reset_quota:
        line = f"{features.line} {features.version}" if features else "this build"
        return {"reason": f"{line} has no reset-quota (a cooled account waits, or restart the service)"}
    wanted = set().union(*(oauth_providers_for(m) or {"*"} for m in models))
    management = Management(cfg, timeout=10)
    done, warnings = [], []
    try:
        files = (management.get("/auth-files") or {}).get("files") or []
    except RouterError as exc:
        return {"reason": exc.message}
    for entry in files:
        if not isinstance(entry, dict) or entry.get("auth_index") in (None, ""):
            continue
        if "*" not in wanted and entry.get("provider") not in wanted and entry.get("type") not in wanted:
            continue
        try:
            status, _ = management.request("POST", "/reset-quota", body={"auth_index": str(entry["auth_index"])},
                                           allow=(400, 404))
        except RouterError as exc:
            warnings.append(f"CLIProxyAPIPlus reset-quota for {entry.get('name')}: {exc.message}")
            continue
        if status == 200:
            done.append(str(entry.get("name") or entry["auth_index"]))
        else:
            warnings.append(f"CLIProxyAPIPlus reset-quota for {entry.get('name')}: HTTP {status}")
    return {"reset": done, "warnings": warnings}


def add_parsers(sub, common) -> None:
    parser = sub.add_parser("usage", help="requests, failures, tokens and latency from the usage store",
                            parents=[common])
    parser.add_argument("--since", default="24h", metavar="DURATION", help="window: 30m, 24h, 7d or all (default 24h)")
    parser.add_argument("--by", default="deployment", choices=store.BY_KEYS, help="group rows by (default deployment)")
    parser.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report to FILE")
    parser.set_defaults(run=lambda ctx, a: usage(ctx, since=a.since, by=a.by, html=a.html))

    parser = sub.add_parser("models", help="models, their deployments in failover order, accounts and live state",
                            parents=[common])
    parser.add_argument("--quota", action="store_true",
                        help="also ask CLIProxyAPIPlus for quota (/copilot-quota on lines that have it)")
    parser.set_defaults(run=lambda ctx, a: models(ctx, quota=a.quota))

    parser = sub.add_parser("cooldown", help="clear cooldowns on the running stack", parents=[common])
    verbs = parser.add_subparsers(dest="verb", metavar="reset", required=True)
    reset = verbs.add_parser("reset", help="clear LiteLLM's (and CLIProxyAPIPlus's) cooldown, no restart",
                             parents=[common])
    reset.add_argument("deployment", nargs="?", metavar="DEPLOYMENT", help="a deployment id (see `models`)")
    reset.add_argument("--all", action="store_true", help="every deployment")
    reset.add_argument("--timeout", type=float, default=RESET_TIMEOUT, metavar="S",
                       help="seconds to wait for every live LiteLLM worker to apply it (default 10)")
    reset.set_defaults(run=lambda ctx, a: cooldown_reset(ctx, deployment=a.deployment, all=a.all,
                                                         timeout=a.timeout))
