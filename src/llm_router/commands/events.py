"""`events [-n N] [--follow] [--event TYPE]`."""
from __future__ import annotations

from .. import events as events_mod
from ..output import Result
from . import Ctx


def format_event(entry: dict) -> str:
    parts = [entry.get("timestamp") or "-", entry.get("event") or "-"]
    for key in ("service", "profile", "provider", "result"):
        if entry.get(key):
            parts.append(f"{key}={entry[key]}")
    detail = entry.get("detail")
    if detail not in (None, "", {}):
        parts.append(f"detail={detail}")
    return "  ".join(parts)


def show(ctx: Ctx, limit: int = 20, follow: bool = False, event: str | None = None) -> Result:
    log = events_mod.for_config(ctx.config)
    entries = log.read(limit=limit, event=event or None)
    text = "\n".join(format_event(e) for e in entries) if entries else (
        "" if follow else f"no events yet in {log.path}")
    skipped = [f"skipped {log.skipped} unreadable line(s) in {log.path}"] if log.skipped else []
    return Result("events", data={"path": str(log.path), "events": entries}, text=text,
                  warnings=skipped, stream=log.follow(event=event or None) if follow else None,
                  render_item=format_event)


def add_parsers(sub, common) -> None:
    parser = sub.add_parser("events", help="read the JSON-lines event log", parents=[common])
    parser.add_argument("-n", type=int, default=20, metavar="N", help="how many recent events (default 20)")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new events (Ctrl-C stops)")
    parser.add_argument("--event", metavar="TYPE", help="only events of this type, e.g. service_start")
    parser.set_defaults(run=lambda ctx, a: show(ctx, limit=a.n, follow=a.follow, event=a.event))
