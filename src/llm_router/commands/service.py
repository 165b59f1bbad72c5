"""`service start|stop|restart|status|logs|watch|install|uninstall`."""
from __future__ import annotations

from .. import stack
from ..output import Result
from ..supervisor.model import ServiceOutcome
from . import Ctx
from .status import show_status, with_names


def action_line(outcome: ServiceOutcome) -> str:
    """One service's outcome as text: `litellm  started (pid 812, port 4000, ...)` and its notes."""
    extra = [f"{label} {value}" for label, value in (("pid", outcome.pid), ("port", outcome.port),
                                                     ("profile", outcome.profile), ("version", outcome.version))
             if value]
    line = f"{outcome.service}  {outcome.result}" + (f" ({', '.join(extra)})" if extra else "")
    return "\n".join([line, *(f"  note: {n}" for n in outcome.notes)])


def _action(ctx: Ctx, verb: str, outcomes: list[ServiceOutcome]) -> Result:
    return Result(f"service {verb}", data={"results": [o.to_dict() for o in outcomes]},
                  text="\n".join(action_line(o) for o in outcomes))


def start(ctx: Ctx, names: list[str] | None = None, timeout: float | None = None) -> Result:
    return _action(ctx, "start", stack.start(ctx.config, names or "all", timeout=timeout))


def stop(ctx: Ctx, names: list[str] | None = None) -> Result:
    return _action(ctx, "stop", stack.stop(ctx.config, names or "all"))


def restart(ctx: Ctx, names: list[str] | None = None, timeout: float | None = None) -> Result:
    return _action(ctx, "restart", stack.restart(ctx.config, names or "all", timeout=timeout))


def logs(ctx: Ctx, name: str, lines: int = 50, follow: bool = False) -> Result:
    cfg = ctx.config
    tail = stack.tail_log(cfg, name, lines) if not follow or stack.log_path(cfg, name).exists() else []
    return Result("service logs", data={"service": name, "path": str(stack.log_path(cfg, name)), "lines": tail},
                  text="\n".join(tail),
                  stream=stack.follow_log(cfg, name) if follow else None)


def _watch_line(item: dict) -> str:
    from ..events import now_iso

    if "watch" in item:
        if item["watch"] == "started":
            return f"{now_iso()}  watch started (pid {item['pid']}): {', '.join(item['services'])}"
        stopped = ", ".join(item["stopped"]) or "nothing"
        return f"{now_iso()}  watch stopped; stopped what it started: {stopped}"
    extra = item.get("detail") or (f"pid {item['pid']}" if item.get("pid") else "")
    return f"{now_iso()}  {item['service']}  {item['state']}  {extra}".rstrip()


def watch(ctx: Ctx, names: list[str] | None = None, interval: float = 5.0, max_failures: int = 5) -> Result:
    from ..watch import Policy, Watch

    if interval <= 0 or max_failures < 1:
        from ..errors import RouterError
        raise RouterError("--interval must be positive and --max-failures at least 1")
    supervisor = Watch(ctx.config, names or "all", Policy(interval=interval, max_failures=max_failures))
    return Result("service watch", data=None, text="", stream=supervisor.run(),
                  render_item=_watch_line)


def install(ctx: Ctx, kind: str | None = None, user: bool = True, unit_dir: str | None = None) -> Result:
    from pathlib import Path

    from ..supervisor import units

    outcome = units.install(ctx.config, kind, user=user, unit_dir=Path(unit_dir) if unit_dir else None)
    text = "\n".join([f"installed {outcome['kind']} unit: {outcome['path']}", f"enable it: {outcome['enable']}",
                      *(f"note: {n}" for n in outcome["notes"])])
    return Result("service install", data=outcome, text=text)


def uninstall(ctx: Ctx, kind: str | None = None, user: bool = True, unit_dir: str | None = None) -> Result:
    from pathlib import Path

    from ..supervisor import units

    outcome = units.uninstall(ctx.config, kind, user=user, unit_dir=Path(unit_dir) if unit_dir else None)
    text = f"removed {outcome['path']}\nif it was enabled, also run: {outcome['disable_first']}"
    return Result("service uninstall", data=outcome, text=text)


def add_parsers(sub, common) -> None:
    svc = sub.add_parser("service", help="start, stop, restart services or read their logs", parents=[common])
    actions = svc.add_subparsers(dest="action", metavar="ACTION", required=True)
    for verb, fn, doc in (("start", start, "start services (CLIProxyAPIPlus first, then LiteLLM)"),
                          ("restart", restart, "stop then start services")):
        p = with_names(actions, verb, doc, fn, common)
        p.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="readiness timeout (default: startup_timeout, or $STARTUP_TIMEOUT)")
        p.set_defaults(run=lambda ctx, a, fn=fn: fn(ctx, names=a.names, timeout=a.timeout))
    with_names(actions, "stop", "stop services (LiteLLM first)", stop, common)
    with_names(actions, "status", "same as `llm-router status`", show_status, common)
    p = actions.add_parser("logs", help="print a service's log", parents=[common])
    p.add_argument("name", metavar="NAME", help="cliproxyapi_plus or litellm")
    p.add_argument("-n", type=int, default=50, metavar="N", help="how many lines (default 50)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    p.set_defaults(run=lambda ctx, a: logs(ctx, a.name, lines=a.n, follow=a.follow))

    p = with_names(actions, "watch", "foreground supervisor: restart crashed or wedged services with backoff (for "
                                      "systemd, launchd, tmux, nohup)", watch, common)
    p.add_argument("--interval", type=float, default=5.0, metavar="SECONDS", help="check period (default 5)")
    p.add_argument("--max-failures", type=int, default=5, metavar="N",
                   help="failed restarts within 5 minutes before a service is FATAL (default 5)")
    p.set_defaults(run=lambda ctx, a: watch(ctx, names=a.names, interval=a.interval, max_failures=a.max_failures))
    for verb, fn, doc in (("install", install, "run `service watch all` at login/boot (systemd or launchd)"),
                          ("uninstall", uninstall, "remove the unit installed by `service install`")):
        p = actions.add_parser(verb, help=doc, parents=[common])
        kind = p.add_mutually_exclusive_group()
        kind.add_argument("--systemd", dest="kind", action="store_const", const="systemd")
        kind.add_argument("--launchd", dest="kind", action="store_const", const="launchd")
        scope = p.add_mutually_exclusive_group()
        scope.add_argument("--user", dest="user", action="store_true", default=True,
                           help="a per-user unit (default)")
        scope.add_argument("--system", dest="user", action="store_false", help="a system-wide unit (needs root)")
        p.add_argument("--unit-dir", metavar="DIR", help="write the unit here instead of the standard folder")
        p.set_defaults(run=lambda ctx, a, fn=fn: fn(ctx, kind=a.kind, user=a.user, unit_dir=a.unit_dir))
