"""`llm-router models` without LiteLLM: failover order, accounts, and live state from the usage store."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import unittest
from pathlib import Path

from llm_router import config, models_view
from llm_router import usage as store
from llm_router.commands import Ctx
from llm_router.commands import usage as cmd
from llm_router.errors import NOT_FOUND, USAGE, RouterError

CONFIG = """config_version: 2
providers:
  cliproxy: {type: cliproxyapi_plus}
  custom: {type: openai_compatible, api_base: "http://127.0.0.1:9/v1", api_key_env: MODELS_TEST_KEY, tier: paid}
models:
  - name: coder
    deployments: [{provider: custom, model: gpt-4.1}, {provider: cliproxy, model: gpt-5.1-codex-max}]
"""


class ModelsView(unittest.TestCase):
    def setUp(self):
        self.root = Path(tempfile.mkdtemp(prefix="llm-router-models-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        path = self.root / "config" / "routertool.yaml"
        path.parent.mkdir()
        path.write_text(CONFIG)
        self.cfg = config.load_file(path)
        auths = self.cfg.layout.auths_dir
        auths.mkdir(parents=True)
        (auths / "codex-a.json").write_text(json.dumps({"type": "codex", "email": "a@example.com"}))
        (auths / "copilot-b.json").write_text(json.dumps({"type": "github-copilot", "username": "octo"}))

    def record(self, cooling: dict | None = None, rows: tuple = (), stale: bool = False) -> None:
        clock = (lambda: time.time() - 3600) if stale else time.time
        writer = store.Writer(self.cfg.layout.usage_dir, cooldown_source=lambda: dict(cooling or {}), clock=clock)
        writer.start()
        for row in rows:
            writer.submit(row)
        self.assertTrue(writer.flush())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with store.Reader(self.cfg.layout.usage_dir) as reader:
                if reader.workers() and len(reader.cooldowns()) >= len(cooling or {}):
                    break
            time.sleep(0.05)
        writer.stop()

    def deployment(self, view: dict, deployment_id: str) -> dict:
        return next(d for g in view["models"] for d in g["deployments"] if d["id"] == deployment_id)

    def test_order_accounts_and_an_empty_store(self):
        view = models_view.build(self.cfg)
        self.assertFalse(view["store_exists"])
        ids = [d["id"] for d in view["models"][0]["deployments"]]
        self.assertEqual(ids, ["coder/custom/gpt-4.1", "coder/cliproxy/gpt-5.1-codex-max"])  # balanced: as configured
        custom, cliproxy = view["models"][0]["deployments"]
        self.assertEqual(custom["accounts"], [{"kind": "api_key", "variable": "MODELS_TEST_KEY", "set": False}])
        self.assertEqual([a["file"] for a in cliproxy["accounts"]], ["codex-a.json"])  # a Codex-only model
        self.assertEqual(custom["state"], "serving")
        self.assertEqual(custom["quota"]["remaining"], "unknown")
        self.assertIn("no usage recorded yet", models_view.text(view))

    def test_live_cooldown_last_error_and_last_hour(self):
        now = time.time()
        dep = "coder/custom/gpt-4.1"
        rows = ({"ts": now - 5, "model": "coder", "deployment": dep, "outcome": "429", "status": 429,
                 "error": "RateLimitError", "rl_requests": 0},
                {"ts": now - 4, "model": "coder", "deployment": "coder/cliproxy/gpt-5.1-codex-max", "outcome": "ok"})
        self.record({dep: store.CooldownState(started=now - 5, until=now + 55, status=429)}, rows)
        # the writer has stopped: its heartbeat is fresh for WORKER_STALE seconds and its pid is ours
        view = models_view.build(self.cfg)
        state = self.deployment(view, dep)
        self.assertEqual(state["state"], "cooling_down")
        self.assertAlmostEqual(state["cooling_until"], now + 55, delta=0.01)
        self.assertEqual(state["cooling_after"], 429)
        self.assertEqual(state["last_error"]["outcome"], "429")
        self.assertEqual(state["last_hour"], {"requests": 1, "failures": 1})
        self.assertEqual(state["quota"]["remaining"], {"requests": 0, "tokens": None})
        self.assertIn("COOLING until", models_view.text(view))
        self.assertEqual(self.deployment(view, "coder/cliproxy/gpt-5.1-codex-max")["state"], "serving")

    def test_a_cooldown_of_a_gone_worker_does_not_count(self):
        now = time.time()
        self.record({"coder/custom/gpt-4.1": store.CooldownState(started=now, until=now + 600, status=500)},
                    stale=True)
        view = models_view.build(self.cfg, now=time.time())
        self.assertEqual(self.deployment(view, "coder/custom/gpt-4.1")["state"], "serving")

    def test_split_and_ids(self):
        self.assertEqual(models_view.split_id("g/p/org/model"), ("g", "p", "org/model"))
        self.assertEqual(models_view.deployment_ids(self.cfg),
                         ["coder/custom/gpt-4.1", "coder/cliproxy/gpt-5.1-codex-max"])

    def test_quota_goes_to_the_deployments_its_accounts_serve(self):
        from llm_router.auth.status import read_copilot_quota, unknown_quota

        path = self.cfg.path
        path.write_text(CONFIG.replace("{provider: cliproxy, model: gpt-5.1-codex-max}",
                                       "{provider: cliproxy, model: gpt-5.1-codex-max}, "
                                       "{provider: cliproxy, model: claude-sonnet-4.5}"))
        self.cfg = config.load_file(path)
        premium = {"entitlement": 300, "remaining": 42.0, "percent_remaining": 14.0, "unlimited": False,
                   "quota_id": "premium_interactions"}
        answer = {"quota_snapshots": {"premium_interactions": premium}, "quota_reset_date": "2026-12-01"}
        quota = {"available": True, "line": "plus-fork-7", "version": "7.1.68-6", "copilot_quota": True,
                 "reset_quota": False, "accounts": [
                     {"name": "copilot-b.json", "account": "octo", "auth_index": "i1", **read_copilot_quota(answer)},
                     {"name": "elsewhere.json", "account": "x", "auth_index": "i2", **unknown_quota("HTTP 400")}]}
        view = models_view.build(self.cfg, quota=quota)
        copilot = self.deployment(view, "coder/cliproxy/claude-sonnet-4.5")["quota"]
        self.assertEqual((copilot["remaining"], copilot["resets_at"], copilot["source"]),
                         ({"premium_requests": 42, "entitlement": 300}, "2026-12-01", "copilot-quota"))
        self.assertEqual([a["name"] for a in copilot["cliproxy"]["accounts"]], ["copilot-b.json"])
        codex = self.deployment(view, "coder/cliproxy/gpt-5.1-codex-max")["quota"]  # Codex only: no Copilot account
        self.assertEqual((codex["remaining"], codex["source"], codex["cliproxy"]["accounts"]), ("unknown", None, []))
        self.assertNotIn("cliproxy", self.deployment(view, "coder/custom/gpt-4.1")["quota"])
        text = models_view.text(view)
        self.assertIn("quota octo: premium 42/300 left (14 %), resets 2026-12-01", text)
        unavailable = {"available": False, "reason": "plus-6 6.9.28-0 has no /copilot-quota route"}
        view = models_view.build(self.cfg, quota=unavailable)
        self.assertEqual(self.deployment(view, "coder/cliproxy/claude-sonnet-4.5")["quota"],
                         {"remaining": "unknown", "resets_at": "unknown", "source": None, "cliproxy": unavailable})

    def test_cooldown_reset_bad_input(self):
        ctx = Ctx(config_path=str(self.cfg.path))
        for kwargs, code in (({}, USAGE), ({"deployment": "x", "all": True}, USAGE),
                             ({"deployment": "coder/custom/nope"}, NOT_FOUND)):
            with self.subTest(kwargs=kwargs), self.assertRaises(RouterError) as caught:
                cmd.cooldown_reset(ctx, **kwargs)
            self.assertEqual(caught.exception.exit_code, code)

    def test_cooldown_reset_with_no_worker_returns_at_once(self):
        os.environ.pop("MODELS_TEST_KEY", None)
        result = cmd.cooldown_reset(Ctx(config_path=str(self.cfg.path)), all=True)
        self.assertEqual(result.data["workers"], [])
        self.assertIn("no LiteLLM worker", result.text)
        control = store.read_control(store.control_path(self.cfg.layout.usage_dir))
        self.assertEqual(control["resets"][-1]["deployments"], "*")

    def test_usage_since_and_by_errors(self):
        for since in ("", "yesterday", "0h", "-3h", "5w"):
            with self.subTest(since=since), self.assertRaises(RouterError) as caught:
                cmd.parse_since(since)
            self.assertEqual(caught.exception.exit_code, USAGE)
        self.assertEqual(cmd.parse_since("90m"), 5400)
        with self.assertRaises(RouterError):
            cmd.report(self.cfg, by="account")

    def test_usage_html_into_a_missing_folder(self):
        with self.assertRaises(RouterError) as caught:
            cmd.usage(Ctx(config_path=str(self.cfg.path)), html=str(self.root / "nope" / "x.html"))
        self.assertEqual(caught.exception.exit_code, NOT_FOUND)

    def test_a_corrupt_store_is_one_line_error(self):
        self.cfg.layout.usage_dir.mkdir(parents=True)
        store.db_path(self.cfg.layout.usage_dir).write_bytes(b"garbage" * 1000)
        with self.assertRaises(RouterError) as caught:
            cmd.report(self.cfg)
        self.assertIn("cannot be read", caught.exception.message)


if __name__ == "__main__":
    unittest.main()
