"""`llm-router demo` with real processes: the LiteLLM port it prefers is taken (it picks a free one), the run shows the
fallback and stops everything; `--keep` leaves a usable stack; no LiteLLM installed; the invoke task."""
from __future__ import annotations

import json
import shutil
import socket
import unittest
from pathlib import Path
from unittest import mock

from llm_router import config as config_mod
from llm_router import stack
from llm_router.demo import DemoReport
from llm_router.errors import NOT_FOUND
from tests.litellm_support import requires_litellm
from tests.support import inv, patched_env, run_cli
from tests.test_smoke import processes_under

FIRST, SECOND = "coder/cliproxy/gpt-5.1-codex-max", "coder/cliproxy/claude-sonnet-4.5"


@requires_litellm
class DemoRunTest(unittest.TestCase):
    def test_taken_port_fallback_and_clean_stop(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            taken = sock.getsockname()[1]
            code, out, err = run_cli("demo", "--port", str(taken), "--json")
        envelope = json.loads(out)
        data = envelope["data"]
        self.assertEqual(code, 0, json.dumps(data, indent=1)[:4000] + err)
        self.assertTrue(envelope["ok"])
        self.assertNotIn(f":{taken}/", data["base_url"])
        self.assertEqual([s["state"] for s in data["status"]], ["RUNNING", "RUNNING"])
        self.assertEqual(data["chat"]["deployment"], FIRST)
        self.assertIn("standin", data["chat"]["content"])
        self.assertGreater(data["stream"]["chunks"], 1)
        for call, first, last in ((data["responses"], "response.created", "response.completed"),
                                  (data["messages"], "message_start", "message_stop")):
            self.assertEqual(call["deployment"], FIRST, call)
            self.assertIn("standin", call["content"])
            self.assertEqual((call["first_event"], call["last_event"]), (first, last))
        failover = data["failover"]
        self.assertEqual((failover["answered_by"], failover["next_answered_by"]), (SECOND, SECOND))
        self.assertEqual(failover["first_tried"], 1)
        self.assertIn("added_ms", failover)
        kinds = [e["event"] for e in data["events"]]
        for kind in ("service_start", "profile_switch", "demo_fault", "demo_failover", "service_stop"):
            self.assertIn(kind, kinds)
        self.assertEqual([o["result"] for o in data["stopped"]], ["stopped", "stopped"])
        usage = data["usage"]  # every request of the run, as the usage store recorded it
        self.assertTrue(usage["complete"], usage)
        rows = {row["deployment"]: row for row in usage["rows"]}
        answered_by_first = 3 + 2 + 4  # warm-up, chat, stream; Responses, Messages; the other healthy samples
        first = rows[FIRST]
        self.assertEqual((first["requests"], first["ok"], first["by_outcome"], first["streamed"]),
                         (answered_by_first + 1, answered_by_first, {"429": 1}, 3))
        self.assertEqual((rows[SECOND]["requests"], rows[SECOND]["ok"], rows[SECOND]["failures"]), (2, 2, 0))
        self.assertEqual((usage["total"]["requests"], usage["expected_ok"]), (12, 11))
        self.assertIsInstance(first["p50_ms"], float)
        self.assertNotIn("api_key", data)
        self.assertFalse(Path(data["root"]).exists())
        self.assertEqual(processes_under(data["root"]), [])

    def test_two_demos_at_once_do_not_collide(self):
        # Both prefer the same free port; LiteLLM (uvicorn mode) binds only after seconds of imports, so before
        # readiness had to come from the started process, the second demo sent its requests (and its key) to the
        # first one's LiteLLM. Each must now serve its own requests on its own port.
        import os
        import subprocess
        import sys

        from llm_router.standin.process import free_port

        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        argv = [sys.executable, "-m", "llm_router", "demo", "--port", str(port), "--json"]
        demos = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(2)]
        for demo in demos:
            self.addCleanup(lambda d=demo: d.poll() is None and d.kill())
        results = [demo.communicate(timeout=600) for demo in demos]
        envelopes = [json.loads(out) for out, _ in results]
        for (out, err), demo, envelope in zip(results, demos, envelopes):
            self.assertEqual(demo.returncode, 0, out[-3000:] + err[-3000:])
            self.assertEqual(envelope["data"]["chat"]["deployment"], FIRST)
            self.assertEqual(processes_under(envelope["data"]["root"]), [])
        # (they may end on the same port when one finished before the other started its LiteLLM: what matters is
        # that each demo's requests, sent with its own key, were answered by its own stack, as checked above)

    def test_keep_leaves_a_usable_stack(self):
        code, out, err = run_cli("demo", "--keep")
        root = next(line.split()[-1] for line in out.splitlines() if line.startswith("llm-router demo: "))
        self.addCleanup(shutil.rmtree, root, True)
        cfg = config_mod.load(Path(root) / "config" / "routertool.yaml")
        self.addCleanup(lambda: self.assertEqual(processes_under(root), []))
        self.addCleanup(stack.stop, cfg, "all")
        self.assertEqual(code, 0, out + err)
        env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines()
                   if line.startswith("export OPENAI_"))
        self.assertEqual(env["OPENAI_BASE_URL"], cfg.services["litellm"].base_url + "/v1")
        self.assertEqual(env["OPENAI_API_KEY"], cfg.secret("LITELLM_MASTER_KEY"))
        self.assertIn("service stop all", out)
        self.assertTrue(all(s.state == "RUNNING" for s in stack.status(cfg)))
        import openai

        client = openai.OpenAI(base_url=env["OPENAI_BASE_URL"], api_key=env["OPENAI_API_KEY"], max_retries=0,
                               timeout=60, http_client=openai.DefaultHttpxClient(trust_env=False))
        reply = client.chat.completions.create(model="coder", messages=[{"role": "user", "content": "hi"}])
        self.assertIn("standin", reply.choices[0].message.content)


