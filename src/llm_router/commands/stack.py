"""`up` and `down`: the whole stack in one command (bootstrap if needed, a profile, start, health; and stop)."""
from __future__ import annotations

from .. import stack
from ..output import Result, table
from . import Ctx
from .service import action_line


def up(ctx: Ctx, profile: str | None = None, timeout: float | None = None) -> Result:
    """Install CLIProxyAPIPlus when it is missing, activate `profile` (else the default profile when none is
    active), `service start all`, then `health`; exit 1 unless every service is ready."""
    from .. import bootstrap, profiles, switch

    cfg = ctx.config
    lines, data = [], {}
    if not cfg.layout.cliproxy_binary.is_file():
        outcome = bootstrap.install(cfg)
        data["bootstrap"] = outcome.to_dict()
        lines.append(f"bootstrap: installed CLIProxyAPIPlus {outcome.version} ({outcome.result})")
    if profile:
        switched = switch.set_profile(cfg, profile)
        info = {"name": switched.name}
        lines.append(f"profile: {profile} active (was {switched.previous or 'none'})")
    elif profiles.active(cfg) is None:
        info = switch.ensure_active(cfg)
        lines.append(f"profile: {info['name']} activated (none was active)")
    else:
        info = profiles.active(cfg)
        lines.append(f"profile: {info['name']} (active)")
    data["profile"] = info.get("name") if info else None
    outcomes = stack.start(cfg, "all", timeout=timeout)
    data["start"] = [o.to_dict() for o in outcomes]
    lines += [action_line(o) for o in outcomes]
    results = stack.health_check(cfg)
    data["health"] = results
    rows = [[r["service"], "ready" if r["ready"] else "NOT READY",
             f"GET {r['probe']['url']} -> " + (f"HTTP {r['probe']['status']}" if r["probe"]["status"]
                                               else str(r["probe"]["error"]))] for r in results]
    lines.append(table(rows))
    ok = all(r["ready"] for r in results)
    if ok:
        lines.append(f"up: OpenAI-compatible endpoint {cfg.services['litellm'].base_url}/v1 "
                     "(key: LITELLM_MASTER_KEY, or .router/secrets/LITELLM_MASTER_KEY)")
    return Result("up", data=data, text="\n".join(lines), ok=ok)


def down(ctx: Ctx) -> Result:
    outcomes = stack.stop(ctx.config, "all")
    return Result("down", data={"results": [o.to_dict() for o in outcomes]},
                  text="\n".join(action_line(o) for o in outcomes))


def add_parsers(sub, common) -> None:
    p = sub.add_parser("up", help="bootstrap if the binary is missing, activate the default profile if none is "
                                  "active, start all services, check health", parents=[common])
    p.add_argument("--profile", metavar="NAME", help="activate this profile first")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="readiness timeout per service")
    p.set_defaults(run=lambda ctx, a: up(ctx, profile=a.profile, timeout=a.timeout))
    p = sub.add_parser("down", help="stop all services (LiteLLM first)", parents=[common])
    p.set_defaults(run=lambda ctx, a: down(ctx))
