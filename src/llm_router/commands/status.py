"""`status` and `health` (top-level, and `service status`): what the supervisor sees, in one line per service.

A module of its own so that `llm-router status`, the command run most often, imports and builds only this."""
from __future__ import annotations

from .. import stack
from ..output import Result, duration, table
from . import Ctx

NAMES_HELP = "all (default), cliproxyapi_plus, litellm or redis (when services.redis is enabled)"


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1_048_576:.0f} MB"


def status_line(st: stack.ServiceStatus) -> list[str]:
    if st.state != stack.RUNNING:
        detail = st.detail or f"port {st.port}"
        return [st.name, st.state, f"{detail}, log {st.log}"]
    parts = [f"pid {st.pid}", f"port {st.port}", f"uptime {duration(st.uptime)}", f"rss {_mb(st.rss_bytes)}"]
    if st.restarts:
        parts.append(f"restarts {st.restarts}")
    if st.profile:
        parts.append(f"profile {st.profile}")
    if st.mode:
        parts.append(f"mode {st.mode}")
    if st.version:
        parts.append(f"version {st.version}" + (f" ({st.line})" if st.line else ""))
    if st.workers:
        parts.append(f"workers {sum(1 for w in st.workers if w['serving'])}/{len(st.workers)} serving")
    parts.append(f"log {st.log}")
    return [st.name, st.state, ", ".join(parts)]


def worker_lines(st: stack.ServiceStatus) -> list[list[str]]:
    """One indented line per gunicorn worker under the litellm line."""
    return [[f"  worker {w['pid']}", "SERVING" if w["serving"] else "BOOTING",
             f"uptime {duration(w['uptime'])}, rss {_mb(w['rss_bytes'])}"] for w in st.workers]


def show_status(ctx: Ctx, names: list[str] | None = None) -> Result:
    statuses = stack.status(ctx.config, names or "all")
    pending = stack.pending_switch(ctx.config)
    return Result("status", data={"services": [s.to_dict() for s in statuses]},
                  text=table([row for s in statuses for row in [status_line(s), *worker_lines(s)]]),
                  warnings=list(filter(None, [pending])))


def check_health(ctx: Ctx, names: list[str] | None = None) -> Result:
    results = stack.health_check(ctx.config, names or "all")
    rows = []
    for r in results:
        probe = r["probe"]
        answer = f"HTTP {probe['status']}" if probe["status"] else probe["error"] or "PONG"
        verb = "PING" if r["service"] == "redis" else "GET"
        rows.append([r["service"], "live" if r["live"] else "not live", "ready" if r["ready"] else "NOT READY",
                     f"{verb} {probe['url']} -> {answer}" + (f" in {probe['latency_ms']:.0f} ms"
                                                             if probe["latency_ms"] is not None else "")])
        if r.get("shared_state"):
            rows.append(["", "", "", f"router state: {r['shared_state']['detail']}"])
    ok = all(r["ready"] for r in results)
    degraded = [r["shared_state"]["detail"] for r in results if r.get("shared_state") and not r["shared_state"]["ok"]]
    return Result("health", data={"services": results}, text=table(rows), ok=ok,
                  warnings=degraded)


def with_names(subparsers, verb: str, doc: str, fn, common):
    """A subcommand taking service NAMEs (none: all) that runs fn(ctx, names=...)."""
    p = subparsers.add_parser(verb, help=doc, parents=[common])
    p.add_argument("names", nargs="*", metavar="NAME", help=NAMES_HELP)
    p.set_defaults(run=lambda ctx, a: fn(ctx, names=a.names))
    return p


def add_parsers(sub, common) -> None:
    with_names(sub, "status", "supervisor-style state of each service", show_status, common)
    with_names(sub, "health", "liveness and readiness; exit 0 only if all are ready", check_health, common)
