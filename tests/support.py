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
    with _env(env or {}), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _env(values: dict):
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
