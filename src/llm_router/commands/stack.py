"""`up` and `down`: the whole stack in one command (bootstrap if needed, a profile, start, health; and stop)."""
from __future__ import annotations

from .. import services
from ..output import Result, table
from . import Ctx
from .service import _action_line


def up(ctx: Ctx, profile: str | None = None, timeout: float | None = None) -> Result:
    """Install CLIProxyAPIPlus when it is missing, activate `profile` (else the default profile when none is
    active), `service start all`, then `health`; exit 1 unless every service is ready."""
    from .. import bootstrap, profiles

    cfg = ctx.config
    lines, data = [], {}
    if not cfg.layout.cliproxy_binary.is_file():
        outcome = bootstrap.download(cfg)
        data["bootstrap"] = outcome
        lines.append(f"bootstrap: installed CLIProxyAPIPlus {outcome.get('version')} ({outcome.get('result')})")
    if profile:
        info = profiles.set_profile(cfg, profile)
        lines.append(f"profile: {profile} active (was {info['previous'] or 'none'})")
    elif profiles.active(cfg) is None:
        info = profiles.ensure_active(cfg)
        lines.append(f"profile: {info['name']} activated (none was active)")
    else:
        info = profiles.active(cfg)
        lines.append(f"profile: {info['name']} (active)")
    data["profile"] = info.get("name") if info else None
    outcomes = services.start(cfg, "all", timeout=timeout)
    data["start"] = outcomes
    lines += [_action_line(o) for o in outcomes]
    results = services.health_check(cfg)
    data["health"] = results
    rows = [[r["service"], "ready" if r["ready"] else "NOT READY",
             f"GET {r['probe']['url']} -> " + (f"HTTP {r['probe']['status']}" if r["probe"]["status"]
                                               else str(r["probe"]["error"]))] for r in results]
    lines.append(table(rows))
    ok = all(r["ready"] for r in results)
    if ok:
        lines.append(f"up: OpenAI-compatible endpoint {cfg.services['litellm'].base_url}/v1 "
                     "(key: LITELLM_MASTER_KEY, or .router/secrets/LITELLM_MASTER_KEY)")
    return Result("up", data=data, text="\n".join(lines), ok=ok, warnings=list(ctx.warnings))


def down(ctx: Ctx) -> Result:
    outcomes = services.stop(ctx.config, "all")
    return Result("down", data={"results": outcomes}, text="\n".join(_action_line(o) for o in outcomes),
                  warnings=list(ctx.warnings))


def add_parsers(sub, common) -> None:
    p = sub.add_parser("up", help="bootstrap if the binary is missing, activate the default profile if none is "
                                  "active, start all services, check health", parents=[common])
    p.add_argument("--profile", metavar="NAME", help="activate this profile first")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="readiness timeout per service")
    p.set_defaults(run=lambda ctx, a: up(ctx, profile=a.profile, timeout=a.timeout))
    p = sub.add_parser("down", help="stop all services (LiteLLM first)", parents=[common])
    p.set_defaults(run=lambda ctx, a: down(ctx))
