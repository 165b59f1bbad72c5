"""Import the Codex CLI's ChatGPT login (`~/.codex/auth.json`) as a CLIProxyAPIPlus auth file, for machines
where no browser login is possible. JWT claims are read without verifying signatures."""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .. import stack
from ..cliproxy import SERVICE, Management
from ..errors import AUTH, CONFLICT, NOT_FOUND, USAGE, RouterError, from_os_error
from ..fsutil import atomic_write, read_text_bounded
from .files import (
    CODEX,
    OPENAI_AUTH_CLAIM,
    OPENAI_PROFILE_CLAIM,
    JWTError,
    claim,
    codex_file_name,
    describe,
    email_claim,
    expiry,
    jwt_claims,
    parse_time,
    private_folder,
    read_json,
    record_login,
    rfc3339,
    safe_file_name,
    text_claim,
)

MAX_SOURCE_BYTES = 1 << 20  # an auth.json is a few KB
PICKUP_TIMEOUT = 10.0  # how long to wait for a running proxy to list the new file
ROTATION_WARNING = ("once CLIProxyAPIPlus refreshes this token, the Codex CLI's copy stops working (refresh tokens "
                    "rotate; it fails with refresh_token_reused): use the account in one of them, or log the Codex "
                    "CLI in again afterwards")
LOGIN_HINT = "log in to the Codex CLI with `codex login` (Sign in with ChatGPT), or use `llm-router auth codex login`"


def default_source(environ: dict | None = None) -> Path:
    """`$CODEX_HOME/auth.json`, default `~/.codex/auth.json`."""
    env = os.environ if environ is None else environ
    return Path(env.get("CODEX_HOME") or Path.home() / ".codex").expanduser() / "auth.json"


def _read_source(source: Path) -> dict:
    try:
        text = read_text_bounded(source, MAX_SOURCE_BYTES, "the Codex CLI auth file")  # no FIFO, device, huge file
    except FileNotFoundError:
        raise RouterError(f"Codex CLI auth file not found: {source}",
                          hint=f"{LOGIN_HINT}; if the Codex CLI keeps its login in the OS keyring, set "
                               "cli_auth_credentials_store = \"file\" in ~/.codex/config.toml and log in again; "
                               "or pass --source PATH", exit_code=NOT_FOUND) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise RouterError(f"cannot read the Codex CLI auth file {source}: {reason}",
                          hint="check the path and its permissions", exit_code=USAGE) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RouterError(f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno})",
                          hint=f"the file may be truncated: {LOGIN_HINT}", exit_code=AUTH) from None
    if not isinstance(data, dict):
        raise RouterError(f"{source} is not a Codex CLI auth file (expected a JSON object)", exit_code=AUTH)
    return data


def _tokens(source: Path, data: dict) -> dict:
    tokens = data.get("tokens")
    if not isinstance(tokens, dict):
        what = "holds only an API key" if data.get("OPENAI_API_KEY") else "has no ChatGPT tokens"
        raise RouterError(f"{source} {what}; an import needs a ChatGPT login", hint=LOGIN_HINT, exit_code=AUTH)
    for key in ("id_token", "access_token", "refresh_token"):
        if not isinstance(tokens.get(key), str) or not tokens[key]:
            raise RouterError(f"{source}: tokens.{key} is missing", hint=LOGIN_HINT, exit_code=AUTH)
    return tokens


def _claims(source: Path, tokens: dict, key: str) -> dict:
    try:
        return jwt_claims(tokens[key])
    except JWTError as exc:
        raise RouterError(f"{source}: tokens.{key} is not a valid JWT: {exc}", hint=LOGIN_HINT,
                          exit_code=AUTH) from None


