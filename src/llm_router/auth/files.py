"""Auth files in CLIProxyAPIPlus's auth folder: unverified JWT claims, expiry, the account a file holds.

Nothing here returns a token: account descriptions carry only the provider, email or login, plan, account id
and expiry.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import events
from ..errors import USAGE, RouterError
from ..fsutil import ensure_dir, file_mode

CODEX, COPILOT = "codex", "github-copilot"  # the `type` of an auth file, also the proxy's provider name
OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"
OPENAI_PROFILE_CLAIM = "https://api.openai.com/profile"
EXPIRY_KEYS = ("expired", "expire", "expires_at", "expiresAt", "expiry", "expires")  # as the proxy reads them
MAX_TEXT = 80  # a claim shown to the user is cut to this many characters
MAX_EMAIL = 254  # RFC 5321's limit; the auth file name must also stay within 255 bytes
MAX_EPOCH = 253402214400  # 9999-12-30 UTC: later times cannot be represented (or shown in any time zone)
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
FILE_NAME_BYTES = 255


class JWTError(ValueError):
    """A token that is not a decodable JWT; the message never contains the token."""


def jwt_claims(token: Any) -> dict:
    """The payload of a JWT, without verifying its signature."""
    if not isinstance(token, str) or not token:
        raise JWTError("missing or not a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError(f"expected 3 dot-separated parts, found {len(parts)}")
    payload = parts[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise JWTError("its payload is not base64url-encoded JSON (truncated?)") from None
    if not isinstance(claims, dict):
        raise JWTError("its payload is not a JSON object")
    return claims


def lenient_claims(token: Any) -> dict:
    try:
        return jwt_claims(token)
    except JWTError:
        return {}


def claim(claims: dict, section: str, key: str) -> Any:
    value = claims.get(section)
    return value.get(key) if isinstance(value, dict) else None


# Claims come from files anyone can edit and from unverified tokens: every value shown or used goes through
# `text_claim` (display), `email_claim` (an email fit for a file name) or `parse_time` (a representable time).

def text_claim(value: Any, limit: int = MAX_TEXT) -> str | None:
    """A claim as display text: None unless a non-empty string; control characters become `?`, cut to `limit`."""
    if not isinstance(value, str) or not value:
        return None
    clean = CONTROL.sub("?", value)
    return clean if len(clean) <= limit else clean[:limit - 3] + "..."


def email_claim(value: Any) -> str | None:
    """An email claim usable as an account name and in a file name: a string of at most 254 characters with an
    `@`, no control characters, no path separators; else None."""
    if (not isinstance(value, str) or not 3 <= len(value) <= MAX_EMAIL or "@" not in value
            or CONTROL.search(value) or "/" in value or "\\" in value or value.startswith(".")):
        return None
    return value


def safe_file_name(name: str) -> bool:
    """A single path component the file system accepts: no separators, control characters or leading dot, at most
    255 bytes."""
    return (bool(name) and Path(name).name == name and "\\" not in name and not name.startswith(".")
            and not CONTROL.search(name) and len(name.encode("utf-8", "surrogatepass")) <= FILE_NAME_BYTES)


def rfc3339(moment: datetime) -> str:
    """Go's RFC3339 rendering, as the proxy writes `expired`: local offset, `Z` for UTC."""
    text = moment.astimezone().isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_time(value: Any) -> datetime | None:
    """RFC3339, `YYYY-MM-DD HH:MM:SS` (local) or unix seconds/milliseconds, as an aware datetime between 1970 and
    9999; None when absent, unparsable or out of that range (1e20, -1, NaN, inf, a list, ...)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        if isinstance(value, int) and not 0 <= value <= MAX_EPOCH * 1000:  # 10**400 is no float
            return None
        if not math.isfinite(value) or value < 0:
            return None
        seconds = value / 1000 if value > 1e11 else value
        if seconds > MAX_EPOCH:
            return None
        return datetime.fromtimestamp(seconds, timezone.utc)
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.astimezone()
        if not 0 <= moment.timestamp() <= MAX_EPOCH:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return moment


def expiry(data: dict) -> datetime | None:
    """When the file's token expires: an expiry field, else the access token's `exp`."""
    for key in EXPIRY_KEYS:
        moment = parse_time(data.get(key))
        if moment is not None:
            return moment
    return parse_time(lenient_claims(data.get("access_token")).get("exp"))


def codex_file_name(email: str, plan: str | None, account_id: str | None) -> str:
    """The proxy's own naming (mainline `filename.go`), so a later web login updates the same file."""
    if plan == "team":
        return f"codex-{hashlib.sha256((account_id or '').encode()).hexdigest()[:8]}-{email}-team.json"
    return f"codex-{email}-{plan}.json" if plan else f"codex-{email}.json"


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def auth_files(folder: Path) -> list[Path]:
    """The files the proxy considers: top-level `*.json`, no dotfiles (temp files of atomic writes)."""
    try:
        return sorted(p for p in Path(folder).iterdir()
                      if p.suffix == ".json" and not p.name.startswith(".") and p.is_file())
    except OSError:
        return []


