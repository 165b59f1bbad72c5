"""Preflight checks (`llm-router doctor`): is this machine ready to run the stack?

Each check returns `Finding`s with a status (ok / warn / fail), one line of detail and the exact command that fixes
it. Doctor reads only: it writes no file, creates no folder, removes no stale pid file, generates no key and starts
nothing (it says what will be created). It never prints a secret's value, only where the secret comes from.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Callable

from .. import config as config_mod
from .. import services
from ..config import GENERATED_SECRETS, RouterConfig
from ..errors import RouterError
from . import FAIL, OK, WARN, Finding

CODEX_CALLBACK_PORT = 1455  # `CLIProxyAPIPlus -codex-login` listens here for the browser's redirect
DISK_FAIL_BYTES = 256 * 2**20
DISK_WARN_BYTES = 2**30
RUNTIME_HINT = "uv sync --group runtime"
_ENV_REF = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")
_LITELLM_PIN = re.compile(r"litellm(?:\[[^\]]*\])?==([\w.]+)")


def _rel(cfg: RouterConfig, path: Path) -> str:
    try:
        return str(Path(path).relative_to(cfg.root))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- config

def check_config(cfg: RouterConfig | None, error: RouterError | None = None,
                 config_path: Path | None = None) -> list[Finding]:
    if cfg is None:
        detail = error.message if error else "no configuration"
        if error and len(error.details) > 1:
            detail += " " + "; ".join(error.details)
        return [Finding("config", FAIL, detail, fix=(error.hint if error else None)
                        or "llm-router config check", path=str(config_path) if config_path else None)]
    findings = [Finding("config", OK, f"{_rel(cfg, cfg.path)} is valid (config_version {cfg.config_version})",
                        path=str(cfg.path))]
    for warning in cfg.warnings:
        findings.append(Finding("config", WARN, warning, fix="llm-router config migrate --write", path=str(cfg.path)))
    svc = cfg.services["cliproxyapi_plus"]
    explicit = "config_file" in ((cfg.raw.get("services") or {}).get("cliproxyapi_plus") or {})
    if svc.config_file is not None and not svc.config_file.is_file():
        example = cfg.root / "config" / "examples" / "cliproxyapi.yaml"
        fix = f"cp {example} {svc.config_file}"
        if explicit:
            findings.append(Finding("config", FAIL, "services.cliproxyapi_plus.config_file "
                                    f"{_rel(cfg, svc.config_file)} does not exist: CLIProxyAPIPlus will not start",
                                    fix=fix))
        else:
            findings.append(Finding("config", WARN, f"{_rel(cfg, svc.config_file)} does not exist: CLIProxyAPIPlus "
                                    "runs on llm-router's defaults", fix=fix))
    return findings


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
        names = ", ".join(_rel(cfg, f) + ("/..." if any(m != f and f in m.parents for m in missing) else "")
                          for f in tops)
        return [Finding("runtime-folders", OK, f"writable; created on first use: {names}",
                        path=str(layout.runtime_dir))]
    return [Finding("runtime-folders", OK, f"{_rel(cfg, layout.state_dir)}/ and its folders exist and are writable",
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
                                    f"{_rel(cfg, cfg.path)}", path=str(folder)))
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
        return [Finding("cliproxy-binary", FAIL, f"CLIProxyAPIPlus is not installed ({_rel(cfg, binary)} is missing)",
                        fix="llm-router bootstrap download", path=str(binary))]
    if not os.access(binary, os.X_OK):
        return [Finding("cliproxy-binary", FAIL, f"{_rel(cfg, binary)} is not executable",
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

    features = cliproxy.installed_features(cfg, ask_server=services.is_running(cfg, "cliproxyapi_plus"))
    if features is None:
        return []  # cliproxy-binary already says what is wrong
    findings = [Finding("cliproxy-line", OK, cliproxy_lines.describe(features))]
    gaps = cliproxy_lines.missing(features)
    cliproxy_providers = {name for name, p in cfg.providers.items() if p.type == "cliproxyapi_plus"}
    used = {d.model for g in cfg.models for d in g.deployments if d.provider in cliproxy_providers}
    copilot_only = sorted(m for m in used - _compat_models(cfg)
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

    from ..runner import litellm_available

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
            from ..runner import LAUNCH

            target = (f"{venv_litellm.parent / 'python'} {LAUNCH}" if venv_litellm.exists()
                      else f"uv run --group runtime python {LAUNCH}")
            return Finding("litellm-runner", OK, f"not generated yet (written at every LiteLLM start); it will "
                           f"exec {target}", path=str(runner))
        return Finding("litellm-runner", FAIL, f"neither {venv_litellm} nor uv is available to run LiteLLM", fix=fix,
                       path=str(runner))
    if not os.access(runner, os.X_OK):
        return Finding("litellm-runner", FAIL, f"{_rel(cfg, runner)} is not executable", fix=f"chmod 755 {runner}",
                       path=str(runner))
    try:
        target = _runner_target(runner.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return Finding("litellm-runner", FAIL, f"cannot read {_rel(cfg, runner)}: {exc}", fix=fix, path=str(runner))
    if not target:
        return Finding("litellm-runner", FAIL, f"{_rel(cfg, runner)} has no exec line", fix=fix, path=str(runner))
    program = target[0]
    via_uv = os.path.basename(program) == "uv"
    if not via_uv and os.path.isabs(program) and os.access(program, os.X_OK):
        return Finding("litellm-runner", OK, f"{_rel(cfg, runner)} execs {shlex.join(target[:4])}", path=str(runner))
    if via_uv and shutil.which(program) and os.access(venv_litellm, os.X_OK):
        return Finding("litellm-runner", WARN, f"{_rel(cfg, runner)} runs LiteLLM through {program} (slower start) "
                       f"although {venv_litellm} exists", fix=fix, path=str(runner))
    if via_uv and shutil.which(program):
        return Finding("litellm-runner", OK, f"{_rel(cfg, runner)} runs LiteLLM through {program}", path=str(runner))
    return Finding("litellm-runner", FAIL, f"{_rel(cfg, runner)} execs {program}, which does not exist (was the "
                   "checkout or its venv moved?)", fix=fix, path=str(runner))


# --------------------------------------------------------------------------- processes and ports

def check_ports(cfg: RouterConfig) -> list[Finding]:
    findings = []
    for name in services.ORDER:
        svc = cfg.services[name]
        owner = services.port_owner(svc.host, svc.port)
        if owner is None:
            findings.append(Finding("ports", OK, f"{name} port {svc.port} on {svc.host} is free"))
            continue
        record, _ = services.read_record(cfg.layout, name)
        if record is not None and record.port == svc.port and services.live_process(record) is not None:
            findings.append(Finding("ports", OK,
                                    f"{name} port {svc.port} is held by our own {name} (pid {record.pid})"))
            continue
        findings.append(Finding("ports", FAIL, f"{name} port {svc.port} on {svc.host} is in use by {owner}, not by "
                                "a process llm-router started",
                                fix=f"stop {owner}, or set services.{name}.port in {_rel(cfg, cfg.path)} to a free "
                                    "port"))
    return findings


def check_callback_port(cfg: RouterConfig | None = None) -> list[Finding]:
    owner = services.port_owner("127.0.0.1", CODEX_CALLBACK_PORT)
    if owner is None:
        return [Finding("oauth-callback-port", OK, f"127.0.0.1:{CODEX_CALLBACK_PORT} is free for the Codex browser "
                        "login")]
    return [Finding("oauth-callback-port", WARN, f"127.0.0.1:{CODEX_CALLBACK_PORT} (Codex browser login callback) is "
                    f"in use by {owner}",
                    fix=f"stop {owner} before `llm-router auth codex login`, or log in with "
                        "`llm-router auth codex login --no-browser --callback-url URL` / `auth codex import-headless`")]


def check_stale_pids(cfg: RouterConfig) -> list[Finding]:
    findings = []
    for name in services.ORDER:
        record, problem = services.read_record(cfg.layout, name)
        path = cfg.layout.pid_file(name)
        if problem:
            findings.append(Finding("stale-pids", WARN, problem, fix=f"llm-router service stop {name}  (removes it)",
                                    path=str(path)))
        elif record is not None and services.live_process(record) is None:
            findings.append(Finding("stale-pids", WARN, f"{_rel(cfg, path)} names pid {record.pid}, which is gone "
                                    "(or now another program)", fix="llm-router status  (removes stale pid files)",
                                    path=str(path)))
    return findings or [Finding("stale-pids", OK, "no stale pid files")]


# --------------------------------------------------------------------------- profile and secrets

def _profile_name(cfg: RouterConfig) -> tuple[str, bool]:
    from .. import profiles

    info = profiles.active(cfg)
    return (info["name"], True) if info else (cfg.default_profile, False)


def check_profile(cfg: RouterConfig) -> tuple[list[Finding], str | None]:
    """The active (else default) profile renders a valid config; returns the text LiteLLM will load."""
    from .. import profiles

    name, is_active = _profile_name(cfg)
    which = "active" if is_active else "default, not activated yet"
    try:
        text = profiles.render(cfg, name)
    except RouterError as exc:
        detail = exc.message + (f" ({exc.details[0]})" if len(exc.details) > 1 else "")
        return [Finding("profile", FAIL, detail, fix=exc.hint or f"llm-router profile show {name}")], None
    active_path = cfg.layout.active_config
    if is_active and active_path.is_file():
        current = active_path.read_text(encoding="utf-8")
        if current != text:
            return [Finding("profile", WARN, f"{name} ({which}): the active config differs from what its template "
                            "renders now (template or routertool.yaml changed)",
                            fix=f"llm-router profile set {name}", path=str(active_path))], current
        return [Finding("profile", OK, f"{name} ({which}) renders a valid config", path=str(active_path))], current
    return [Finding("profile", OK, f"{name} ({which}) renders a valid config")], text


def check_secrets(cfg: RouterConfig, profile_text: str | None) -> list[Finding]:
    """Every key the profile's config references, plus every provider key the model groups use; never a value."""
    needed: dict[str, str] = {}
    for name in _ENV_REF.findall(profile_text or ""):
        needed.setdefault(name, "the profile")
    for var, provider in services.required_secrets(cfg).items():
        needed[var] = f"provider {provider}"
    present, findings = [], []
    for name, who in needed.items():
        source = cfg.secret_source(name)
        if source == "missing" and name in GENERATED_SECRETS:
            present.append(f"{name} (generated at first start)")
        elif source == "missing":
            where = cfg.secret_files.get(name)
            detail = f"{name} ({who}) is not set" + (f" and {where} is missing or empty" if where else "")
            fix = (f"export {name}=...  or put it in {where} (chmod 600)" if where else
                   f"export {name}=...  or add `secret_files: {{{name}: path/to/file}}` to {_rel(cfg, cfg.path)}")
            findings.append(Finding("secrets", FAIL, detail, fix=fix))
        else:
            present.append(f"{name} ({source})")
    if present:
        findings.insert(0, Finding("secrets", OK, "set: " + ", ".join(present)))
    return findings


