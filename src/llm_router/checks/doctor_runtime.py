"""Doctor's checks of the machine and the programs the stack runs on: runtime folders and disk space, the
CLIProxyAPIPlus binary (pin, manifest) and its line, LiteLLM and the runner script, the ports (free or ours), the
Codex login's callback port, stale pid files and the temp folders of interrupted downloads.

Read-only like all of doctor (see checks/doctor.py): nothing here writes, creates, removes or starts anything.
Also the two helpers the other doctor checks share: `rel` (a path as shown, relative to the checkout) and
`compat_models` (what the user's CLIProxyAPIPlus config serves with no account).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from .. import stack
from ..config import RouterConfig
from ..errors import RouterError
from ..supervisor import process
from . import FAIL, OK, WARN, Finding

CODEX_CALLBACK_PORT = 1455  # `CLIProxyAPIPlus -codex-login` listens here for the browser's redirect
DISK_FAIL_BYTES = 256 * 2**20
DISK_WARN_BYTES = 2**30
RUNTIME_HINT = "uv sync --group runtime"
_LITELLM_PIN = re.compile(r"litellm(?:\[[^\]]*\])?==([\w.]+)")


def rel(cfg: RouterConfig, path: Path) -> str:
    try:
        return str(Path(path).relative_to(cfg.root))
    except ValueError:
        return str(path)


def compat_models(cfg: RouterConfig) -> set[str]:
    """Models the user's CLIProxyAPIPlus config serves through openai-compatibility (no account needed)."""
    import yaml

    path = cfg.services["cliproxyapi_plus"].config_file
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path and path.is_file() else None
    except (OSError, yaml.YAMLError):
        return set()
    names = set()
    for entry in (data or {}).get("openai-compatibility") or [] if isinstance(data, dict) else []:
        for model in (entry or {}).get("models") or [] if isinstance(entry, dict) else []:
            if isinstance(model, dict):
                names.update(str(model[k]) for k in ("name", "alias") if model.get(k))
    return names


# --------------------------------------------------------------------------- folders and disk

def _nearest_existing(path: Path) -> Path:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folders(cfg: RouterConfig) -> list[Finding]:
    layout = cfg.layout
    folders = [layout.state_dir, layout.runtime_dir, layout.bin_dir, layout.pids_dir, layout.logs_dir,
               layout.litellm_dir, layout.auths_dir, layout.secrets_dir]
    missing, problems, bad = [], [], []
    for folder in folders:
        if any(b in folder.parents for b in bad):
            continue  # below a folder already reported
        count = len(problems)
        _check_folder(cfg, folder, missing, problems)
        if len(problems) > count:
            bad.append(folder)
    if problems:
        return problems
    if missing:
        tops = [f for f in missing if f.parent not in missing]
        names = ", ".join(rel(cfg, f) + ("/..." if any(m != f and f in m.parents for m in missing) else "")
                          for f in tops)
        return [Finding("runtime-folders", OK, f"writable; created on first use: {names}",
                        path=str(layout.runtime_dir))]
    return [Finding("runtime-folders", OK, f"{rel(cfg, layout.state_dir)}/ and its folders exist and are writable",
                    path=str(layout.state_dir))]


def _check_folder(cfg: RouterConfig, folder: Path, missing: list, problems: list) -> None:
    if folder.exists():
        if not folder.is_dir():
            problems.append(Finding("runtime-folders", FAIL, f"{folder} is a file, not a folder",
                                    fix=f"mv {folder} {folder}.bak", path=str(folder)))
        elif not os.access(folder, os.W_OK | os.X_OK):
            problems.append(Finding("runtime-folders", FAIL, f"{folder} is not writable by this user",
                                    fix=f"chown -R $(id -un) {folder}", path=str(folder)))
        return
    anchor = _nearest_existing(folder)
    if not anchor.is_dir() or not os.access(anchor, os.W_OK | os.X_OK):
        problems.append(Finding("runtime-folders", FAIL, f"{folder} is missing and cannot be created "
                                f"({anchor} is not a writable folder)",
                                fix=f"mkdir -p {folder}  (as a user who may), or set runtime_dir in "
                                    f"{rel(cfg, cfg.path)}", path=str(folder)))
    else:
        missing.append(folder)


