"""`check security` (and, from the doctor/smoke issue, `doctor` and `smoke`)."""
from __future__ import annotations

from .. import config as config_mod
from ..checks import FAIL, Finding
from ..errors import RouterError
from ..output import Result, table
from . import Ctx


def findings_table(findings: list[Finding]) -> str:
    rows = []
    for f in findings:
        rows.append([f.status.upper(), f.check, f.detail])
        if f.fix and f.status == FAIL:
            rows.append(["", "", f"fix: {f.fix}"])
    return table(rows)


def _repo_root(ctx: Ctx):
    """The checkout to inspect and its config (None when there is no usable config: the check still runs on the
    repo root the config path implies)."""
    try:
        cfg = ctx.config
        return cfg.root, cfg
    except RouterError:
        path, _ = config_mod.resolve_config_path(ctx.config_path)
        return config_mod.root_for(path), None


def security(ctx: Ctx, fix: bool = False) -> Result:
    from ..checks import security as security_mod

    root, cfg = _repo_root(ctx)
    findings = security_mod.run(root, cfg, fix=fix)
    failed = [f for f in findings if f.status == FAIL]
    summary = f"{len(failed)} finding(s) in {root}" if failed else f"no findings in {root}"
    return Result("check security", data={"root": str(root), "findings": [f.to_dict() for f in findings]},
                  text=findings_table(findings) + f"\n{summary}", ok=not failed, warnings=list(ctx.warnings))


def add_parsers(sub, common) -> None:
    check = sub.add_parser("check", help="security check of the checkout", parents=[common])
    actions = check.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("security", help="secrets tracked by git, file modes, .gitignore rules; exit 1 on "
                                            "any finding", parents=[common])
    p.add_argument("--fix", action="store_true", help="repair modes and append missing ignore rules "
                                                      "(never deletes files)")
    p.set_defaults(run=lambda ctx, a: security(ctx, fix=a.fix))