def check_permissions(cfg: RouterConfig) -> list[Finding]:
    from .security import permission_findings

    return permission_findings(cfg, fix=False)


def check_exposure(cfg: RouterConfig) -> list[Finding]:
    """Both services on loopback; CLIProxyAPIPlus remote management off."""
    import yaml

    findings = []
    for name in services.ORDER:
        svc = cfg.services[name]
        if not svc.is_loopback:
            findings.append(Finding("loopback", FAIL, f"services.{name}.host is {svc.host}: reachable from other "
                                    "machines", fix=f"set services.{name}.host: 127.0.0.1 in {_rel(cfg, cfg.path)}"))
    user_file = cfg.services["cliproxyapi_plus"].config_file
    if user_file is not None and user_file.is_file():
        try:
            data = yaml.safe_load(user_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            return findings + [Finding("loopback", FAIL, f"cannot read {_rel(cfg, user_file)}: "
                                       f"{str(exc).splitlines()[0]}",
                                       fix="fix its YAML (start from config/examples/cliproxyapi.yaml)")]
        remote = data.get("remote-management") if isinstance(data, dict) else None
        if isinstance(remote, dict) and remote.get("allow-remote"):
            findings.append(Finding("loopback", WARN, f"{_rel(cfg, user_file)} sets remote-management.allow-remote: "
                                    "true (llm-router overrides it with false)",
                                    fix=f"set remote-management.allow-remote: false in {_rel(cfg, user_file)}"))
    runtime = cfg.layout.cliproxy_runtime_config
    if runtime.is_file():
        try:
            data = yaml.safe_load(runtime.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            data = {}
        remote = data.get("remote-management") if isinstance(data, dict) else None
        host = str(data.get("host", "")) if isinstance(data, dict) else ""
        if (isinstance(remote, dict) and remote.get("allow-remote")) or not config_mod.is_loopback_host(host or "-"):
            findings.append(Finding("loopback", FAIL, f"{_rel(cfg, runtime)} (what CLIProxyAPIPlus runs on) is not "
                                    "loopback-only with remote management off",
                                    fix="llm-router service restart cliproxyapi_plus  (rewrites it)"))
    if not findings:
        findings.append(Finding("loopback", OK, "both services listen on loopback; CLIProxyAPIPlus remote management "
                                "is off"))
    return findings


# --------------------------------------------------------------------------- accounts

def _oauth_providers_for(model: str) -> set[str]:
    """Which OAuth account types CLIProxyAPIPlus can serve `model` with (the catalogue in cliproxy_lines)."""
    from ..cliproxy_lines import oauth_providers_for

    return oauth_providers_for(model)


def _compat_models(cfg: RouterConfig) -> set[str]:
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


def _accounts(cfg: RouterConfig) -> list[dict]:
    from .. import auth, keys
    from ..auth.files import auth_files, describe

    # auth.status asks a running proxy, which would generate the management key if it were missing: doctor writes
    # nothing, so in that (odd) case it reads the files only.
    if services.is_running(cfg, "cliproxyapi_plus") and not cfg.secret(keys.MANAGEMENT_KEY):
        return [describe(p) for p in auth_files(cfg.layout.auths_dir)]
    return auth.status(cfg)["accounts"]


def _usable(info: dict) -> bool:
    left = info.get("seconds_left")
    return bool(info.get("provider")) and (left is None or left > 0) and \
        info.get("proxy_status") not in ("disabled", "unavailable")


def check_accounts(cfg: RouterConfig) -> list[Finding]:
    """At least one usable account for every CLIProxyAPIPlus model the model groups use, with token expiry."""
    from ..auth.files import CODEX, COPILOT, span

    login = {CODEX: "llm-router auth codex login", COPILOT: "llm-router auth copilot login"}
    cliproxy = {name for name, p in cfg.providers.items() if p.type == "cliproxyapi_plus"}
    used = {d.model for g in cfg.models for d in g.deployments if d.provider in cliproxy}
    models = sorted(used - _compat_models(cfg))
    if not models:
        return [Finding("accounts", OK, "no model group uses a CLIProxyAPIPlus account")]
    accounts = _accounts(cfg)
    usable = [a for a in accounts if _usable(a)]
    by_provider: dict[str, list[dict]] = {}
    for info in usable:
        by_provider.setdefault(info["provider"], []).append(info)
    findings = []
    needed: set[str] = set()
    unserved: dict[tuple[str, ...], list[str]] = {}  # account types that could serve them -> models
    for model in models:
        providers = _oauth_providers_for(model)
        needed |= providers
        if not any(by_provider.get(p) for p in providers) and (providers or not usable):
            unserved.setdefault(tuple(sorted(providers)) or (CODEX, COPILOT), []).append(model)
    for providers, names in unserved.items():
        findings.append(Finding("accounts", FAIL, f"no usable {' or '.join(providers)} account for "
                                f"{', '.join(names)}", fix=" or ".join(login[p] for p in providers)))
    for provider in sorted(needed | set(by_provider)):
        mine = by_provider.get(provider, [])
        if not mine:
            continue
        parts = []
        for info in mine:
            left = info.get("seconds_left")
            parts.append(f"{info.get('account') or info.get('file')} "
                         f"({'no expiry' if left is None else 'expires in ' + span(left)})")
        findings.append(Finding("accounts", OK, f"{provider}: {len(mine)} usable: {', '.join(parts)}"))
    for info in accounts:
        for problem in info.get("problems") or []:
            if problem.startswith("mode "):
                continue  # the permissions check reports modes, with the chmod fix
            provider = info.get("provider")
            fix = login.get(provider, "llm-router auth status")
            findings.append(Finding("accounts", WARN, f"{info.get('file')}: {problem}", fix=fix,
                                    path=info.get("path")))
    return findings


def check_stale_downloads(cfg: RouterConfig) -> list[Finding]:
    """Temp folders of bootstrap runs that were killed (read-only: the next `bootstrap download` removes them)."""
    from .. import bootstrap

    stale = bootstrap.clean_stale_work(cfg.layout, remove=False)
    if not stale:
        return []
    return [Finding("temp-files", WARN, f"{len(stale)} temp folder(s) of an interrupted download in "
                    f"{_rel(cfg, cfg.layout.tmp_dir)}: {', '.join(stale)}",
                    fix="llm-router bootstrap download  (removes them)", path=str(cfg.layout.tmp_dir))]


# --------------------------------------------------------------------------- all of it

def run(cfg: RouterConfig | None, config_error: RouterError | None = None,
        config_path: Path | None = None) -> list[Finding]:
    """Every check, in the order an operator fixes things. Without a usable config only the checks that need
    none run."""
    findings = check_config(cfg, config_error, config_path)
    if cfg is None:
        return findings + _guarded("litellm-runtime", lambda: _litellm_only()) + check_callback_port()
    profile_findings, profile_text = _guarded_pair(lambda: check_profile(cfg))
    steps: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("runtime-folders", lambda: check_folders(cfg)),
        ("cliproxy-binary", lambda: check_binary(cfg)),
        ("cliproxy-line", lambda: check_line(cfg)),
        ("litellm-runtime", lambda: check_litellm(cfg)),
        ("ports", lambda: check_ports(cfg)),
        ("stale-pids", lambda: check_stale_pids(cfg)),
        ("profile", lambda: profile_findings),
        ("secrets", lambda: check_secrets(cfg, profile_text)),
        ("permissions", lambda: check_permissions(cfg)),
        ("loopback", lambda: check_exposure(cfg)),
        ("redis", lambda: check_redis(cfg)),
        ("oauth-callback-port", lambda: check_callback_port(cfg)),
        ("accounts", lambda: check_accounts(cfg)),
        ("disk-space", lambda: check_disk(cfg)),
        ("temp-files", lambda: check_stale_downloads(cfg)),
    ]
    for name, step in steps:
        findings += _guarded(name, step)
    return findings


def check_redis(cfg: RouterConfig) -> list[Finding]:
    """services.redis (shared router state): the binary, loopback, the password, and whether Redis answers
    AUTH + PING (read-only: a RESP probe; no password is generated). Nothing when Redis is off."""
    from .. import redis_service

    redis = cfg.redis
    if redis is None:
        return []
    findings = []
    where = f"{redis.host}:{redis.port}" if redis.managed else str(redis.url)
    if redis.managed:
        binary = redis_service.find_binary(redis)
        findings.append(Finding("redis-binary", OK, f"{binary} found") if binary else Finding(
            "redis-binary", FAIL, f"{redis.binary} is not installed (services.redis.enabled is true)",
            fix="sudo apt-get install redis-server  (or set services.redis.url to an external Redis)"))
        if not redis.is_loopback:
            findings.append(Finding("redis-loopback", WARN, f"services.redis.host is {redis.host}: Redis is reachable "
                                    "from other machines, protected by its password only (no TLS)",
                                    fix="set services.redis.host: 127.0.0.1 and reach it through an SSH tunnel "
                                        "(docs/scale-out.md)"))
    elif not redis.is_loopback and not redis.tls:
        findings.append(Finding("redis-loopback", WARN, f"services.redis.url {redis.url} is plain redis:// to "
                                "another machine: the password and the router state are sent unencrypted",
                                fix="use rediss:// (TLS) or an SSH tunnel to 127.0.0.1 (docs/scale-out.md)"))
    source = cfg.secret_source(config_mod.REDIS_PASSWORD_ENV)
    if source == "missing":
        if redis.managed:
            findings.append(Finding("redis-password", OK, "REDIS_PASSWORD will be generated into secrets/ (0600) "
                                    "at the first `service start`"))
        else:
            findings.append(Finding("redis-password", FAIL, f"REDIS_PASSWORD is not set for the external Redis "
                                    f"{redis.url}", fix="export REDIS_PASSWORD, or name a file for it under "
                                    "secret_files (copy it from the first host's .router/secrets/REDIS_PASSWORD)"))
            return findings
    else:
        findings.append(Finding("redis-password", OK, f"REDIS_PASSWORD is set ({source})"))
    probe = redis_service.probe_config(cfg)
    if probe.ready:
        findings.append(Finding("redis", OK, f"Redis {where} answers (PING in {probe.latency_ms:.0f} ms): LiteLLM's "
                                "cooldowns and rpm/tpm counters are shared by every worker and instance"))
    elif redis.managed and not services.is_running(cfg, "redis"):
        findings.append(Finding("redis", WARN if services.is_running(cfg, "litellm") else OK,
                                f"Redis {where} is not running" + (": LiteLLM serves from each worker's in-memory "
                                "state (cooldowns and rpm limits are per worker)" if services.is_running(
                                    cfg, "litellm") else "; `service start` starts it"),
                                fix="llm-router service start redis"))
    else:
        findings.append(Finding("redis", FAIL if "password" in (probe.error or "") else WARN,
                                f"Redis {where}: {probe.error}; LiteLLM serves from each worker's in-memory state",
                                fix="check REDIS_PASSWORD and services.redis (docs/scale-out.md)"))
    return findings


def _litellm_only() -> list[Finding]:
    from ..runner import litellm_available

    installed, version = litellm_available()
    if installed:
        return [Finding("litellm-runtime", OK, f"LiteLLM {version} importable")]
    return [Finding("litellm-runtime", FAIL, "LiteLLM (the `runtime` dependency group) is not installed",
                    fix=RUNTIME_HINT)]


def _guarded(name: str, step: Callable[[], list[Finding]]) -> list[Finding]:
    """A check that raises is a failed check, not a crashed doctor."""
    try:
        return step()
    except RouterError as exc:
        return [Finding(name, FAIL, exc.message, fix=exc.hint)]
    except OSError as exc:
        return [Finding(name, FAIL, f"{type(exc).__name__}: {exc}")]


def _guarded_pair(step):
    try:
        return step()
    except RouterError as exc:
        return [Finding("profile", FAIL, exc.message, fix=exc.hint)], None


def summary(findings: list[Finding]) -> dict[str, int]:
    counts = {OK: 0, WARN: 0, FAIL: 0}
    for f in findings:
        counts[f.status] = counts.get(f.status, 0) + 1
    return counts
