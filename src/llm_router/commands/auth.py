"""`auth codex login|import-headless`, `auth copilot login`, `auth status`.

Progress during a login (the URL to open, the device code) goes to stderr as it happens, so `--json` keeps
stdout to one envelope.
"""
from __future__ import annotations

import select
import sys
from pathlib import Path

from .. import auth
from ..auth.files import COPILOT, parse_time, span
from ..auth.status import quota_summary
from ..output import Result, table
from . import Ctx

STOP_HINT = "llm-router service stop cliproxyapi_plus"


def notify(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _stdin_line() -> str | None:
    """A line the user pasted, without blocking (the login keeps polling meanwhile)."""
    if not select.select([sys.stdin], [], [], 0)[0]:
        return None
    return sys.stdin.readline().strip() or None


def _paste_reader():
    return _stdin_line if sys.stdin is not None and sys.stdin.isatty() else None


def _when(info: dict) -> str:
    moment = parse_time(info.get("expires_at"))
    if moment is None:
        return "no expiry"
    left = info["seconds_left"]
    when = moment.astimezone().strftime("%Y-%m-%d %H:%M")
    return f"expires {when} ({'in ' + span(left) if left > 0 else 'expired ' + span(left) + ' ago'})"


def _account(info: dict) -> str:
    parts = [info.get("account") or "unknown account"]
    if info.get("plan"):
        parts.append(f"plan {info['plan']}")
    return ", ".join([*parts, _when(info)])


def _login_result(command: str, label: str, info: dict, ctx: Ctx) -> Result:
    lines = [f"{label} login ok: {_account(info)}",
             f"auth file: {info['path']} ({info['change']}, mode {info['mode']})"]
    if info["proxy_started"]:
        lines.append(f"CLIProxyAPIPlus was started for this login and is still running (pid {info['proxy_pid']}, "
                     f"port {info['proxy_port']}) with the new account; stop it with `{STOP_HINT}`.")
    return Result(command, data=info, text="\n".join(lines))


def codex_login(ctx: Ctx, timeout: float = 180.0, poll_interval: float = 2.0, no_browser: bool = False,
                callback_url: str | None = None) -> Result:
    info = auth.codex_login(ctx.config, timeout=timeout, poll_interval=poll_interval, open_browser=not no_browser,
                            callback_url=callback_url, notify=notify, read_pasted=_paste_reader())
    return _login_result("auth codex login", "Codex", info, ctx)


def copilot_login(ctx: Ctx, timeout: float = 180.0, poll_interval: float = 2.0) -> Result:
    info = auth.copilot_login(ctx.config, timeout=timeout, poll_interval=poll_interval, notify=notify)
    return _login_result("auth copilot login", "GitHub Copilot", info, ctx)


def codex_import(ctx: Ctx, source: str | None = None, dest_dir: str | None = None, force: bool = False) -> Result:
    info = auth.import_codex(ctx.config, source=Path(source) if source else None,
                             dest_dir=Path(dest_dir) if dest_dir else None, force=force)
    warnings = info.pop("warnings")
    proxy = {"picked up": "CLIProxyAPIPlus picked it up.",
             "not running": "CLIProxyAPIPlus is not running; it loads the file when it starts "
                            "(`llm-router service start cliproxyapi_plus`)."}.get(info["proxy"], "")
    replaced = ", replaced the previous one" if info["replaced"] else ""
    lines = [f"Imported Codex account: {_account(info)}", f"auth file: {info['path']} (mode {info['mode']}{replaced})",
             proxy]
    return Result("auth codex import-headless", data=info, text="\n".join(filter(None, lines)),
                  warnings=warnings)


def _left(info: dict) -> str:
    left = info.get("seconds_left")
    if left is None:
        return "-"
    return span(left) if left > 0 else f"expired {span(left)} ago"


def _quota_entry(account: dict, quota: dict | None) -> dict | None:
    """The running CLIProxyAPIPlus's `/copilot-quota` entry for one Copilot account (matched by file name)."""
    if quota is None or account["provider"] != COPILOT:
        return None
    return next((e for e in quota.get("accounts") or [] if e["name"] == account["file"]), None)


def _quota_cell(account: dict, quota: dict | None) -> str:
    """Remaining Copilot quota (premium requests; chat and completions where limited) and reset date where the
    running CLIProxyAPIPlus tells it, else unknown."""
    if quota is None:
        return ""
    entry = _quota_entry(account, quota)
    return "unknown" if entry is None else quota_summary(entry)


def _quota_notes(accounts: list[dict], quota: dict | None) -> list[str]:
    notes = []
    for account in accounts:
        entry = _quota_entry(account, quota)
        if entry is not None and entry["notes"]:
            notes.append(f"quota {account['file']}: {'; '.join(entry['notes'])}")
    return notes


def show_status(ctx: Ctx, quota: bool = False) -> Result:
    report = auth.status(ctx.config)
    accounts = report["accounts"]
    proxy = report["proxy"]
    found = None
    if quota:  # asked of the running CLIProxyAPIPlus, on a line with /copilot-quota (models_view.cliproxy_quota)
        from ..models_view import cliproxy_quota

        found = report["quota"] = cliproxy_quota(ctx.config)
    rows = [[a["provider"] or "?", a["account"] or "-", a["plan"] or "-",
             (parse_time(a["expires_at"]).astimezone().strftime("%Y-%m-%d %H:%M") if a["expires_at"] else "-"),
             _left(a), a["mode"] or "-", a["proxy_status"] or "-", a["level"], a["file"]]
            + ([_quota_cell(a, found)] if quota else []) for a in accounts]
    if accounts:
        text = table(rows, ["PROVIDER", "ACCOUNT", "PLAN", "EXPIRES", "LEFT", "MODE", "PROXY", "STATUS", "FILE"]
                     + (["QUOTA"] if quota else []))
        if quota and found is not None and not found.get("available"):
            text += f"\nquota: unknown ({found.get('reason') or 'not reported'})"
        elif quota:
            text += "".join(f"\n{line}" for line in _quota_notes(accounts, found))
    else:
        text = (f"no accounts in {report['auth_dir']}: add one with `llm-router auth codex login`, "
                "`llm-router auth copilot login` or `llm-router auth codex import-headless`")
    if not proxy["running"]:
        text += "\nCLIProxyAPIPlus is not running: the PROXY column is empty."
    elif proxy["error"]:
        text += f"\nCLIProxyAPIPlus could not be asked: {proxy['error']}"
    warnings = [f"{a['file']}: {problem}" for a in accounts for problem in a["problems"]]
    return Result("auth status", data=report, text=text, warnings=warnings)


def _timing(parser) -> None:
    parser.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS",
                        help="give up after this long (default 180)")
    parser.add_argument("--poll-interval", type=float, default=2.0, metavar="SECONDS",
                        help="how often to ask the proxy whether the login is done (default 2)")


