"""The usage store, `models` and `cooldown reset` on the real LiteLLM (uvicorn mode) with the stand-ins.

One sandbox per class (CLIProxyAPIPlus stand-in + upstream stand-in + LiteLLM on `balanced`), started in
setUpClass. The tests run in their numbered order: the first counts the known mix sent in setUpClass."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import unittest
from pathlib import Path

from llm_router.config import MASTER_KEY_ENV
from llm_router.standin.process import set_fault
from tests.litellm_support import class_sandbox, requires_litellm

CLIPROXY, PAID = "cliproxy", "paid"
GROUPS = {
    "mix": [(CLIPROXY, "gpt-4.1"), (PAID, "paid-mix-model")],  # ok on every protocol, streamed and not
    "fo": [(CLIPROXY, "gpt-5"), (PAID, "paid-fo-model")],  # 429 on the first: failover
    "err": [(CLIPROXY, "claude-sonnet-4.5"), (PAID, "paid-err-model")],  # 500 on the first: the next answers
    "bad": [(CLIPROXY, "gpt-5-mini")],  # 400: a client error, nobody else to try
    "cool": [(CLIPROXY, "gpt-5.1"), (PAID, "paid-cool-model")],  # the cooldown / reset test
}
TIMEOUT = 120.0


def dep(group: str, index: int) -> str:
    provider, model = GROUPS[group][index]
    return f"{group}/{provider}/{model}"


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@requires_litellm
class UsageOnRealLiteLLM(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import httpx

        cls.box = box = class_sandbox(cls, "llm-router-usage-", {CLIPROXY: {"type": "cliproxyapi_plus"},
                                                               PAID: {"type": "openai_compatible", "tier": "paid"}},
                                      GROUPS, "balanced")
        cls.cfg = box.cfg
        cls.base = box.litellm_url
        cls.http = httpx.Client(trust_env=False, timeout=TIMEOUT,
                                headers={"Authorization": f"Bearer {box.cfg.secret(MASTER_KEY_ENV)}"})
        cls.addClassCleanup(cls.http.close)
        cls.answers = cls._send_mix()

    @classmethod
    def call(cls, protocol: str, group: str, stream: bool = False):
        if protocol == "chat":
            path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}
        elif protocol == "responses":
            path, body = "/v1/responses", {"input": "hi"}
        else:
            path, body = "/v1/messages", {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
        response = cls.http.post(cls.base + path, json={"model": group, "stream": stream, **body},
                                 headers={"anthropic-version": "2023-06-01"})
        response.read()
        return response

    @classmethod
    def _send_mix(cls) -> list:
        cls.mocked = cls.http.post(cls.base + "/v1/chat/completions", json={  # smoke's mock: not usage
            "model": "mix", "messages": [{"role": "user", "content": "hi"}], "metadata": {"llm_router_mock": "ok"}})
        answers = []
        for protocol in ("chat", "responses", "messages"):
            for stream in (False, True):
                answers.append(cls.call(protocol, "mix", stream))
        set_fault(cls.box.cliproxy_url, "gpt-5", status=429, count=1)
        answers.append(cls.call("chat", "fo"))
        set_fault(cls.box.cliproxy_url, "claude-sonnet-4.5", status=500, count=1)
        answers.append(cls.call("chat", "err", True))
        set_fault(cls.box.cliproxy_url, "gpt-5-mini", status=400, count=1)
        answers.append(cls.call("chat", "bad"))
        return answers

    # ------------------------------------------------------------------ helpers

    def cli(self, *args: str, expect: int = 0) -> dict:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        proc = subprocess.run([sys.executable, "-m", "llm_router", *args, "--json", "--config",
                               str(self.box.config_path)], capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(proc.returncode, expect, proc.stdout + proc.stderr)
        return json.loads(proc.stdout)

    def rows(self) -> list[dict]:
        path = self.cfg.layout.usage_dir / "usage.db"
        if not path.exists():
            return []
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM requests")]

    def deployment_state(self, deployment_id: str) -> dict:
        view = self.cli("models")["data"]
        return next(d for g in view["models"] for d in g["deployments"] if d["id"] == deployment_id)

    # ------------------------------------------------------------------ tests

    def test_1_usage_counts_exactly_the_mix(self):
        self.assertEqual([a.status_code for a in self.answers], [200] * 8 + [400])
        self.assertEqual(self.mocked.status_code, 200)
        self.assertEqual(self.answers[6].headers.get("x-litellm-model-id"), dep("fo", 1))
        self.assertEqual(self.answers[7].headers.get("x-litellm-model-id"), dep("err", 1))
        self.assertTrue(wait_for(lambda: len(self.rows()) >= 11), self.rows())
        time.sleep(1.0)  # nothing more is coming: one more batch would show here
        self.assertEqual(len(self.rows()), 11, self.rows())
        data = self.cli("usage", "--by", "deployment")["data"]
        got = {r["deployment"]: (r["requests"], r["ok"], r["by_outcome"], r["streamed"]) for r in data["rows"]}
        self.assertEqual(got, {
            dep("mix", 0): (6, 6, {}, 3),
            dep("fo", 0): (1, 0, {"429": 1}, 0), dep("fo", 1): (1, 1, {}, 0),
            dep("err", 0): (1, 0, {"5xx": 1}, 1), dep("err", 1): (1, 1, {}, 1),
            dep("bad", 0): (1, 0, {"client_error": 1}, 0),
        })
        protocols = {r["protocol"]: (r["requests"], r["failures"], r["streamed"])
                     for r in self.cli("usage", "--by", "protocol")["data"]["rows"]}
        self.assertEqual(protocols, {"chat": (7, 3, 3), "responses": (2, 0, 1), "messages": (2, 0, 1)})
        providers = {r["provider"]: r["requests"] for r in self.cli("usage", "--by", "provider")["data"]["rows"]}
        self.assertEqual(providers, {CLIPROXY: 9, PAID: 2})
        for row in self.rows():  # nothing but the columns: no text, no key
            self.assertNotIn("hi", [row.get("error"), row.get("model")])
            if row["outcome"] == "ok":
                self.assertIsNotNone(row["latency_ms"])
                self.assertGreater(row["tokens_out"] or 0, 0)
        self.assertTrue(all(r["ttft_ms"] is not None for r in self.rows() if r["stream"] and r["outcome"] == "ok"))

    def test_2_a_429_cools_the_deployment_until_reset(self):
        first, second = dep("cool", 0), dep("cool", 1)
        set_fault(self.box.cliproxy_url, "gpt-5.1", status=429, count=1)
        started = time.time()
        self.assertEqual(self.call("chat", "cool").headers.get("x-litellm-model-id"), second)
        state = wait_for(lambda: (s := self.deployment_state(first))["state"] == "cooling_down" and s, timeout=30)
        self.assertTrue(state, "the 429 never showed as a cooldown in `models`")
        self.assertEqual(state["cooling_after"], 429)
        self.assertGreater(state["cooling_until"], started + 30)  # balanced: 60 s per deployment
        self.assertLess(state["cooling_until"], time.time() + 61)
        self.assertEqual(state["last_error"]["outcome"], "429")
        self.assertEqual(self.call("chat", "cool").headers.get("x-litellm-model-id"), second)  # still cooling

        reset = self.cli("cooldown", "reset", first)["data"]
        self.assertEqual(reset["was_cooling"], [first])
        self.assertEqual(reset["not_acknowledged"], [])
        self.assertEqual(self.call("chat", "cool").headers.get("x-litellm-model-id"), first)  # served again
        self.assertEqual(self.deployment_state(first)["state"], "serving")
        events = [json.loads(line) for line in self.cfg.layout.events_log.read_text().splitlines()]
        kinds = [(e["event"], (e.get("detail") or {}).get("deployment")) for e in events]
        self.assertIn(("deployment_cooldown", first), kinds)
        self.assertIn(("deployment_recovered", first), kinds)
        self.assertIn("cooldown_reset", [e["event"] for e in events])
        recovered = [e for e in events if e["event"] == "deployment_recovered"
                     and e["detail"]["deployment"] == first]
        self.assertEqual(recovered[-1]["detail"]["reason"], "reset")

    def test_3_reset_all_and_bad_input(self):
        self.assertEqual(self.cli("cooldown", "reset", "--all")["data"]["not_acknowledged"], [])
        self.assertEqual(self.cli("cooldown", "reset", "nope/x/y", expect=4)["errors"][0]["exit_code"], 4)
        self.assertEqual(self.cli("cooldown", "reset", expect=2)["errors"][0]["exit_code"], 2)
        self.assertEqual(self.cli("usage", "--since", "yesterday", expect=2)["errors"][0]["exit_code"], 2)
        # a huge --since reads like "all": the chart starts at the first recorded row, not a hundred millennia ago
        huge = self.cli("usage", "--since", "99999999999999d")["data"]
        self.assertLessEqual(len(huge["per_hour"]), 48)
        for group in self.cli("models")["data"]["models"]:
            for deployment in group["deployments"]:
                self.assertEqual(deployment["state"], "serving", deployment["id"])

    def test_4_html_report_matches_json(self):
        from tests.test_usage_report import check_page_against_json

        target = Path(self.box.root) / "report.html"
        data = self.cli("usage", "--html", str(target))["data"]
        check_page_against_json(self, target.read_text(), data)