def check_disk(cfg: RouterConfig) -> list[Finding]:
    anchor = _nearest_existing(cfg.runtime_dir)
    try:
        free = shutil.disk_usage(anchor).free
    except OSError as exc:
        return [Finding("disk-space", WARN, f"cannot read free space at {anchor}: {exc.strerror or exc}")]
    text = f"{free / 2**30:.1f} GiB free at {anchor}"
    if free < DISK_FAIL_BYTES:
        return [Finding("disk-space", FAIL, text + " (logs and the binary need more)",
                        fix=f"free space on that filesystem (du -sh {cfg.layout.logs_dir})", path=str(anchor))]
    if free < DISK_WARN_BYTES:
        return [Finding("disk-space", WARN, text + " (under 1 GiB)",
                        fix=f"free space on that filesystem (du -sh {cfg.layout.logs_dir})", path=str(anchor))]
    return [Finding("disk-space", OK, text, path=str(anchor))]


# --------------------------------------------------------------------------- binaries

def _plain_version(version: str | None) -> str:
    return (version or "").strip().removeprefix("v").removesuffix("-plus")


def check_binary(cfg: RouterConfig) -> list[Finding]:
    from .. import bootstrap

    layout = cfg.layout
    binary = layout.cliproxy_binary
    pinned = cfg.bootstrap.cliproxy_version
    if not binary.is_file():
        return [Finding("cliproxy-binary", FAIL, f"CLIProxyAPIPlus is not installed ({rel(cfg, binary)} is missing)",
                        fix="llm-router bootstrap download", path=str(binary))]
    if not os.access(binary, os.X_OK):
        return [Finding("cliproxy-binary", FAIL, f"{rel(cfg, binary)} is not executable",
                        fix=f"chmod 755 {binary}", path=str(binary))]
    try:
        reported = bootstrap.binary_version(binary)
    except RouterError as exc:
        return [Finding("cliproxy-binary", FAIL, exc.message, fix="llm-router bootstrap download --force",
                        path=str(binary))]
    findings = []
    if pinned == "latest":
        findings.append(Finding("cliproxy-binary", OK, f"version {reported} (pin: latest)", path=str(binary)))
    elif _plain_version(reported) == _plain_version(pinned):
        findings.append(Finding("cliproxy-binary", OK, f"version {reported}, as pinned ({pinned})", path=str(binary)))
    else:
        findings.append(Finding("cliproxy-binary", WARN, f"version {reported} is installed but {pinned} is pinned "
                                "(bootstrap.cliproxy_version)", fix="llm-router bootstrap download", path=str(binary)))
    manifest = bootstrap.read_manifest(layout.bin_manifest)
    if manifest is None:
        findings.append(Finding("cliproxy-binary", WARN, "no manifest.json: the binary was not installed by "
                                "`bootstrap download`, so it is unverified",
                                fix="llm-router bootstrap download --force", path=str(binary)))
    elif bootstrap.sha256_file(binary) != manifest.get("binary_sha256"):
        findings.append(Finding("cliproxy-binary", FAIL, "the binary changed since it was installed and verified "
                                f"({manifest.get('version')})", fix="llm-router bootstrap download --force",
                                path=str(binary)))
    return findings