def build_record(source: Path, data: dict, now: datetime | None = None) -> tuple[str, dict]:
    """(file name, CLIProxyAPIPlus auth record) from a parsed Codex CLI auth.json."""
    tokens = _tokens(source, data)
    ids, access = _claims(source, tokens, "id_token"), _claims(source, tokens, "access_token")
    raw_email = ids.get("email") or claim(ids, OPENAI_PROFILE_CLAIM, "email") or \
        claim(access, OPENAI_PROFILE_CLAIM, "email")
    if not isinstance(raw_email, str) or not raw_email:
        raise RouterError(f"{source}: the id_token has no email claim", hint=LOGIN_HINT, exit_code=AUTH)
    email = email_claim(raw_email)
    if email is None:
        raise RouterError(f"{source}: the id_token's email claim is not a usable email address "
                          f"({text_claim(raw_email, 40)!r}, {len(raw_email)} characters)", hint=LOGIN_HINT,
                          exit_code=AUTH)
    exp = access.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise RouterError(f"{source}: the access_token has no exp (expiry) claim", hint=LOGIN_HINT, exit_code=AUTH)
    expires = parse_time(exp)
    if expires is None:
        raise RouterError(f"{source}: the access_token's exp (expiry) claim is not a valid time ({exp!r:.40})",
                          hint=LOGIN_HINT, exit_code=AUTH)
    account_id = tokens.get("account_id") or claim(ids, OPENAI_AUTH_CLAIM, "chatgpt_account_id") or \
        claim(access, OPENAI_AUTH_CLAIM, "chatgpt_account_id")
    account_id = account_id if isinstance(account_id, str) else None
    plan = claim(ids, OPENAI_AUTH_CLAIM, "chatgpt_plan_type") or claim(access, OPENAI_AUTH_CLAIM, "chatgpt_plan_type")
    name = codex_file_name(email, plan if isinstance(plan, str) else None, account_id)
    if not safe_file_name(name):
        raise RouterError(f"{source}: the email or plan claim cannot be used in a file name "
                          f"({text_claim(name, 60)!r})", hint=LOGIN_HINT, exit_code=AUTH)
    record = {
        "id_token": tokens["id_token"],
        "access_token": tokens["access_token"],
        "refresh_token": tokens["refresh_token"],
        "account_id": account_id or "",
        "last_refresh": data.get("last_refresh") if isinstance(data.get("last_refresh"), str) and data["last_refresh"]
        else rfc3339(now or datetime.now(timezone.utc)),
        "email": email,
        "type": CODEX,
        "expired": rfc3339(expires),
    }
    return name, record


def import_codex(cfg, *, source: Path | None = None, dest_dir: Path | None = None, force: bool = False,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> dict:
    """Write `codex-<email>-<plan>.json` (0600, in a 0700 folder) from the Codex CLI's auth.json.

    An existing file whose token expires later is kept unless `force`. When the proxy runs and reads
    `dest_dir`, waits until `/auth-files` lists the file. Returns the account (never a token) and warnings.
    """
    source = Path(source).expanduser() if source else default_source()
    dest_dir = Path(dest_dir).expanduser().absolute() if dest_dir else cfg.layout.auths_dir
    try:
        name, record = build_record(source, _read_source(source))
        target = dest_dir / name
        replaced = target.exists()
        existing = read_json(target) if replaced else None
        new_expiry = expiry(record)
        old_expiry = expiry(existing) if existing else None
        if old_expiry and new_expiry and old_expiry > new_expiry and not force:
            raise RouterError(f"{target} already holds a newer token (expires {rfc3339(old_expiry)}, the Codex CLI's "
                              f"expires {rfc3339(new_expiry)})", hint="the proxy has probably refreshed it already; "
                              "--force replaces it with the older token", exit_code=CONFLICT)
        private_folder(dest_dir)
        atomic_write(target, json.dumps(record, indent=2) + "\n", mode=0o600)
    except (RouterError, OSError) as exc:
        error = exc if isinstance(exc, RouterError) else from_os_error(exc)
        record_login(cfg, CODEX, "failed", method="import", error=error.message)
        raise error from None
    info = describe(target, record)
    record_login(cfg, CODEX, "ok", method="import", email=info["email"], file=name)
    warnings = [ROTATION_WARNING]
    info.update({"source": str(source), "replaced": replaced, "proxy": "not running"})
    if dest_dir.resolve() != cfg.layout.auths_dir.resolve():
        info["proxy"] = "not its folder"
        warnings.append(f"CLIProxyAPIPlus reads {cfg.layout.auths_dir}, not {dest_dir}: move the file there to use it")
    else:  # the file is written: from here on a problem is a warning, never a failure of the import
        try:
            running = stack.is_running(cfg, SERVICE)
        except (OSError, RouterError) as exc:
            running = False
            info["proxy"] = "unknown"
            warnings.append(f"cannot tell whether CLIProxyAPIPlus runs: {getattr(exc, 'message', None) or exc}")
        if running:
            info["proxy"] = _confirm_pickup(cfg, name, sleep, clock)
            if info["proxy"] != "picked up":
                warnings.append(f"CLIProxyAPIPlus has not listed {name} yet ({info['proxy']}); check "
                                "`llm-router auth status` in a moment")
    return {**info, "warnings": warnings}


def _confirm_pickup(cfg, name: str, sleep: Callable[[float], None], clock: Callable[[], float]) -> str:
    deadline = clock() + PICKUP_TIMEOUT
    try:
        mgmt = Management(cfg)
        while True:
            listed = mgmt.get("auth-files")
            files = listed.get("files") if isinstance(listed, dict) else None
            if any(isinstance(f, dict) and f.get("name") == name for f in files or []):
                return "picked up"
            if clock() >= deadline:
                return f"not listed after {PICKUP_TIMEOUT:g} s"
            sleep(0.25)
    except RouterError as exc:
        return f"cannot ask it: {exc.message}"
