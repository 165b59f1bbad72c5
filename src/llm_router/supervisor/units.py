"""`service install|uninstall`: run `llm-router service watch all` at login or boot, as a systemd unit (Linux)
or a launchd agent (macOS), rendered from the Jinja2 templates in `templates/`."""
from __future__ import annotations

import getpass
import shlex
import sys
from pathlib import Path

from ..config import RouterConfig
from ..errors import NOT_FOUND, USAGE, RouterError
from ..fsutil import atomic_write
from ..layout import templates_dir

UNIT_NAME = "llm-router.service"
LAUNCHD_LABEL = "dev.llm-router"
KINDS = ("systemd", "launchd")


def default_kind() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def unit_path(kind: str, user: bool, unit_dir: Path | None = None) -> Path:
    if kind == "systemd":
        folder = unit_dir or (Path.home() / ".config/systemd/user" if user else Path("/etc/systemd/system"))
        return folder / UNIT_NAME
    folder = unit_dir or (Path.home() / "Library/LaunchAgents" if user else Path("/Library/LaunchDaemons"))
    return folder / f"{LAUNCHD_LABEL}.plist"


def _commands(kind: str, user: bool, path: Path) -> tuple[str, str]:
    if kind == "systemd":
        ctl = "systemctl --user" if user else "sudo systemctl"
        return (f"{ctl} daemon-reload && {ctl} enable --now {UNIT_NAME}",
                f"{ctl} disable --now {UNIT_NAME}")
    domain = "gui/$(id -u)" if user else "system"
    return f"launchctl bootstrap {domain} {path}", f"launchctl bootout {domain} {path}"


def render(cfg: RouterConfig, kind: str, user: bool = True, unit_dir: Path | None = None) -> tuple[Path, str]:
    import jinja2

    if kind not in KINDS:
        raise RouterError(f"unknown unit kind '{kind}'", hint="use --systemd or --launchd", exit_code=USAGE)
    path = unit_path(kind, user, unit_dir)
    argv = [sys.executable, "-m", "llm_router", "--config", str(cfg.path), "service", "watch", "all"]
    svc = cfg.services["litellm"]
    context = {
        "config_path": cfg.path, "root": cfg.root, "user": user, "username": getpass.getuser(),
        "host": svc.host, "port": svc.port, "exec_start": shlex.join(argv), "program_arguments": argv,
        "env_file": cfg.layout.secret_file("env"), "label": LAUNCHD_LABEL,
        "log_path": cfg.layout.log_file("watch"), "enable_command": _commands(kind, user, path)[0],
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    template = "systemd/llm-router.service.j2" if kind == "systemd" else "launchd/dev.llm-router.plist.j2"
    return path, env.get_template(template).render(**context)


def install(cfg: RouterConfig, kind: str | None = None, user: bool = True, unit_dir: Path | None = None) -> dict:
    kind = kind or default_kind()
    path, text = render(cfg, kind, user, unit_dir)
    atomic_write(path, text, mode=0o644)
    enable, _ = _commands(kind, user, path)
    notes = []
    if kind == "systemd" and user:
        notes.append(f"user units stop at logout unless lingering is on: loginctl enable-linger {getpass.getuser()}")
    notes.append("the unit does not see your shell's exports: give secrets through secret_files or "
                 f"{cfg.layout.secret_file('env')} (NAME=value lines, 0600)")
    return {"kind": kind, "path": str(path), "enable": enable, "notes": notes}


def uninstall(cfg: RouterConfig, kind: str | None = None, user: bool = True, unit_dir: Path | None = None) -> dict:
    kind = kind or default_kind()
    path = unit_path(kind, user, unit_dir)
    if not path.exists():
        raise RouterError(f"no {kind} unit installed at {path}", exit_code=NOT_FOUND)
    _, disable = _commands(kind, user, path)
    path.unlink()
    return {"kind": kind, "path": str(path), "disable_first": disable}