def check_line(cfg: RouterConfig) -> list[Finding]:
    """Which CLIProxyAPI line is installed, what it lacks (one line), and whether the model groups need Copilot
    from a line without it. Asks the running server (read-only) when it is up."""
    from .. import cliproxy, cliproxy_lines

    features = cliproxy.installed_features(cfg, ask_server=stack.is_running(cfg, "cliproxyapi_plus"))
    if features is None:
        return []  # cliproxy-binary already says what is wrong
    findings = [Finding("cliproxy-line", OK, cliproxy_lines.describe(features))]
    gaps = cliproxy_lines.missing(features)
    cliproxy_providers = {name for name, p in cfg.providers.items() if p.type == "cliproxyapi_plus"}
    used = {d.model for g in cfg.models for d in g.deployments if d.provider in cliproxy_providers}
    copilot_only = sorted(m for m in used - compat_models(cfg)
                          if cliproxy_lines.oauth_providers_for(m) == {cliproxy_lines.COPILOT})
    if copilot_only and not features.copilot_login:
        choices = "; ".join(f"llm-router bootstrap download --repository {name}"
                            for name, (line, _) in cliproxy_lines.KNOWN_REPOSITORIES.items()
                            if cliproxy_lines.LINES[line].copilot)
        findings.append(Finding("cliproxy-line", FAIL, f"{', '.join(copilot_only)} need(s) GitHub Copilot, which "
                                f"{cliproxy_lines.LINES[features.line].title} does not have", fix=choices))
    if gaps:
        findings.append(Finding("cliproxy-line", WARN if features.management in ("off", "rejected") else OK,
                                "missing: " + "; ".join(gaps)))
    return findings


def _pinned_litellm() -> str | None:
    from ..layout import source_root

    root = source_root()
    if root is None:
        return None
    try:
        match = _LITELLM_PIN.search((root / "pyproject.toml").read_text(encoding="utf-8"))
    except OSError:
        return None
    return match.group(1) if match else None


def check_litellm(cfg: RouterConfig) -> list[Finding]:
    """The `runtime` group (LiteLLM) in this environment, and the runner script the supervisor starts."""
    import importlib.util

    from ..litellm.runner import litellm_available

    installed, version = litellm_available()
    findings = []
    if not installed or importlib.util.find_spec("litellm") is None:
        findings.append(Finding("litellm-runtime", FAIL, "LiteLLM (the `runtime` dependency group) is not installed "
                                "in this environment", fix=RUNTIME_HINT))
    else:
        pinned = _pinned_litellm()
        if pinned and pinned != version:
            findings.append(Finding("litellm-runtime", WARN, f"LiteLLM {version} is installed, {pinned} is pinned",
                                    fix=RUNTIME_HINT))
        else:
            findings.append(Finding("litellm-runtime", OK, f"LiteLLM {version} importable"
                                    + (" (as pinned)" if pinned else "")))
    findings.append(_check_runner(cfg))
    return findings


def _runner_target(text: str) -> list[str] | None:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("exec "):
            try:
                return shlex.split(line)[1:]
            except ValueError:
                return None
    return None


