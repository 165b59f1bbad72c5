"""A throwaway stack in a temporary folder, shared by `llm-router demo` and `llm-router smoke --standin`.

The folder is a repo root of its own: a generated `config/routertool.yaml` with free loopback ports and the runtime
state inside it, the CLIProxyAPIPlus stand-in installed as the binary, a Codex-like and a Copilot-like account in
its auth folder (so the stand-in lists their models), and, when the configuration has `openai_compatible`
providers, one upstream stand-in playing all of them with a throwaway key. Nothing outside the folder is touched
and nothing leaves the machine.

Everything in a sandbox was started by its owner, so `close()` stops all of it (through `stack.stop`, by the
recorded pid and process group, and the upstream stand-in by its own process group) and removes the folder.
"""
from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from . import config as config_mod
from . import stack, switch
from .config import RouterConfig
from .errors import CONFLICT, UNAVAILABLE, RouterError
from .fsutil import atomic_write, write_private
from .supervisor import process
from .supervisor.model import ServiceOutcome

UPSTREAM_KEY_ENV = "LLM_ROUTER_SANDBOX_UPSTREAM_KEY"  # the key every openai_compatible provider uses in a sandbox
CODEX_ACCOUNT = ("demo@example.com", "plus")
COPILOT_ACCOUNT = "octocat"
# The demo's one model group: a Codex-only model first and a Copilot-only model second (both behind CLIProxyAPIPlus).
DEMO_GROUP = "coder"
DEMO_DEPLOYMENTS = (("cliproxy", "gpt-5.1-codex-max"), ("cliproxy", "claude-sonnet-4.5"))
DEMO_PROFILE = "balanced"
DEMO_LITELLM_MODE = "uvicorn"  # one process: starts faster and uses half the memory; the demo switches no profile
STRAGGLER_WAIT = 15.0  # seconds close() waits for anything of the stack that outlives `service stop` (a bug)
START_ATTEMPTS = 3  # a port picked as free can be taken before the service binds it: pick again
Notify = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class Sandbox:
    root: Path
    providers: dict[str, dict]
    models: list[dict]
    profile: str
    litellm_port: int | None = None  # preferred; another free port is used when it is taken
    timeouts: dict[str, float] = field(default_factory=lambda: {"cliproxyapi_plus": 30.0, "litellm": 180.0})
    litellm_mode: str | None = None  # services.litellm.mode (None: the default)
    upstream: object | None = None  # standin.process.StandinProcess
    cfg: RouterConfig | None = None
    keep: bool = False
    notify: Notify = _quiet

    # ----------------------------------------------------------------- paths and URLs

    @property
    def config_path(self) -> Path:
        return self.root / "config" / "routertool.yaml"

    @property
    def litellm_url(self) -> str:
        return self.cfg.services["litellm"].base_url

    @property
    def cliproxy_url(self) -> str:
        return self.cfg.services["cliproxyapi_plus"].base_url

    # ----------------------------------------------------------------- set-up

    def prepare(self) -> "Sandbox":
        """Write the config, the stand-in binary, the accounts and the keys; start the upstream stand-in."""
        from .standin.cliproxy import install_fake_binary, write_codex_login, write_copilot_login
        from .standin.process import start_upstream

        (self.root / "config").mkdir(parents=True, exist_ok=True)
        self._write_config()
        layout = self.cfg.layout
        install_fake_binary(layout.cliproxy_binary)
        for path in (write_codex_login(layout.auths_dir, *CODEX_ACCOUNT),
                     write_copilot_login(layout.auths_dir, COPILOT_ACCOUNT)):
            path.chmod(0o600)  # as `llm-router auth ... login` leaves them
        self._write_cliproxy_config()
        paid = [p for p, spec in self.providers.items() if spec["type"] == "openai_compatible"]
        if paid:
            key = "sk-sandbox-" + secrets.token_urlsafe(24)
            write_private(layout.secret_file(UPSTREAM_KEY_ENV), key + "\n")
            served = sorted({d["model"] for g in self.models for d in g["deployments"] if d["provider"] in paid})
            self.notify(f"starting the upstream stand-in for {', '.join(paid)}")
            layout.logs_dir.mkdir(parents=True, exist_ok=True)
            self.upstream = start_upstream(api_key=key, models=served, name="upstream",
                                           log_path=layout.log_file("upstream-standin"))
            self._write_config()  # now with the upstream's port
        return self

    def _ports(self) -> dict[str, int]:
        from .standin.process import free_port

        litellm = self.litellm_port
        if not litellm or process.port_owner("127.0.0.1", litellm):
            litellm = free_port()
        cliproxy = free_port()
        while cliproxy == litellm:
            cliproxy = free_port()
        return {"cliproxyapi_plus": cliproxy, "litellm": litellm}

    def _write_config(self, ports: dict[str, int] | None = None) -> None:
        if ports is None and self.cfg is not None:
            ports = {name: svc.port for name, svc in self.cfg.services.items()}
        ports = ports or self._ports()
        providers = {}
        for name, spec in self.providers.items():
            if spec["type"] == "openai_compatible":
                base = self.upstream.base_url if self.upstream is not None else "http://127.0.0.1:9"
                providers[name] = {"type": "openai_compatible", "api_base": f"{base}/v1",
                                   "api_key_env": UPSTREAM_KEY_ENV, "tier": spec.get("tier", "paid")}
            else:
                providers[name] = {"type": spec["type"], "tier": spec.get("tier", "subscription")}
        data = {
            "config_version": config_mod.CURRENT_VERSION,
            "runtime_dir": ".router/runtime",
            "default_profile": self.profile,
            "services": {name: {"host": "127.0.0.1", "port": ports[name],
                                "readiness_path": "/v1/models" if name == "cliproxyapi_plus" else "/health/readiness",
                                "startup_timeout": self.timeouts[name]}
                         for name in stack.ORDER},
            "providers": providers,
            "models": self.models,
        }
        if self.litellm_mode:
            data["services"]["litellm"]["mode"] = self.litellm_mode
        header = ("# Generated by llm-router for a throwaway sandbox (demo / smoke --standin): every port is a free\n"
                  "# loopback port, CLIProxyAPIPlus is the stand-in, and nothing here is billed.\n")
        atomic_write(self.config_path, header + yaml.safe_dump(data, sort_keys=False))
        self.cfg = config_mod.load_file(self.config_path)

    def _write_cliproxy_config(self) -> None:
        """Models of cliproxy providers that no stand-in account lists are served as openai-compatibility
        aliases, so that every configured model answers (the stand-in answers them itself)."""
        from .cliproxy_lines import CODEX_MODELS, CODEX_PAID_MODELS, COPILOT_MODELS

        listed = set(CODEX_MODELS) | set(CODEX_PAID_MODELS) | set(COPILOT_MODELS)
        cliproxy = {p for p, spec in self.providers.items() if spec["type"] == "cliproxyapi_plus"}
        extra = sorted({d["model"] for g in self.models for d in g["deployments"]
                        if d["provider"] in cliproxy and d["model"] not in listed})
        data: dict = {"request-retry": 0, "debug": False}
        if extra:
            data["openai-compatibility"] = [{"name": "sandbox", "base-url": "http://127.0.0.1:9/v1",
                                             "models": [{"name": m} for m in extra]}]
        atomic_write(self.root / "config" / "cliproxyapi.yaml", yaml.safe_dump(data, sort_keys=False), mode=0o600)

    # ----------------------------------------------------------------- running

    def start(self, timeout: float | None = None) -> list[ServiceOutcome]:
        """`service start all` in the sandbox; when a port was taken meanwhile, new free ports are picked."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return stack.start(self.cfg, "all", timeout=timeout)
            except RouterError as exc:
                if exc.exit_code != CONFLICT or "port" not in exc.message or attempt == START_ATTEMPTS:
                    raise
                self.notify(f"{exc.message}; picking other free ports")
                stack.stop(self.cfg, "all")
                self._write_config(self._ports())
                switch.set_profile(self.cfg, self.profile)  # rendered again: the upstream ports changed
        raise RouterError("no free ports", exit_code=UNAVAILABLE)  # not reached

    def upstream_requests(self) -> int | None:
        """Inference requests the stand-ins have answered so far (None when they cannot be asked)."""
        from .standin.process import StandinError, stats

        total = 0
        urls = [self.cliproxy_url] + ([self.upstream.base_url] if self.upstream is not None else [])
        for url in urls:
            try:
                total += stats(url)["total"]
            except (StandinError, OSError, ValueError, KeyError):
                return None
        return total

    def close(self) -> list[str]:
        """Stop everything of the sandbox and remove its folder (unless `keep`). Returns problems, if any."""
        problems = []
        if self.keep:
            return problems
        if self.cfg is not None:
            try:
                stack.stop(self.cfg, "all")
            except RouterError as exc:
                problems.append(exc.message)
        if self.upstream is not None:
            self.upstream.stop()
        left = _wait_for_stragglers(self.root, STRAGGLER_WAIT)
        if left:
            problems.append(f"still running after `service stop all` (left alone): pids {', '.join(map(str, left))}")
        if not problems:
            shutil.rmtree(self.root, ignore_errors=True)
        return problems

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stragglers(root: Path) -> list[int]:
    """Live processes whose command line names a path inside `root`: helpers of the sandbox's stack that
    `service stop` does not end itself (a background profile prover, say)."""
    import psutil

    marker = str(root)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(marker in part for part in cmdline):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _wait_for_stragglers(root: Path, timeout: float) -> list[int]:
    """Wait (never signal) until no process works in the sandbox any more; returns those still there."""
    deadline = time.monotonic() + timeout
    left = _stragglers(root)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _stragglers(root)
    return left


def _new_root(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def _create(root: Path | None, prefix: str, notify: Notify, **fields) -> Sandbox:
    box = Sandbox(root=root or _new_root(prefix), notify=notify, **fields)
    try:
        return box.prepare()
    except BaseException:
        with contextlib.suppress(Exception):
            box.close()
        raise


def demo(root: Path | None = None, litellm_port: int | None = None, notify: Notify = _quiet) -> Sandbox:
    """The demo's sandbox: one CLIProxyAPIPlus provider and the `coder` group (Codex-like first, Copilot-like
    second) on the balanced profile."""
    models = [{"name": DEMO_GROUP, "deployments": [{"provider": p, "model": m} for p, m in DEMO_DEPLOYMENTS]}]
    return _create(root, "llm-router-demo-", notify, providers={"cliproxy": {"type": "cliproxyapi_plus"}},
                   models=models, profile=DEMO_PROFILE, litellm_port=litellm_port, litellm_mode=DEMO_LITELLM_MODE)


def from_config(cfg: RouterConfig, profile: str, root: Path | None = None, notify: Notify = _quiet) -> Sandbox:
    """A sandbox with the user's providers, model groups and profiles (their own `config/profiles/` included):
    CLIProxyAPIPlus is the stand-in and every openai_compatible provider is the upstream stand-in."""
    providers = {name: {"type": p.type, "tier": p.tier} for name, p in cfg.providers.items()}
    models = [{"name": g.name, "deployments": [{"provider": d.provider, "model": d.model} for d in g.deployments]}
              for g in cfg.models]
    timeouts = {name: max(svc.startup_timeout, 30.0 if name == "cliproxyapi_plus" else 180.0)
                for name, svc in cfg.services.items()}
    root = root or _new_root("llm-router-smoke-")
    user_profiles = cfg.layout.user_profiles_dir
    if user_profiles.is_dir():
        shutil.copytree(user_profiles, root / "config" / "profiles", dirs_exist_ok=True)
    return _create(root, "llm-router-smoke-", notify, providers=providers, models=models, profile=profile,
                   timeouts=timeouts, litellm_mode=getattr(cfg.services["litellm"], "mode", None))
