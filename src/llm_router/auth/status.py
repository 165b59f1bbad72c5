"""Every account in the auth folder, with the proxy's view of it when CLIProxyAPIPlus runs."""
from __future__ import annotations

from datetime import datetime, timezone

from .. import stack
from ..cliproxy import SERVICE, Management
from ..errors import RouterError
from .files import auth_files, describe, read_json, span, text_claim

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
