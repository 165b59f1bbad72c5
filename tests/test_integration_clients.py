"""The real Codex CLI and Claude Code through a sandbox stack (CLIProxyAPIPlus stand-in, the upstream stand-in,
the real LiteLLM in its default gunicorn mode, so the clients meet the warm master's worker: the frozen heap, the
warmed Responses and Messages paths), each configured by exactly what `llm-router connect` prints, run
non-interactively with temporary homes.

Scenarios per client: a plain answer, a streamed answer, a tool round trip (the stand-in's tool-call rule in
docs/standins.md: a prompt with `RUN: <command>` gets a call to the client's shell tool, and a tool result is
answered `tool said: <output>`) whose output reaches the stand-in in the next request, an `openai_compatible`
deployment, and a group whose first deployment answers 429 answered by the second. Plus `llm-router run`.

The clients come from tests/client_support.py (pinned, installed once into a cache outside the checkout).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from llm_router import sandbox as sandbox_mod
from llm_router.standin import process as standin

from . import client_support
from .litellm_support import requires_litellm
from .support import REPO, run_cli

CLIENT_TIMEOUT = 300.0  # a turn takes seconds; a loaded 2-core machine can take much longer
CLIPROXY_MODEL, SECOND_MODEL = "gpt-5.1-codex-max", "claude-sonnet-4.5"  # behind the CLIProxyAPIPlus stand-in
FAILING_MODEL, PAID_MODEL = "gpt-5.1-codex", "gpt-4.1"  # the first of `fallback`; the openai_compatible one
MODELS = [
    {"name": "coder", "deployments": [{"provider": "cliproxy", "model": CLIPROXY_MODEL}]},
    {"name": "paid", "deployments": [{"provider": "custom", "model": PAID_MODEL}]},
    {"name": "fallback", "deployments": [{"provider": "cliproxy", "model": FAILING_MODEL},
                                         {"provider": "cliproxy", "model": SECOND_MODEL}]},
]
PROVIDERS = {"cliproxy": {"type": "cliproxyapi_plus"}, "custom": {"type": "openai_compatible", "tier": "paid"}}


@requires_litellm
class ClientStack(unittest.TestCase):
    """One sandbox stack for the whole class; every test gets fresh client homes."""

    client = ""  # codex | claude

    @classmethod
    def setUpClass(cls) -> None:
        if cls is ClientStack:
            raise unittest.SkipTest("base class")
        cls.exe = client_support.clients()[cls.client]
        root = Path(tempfile.mkdtemp(prefix=f"llm-router-clients-{cls.client}-"))
        cls.box = sandbox_mod.Sandbox(root=root, providers=PROVIDERS, models=MODELS, profile="balanced",
                                      litellm_mode="gunicorn")
        cls.addClassCleanup(cls._close)
        cls.box.prepare()
        cls.box.start()

    @classmethod
    def _close(cls) -> None:
        problems = cls.box.close()
        if problems:
            raise AssertionError(f"sandbox left behind: {problems}")

    def setUp(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"{self.client}-home-"))
        self.addCleanup(shutil.rmtree, self.home, True)
        self.work = self.home / "work"
        self.work.mkdir()
        self.env = client_support.base_env(self.home)

    # ----------------------------------------------------------------- helpers

    def connect(self, model: str, *extra: str) -> dict:
        """`llm-router connect CLIENT --model MODEL --json` as the user would run it, with this test's homes."""
        code, out, err = run_cli("--config", str(self.box.config_path), "connect", self.client, "--model", model,
                                 "--json", *extra, env={**self.client_vars(), "LITELLM_MASTER_KEY": None})
        self.assertEqual(code, 0, err)
        data = json.loads(out)
        self.assertTrue(data["data"]["endpoint"]["running"], data)
        return data["data"]

    def client_vars(self) -> dict:
        return {"HOME": str(self.home), "CODEX_HOME": str(self.home / ".codex"),
                "CLAUDE_CONFIG_DIR": str(self.home / ".claude")}

    def run_client(self, exports: str, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """The client in bash after `eval` of the printed exports (so the exports themselves are proven)."""
        env = {**self.env, **self.client_vars(), "LLM_ROUTER_EXPORTS": exports}
        proc = subprocess.run(["bash", "-c", 'eval "$LLM_ROUTER_EXPORTS"; exec "$@"', "_", str(self.exe), *argv],
                              cwd=self.work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=CLIENT_TIMEOUT)
        if check:
            self.assertEqual(proc.returncode, 0, f"{self.client} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def mark(self, url: str) -> int:
        log = standin.requests_log(url)
        return log[-1]["seq"] if log else 0

    def requests_since(self, url: str, since: int) -> list[dict]:
        return [r for r in standin.requests_log(url, since=since)
                if r.get("protocol") in ("chat", "responses", "messages", "completions")]

    def assert_tool_round_trip(self, url: str, since: int, token: str, answer: str) -> None:
        log = self.requests_since(url, since)
        shown = [{k: v for k, v in r.items() if k != "tool_names"} for r in log]
        calls = [r for r in log if r.get("answer") == "tool_call"]
        self.assertTrue(calls, f"no tool call was answered: {shown}")
        results = [r for r in log if r["seq"] > calls[0]["seq"] and r.get("tool_result")]
        self.assertTrue(results, f"the tool result never reached the stand-in: {shown}")
        self.assertIn(token, results[0].get("tool_result_text") or "")
        self.assertIn("tool said:", answer)
        self.assertIn(token, answer)

    def token(self) -> str:
        return "hello-" + secrets.token_hex(4)


class CodexTest(ClientStack):
    client = "codex"

    def configure(self, model: str) -> str:
        """Write the printed config.toml block into the temporary CODEX_HOME; returns the printed exports."""
        data = self.connect(model)
        (self.home / ".codex").mkdir(exist_ok=True)
        (self.home / ".codex" / "config.toml").write_text(data["files"][0]["text"] + "\n")
        return data["exports"]

    def exec(self, model: str, prompt: str, *flags: str) -> tuple[str, subprocess.CompletedProcess]:
        exports = self.configure(model)
        last = self.home / "last.txt"
        proc = self.run_client(exports, ["exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
                                         "--output-last-message", str(last), *flags, prompt])
        return last.read_text().strip() if last.exists() else "", proc

    def test_plain_answer_on_cliproxy(self):
        since = self.mark(self.box.cliproxy_url)
        answer, _ = self.exec("coder", "say hello")
        self.assertEqual(answer, f"standin cliproxy model {CLIPROXY_MODEL}")
        log = self.requests_since(self.box.cliproxy_url, since)
        self.assertTrue(log and all(r["stream"] for r in log), log)
        self.assertEqual({r["protocol"] for r in log}, {"responses"})  # natively, as Codex sent it

    def test_streamed_answer_events(self):
        answer, proc = self.exec("coder", "say hello", "--json")
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        texts = [e["item"].get("text") for e in events
                 if e.get("type") == "item.completed" and e.get("item", {}).get("type") == "agent_message"]
        self.assertIn(f"standin cliproxy model {CLIPROXY_MODEL}", texts, events)
        self.assertEqual(answer, f"standin cliproxy model {CLIPROXY_MODEL}")

    def test_tool_round_trip_on_cliproxy(self):
        token = self.token()
        since = self.mark(self.box.cliproxy_url)
        answer, _ = self.exec("coder", f"RUN: echo {token}")
        self.assert_tool_round_trip(self.box.cliproxy_url, since, token, answer)

    def test_openai_compatible_deployment_with_a_tool_round_trip(self):
        url = self.box.upstream.base_url
        since = self.mark(url)
        answer, _ = self.exec("paid", "say hello")
        self.assertIn(f"model {PAID_MODEL}", answer)
        token = self.token()
        answer, _ = self.exec("paid", f"RUN: echo {token}")
        self.assert_tool_round_trip(url, since, token, answer)

    def test_first_deployment_429_is_answered_by_the_second(self):
        standin.set_fault(self.box.cliproxy_url, FAILING_MODEL, status=429, count=-1)
        since = self.mark(self.box.cliproxy_url)
        answer, _ = self.exec("fallback", "say hello")
        self.assertEqual(answer, f"standin cliproxy model {SECOND_MODEL}")
        log = self.requests_since(self.box.cliproxy_url, since)
        self.assertTrue(any(r.get("model") == FAILING_MODEL and r.get("status") == 429 for r in log), log)

    def test_run_passes_the_exit_code_through(self):
        base = [sys.executable, "-m", "llm_router", "--config", str(self.box.config_path), "run", "codex"]
        env = {**self.env, **self.client_vars(), "PATH": f"{self.exe.parent}{os.pathsep}{self.env['PATH']}",
               "PYTHONPATH": str(REPO / "src")}
        (self.home / ".codex").mkdir()  # Codex refuses a CODEX_HOME that does not exist
        last = self.home / "run-last.txt"
        ok = subprocess.run([*base, "--", "exec", "--skip-git-repo-check", "--output-last-message", str(last),
                             "say hello"], cwd=self.work, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=CLIENT_TIMEOUT)
        self.assertEqual(ok.returncode, 0, ok.stderr[-3000:])
        self.assertEqual(last.read_text().strip(), f"standin cliproxy model {CLIPROXY_MODEL}")
        self.assertFalse((self.home / ".codex" / "config.toml").exists())  # `run` leaves config.toml alone
        bad = subprocess.run([*base, "--", "exec", "--skip-git-repo-check", "-m", "no-such-model", "say hello"],
                             cwd=self.work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=CLIENT_TIMEOUT)
        self.assertNotEqual(bad.returncode, 0, bad.stdout[-2000:])
        self.assertNotIn("Traceback", bad.stderr)
        usage = subprocess.run([*base, "--", "--no-such-flag"], cwd=self.work, env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        self.assertEqual(usage.returncode, 2, usage.stderr[-2000:])  # clap's usage error, passed through


class ClaudeTest(ClientStack):
    client = "claude"

    def ask(self, model: str, prompt: str, *flags: str, fmt: str = "json") -> tuple[str, list]:
        exports = self.connect(model)["exports"]
        proc = self.run_client(exports, ["-p", prompt, "--output-format", fmt, *flags])
        if fmt == "json":
            result = json.loads(proc.stdout)
            self.assertFalse(result.get("is_error"), result)
            return result["result"].strip(), [result]
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        results = [e for e in events if e.get("type") == "result"]
        self.assertTrue(results and not results[-1].get("is_error"), events[-3:])
        return results[-1]["result"].strip(), events

    def test_plain_answer_on_cliproxy(self):
        since = self.mark(self.box.cliproxy_url)
        answer, _ = self.ask("coder", "say hello")
        self.assertEqual(answer, f"standin cliproxy model {CLIPROXY_MODEL}")
        log = self.requests_since(self.box.cliproxy_url, since)
        self.assertTrue(log)
        self.assertEqual({r["protocol"] for r in log}, {"messages"})  # untranslated to CLIProxyAPIPlus

    def test_streamed_answer_events(self):
        answer, events = self.ask("coder", "say hello", "--verbose", "--include-partial-messages", fmt="stream-json")
        deltas = [e["event"]["delta"].get("text", "") for e in events if e.get("type") == "stream_event"
                  and e.get("event", {}).get("type") == "content_block_delta"]
        self.assertEqual("".join(deltas).strip(), f"standin cliproxy model {CLIPROXY_MODEL}", events[:5])
        self.assertEqual(answer, f"standin cliproxy model {CLIPROXY_MODEL}")

    def test_tool_round_trip_on_cliproxy(self):
        token = self.token()
        since = self.mark(self.box.cliproxy_url)
        answer, _ = self.ask("coder", f"RUN: echo {token}", "--allowedTools", "Bash")
        self.assert_tool_round_trip(self.box.cliproxy_url, since, token, answer)

    def test_openai_compatible_deployment_with_a_tool_round_trip(self):
        url = self.box.upstream.base_url
        since = self.mark(url)
        answer, _ = self.ask("paid", "say hello")
        self.assertIn(f"model {PAID_MODEL}", answer)
        token = self.token()
        # through LiteLLM's Messages -> chat translation the prompt is followed by a system-reminder message; the
        # stand-in reads the whole user turn (docs/standins.md), as a model would
        answer, _ = self.ask("paid", f"RUN: echo {token}", "--allowedTools", "Bash")
        self.assert_tool_round_trip(url, since, token, answer)

    def test_first_deployment_429_is_answered_by_the_second(self):
        standin.set_fault(self.box.cliproxy_url, FAILING_MODEL, status=429, count=-1)
        since = self.mark(self.box.cliproxy_url)
        answer, _ = self.ask("fallback", "say hello")
        self.assertEqual(answer, f"standin cliproxy model {SECOND_MODEL}")
        log = self.requests_since(self.box.cliproxy_url, since)
        self.assertTrue(any(r.get("model") == FAILING_MODEL and r.get("status") == 429 for r in log), log)

    def test_settings_json_written_by_connect(self):
        """`connect claude --write` (settings.json with apiKeyHelper, no key in the file) alone is enough."""
        self.connect("coder", "--write")
        settings = self.home / ".claude" / "settings.json"
        key = (self.box.cfg.layout.secret_file("LITELLM_MASTER_KEY")).read_text().strip()
        self.assertNotIn(key, settings.read_text())
        proc = self.run_client("", ["-p", "say hello", "--output-format", "json"])
        self.assertEqual(json.loads(proc.stdout)["result"].strip(), f"standin cliproxy model {CLIPROXY_MODEL}")


if __name__ == "__main__":
    unittest.main()