def _check_runner(cfg: RouterConfig) -> Finding:
    runner = cfg.layout.litellm_runner
    venv_litellm = Path(sys.prefix) / "bin" / "litellm"
    fix = f"{RUNTIME_HINT}; the runner is rewritten at every `llm-router service start litellm`"
    if not runner.exists():
        if os.access(venv_litellm, os.X_OK) or shutil.which("uv"):
            from ..litellm.runner import LAUNCH

            target = (f"{venv_litellm.parent / 'python'} {LAUNCH}" if venv_litellm.exists()
                      else f"uv run --group runtime python {LAUNCH}")
            return Finding("litellm-runner", OK, f"not generated yet (written at every LiteLLM start); it will "
                           f"exec {target}", path=str(runner))
        return Finding("litellm-runner", FAIL, f"neither {venv_litellm} nor uv is available to run LiteLLM", fix=fix,
                       path=str(runner))
    if not os.access(runner, os.X_OK):
        return Finding("litellm-runner", FAIL, f"{rel(cfg, runner)} is not executable", fix=f"chmod 755 {runner}",
                       path=str(runner))
    try:
        target = _runner_target(runner.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return Finding("litellm-runner", FAIL, f"cannot read {rel(cfg, runner)}: {exc}", fix=fix, path=str(runner))
    if not target:
        return Finding("litellm-runner", FAIL, f"{rel(cfg, runner)} has no exec line", fix=fix, path=str(runner))
    program = target[0]
    via_uv = os.path.basename(program) == "uv"
    if not via_uv and os.path.isabs(program) and os.access(program, os.X_OK):
        return Finding("litellm-runner", OK, f"{rel(cfg, runner)} execs {shlex.join(target[:4])}", path=str(runner))
    if via_uv and shutil.which(program) and os.access(venv_litellm, os.X_OK):
        return Finding("litellm-runner", WARN, f"{rel(cfg, runner)} runs LiteLLM through {program} (slower start) "
                       f"although {venv_litellm} exists", fix=fix, path=str(runner))
    if via_uv and shutil.which(program):
        return Finding("litellm-runner", OK, f"{rel(cfg, runner)} runs LiteLLM through {program}", path=str(runner))
    return Finding("litellm-runner", FAIL, f"{rel(cfg, runner)} execs {program}, which does not exist (was the "
                   "checkout or its venv moved?)", fix=fix, path=str(runner))


# --------------------------------------------------------------------------- processes and ports

def check_ports(cfg: RouterConfig) -> list[Finding]:
    findings = []
    for name in stack.ORDER:
        svc = cfg.services[name]
        owner = process.port_owner(svc.host, svc.port)
        if owner is None:
            findings.append(Finding("ports", OK, f"{name} port {svc.port} on {svc.host} is free"))
            continue
        record, _ = process.read_record(cfg.layout, name)
        if record is not None and record.port == svc.port and process.owned_leader(record) is not None:
            findings.append(Finding("ports", OK,
                                    f"{name} port {svc.port} is held by our own {name} (pid {record.pid})"))
            continue
        findings.append(Finding("ports", FAIL, f"{name} port {svc.port} on {svc.host} is in use by {owner}, not by "
                                "a process llm-router started",
                                fix=f"stop {owner}, or set services.{name}.port in {rel(cfg, cfg.path)} to a free "
                                    "port"))
    return findings


def check_callback_port(cfg: RouterConfig | None = None) -> list[Finding]:
    owner = process.port_owner("127.0.0.1", CODEX_CALLBACK_PORT)
    if owner is None:
        return [Finding("oauth-callback-port", OK, f"127.0.0.1:{CODEX_CALLBACK_PORT} is free for the Codex browser "
                        "login")]
    return [Finding("oauth-callback-port", WARN, f"127.0.0.1:{CODEX_CALLBACK_PORT} (Codex browser login callback) is "
                    f"in use by {owner}",
                    fix=f"stop {owner} before `llm-router auth codex login`, or log in with "
                        "`llm-router auth codex login --no-browser --callback-url URL` / `auth codex import-headless`")]


def check_stale_pids(cfg: RouterConfig) -> list[Finding]:
    findings = []
    for name in stack.ORDER:
        record, problem = process.read_record(cfg.layout, name)
        path = cfg.layout.pid_file(name)
        if problem:
            findings.append(Finding("stale-pids", WARN, problem, fix=f"llm-router service stop {name}  (removes it)",
                                    path=str(path)))
        elif record is not None and process.owned_leader(record) is None:
            findings.append(Finding("stale-pids", WARN, f"{rel(cfg, path)} names pid {record.pid}, which is gone "
                                    "(or now another program)", fix="llm-router status  (removes stale pid files)",
                                    path=str(path)))
    return findings or [Finding("stale-pids", OK, "no stale pid files")]


def check_stale_downloads(cfg: RouterConfig) -> list[Finding]:
    """Temp folders of bootstrap runs that were killed (read-only: the next `bootstrap download` removes them)."""
    from .. import bootstrap

    stale = bootstrap.clean_stale_work(cfg.layout, remove=False)
    if not stale:
        return []
    return [Finding("temp-files", WARN, f"{len(stale)} temp folder(s) of an interrupted download in "
                    f"{rel(cfg, cfg.layout.tmp_dir)}: {', '.join(stale)}",
                    fix="llm-router bootstrap download  (removes them)", path=str(cfg.layout.tmp_dir))]
