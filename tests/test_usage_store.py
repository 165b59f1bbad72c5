"""The usage store (usage.py and its split modules usage_*.py) and the LiteLLM-side helpers of usage_hook.py,
without LiteLLM."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

from llm_router import usage as store
from llm_router.litellm import usage_hook


def row(i: int = 0, **extra) -> dict:
    return {"ts": time.time(), "model": "coder", "deployment": "coder/cliproxy/gpt-5", "provider": "openai",
            "protocol": "chat", "stream": False, "outcome": "ok", "status": 200, "latency_ms": 10.0 + i,
            "tokens_in": 3, "tokens_out": 4, **extra}


class _Base(unittest.TestCase):
    def setUp(self):
        self.root = Path(tempfile.mkdtemp(prefix="llm-router-usage-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.dir = self.root / "runtime" / "usage"
        self.events: list[tuple[str, dict]] = []

    def writer(self, **kwargs) -> store.Writer:
        writer = store.Writer(self.dir, on_event=lambda kind, detail: self.events.append((kind, detail)),
                              **kwargs).start()
        self.addCleanup(writer.stop)
        return writer

    def count(self) -> int:
        with sqlite3.connect(store.db_path(self.dir)) as conn:
            return conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]


class WriterBasics(_Base):
    def test_private_wal_file_and_batched_rows(self):
        writer = self.writer()
        for i in range(1200):
            writer.submit(row(i))
        self.assertTrue(writer.flush())
        path = store.db_path(self.dir)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(self.dir.stat().st_mode), 0o700)
        with sqlite3.connect(path) as conn:
            self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(self.count(), 1200)
        self.assertEqual((writer.written, writer.dropped), (1200, 0))

    def test_only_the_columns_are_kept(self):
        writer = self.writer()
        writer.submit(row(prompt="secret prompt", api_key="sk-abc", error="RateLimitError"))
        self.assertTrue(writer.flush())
        with sqlite3.connect(store.db_path(self.dir)) as conn:
            dump = "\n".join(conn.iterdump())
        self.assertNotIn("secret prompt", dump)
        self.assertNotIn("sk-abc", dump)

    def test_a_full_queue_drops_and_counts_without_blocking(self):
        writer = store.Writer(self.dir)  # not started: nothing drains the queue
        started = time.perf_counter()
        for i in range(store.QUEUE_SIZE + 500):
            writer.submit(row(i))
        self.assertEqual(writer.dropped, 500)
        self.assertLess(time.perf_counter() - started, 30)  # generous: only proves it returned

    def test_a_locked_database_drops_and_counts(self):
        writer = self.writer()
        writer.submit(row())
        self.assertTrue(writer.flush())
        blocker = sqlite3.connect(store.db_path(self.dir), isolation_level=None)
        self.addCleanup(blocker.close)
        blocker.execute("BEGIN EXCLUSIVE")
        for i in range(20):
            writer.submit(row(i))
        self.assertTrue(writer.flush(timeout=30))
        blocker.execute("ROLLBACK")
        self.assertEqual(writer.dropped, 20)
        writer.submit(row())
        self.assertTrue(writer.flush())
        self.assertEqual(self.count(), 2)

    def test_a_reader_in_a_transaction_never_blocks_the_writer(self):
        writer = self.writer()
        writer.submit(row())
        self.assertTrue(writer.flush())
        reader = sqlite3.connect(f"file:{store.db_path(self.dir)}?mode=ro", uri=True, isolation_level=None)
        self.addCleanup(reader.close)
        reader.execute("BEGIN")
        self.assertEqual(reader.execute("SELECT COUNT(*) FROM requests").fetchone()[0], 1)
        for i in range(100):
            writer.submit(row(i))
        self.assertTrue(writer.flush())
        self.assertEqual((writer.written, writer.dropped), (101, 0))
        self.assertEqual(reader.execute("SELECT COUNT(*) FROM requests").fetchone()[0], 1)  # its snapshot
        reader.execute("COMMIT")

    def test_an_unwritable_folder_drops_and_counts(self):
        if os.geteuid() == 0:
            self.skipTest("root writes through read-only modes")
        self.dir.parent.mkdir(parents=True)
        self.dir.parent.chmod(0o500)
        self.addCleanup(self.dir.parent.chmod, 0o700)
        writer = self.writer()
        writer.submit(row())
        self.assertTrue(writer.flush())
        self.assertEqual(writer.dropped, 1)
        self.assertTrue(writer.warnings)

    def test_a_corrupt_file_is_moved_aside_and_a_new_one_started(self):
        self.dir.mkdir(parents=True)
        store.db_path(self.dir).write_bytes(b"this is not a database" * 400)
        writer = self.writer()
        writer.submit(row())
        self.assertTrue(writer.flush())
        aside = [p.name for p in self.dir.iterdir() if ".corrupt-" in p.name]
        self.assertEqual(len(aside), 1, aside)
        self.assertEqual(self.count(), 1)
        self.assertIn("usage_store_corrupt", [kind for kind, _ in self.events])
        self.assertTrue(any("corrupt" in w for w in writer.warnings))

    def test_a_deleted_file_is_started_again(self):
        writer = self.writer()
        writer.submit(row())
        self.assertTrue(writer.flush())
        for suffix in ("", "-wal", "-shm"):
            Path(str(store.db_path(self.dir)) + suffix).unlink(missing_ok=True)
        writer.submit(row())
        self.assertTrue(writer.flush())
        self.assertEqual(self.count(), 1)


class ReaderPaths(_Base):
    def test_a_path_with_uri_characters_is_read_where_it_is_and_never_created_elsewhere(self):
        self.dir = self.root / "odd%20#name?x" / "usage"
        writer = self.writer()
        writer.submit(row(1))
        self.assertTrue(writer.flush())
        before = sorted(p.name for p in self.root.iterdir())
        with store.Reader(self.dir) as reader:
            self.assertEqual(len(reader.requests(0.0)), 1)
        self.assertEqual(sorted(p.name for p in self.root.iterdir()), before)  # nothing opened read-write beside it


class Bounds(_Base):
    def test_age_bound(self):
        writer = self.writer(settings=store.Settings(max_days=1))
        writer.submit(row(ts=time.time() - 3 * 86400))
        writer.submit(row())
        self.assertTrue(writer.flush())
        writer.prune()
        self.assertEqual(self.count(), 1)

    def test_size_bound(self):
        writer = self.writer(settings=store.Settings(max_mb=1))
        for i in range(20000):
            writer.submit(row(i, model="m" * 40, trace=f"{i:032d}"))
        self.assertTrue(writer.flush(timeout=120))
        writer.stop()
        writer.prune()  # the thread pruned while writing; once more to see the bound hold after the last batch
        main = store.db_path(self.dir).stat().st_size
        wal = Path(str(store.db_path(self.dir)) + "-wal")
        self.assertLessEqual(main, 1024 * 1024)
        self.assertLessEqual(wal.stat().st_size if wal.exists() else 0, (store.WAL_PAGES + 10) * 4096)
        self.assertLess(self.count(), 20000)
        self.assertGreater(self.count(), 1000)

    def test_settings_validation(self):
        self.assertEqual(store.check_settings(30, 64), [])
        self.assertEqual([k for k, _ in store.check_settings(0, True)], ["usage_max_days", "usage_max_mb"])
        self.assertEqual(store.settings_from("x", 0), store.Settings())

    def test_config_check_reports_bad_retention_with_its_line(self):
        from llm_router import config
        from llm_router.errors import RouterError

        path = self.root / "config" / "routertool.yaml"
        path.parent.mkdir()
        path.write_text("config_version: 2\nservices:\n  litellm:\n    usage_max_mb: -1\n"
                        "providers: {c: {type: cliproxyapi_plus}}\nmodels: [{name: a, deployments: "
                        "[{provider: c, model: m}]}]\n")
        with self.assertRaises(RouterError) as caught:
            config.load_file(path)
        self.assertIn("line 4: services.litellm.usage_max_mb", "\n".join(caught.exception.details))


class CooldownsAndResets(_Base):
    def test_episodes_resets_and_acknowledgements(self):
        cooling: dict[str, store.CooldownState] = {}
        cleared: list[list[str]] = []

        def reset(ids):
            cleared.append(ids)
            for d in ids:
                cooling.pop(d, None)
            return ids

        self.writer(cooldown_source=lambda: dict(cooling), reset=reset)
        now = time.time()
        cooling["a"] = store.CooldownState(started=now - 1, until=now + 60, status=429)
        cooling["b"] = store.CooldownState(started=now - 1, until=now + 60, status=500)

        def rows():
            with store.Reader(self.dir) as reader:
                return reader.cooldowns(), reader.workers()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(rows()[0]) < 2:
            time.sleep(0.05)
        self.assertEqual(sorted(r["deployment"] for r in rows()[0]), ["a", "b"])
        seq = store.request_reset(self.dir, ["a"])
        while time.monotonic() < deadline and not any(w["reset_seq"] >= seq for w in rows()[1]):
            time.sleep(0.05)
        self.assertEqual(cleared, [["a"]])
        episodes = {r["deployment"]: r for r in rows()[0]}
        self.assertEqual(episodes["a"]["end_reason"], "reset")
        self.assertIsNone(episodes["b"]["ended"])
        self.assertEqual(stat.S_IMODE(store.control_path(self.dir).stat().st_mode), 0o600)
        kinds = [(k, d["deployment"]) for k, d in self.events if k.startswith("deployment_")]
        self.assertIn(("deployment_cooldown", "a"), kinds)
        self.assertIn(("deployment_recovered", "a"), kinds)
        cooling.pop("b")  # expired on its own
        while time.monotonic() < deadline and {r["deployment"]: r for r in rows()[0]}["b"]["ended"] is None:
            time.sleep(0.05)
        self.assertEqual({r["deployment"]: r for r in rows()[0]}["b"]["end_reason"], "expired")

    def test_a_reset_made_before_a_cooldown_started_leaves_it(self):
        cooling: dict[str, store.CooldownState] = {}
        cleared: list[list[str]] = []
        store.request_reset(self.dir, None)  # an old request, before the cooldown below
        time.sleep(0.05)
        cooling["a"] = store.CooldownState(started=time.time(), until=time.time() + 60, status=429)
        writer = self.writer(cooldown_source=lambda: dict(cooling), reset=lambda ids: cleared.append(ids) or ids)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and writer.applied_seq < 1:
            time.sleep(0.05)
        self.assertEqual(writer.applied_seq, 1)
        self.assertEqual(cleared, [])

    def test_control_file_keeps_the_last_requests(self):
        for _ in range(store.KEEP_RESETS + 5):
            seq = store.request_reset(self.dir, ["x"])
        control = store.read_control(store.control_path(self.dir))
        self.assertEqual(control["seq"], seq)
        self.assertEqual(len(control["resets"]), store.KEEP_RESETS)


class Summaries(unittest.TestCase):
    def test_summarize_and_percentiles(self):
        rows = [row(i, outcome="ok" if i % 4 else "429") for i in range(100)]
        (summary,) = store.summarize(rows, "model")
        self.assertEqual((summary["requests"], summary["ok"], summary["failures"]), (100, 75, 25))
        self.assertEqual(summary["by_outcome"], {"429": 25})
        self.assertEqual(store.percentile([1, 2, 3, 4], 50), 2)
        self.assertIsNone(store.percentile([], 95))

    def test_per_hour(self):
        now = 1_800_000_000.0
        hours = store.per_hour([row(ts=now - 10), row(ts=now - 3700, outcome="5xx")], now - 7200, now)
        self.assertEqual(sum(h["requests"] for h in hours), 2)
        self.assertEqual(sum(h["failures"] for h in hours), 1)


class HookHelpers(unittest.TestCase):
    def test_importing_the_hook_does_not_import_litellm(self):
        code = "import sys, llm_router.litellm.usage_hook as h; print('litellm' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.stdout.strip(), "False", out.stderr)

    def test_store_location(self):
        self.assertEqual(usage_hook.usage_dir_for("/x/.router/runtime/litellm/active.yaml", env={}),
                         Path("/x/.router/runtime/usage"))
        self.assertIsNone(usage_hook.usage_dir_for("/tmp/config.yaml", env={}))
        self.assertEqual(usage_hook.usage_dir_for(None, env={usage_hook.DIR_ENV: "/d"}), Path("/d"))

    def test_settings_from_the_parse_cache_then_env(self):
        root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root, True)
        cache = root / ".router" / "cache" / "routertool.parsed.json"
        cache.parent.mkdir(parents=True)
        cache.write_text(json.dumps({"data": {"services": {"litellm": {"usage_max_mb": 8, "usage_max_days": 2}}}}))
        usage_dir = root / ".router" / "runtime" / "usage"
        self.assertEqual(usage_hook.settings_for(usage_dir, env={}), store.Settings(max_days=2, max_mb=8))
        self.assertEqual(usage_hook.settings_for(usage_dir, env={usage_hook.MAX_MB_ENV: "3"}).max_mb, 3)
        cache.write_text("{broken")
        self.assertEqual(usage_hook.settings_for(usage_dir, env={}), store.Settings())

    def test_outcomes(self):
        def exc(name, status=None):
            error = type(name, (Exception,), {})()
            error.status_code = status
            return error
        cases = {("RateLimitError", 429): "429", ("InternalServerError", 500): "5xx", ("Timeout", 408): "timeout",
                 ("APIConnectionError", 500): "refused", ("BadRequestError", 400): "client_error",
                 ("NotFoundError", 404): "client_error", ("Weird", None): "error"}
        for (name, status), outcome in cases.items():
            self.assertEqual(usage_hook.outcome_of(exc(name, status))[0], outcome, name)

    def test_row_for_reads_the_standard_logging_object(self):
        from datetime import datetime, timedelta

        start = datetime.now()
        slo = {"model_group": "coder", "model_id": "coder/cliproxy/gpt-5", "call_type": "aresponses",
               "stream": True, "startTime": start.timestamp(), "completionStartTime": start.timestamp() + 0.05,
               "prompt_tokens": 7, "completion_tokens": 9, "custom_llm_provider": "openai", "trace_id": "t1",
               "messages": [{"content": "secret prompt"}], "response": "secret answer",
               "hidden_params": {"additional_headers": {"x_ratelimit_remaining_requests": 41}}}
        result = usage_hook.row_for({"standard_logging_object": slo}, start, start + timedelta(seconds=0.2))
        self.assertEqual((result["protocol"], result["outcome"], result["tokens_in"], result["rl_requests"]),
                         ("responses", "ok", 7, 41))
        self.assertAlmostEqual(result["latency_ms"], 200, delta=1)
        self.assertAlmostEqual(result["ttft_ms"], 50, delta=1)
        self.assertNotIn("secret", json.dumps(result))
        routed = usage_hook.row_for({"standard_logging_object": slo, "litellm_params": {
            "proxy_server_request": {"url": "http://127.0.0.1:4000/v1/messages"}}}, start, start)
        self.assertEqual(routed["protocol"], "messages")


class ThreadSafety(_Base):
    def test_many_submitters(self):
        writer = self.writer()
        threads = [threading.Thread(target=lambda: [writer.submit(row(i)) for i in range(500)]) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertTrue(writer.flush(timeout=60))
        self.assertEqual(self.count() + writer.dropped, 4000)


class ModuleSplit(unittest.TestCase):
    """usage.py is the store's one import name: every public name of its split modules is the same object there."""

    def test_facade_reexports_every_public_name(self):
        import importlib

        for name in ("usage_schema", "usage_writer", "usage_control", "usage_queries", "usage_share"):
            module = importlib.import_module(f"llm_router.{name}")
            public = [n for n, v in vars(module).items() if not n.startswith("_")
                      and getattr(v, "__module__", module.__name__) == module.__name__
                      and not isinstance(v, type(importlib))]
            for attr in public:
                if attr == "annotations":
                    continue
                with self.subTest(module=name, name=attr):
                    self.assertIs(getattr(store, attr), getattr(module, attr))
                    self.assertIn(attr, store.__all__)

    def test_split_modules_stay_small(self):
        root = Path(store.__file__).parent
        for name in ("usage", "usage_schema", "usage_writer", "usage_control", "usage_queries", "usage_share"):
            with self.subTest(module=name):
                text = (root / f"{name}.py").read_text()
                self.assertLessEqual(len(text.splitlines()), 500)
                self.assertTrue(text.startswith('"""'), "opens with a docstring stating its job")


if __name__ == "__main__":
    unittest.main()
