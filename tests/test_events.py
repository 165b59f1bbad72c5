"""The JSON-lines event log: fields, concurrency, rotation, redaction, the `events` command."""
from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
import threading
import unittest
from pathlib import Path

from llm_router import events
from tests.support import TempRepo

SECRET = "sk-live-abcdef123456"


def _writer(path: str, n: int, tag: int) -> None:
    log = events.EventLog(Path(path), max_bytes=10**9)
    for i in range(n):
        log.append("service_start", service=f"w{tag}", result="ok", detail={"i": i, "pad": "x" * 300})


class EventLogTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = self.dir / "events.log"

    def test_exact_standard_fields(self):
        entry = events.EventLog(self.path).append("profile_switch", profile="cost", result="ok")
        line = json.loads(self.path.read_text())
        self.assertEqual(list(line), list(events.FIELDS))
        self.assertEqual(line, entry)
        self.assertTrue(line["timestamp"].endswith("Z"))

    def test_concurrent_processes_write_whole_lines(self):
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_writer, args=(str(self.path), 200, t)) for t in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            self.assertEqual(p.exitcode, 0)
        lines = self.path.read_text().splitlines()
        self.assertEqual(len(lines), 800)
        parsed = [json.loads(line) for line in lines]  # raises on any interleaved line
        for tag in range(4):
            self.assertEqual(sorted(e["detail"]["i"] for e in parsed if e["service"] == f"w{tag}"), list(range(200)))

    def test_rotation_keeps_a_few_files(self):
        log = events.EventLog(self.path, max_bytes=2000, keep=2)
        for i in range(100):
            log.append("x", detail={"i": i, "pad": "y" * 50})
        names = sorted(p.name for p in self.dir.iterdir() if not p.name.endswith(".lock"))
        self.assertEqual(names, ["events.log", "events.log.1", "events.log.2"])
        self.assertLessEqual(self.path.stat().st_size, 2000)
        self.assertEqual(log.read()[-1]["detail"]["i"], 99)

    def test_secrets_are_redacted(self):
        log = events.EventLog(self.path, secrets=[SECRET])
        log.append("oauth_login", result="ok", detail={"token": SECRET, "msg": f"Bearer {SECRET} used"},
                   provider=SECRET)
        text = self.path.read_text()
        self.assertNotIn(SECRET, text)
        self.assertIn("<redacted>", text)

    def test_read_filters_and_skips_garbage(self):
        log = events.EventLog(self.path)
        log.append("a")
        with open(self.path, "a") as handle:
            handle.write("not json\n")
        log.append("b")
        log.append("a")
        self.assertEqual([e["event"] for e in log.read()], ["a", "b", "a"])
        self.assertEqual(len(log.read(event="a")), 2)
        self.assertEqual([e["event"] for e in log.read(limit=1)], ["a"])

    def test_follow_sees_new_events_across_rotation(self):
        log = events.EventLog(self.path, max_bytes=400, keep=2)
        log.append("before")
        seen: list[str] = []
        done = threading.Event()

        def consume():
            for entry in log.follow(poll=0.02, stop=done.is_set):
                seen.append(entry["event"])
                if len(seen) == 6:
                    done.set()

        thread = threading.Thread(target=consume)
        thread.start()
        import time
        time.sleep(0.3)  # let the follower open the file at its end
        for i in range(6):
            log.append(f"e{i}", detail="z" * 100)
            time.sleep(0.1)
        thread.join(20)
        done.set()
        self.assertEqual(seen, [f"e{i}" for i in range(6)])


class EventsCommandTest(TempRepo):
    def test_events_command_text_and_json(self):
        self.write_config()
        from llm_router import config as config_mod
        cfg = config_mod.load(self.config_path)
        events.for_config(cfg).append("service_start", service="litellm", result="ok")
        events.for_config(cfg).append("profile_switch", profile="cost", result="ok")
        code, out, err = self.cli("events", "-n", "5")
        self.assertEqual(code, 0, err)
        self.assertIn("service_start", out)
        code, out, _ = self.cli("events", "--event", "profile_switch", "--json")
        data = json.loads(out)["data"]
        self.assertEqual([e["event"] for e in data["events"]], ["profile_switch"])

    def test_event_log_redacts_configured_secrets(self):
        self.write_config()
        from llm_router import config as config_mod
        from tests.support import patched_env
        with patched_env({"CUSTOM_API_KEY": SECRET}):
            cfg = config_mod.load(self.config_path)
            events.for_config(cfg).append("check", detail=f"key={SECRET}")
        self.assertNotIn(SECRET, cfg.layout.events_log.read_text())


if __name__ == "__main__":
    unittest.main()