class DemoFrontEndTest(unittest.TestCase):
    def test_keep_hints_are_printed_from_one_place(self):
        from llm_router import demo
        from llm_router.commands.demo import render

        report = DemoReport(root="/tmp/llm-router-demo-x", base_url="http://127.0.0.1:4000/v1", kept=True,
                            api_key="sk-demo", config_path="/tmp/llm-router-demo-x/config/routertool.yaml")
        report.keep_hints = demo.keep_hints(report)
        self.assertEqual(report.keep_hints[:2], ["export OPENAI_BASE_URL=http://127.0.0.1:4000/v1",
                                                 "export OPENAI_API_KEY=sk-demo"])
        text = render(report)
        for line in report.keep_hints:
            self.assertIn(line, text)
        report.responses = {"model": "coder", "deployment": FIRST, "events": 9, "first_event": "response.created",
                            "last_event": "response.completed", "content": "hi", "ms": 12.0}
        self.assertIn("9 events (response.created ... response.completed): 'hi'", render(report))

    def test_the_usage_view_is_the_usage_table(self):
        from llm_router.commands.demo import render

        row = {"deployment": FIRST, "requests": 3, "ok": 2, "failures": 1, "by_outcome": {"429": 1}, "streamed": 0,
               "tokens_in": 6, "tokens_out": 4, "p50_ms": 9.5, "p95_ms": 12.0, "ttft_p50_ms": None}
        report = DemoReport(root="/tmp/llm-router-demo-x", usage={
            "by": "deployment", "rows": [row], "total": {**row, "all": "all"}, "expected_ok": 2, "complete": True,
            "store": {"path": "/tmp/x/usage.db", "exists": True, "size_bytes": 4096, "dropped": 0, "written": 3},
            "waited_ms": 5.0})
        text = render(report)
        self.assertIn("== usage: what LiteLLM's callback wrote", text)
        self.assertRegex(text, rf"{FIRST}\s+3\s+2\s+1\s+429 1\s+6/4\s+9.5\s+12.0")
        self.assertIn("store /tmp/x/usage.db: 4 KiB, 0 rows dropped", text)

    def test_without_litellm(self):
        with mock.patch("llm_router.litellm.runner.litellm_available", return_value=(False, None)):
            code, out, err = run_cli("demo")
        self.assertEqual(code, NOT_FOUND)
        self.assertIn("uv sync --group runtime", err)

    def test_invoke_task_renders_the_report(self):
        report = DemoReport(root="/tmp/llm-router-demo-x", base_url="http://127.0.0.1:4000/v1")
        with mock.patch("llm_router.demo.run", return_value=report) as run, patched_env({"LLM_ROUTER_CONFIG": None}):
            code, out, err = inv("demo", "--json", "--port", "4100")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["command"], "demo")
        self.assertEqual(run.call_args.kwargs["litellm_port"], 4100)
        report.problems.append("boom")
        with mock.patch("llm_router.demo.run", return_value=report):
            code, out, _ = inv("demo")
        self.assertEqual(code, 1)
        self.assertIn("demo FAILED: boom", out)


if __name__ == "__main__":
    unittest.main()


class CollectUsageTest(unittest.TestCase):
    """The demo's wait for LiteLLM's usage rows: it polls the store until they are there, and gives up (as a
    problem of the demo, not an exception) after USAGE_WAIT."""

    def setUp(self):
        import tempfile

        from llm_router.layout import Layout

        self.root = Path(tempfile.mkdtemp(prefix="llm-router-demo-usage-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.layout = Layout.of_runtime_dir(self.root / "runtime")

    def run_step(self, answered: int, rows: list[dict], wait: float = 30.0) -> DemoReport:
        import threading
        import time

        from llm_router import demo
        from llm_router import usage as store

        writer = store.Writer(self.layout.usage_dir, cooldown_source=dict)
        writer.start()
        self.addCleanup(writer.stop)

        def later():  # rows land while the demo is already polling
            time.sleep(0.3)
            for row in rows:
                writer.submit(row)
            writer.flush()

        threading.Thread(target=later, daemon=True).start()
        report = DemoReport(root=str(self.root))
        run = demo.DemoRun(mock.Mock(cfg=mock.Mock(layout=self.layout)), report, lambda _: None, None)
        run.answered = answered
        with mock.patch.object(demo, "USAGE_WAIT", wait):
            run.collect_usage()
        return report

    def row(self, deployment: str, outcome: str = "ok", latency: float = 10.0) -> dict:
        import time

        return {"ts": time.time(), "model": "coder", "deployment": deployment, "provider": "cliproxy",
                "protocol": "chat", "stream": 0, "outcome": outcome, "status": 200 if outcome == "ok" else 429,
                "latency_ms": latency}

    def test_waits_for_the_rows_then_summarizes_them(self):
        report = self.run_step(2, [self.row(FIRST), self.row(FIRST, "429"), self.row(SECOND, latency=20.0)])
        self.assertEqual(report.problems, [])
        usage = report.usage
        self.assertTrue(usage["complete"])
        self.assertEqual([(r["deployment"], r["requests"], r["by_outcome"], r["p50_ms"]) for r in usage["rows"]],
                         [(SECOND, 1, {}, 20.0), (FIRST, 2, {"429": 1}, 10.0)])
        self.assertEqual(usage["total"]["requests"], 3)

    def test_a_missing_row_is_a_problem_after_the_bound(self):
        report = self.run_step(3, [self.row(FIRST)], wait=1.0)
        self.assertFalse(report.usage["complete"])
        self.assertEqual(report.problems, ["the usage store had 1 of 3 answered requests and 0 failure(s) after 1 s"])
