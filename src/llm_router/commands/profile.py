"""`profile list|show|diff|set|prove`."""
from __future__ import annotations

from .. import profiles
from ..output import Result, table
from . import Ctx


def _display(ctx: Ctx, path) -> str:
    """A template path relative to the repo root when it is inside it."""
    try:
        return str(path.relative_to(ctx.config.root))
    except ValueError:
        return str(path)


def list_(ctx: Ctx) -> Result:
    cfg = ctx.config
    current = profiles.active(cfg)
    active_name = current["name"] if current else None
    rows, data = [], []
    for p in profiles.available(cfg):
        marker = "*" if p.name == active_name else ("default" if active_name is None and p.name == cfg.default_profile
                                                     else "")
        rows.append([p.name, marker, p.source, _display(ctx, p.path), p.description])
        data.append({"name": p.name, "description": p.description, "source": p.source, "path": str(p.path),
                     "active": p.name == active_name})
    text = table(rows, ["NAME", "ACTIVE", "SOURCE", "FILE", "DESCRIPTION"])
    if active_name is None:
        text += f"\nno profile is active yet; `default` marks default_profile ({cfg.default_profile})"
    return Result("profile list", data={"active": active_name, "default": cfg.default_profile, "profiles": data},
                  text=text)


def show(ctx: Ctx, name: str | None = None) -> Result:
    cfg = ctx.config
    current = profiles.active(cfg)
    name = name or (current["name"] if current else cfg.default_profile)
    text = profiles.render(cfg, name)
    return Result("profile show", data={"name": name, "config": text}, text=text)


def diff(ctx: Ctx, a: str, b: str) -> Result:
    text = profiles.diff(ctx.config, a, b)
    return Result("profile diff", data={"a": a, "b": b, "identical": not text, "diff": text},
                  text=text or f"profiles {a} and {b} render the same config")


def set_(ctx: Ctx, name: str, deep: bool = False) -> Result:
    from .. import switch

    result = switch.set_profile(ctx.config, name, deep=deep)
    applied = result.applied
    how = {"worker swap": f"LiteLLM serves it now (new worker ready in {applied.get('worker_ready_s')} s, "
                          f"old worker retired; no request refused)",
           "restart": "LiteLLM restarted on it and is ready (uvicorn mode: connections were refused meanwhile)",
           "not running": "LiteLLM is not running; it uses this profile when it starts"}[result.how]
    lines = [f"profile {name} active (sha256 {result.sha256[:12]}, was {result.previous or 'none'}, "
             f"{result.seconds} s); {how}", f"config: {result.config}"]
    lines += [f"note: {n}" for n in applied.get("notes") or []]
    return Result("profile set", data=result.to_dict(), text="\n".join(lines))


def prove(ctx: Ctx, names: list[str] | None = None) -> Result:
    from ..litellm import prove as prover

    verdicts = prover.prove_profiles(ctx.config, names or None)
    rows = [[name, "ok" if v["ok"] else "FAIL", "cached" if v["cached"] else "loaded",
             v["error"] or f"{v['models']} deployments"] for name, v in verdicts.items()]
    ok = all(v["ok"] for v in verdicts.values())
    return Result("profile prove", data={"profiles": verdicts}, text=table(rows), ok=ok,
                  exit_code=None if ok else 2)


def add_parsers(sub, common) -> None:
    parser = sub.add_parser("profile", help="list, show, compare or activate LiteLLM policy profiles",
                            parents=[common])
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every profile: name, active marker, source, file, description",
                       parents=[common]).set_defaults(run=lambda ctx, a: list_(ctx))
    show_parser = actions.add_parser("show", help="print a profile's rendered LiteLLM config", parents=[common])
    show_parser.add_argument("name", nargs="?", metavar="NAME", help="default: the active profile")
    show_parser.set_defaults(run=lambda ctx, a: show(ctx, a.name))
    diff_parser = actions.add_parser("diff", help="compare two rendered profiles", parents=[common])
    diff_parser.add_argument("a", metavar="A")
    diff_parser.add_argument("b", metavar="B")
    diff_parser.set_defaults(run=lambda ctx, a: diff(ctx, a.a, a.b))
    set_parser = actions.add_parser("set", help="render, validate and activate a profile (a running LiteLLM "
                                                "switches live; the previous profile comes back on failure)",
                                    parents=[common])
    set_parser.add_argument("name", metavar="NAME")
    set_parser.add_argument("--deep", action="store_true",
                            help="also run `litellm --validate_config` on the rendered file (slow)")
    set_parser.set_defaults(run=lambda ctx, a: set_(ctx, a.name, deep=a.deep))
    prove_parser = actions.add_parser("prove", help="load profiles in LiteLLM once and cache the verdict (a live "
                                                    "switch needs a proven profile)", parents=[common])
    prove_parser.add_argument("names", nargs="*", metavar="NAME", help="default: every profile")
    prove_parser.add_argument("--all", action="store_true", help="every profile (the default)")
    prove_parser.set_defaults(run=lambda ctx, a: prove(ctx, a.names))
