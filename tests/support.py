"""Shared test helpers: a temporary repo with a config, in-process CLI runs, and tree snapshots."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import textwrap
import unittest
from pathlib import Path

from llm_router.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "examples" / "routertool.yaml"


def run_cli(*argv: str, env: dict | None = None) -> tuple[int, str, str]:
    """Run `llm-router ARGV` in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with patched_env(env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def patched_env(values: dict):
    """os.environ with `values` set (None: removed) for the duration, restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file below `folder` with its mode and content, to prove nothing was written."""
    result = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            result[str(path.relative_to(folder))] = (path.stat().st_mode & 0o777, path.read_bytes())
    return result


class TempRepo(unittest.TestCase):
    """A test case with a temporary repo root holding `config/routertool.yaml`."""

    def setUp(self) -> None:
        super().setUp()
        self.root = Path(tempfile.mkdtemp(prefix="llm-router-test-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        (self.root / "config").mkdir()
        self.config_path = self.root / "config" / "routertool.yaml"

    def write_config(self, text: str | None = None) -> Path:
        text = EXAMPLE.read_text() if text is None else textwrap.dedent(text)
        self.config_path.write_text(text)
        return self.config_path

    def cli(self, *argv: str, env: dict | None = None) -> tuple[int, str, str]:
        return run_cli("--config", str(self.config_path), *argv, env=env)


STACK_CONFIG = """\
config_version: 2
runtime_dir: .router/runtime
services:
  cliproxyapi_plus: {{host: 127.0.0.1, port: {cliproxy_port}, readiness_path: /v1/models, startup_timeout: 20}}
  litellm: {{host: 127.0.0.1, port: {litellm_port}, readiness_path: /health/readiness, startup_timeout: 120}}
providers:
  cliproxy: {{type: cliproxyapi_plus}}
models:
  - name: coder
    deployments: [{{provider: cliproxy, model: gpt-5-codex}}]
"""


class StackRepo(TempRepo):
    """A temporary repo wired for the real stack on free loopback ports, with the CLIProxyAPIPlus stand-in
    installed as the binary. Every process a test starts through llm-router is stopped in cleanup, and the test
    fails if anything of it is left."""

    def setUp(self) -> None:
        super().setUp()
        from llm_router.standin.cliproxy import install_fake_binary
        from llm_router.standin.process import free_port

        self.ports = {"cliproxy_port": free_port(), "litellm_port": free_port()}
        self.write_config(STACK_CONFIG.format(**self.ports))
        self.cfg = self.load()
        install_fake_binary(self.cfg.layout.cliproxy_binary)
        self.started_pids: set[int] = set()
        self.addCleanup(self._stop_everything)

    def load(self):
        from llm_router import config as config_mod

        return config_mod.load(self.config_path)

    def write_stack_config(self, extra: str = "", **changes) -> None:
        text = STACK_CONFIG.format(**{**self.ports, **changes}) + textwrap.dedent(extra)
        self.write_config(text)
        self.cfg = self.load()

    def remember_pids(self) -> None:
        from llm_router import stack
        from llm_router.supervisor import process

        for name in stack.ORDER:
            record, _ = process.read_record(self.cfg.layout, name)
            if record:
                self.started_pids.add(record.pid)

    def _stop_everything(self) -> None:
        import psutil

        from llm_router import stack

        self.remember_pids()
        with contextlib.suppress(Exception):
            stack.stop(self.cfg, "all")
        leftovers = []
        for pid in self.started_pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    leftovers.append(pid)
                    os.killpg(pid, 9)
        if leftovers:
            raise AssertionError(f"processes left running after the test: {leftovers}")


def inv(*argv: str) -> tuple[int, str, str]:
    """Run `inv ARGV` against the project's namespace in-process; returns (exit code, stdout, stderr)."""
    from invoke import Program

    from llm_router.tasks import namespace

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            Program(namespace=namespace, name="inv", binary="inv").run(["inv", *argv])
        except SystemExit as exc:  # Program.run turns invoke's Exit into sys.exit(code)
            code = exc.code or 0
    return code, out.getvalue(), err.getvalue()


def serve_github(test: unittest.TestCase):
    """A fake GitHub API + release server on 127.0.0.1, stopped when the test ends."""
    import threading

    from llm_router.standin.github import GitHubServer

    server = GitHubServer(0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    test.addCleanup(server.server_close)
    test.addCleanup(server.shutdown)
    return server