def add_parsers(sub, common) -> None:
    parser = sub.add_parser("auth", help="log Codex and Copilot accounts in, import the Codex CLI's, list them",
                            parents=[common])
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    codex = actions.add_parser("codex", help="Codex (ChatGPT) accounts", parents=[common])
    verbs = codex.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("login", help="log in through CLIProxyAPIPlus (browser, or paste the redirect URL)",
                         parents=[common])
    _timing(p)
    p.add_argument("--no-browser", action="store_true", help="print the URL only; do not open a browser")
    p.add_argument("--callback-url", metavar="URL",
                   help="finish a login whose URL was opened elsewhere: the address the browser ended on")
    p.set_defaults(action="codex login", run=lambda ctx, a: codex_login(
        ctx, timeout=a.timeout, poll_interval=a.poll_interval, no_browser=a.no_browser, callback_url=a.callback_url))
    p = verbs.add_parser("import-headless", help="import the Codex CLI's ChatGPT login (~/.codex/auth.json)",
                         parents=[common])
    p.add_argument("--source", metavar="PATH", help="default: $CODEX_HOME/auth.json, else ~/.codex/auth.json")
    p.add_argument("--dest-dir", metavar="DIR", help="default: the proxy's auth folder (<runtime_dir parent>/auths)")
    p.add_argument("--force", action="store_true", help="replace an existing file even if its token is newer")
    p.set_defaults(action="codex import-headless",
                   run=lambda ctx, a: codex_import(ctx, source=a.source, dest_dir=a.dest_dir, force=a.force))

    copilot = actions.add_parser("copilot", help="GitHub Copilot accounts", parents=[common])
    verbs = copilot.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("login", help="log in with GitHub's device code", parents=[common])
    _timing(p)
    p.set_defaults(action="copilot login",
                   run=lambda ctx, a: copilot_login(ctx, timeout=a.timeout, poll_interval=a.poll_interval))

    p = actions.add_parser("status", help="every account: provider, plan, expiry, file mode, proxy status",
                           parents=[common])
    p.add_argument("--quota", action="store_true",
                   help="also ask the running CLIProxyAPIPlus for each Copilot account's remaining quota")
    p.set_defaults(run=lambda ctx, a: show_status(ctx, quota=a.quota))
