"""`config check|show|migrate`."""
from __future__ import annotations

import yaml

from .. import config as config_mod
from ..output import Result
from . import Ctx


def check(ctx: Ctx) -> Result:
    cfg = ctx.config
    data = {"path": str(cfg.path), "config_version": cfg.config_version, "providers": len(cfg.providers),
            "models": len(cfg.models), "warnings": list(cfg.warnings)}
    text = (f"config OK: {cfg.path} (version {cfg.config_version}, {len(cfg.providers)} providers, "
            f"{len(cfg.models)} model groups)")
    notes = _notes(cfg)
    if notes:
        data["notes"] = notes
        text += "\n" + "\n".join(f"note: {n}" for n in notes)
    return Result("config check", data=data, text=text)


def _notes(cfg: config_mod.RouterConfig) -> list[str]:
    """Things that are valid but will matter later (missing files, unset secrets, non-loopback hosts)."""
    notes = []
    cp = cfg.services["cliproxyapi_plus"]
    if cp.config_file and not cp.config_file.is_file():
        notes.append(f"services.cliproxyapi_plus.config_file {cp.config_file} does not exist yet; "
                     f"copy config/examples/cliproxyapi.yaml there")
    for svc in cfg.services.values():
        if not svc.is_loopback:
            notes.append(f"services.{svc.name}.host is {svc.host}: reachable from other machines")
    for name in cfg.secret_names():
        if name not in config_mod.GENERATED_SECRETS and cfg.secret_source(name) == "missing":
            notes.append(f"secret {name} is not set (environment or secret_files)")
    return notes


def show(ctx: Ctx) -> Result:
    data = config_mod.effective(ctx.config)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()
    return Result("config show", data=data, text=text)


def migrate(ctx: Ctx, write: bool = False) -> Result:
    path, _ = config_mod.resolve_config_path(ctx.config_path)
    outcome = config_mod.migrate_file(path, write=write)
    if not outcome["changed"]:
        text = f"{path} already uses config_version {config_mod.CURRENT_VERSION}; nothing to migrate"
    elif outcome["written"]:
        text = "\n".join([f"migrated {path} (backup: {outcome['backup']})", *outcome["changes"]])
    else:
        text = "\n".join([f"# {path} after migration (not written; add --write to save it, with a backup)",
                          outcome["text"].rstrip()])
    data = {k: v for k, v in outcome.items() if k != "text" or not write}
    return Result("config migrate", data=data, text=text)


def add_parsers(sub, common) -> None:
    parser = sub.add_parser("config", help="check, show or migrate routertool.yaml", parents=[common])
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("check", help="validate the config and report every problem", parents=[common]) \
        .set_defaults(run=lambda ctx, a: check(ctx))
    actions.add_parser("show", help="the effective config after defaults and migration (secrets hidden)",
                       parents=[common]).set_defaults(run=lambda ctx, a: show(ctx))
    mig = actions.add_parser("migrate", help="rewrite legacy keys to config_version 2", parents=[common])
    mig.add_argument("--write", action="store_true", help="save the migrated file (the original is backed up)")
    mig.set_defaults(run=lambda ctx, a: migrate(ctx, write=a.write))