def snapshot(folder: Path, provider: str) -> dict[str, str]:
    """{file name: sha256 of its bytes} for the auth files of `provider`, to spot a new or rewritten one."""
    found = {}
    for path in auth_files(folder):
        data = read_json(path)
        if data is not None and data.get("type") == provider:
            try:
                found[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue
    return found


def describe(path: Path, data: dict | None = None, now: datetime | None = None) -> dict:
    """What a file holds, never a token: provider, account, email, plan, account id, expiry, mode."""
    data = read_json(path) if data is None else data
    path = Path(path)
    info: dict[str, Any] = {"file": path.name, "path": str(path), "provider": None, "account": None, "email": None,
                            "plan": None, "account_id": None, "expires_at": None, "seconds_left": None,
                            "mode": None}
    try:
        info["mode"] = f"{file_mode(path):04o}"
    except OSError:
        pass
    if data is None:
        return info
    provider = text_claim(data.get("type"))
    info["provider"] = provider
    if provider == CODEX:
        ids, access = lenient_claims(data.get("id_token")), lenient_claims(data.get("access_token"))
        info["email"] = text_claim(data.get("email") or ids.get("email") or claim(ids, OPENAI_PROFILE_CLAIM, "email")
                                   or claim(access, OPENAI_PROFILE_CLAIM, "email"))
        info["plan"] = text_claim(claim(ids, OPENAI_AUTH_CLAIM, "chatgpt_plan_type") or
                                  claim(access, OPENAI_AUTH_CLAIM, "chatgpt_plan_type"))
        info["account_id"] = text_claim(data.get("account_id") or claim(ids, OPENAI_AUTH_CLAIM, "chatgpt_account_id"))
        info["account"] = info["email"]
    else:
        info["email"] = text_claim(data.get("email"))
        info["account"] = text_claim(data.get("username")) or info["email"] or text_claim(data.get("label"))
    moment = expiry(data)
    if moment is not None:
        now = now or datetime.now(timezone.utc)
        info["expires_at"] = rfc3339(moment)
        info["seconds_left"] = int((moment - now).total_seconds())
    return info


def private_folder(folder: Path) -> Path:
    """Create `folder` 0700, or take the group and other bits off an existing one."""
    ensure_dir(folder, 0o700)
    try:
        mode = file_mode(folder)
        if mode & 0o077:
            os.chmod(folder, mode & 0o700)
    except OSError as exc:
        raise RouterError(f"cannot make {folder} private: {exc.strerror or exc}",
                          hint="use a folder you own", exit_code=USAGE) from None
    return folder


def record_login(cfg, provider: str, result: str, **detail: Any) -> None:
    """The `oauth_login` event; `detail` holds the account email or the error, never a token."""
    events.for_config(cfg).append("oauth_login", provider=provider, result=result,
                                  detail={k: v for k, v in detail.items() if v not in (None, "")} or None)


def span(seconds: float) -> str:
    """A rough duration: `9d 23h`, `5h 12m`, `42m`."""
    seconds = int(abs(seconds))
    days, hours, minutes = seconds // 86400, seconds // 3600 % 24, seconds // 60 % 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"
