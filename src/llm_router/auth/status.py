"""Every account in the auth folder, with the proxy's view of it when CLIProxyAPIPlus runs, and each Copilot
account's remaining quota as the Plus forks' `GET /v0/management/copilot-quota` tells it (`copilot_quotas`).

That route (`GetCopilotQuota`, api_tools.go of the Plus forks on 7.x; docs/standins.md cites file and commit)
answers for ONE account, `?auth_index=` from `GET /auth-files` (else the first Copilot account), with GitHub's
`/copilot_internal/user` answer re-marshalled through the fork's `CopilotUsageResponse` struct: `copilot_plan`,
`access_type_sku`, `quota_reset_date` and `quota_snapshots.{chat, completions, premium_interactions}` each with
`entitlement`, `remaining`, `quota_remaining`, `percent_remaining`, `unlimited`, `overage_count`,
`overage_permitted`, `quota_id`. Go zero values stand for what GitHub did not send (a free plan has no snapshots),
so an all-zero snapshot reads "unknown", not "0 left". Errors: 400 `{"error": ...}` (no Copilot credential, no
token), 502 `{"error": "github api request failed", "status_code": N, "body": ...}`, 500 (GitHub's answer did not
parse).
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

from .. import stack
from ..cliproxy import SERVICE, Management
from ..errors import RouterError
from .files import COPILOT, auth_files, describe, read_json, span, text_claim

WARN_WITHIN = 5 * 86400  # the proxy refreshes a Codex token 5 days before it expires


def _proxy_files(cfg) -> tuple[bool, dict | None, str | None]:
    """(running, {name: /auth-files entry} or None, why it could not be asked)."""
    if not stack.is_running(cfg, SERVICE):
        return False, None, None
    try:
        answer = Management(cfg).get("auth-files")
    except RouterError as exc:
        return True, None, exc.message
    files = answer.get("files") if isinstance(answer, dict) else None
    return True, {f["name"]: f for f in files if isinstance(f, dict) and isinstance(f.get("name"), str)
                  and f["name"]} if isinstance(files, list) else {}, None


def _problems(info: dict, data: dict | None, listed: dict | None, entry: dict | None) -> list[str]:
    if data is None:
        return ["not a JSON object: the proxy ignores it"]
    if not info["provider"]:
        return ['no "type" field: the proxy ignores it']
    problems = []
    left = info["seconds_left"]
    if left is not None and left <= 0:
        problems.append(f"expired {span(left)} ago: log in again")
    elif left is not None and left < WARN_WITHIN:
        problems.append(f"expires in {span(left)} (the proxy refreshes 5 days ahead: is it running? "
                        "else log in again)")
    if info["mode"] not in (None, "0600"):
        problems.append(f"mode {info['mode']}, should be 0600 (chmod 600 {info['path']})")
    if listed is not None and entry is None:
        problems.append("not loaded by the proxy")
    elif entry and (entry.get("disabled") or entry.get("unavailable")):
        message = text_claim(entry.get("status_message"), 200)
        problems.append(f"the proxy reports it {text_claim(entry.get('status')) or 'unavailable'}"
                        + (f": {message}" if message else ""))
    return problems


def status(cfg, now: datetime | None = None) -> dict:
    """{auth_dir, proxy: {running, error}, accounts: [...]}; each account carries `problems` and a `level`."""
    now = now or datetime.now(timezone.utc)
    folder = cfg.layout.auths_dir
    running, listed, error = _proxy_files(cfg)
    remaining = dict(listed or {})
    accounts = []
    for path in auth_files(folder):
        data = read_json(path)
        info = describe(path, data, now)
        entry = remaining.pop(path.name, None)
        info["proxy_status"] = text_claim(entry.get("status")) if entry else None
        info["problems"] = _problems(info, data, listed, entry)
        accounts.append(info)
    for name, entry in remaining.items():  # known to the proxy only (runtime-only or from another folder)
        info = dict.fromkeys(("plan", "account_id", "expires_at", "seconds_left", "mode"))
        info.update(file=text_claim(name, 255), path=text_claim(entry.get("path"), 4096),
                    provider=text_claim(entry.get("provider")) or text_claim(entry.get("type")),
                    account=text_claim(entry.get("account")) or text_claim(entry.get("email")),
                    email=text_claim(entry.get("email")), proxy_status=text_claim(entry.get("status")),
                    problems=[] if entry.get("runtime_only") else [f"listed by the proxy, not in {folder}"])
        accounts.append(info)
    for info in accounts:
        info["level"] = "warning" if info["problems"] else "ok"
    return {"auth_dir": str(folder), "proxy": {"running": running, "error": error}, "accounts": accounts}


# --------------------------------------------------------------------------- Copilot quota (/copilot-quota)

COPILOT_PROVIDERS = ("copilot", "github", COPILOT)  # the provider names findCopilotAuth accepts
SNAPSHOTS = ("premium_interactions", "chat", "completions")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
UNKNOWN = "unknown"


def copilot_quotas(management) -> list[dict]:
    """Each Copilot account the running proxy lists (`GET /auth-files`), with its quota from one
    `GET /copilot-quota?auth_index=...` each. Never raises for one account: its entry reads unknown with a note.
    `management` is a `cliproxy.Management`; a failing `/auth-files` raises its RouterError."""
    listing = management.get("auth-files")
    files = listing.get("files") if isinstance(listing, dict) else None
    result = []
    for entry in files if isinstance(files, list) else []:
        if not isinstance(entry, dict):
            continue
        provider = str(entry.get("provider") or entry.get("type") or "").strip().lower()
        if provider not in COPILOT_PROVIDERS:
            continue
        index = text_claim(entry.get("auth_index"), 64)
        base = {"name": text_claim(entry.get("name"), 255) or "?",
                "account": text_claim(entry.get("account")) or text_claim(entry.get("email")), "auth_index": index}
        if not index:  # without it the route answers for the first Copilot account, whichever was asked
            result.append({**base, **unknown_quota("/auth-files gives no auth_index for it")})
            continue
        try:
            status, payload = management.request("GET", "/copilot-quota", params={"auth_index": index},
                                                  allow=(400, 404, 500, 502, 503, 504))
        except RouterError as exc:
            result.append({**base, **unknown_quota(exc.message)})
            continue
        result.append({**base, **(read_copilot_quota(payload) if status == 200
                                  else unknown_quota(_refusal(status, payload)))})
    return result


def _refusal(status: int, payload: Any) -> str:
    """Why `/copilot-quota` gave no quota, in one line (never GitHub's body)."""
    error = text_claim(payload.get("error"), 120) if isinstance(payload, dict) else None
    upstream = payload.get("status_code") if isinstance(payload, dict) else None
    if status == 502 and isinstance(upstream, int) and not isinstance(upstream, bool):
        return f"GitHub answered HTTP {upstream} ({error or 'github api request failed'})"
    return f"/copilot-quota answered HTTP {status}" + (f": {error}" if error else "")


def unknown_quota(note: str | None = None) -> dict:
    """An account whose quota is not known, with why."""
    snapshot = {"state": UNKNOWN}
    return {"plan": None, "sku": None, "remaining": UNKNOWN, "entitlement": None, "percent_remaining": None,
            "resets_at": UNKNOWN, **{key: dict(snapshot) for key in SNAPSHOTS}, "notes": [note] if note else []}


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else round(float(value), 2)


def _snapshot(value: Any) -> tuple[dict, str | None]:
    """One quota snapshot → ({state: limited|unlimited|unknown, ...}, a note when it was malformed)."""
    if value is None:
        return {"state": UNKNOWN}, None
    if not isinstance(value, dict):
        return {"state": UNKNOWN}, "not an object"
    unlimited = value.get("unlimited", False)
    if not isinstance(unlimited, bool):
        return {"state": UNKNOWN}, "unlimited is not true or false"
    if unlimited:
        return {"state": "unlimited"}, None
    figures = {}
    for key in ("entitlement", "remaining", "quota_remaining", "percent_remaining", "overage_count"):
        raw = value.get(key)
        figures[key] = _number(raw)
        if raw is not None and figures[key] is None:
            return {"state": UNKNOWN}, f"{key} is not a number"
    remaining = figures["remaining"] if figures["remaining"] is not None else figures["quota_remaining"]
    entitlement = figures["entitlement"]
    if entitlement is None or remaining is None or entitlement < 0:
        return {"state": UNKNOWN}, "no entitlement or remaining figure"
    if entitlement == 0 and not remaining:  # Go's zero value: GitHub did not report this quota
        return {"state": UNKNOWN, "reason": "not reported"}, None
    percent = figures["percent_remaining"]
    if percent is None and entitlement:
        percent = round(100.0 * remaining / entitlement, 1)
    permitted = value.get("overage_permitted")
    return {"state": "limited", "remaining": remaining, "entitlement": entitlement,
            "percent_remaining": percent, "overage_count": figures["overage_count"] or 0,
            "overage_permitted": permitted if isinstance(permitted, bool) else False}, None


def read_copilot_quota(payload: Any) -> dict:
    """One `/copilot-quota` answer → {plan, sku, remaining (premium requests: a number, "unlimited" or
    "unknown"), entitlement, percent_remaining, resets_at, premium_interactions, chat, completions, notes}.
    Anything malformed reads unknown with a note; nothing raises."""
    if not isinstance(payload, dict):
        return unknown_quota("the /copilot-quota answer is not a JSON object")
    snapshots = payload.get("quota_snapshots")
    if snapshots is not None and not isinstance(snapshots, dict):
        return unknown_quota("quota_snapshots is not an object")
    result = unknown_quota()
    notes = result["notes"]
    for key in SNAPSHOTS:
        result[key], note = _snapshot((snapshots or {}).get(key))
        if note:
            notes.append(f"{key}: {note}")
    premium = result["premium_interactions"]
    if premium["state"] == "limited":
        result.update(remaining=premium["remaining"], entitlement=premium["entitlement"],
                      percent_remaining=premium["percent_remaining"])
    elif premium["state"] == "unlimited":
        result["remaining"] = "unlimited"
    elif snapshots is None:
        notes.append("no quota_snapshots in the answer")
    elif premium.get("reason"):
        notes.append("GitHub reported no premium request quota for this account")
    reset = payload.get("quota_reset_date")
    if isinstance(reset, str) and DATE.match(reset.strip()):
        result["resets_at"] = reset.strip()
    elif reset not in (None, ""):
        notes.append("quota_reset_date is not a date")
    result["plan"] = text_claim(payload.get("copilot_plan"), 64)
    result["sku"] = text_claim(payload.get("access_type_sku"), 64)
    return result


def _part(label: str, snapshot: dict) -> str:
    if snapshot["state"] == "unlimited":
        return f"{label} unlimited"
    if snapshot["state"] != "limited":
        return f"{label} {UNKNOWN}"
    percent = snapshot.get("percent_remaining")
    return (f"{label} {snapshot['remaining']}/{snapshot['entitlement']} left"
            + (f" ({percent:.0f} %)" if isinstance(percent, (int, float)) else ""))


def quota_summary(entry: dict) -> str:
    """One line for an account's quota: premium requests, chat and completions where limited, the reset date."""
    parts = [_part("premium", entry["premium_interactions"])]
    parts += [_part(key, entry[key]) for key in ("chat", "completions") if entry[key]["state"] == "limited"]
    if entry["premium_interactions"]["state"] == UNKNOWN and all(entry[k]["state"] == UNKNOWN for k in SNAPSHOTS):
        parts = [UNKNOWN]
    if entry.get("resets_at") not in (None, UNKNOWN) and parts != [UNKNOWN]:
        parts.append(f"resets {entry['resets_at']}")
    return ", ".join(parts)
