"""The real LiteLLM proxy (runtime dependency group) as a test fixture: start it on a free loopback port with a
given config file and environment, wait for /health/readiness, and always stop its whole process group."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

from llm_router import config as config_mod
from llm_router import profiles
from llm_router.litellm.env import LITELLM_OFFLINE_ENV
from llm_router.standin.process import StandinProcess, free_port, start_upstream
from llm_router.supervisor.services import SCRUBBED_ENV

LITELLM = Path(sys.prefix) / "bin" / "litellm"
MASTER_KEY = "sk-test-master-key-0123"
UPSTREAM_KEY = "sk-standin-upstream-key-0123"
PROVIDERS = {  # provider -> (routertool.yaml spec, key variable); "cliproxy" is the CLIProxyAPIPlus service
    "cliproxy": ("{{type: cliproxyapi_plus}}", "ROUTER_UPSTREAM_API_KEY"),
    "flaky": ('{{type: openai_compatible, api_base: "{base}/v1", api_key_env: FLAKY_API_KEY, tier: subscription}}',
              "FLAKY_API_KEY"),
    "paid": ('{{type: openai_compatible, api_base: "{base}/v1", api_key_env: PAID_API_KEY, tier: paid}}',
             "PAID_API_KEY"),
}
START_TIMEOUT = 120.0  # ~10 s on an idle 2-core machine; much more when the machine is busy
STOP_TIMEOUT = 15.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def litellm_installed() -> bool:
    return LITELLM.is_file()


class LiteLLMProxy:
    """`litellm --config FILE --host 127.0.0.1 --port N` in its own session; use as a context manager or call
    start() and stop() (stop is safe to call twice)."""

    def __init__(self, config_path: Path, env: dict[str, str], port: int | None = None):
        self.config_path = Path(config_path)
        self.port = port or free_port()
        self.env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        self.env.update({**LITELLM_OFFLINE_ENV, "LITELLM_LOG": "ERROR", "NO_PROXY": "127.0.0.1,localhost",
                         "LITELLM_MASTER_KEY": MASTER_KEY, **env})
        self.log = tempfile.NamedTemporaryFile(prefix="litellm-", suffix=".log", delete=False)
        self.popen: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> "LiteLLMProxy":
        self.popen = subprocess.Popen(
            [str(LITELLM), "--config", str(self.config_path), "--host", "127.0.0.1", "--port", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                self.stop()
                raise RuntimeError(f"litellm exited with {self.popen.returncode} before it was ready:\n{self.tail()}")
            if self._ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"litellm was not ready within {timeout:.0f} s:\n{self.tail()}")

    def _ready(self) -> bool:
        try:
            with _NO_PROXY.open(f"{self.base_url}/health/readiness", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """SIGTERM to the process group, wait, then SIGKILL; the log file is removed."""
        if self.popen is not None and self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def client(self, timeout: float = 60.0):
        import openai

        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=timeout,
                             http_client=openai.DefaultHttpxClient(trust_env=False))

    def __enter__(self) -> "LiteLLMProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def requires_litellm(cls):
    """Skip a test class when the runtime group (LiteLLM) is not installed."""
    return unittest.skipUnless(litellm_installed(), "LiteLLM not installed: uv sync --group runtime")(cls)


class StandinStack:
    """One stand-in upstream per provider of PROVIDERS (`cliproxy` plays CLIProxyAPIPlus, `flaky` is a
    subscription provider of its own that a test can stop to refuse connections, `paid` has tier paid) and a
    `config/routertool.yaml` under `root` whose model groups route over them.

    `groups` maps a model name to its deployments in configured order, as (provider, upstream model id)."""

    def __init__(self, root: Path, groups: dict[str, list[tuple[str, str]]]):
        self.root = Path(root)
        self.servers: dict[str, StandinProcess] = {}
        self.config_path = self.root / "config" / "routertool.yaml"
        self.env = {key_env: UPSTREAM_KEY for _, key_env in PROVIDERS.values()}
        try:
            for provider in PROVIDERS:
                models = [m for deps in groups.values() for p, m in deps if p == provider] or ["unused"]
                self.servers[provider] = start_upstream(api_key=UPSTREAM_KEY, models=models, name=provider)
            self._write_config(groups)
        except BaseException:
            self.stop()
            raise

    def _write_config(self, groups: dict[str, list[tuple[str, str]]]) -> None:
        lines = ["config_version: 2", "services:",
                 f"  cliproxyapi_plus: {{port: {self.servers['cliproxy'].port}}}",
                 f"  litellm: {{port: {free_port()}}}", "providers:"]
        lines += [f"  {name}: {spec.format(base=self.servers[name].base_url)}"
                  for name, (spec, _) in PROVIDERS.items()]
        lines.append("models:")
        for name, deps in groups.items():
            lines.append(f"  - name: {name}")
            lines.append("    deployments: [" + ", ".join(f"{{provider: {p}, model: {m}}}" for p, m in deps) + "]")
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines) + "\n")

    def url(self, provider: str) -> str:
        return self.servers[provider].base_url

    def proxy(self, profile: str) -> LiteLLMProxy:
        """A (not yet started) LiteLLM proxy on `profile` rendered for this stack."""
        cfg = config_mod.load(self.config_path)
        path = self.root / f"{profile}.yaml"
        path.write_text(profiles.render(cfg, profile))
        return LiteLLMProxy(path, self.env, port=cfg.services["litellm"].port)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def class_sandbox(cls, prefix: str, providers: dict, groups: dict, profile: str, litellm_mode: str = "uvicorn",
                  before_start=None):
    """One sandbox stack (the CLIProxyAPIPlus stand-in, an upstream stand-in for every openai_compatible provider,
    the real LiteLLM) for a whole test class, started now; `groups` is {name: [(provider, model), ...]}.
    `before_start(box)` runs between prepare and start (e.g. to change the accounts). Class cleanups stop it by its
    recorded processes and remove its folder, and fail if anything of it is left."""
    import shutil

    from llm_router import sandbox

    root = Path(tempfile.mkdtemp(prefix=prefix))
    cls.addClassCleanup(shutil.rmtree, root, True)
    box = sandbox.Sandbox(root=root / "box", providers=providers,
                          models=[{"name": g, "deployments": [{"provider": p, "model": m} for p, m in deps]}
                                  for g, deps in groups.items()],
                          profile=profile, litellm_mode=litellm_mode)

    def close() -> None:
        problems = box.close()
        if problems:
            raise AssertionError("; ".join(problems))

    cls.addClassCleanup(close)
    box.prepare()
    if before_start is not None:
        before_start(box)
    box.start()
    return box
