"""`check security`, `doctor` (also `check doctor`) and `smoke` (also `check smoke`)."""
from __future__ import annotations

import sys

from .. import config as config_mod
from ..checks import FAIL, OK, WARN, Finding
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
                  text=findings_table(findings) + f"\n{summary}", ok=not failed)


# --------------------------------------------------------------------------- doctor

STATUS_LABEL = {OK: "ok", WARN: "WARN", FAIL: "FAIL"}


def doctor_table(findings: list[Finding]) -> str:
    rows = []
    for f in findings:
        rows.append([STATUS_LABEL.get(f.status, f.status), f.check, f.detail])
        if f.fix and f.status != OK:
            rows.append(["", "", f"fix: {f.fix}"])
    return table(rows, ["STATUS", "CHECK", "DETAIL"])


def doctor(ctx: Ctx) -> Result:
    from ..checks import doctor as doctor_mod

    path, _ = config_mod.resolve_config_path(ctx.config_path)
    try:
        cfg, error = ctx.config, None
    except RouterError as exc:
        cfg, error = None, exc
    findings = doctor_mod.run(cfg, error, path)
    counts = doctor_mod.summary(findings)
    failed = counts.get(FAIL, 0)
    verdict = "ready" if not failed else "not ready"
    text = doctor_table(findings) + (f"\ndoctor: {verdict}: {counts[OK]} ok, {counts[WARN]} warning(s), "
                                     f"{failed} failed")
    return Result("doctor", data={"config": str(path), "summary": counts,
                                  "findings": [f.to_dict() for f in findings]},
                  text=text, ok=not failed)


# --------------------------------------------------------------------------- smoke

def _step_row(step) -> list[str]:
    return [step.name, STATUS_LABEL.get(step.status, step.status.upper()), f"{step.seconds:.1f} s", step.detail]


def _progress(step) -> None:
    sys.stderr.write(f"smoke: {step.name}: {STATUS_LABEL.get(step.status, step.status.upper())} "
                     f"({step.seconds:.1f} s)\n")
    sys.stderr.flush()


def smoke(ctx: Ctx, profile: str | None = None, live: bool = False, standin: bool = False,
          timeout: float | None = None, model: str | None = None) -> Result:
    from ..checks import smoke as smoke_mod

    report = smoke_mod.run(ctx.config, profile=profile or None, live=live, standin=standin, timeout=timeout,
                           model=model or None, notify=None if ctx.json else _progress)
    rows = []
    for step in report.steps:
        rows.append(_step_row(step))
        if step.hint and step.status != OK:
            rows.append(["", "", "", f"hint: {step.hint}"])
    where = "stand-in sandbox" if report.standin else str(report.base_url)
    how = "live request (max_tokens 1)" if live else "mocked completions (nothing sent upstream)"
    if report.ok:
        verdict = f"smoke passed: profile {report.profile}, {how}, {where}"
    else:
        first = next((s for s in report.steps if s.status != OK), None)
        verdict = f"smoke FAILED at {first.name if first else 'start'}: profile {report.profile}, {where}"
    if report.upstream_requests is not None:
        verdict += f"; the stand-ins answered {report.upstream_requests} inference request(s)"
    text = table(rows, ["STEP", "STATUS", "TIME", "DETAIL"]) + "\n" + verdict
    return Result("smoke", data=report.to_dict(), text=text, ok=report.ok,
                  exit_code=130 if report.interrupted else None)


def add_parsers(sub, common) -> None:
    check = sub.add_parser("check", help="security check, doctor and smoke", parents=[common])
    actions = check.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("security", help="secrets tracked by git, file modes, .gitignore rules; exit 1 on "
                                            "any finding", parents=[common])
    p.add_argument("--fix", action="store_true", help="repair modes and append missing ignore rules "
                                                      "(never deletes files)")
    p.set_defaults(run=lambda ctx, a: security(ctx, fix=a.fix))
    for parent in (actions, sub):
        p = parent.add_parser("doctor", help="preflight checks (ok/warn/fail, each with its fix); exit 1 if any "
                                             "fails; writes nothing", parents=[common])
        p.set_defaults(run=lambda ctx, a: doctor(ctx))
        p = parent.add_parser("smoke", help="doctor, profile set, service start, health, a chat and a streamed "
                                            "completion, stop what it started; exit 0 only if every step passed",
                              parents=[common])
        p.add_argument("--profile", metavar="NAME", help="profile to test (default: the active one, else "
                                                         "default_profile)")
        p.add_argument("--live", action="store_true", help="send one real request (max_tokens 1) upstream instead "
                                                           "of a mocked answer")
        p.add_argument("--standin", action="store_true", help="run the flow in a temporary stack with the "
                                                              "CLIProxyAPIPlus stand-in (offline, no accounts)")
        p.add_argument("--model", metavar="GROUP", help="model group to call (default: the first in "
                                                        "routertool.yaml)")
        p.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="readiness timeout per service (default: startup_timeout, or $STARTUP_TIMEOUT)")
        p.set_defaults(run=lambda ctx, a: smoke(ctx, profile=a.profile, live=a.live, standin=a.standin,
                                                timeout=a.timeout, model=a.model))
