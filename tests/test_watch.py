"""`service watch` (self-healing) and `service install` (units), with the CLIProxyAPIPlus stand-in."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

import psutil

from llm_router import stack
from llm_router.errors import CONFLICT
from llm_router.supervisor import process
from llm_router.watch import BACKOFF, FATAL, RUNNING, Policy, Watch
from tests.support import REPO, StackRepo

CP = "cliproxyapi_plus"
FAST = Policy(interval=0.2, unready_limit=2, max_failures=3, failure_window=60, backoff_initial=0.05,
              backoff_max=0.2)


class WatchThread:
    """Runs a Watch loop in a thread and collects what it reports."""

    def __init__(self, watch: Watch):
        self.watch = watch
        self.items: list[dict] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for item in self.watch.run():
            self.items.append(item)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.watch.stop()
        self.thread.join(60)

    def wait_for(self, predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(i) for i in self.items):
                return True
            time.sleep(0.05)
        raise AssertionError(f"not seen within {timeout} s; reported: {self.items}")


class WatchTest(StackRepo):
    def events(self, kind):
        return [e for e in map(json.loads, self.cfg.layout.events_log.read_text().splitlines()) if e["event"] == kind]

    def test_crash_is_restarted_and_counted(self):
        with WatchThread(Watch(self.cfg, [CP], FAST)) as w:
            w.wait_for(lambda i: i.get("state") == RUNNING)
            record, _ = process.read_record(self.cfg.layout, CP)
            self.started_pids.add(record.pid)
            os.killpg(record.pid, signal.SIGKILL)
            w.wait_for(lambda i: i.get("state") == BACKOFF and "crashed" in i.get("detail", ""))
            w.wait_for(lambda i: i.get("state") == RUNNING and i.get("pid") not in (None, record.pid))
            self.remember_pids()
            status = stack.inspect(self.cfg, CP)
            self.assertEqual(status.state, stack.RUNNING)
            self.assertGreaterEqual(status.restarts, 1)
        crash = self.events("service_crash")[0]
        self.assertEqual(crash["service"], CP)
        self.assertEqual(crash["detail"]["exit_status"], -signal.SIGKILL)
        self.assertIn("last_log_lines", crash["detail"])
        # the watch started the service, so it stopped it again when it ended
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())

    def test_service_that_always_crashes_goes_fatal_without_busy_looping(self):
        self.cfg.layout.cliproxy_binary.write_text("#!/bin/sh\necho 'CLIProxyAPI Version: 6.9.28-0-plus'\nexit 0\n")
        with WatchThread(Watch(self.cfg, [CP], FAST)) as w:
            w.wait_for(lambda i: i.get("state") == FATAL)
            time.sleep(1.0)  # several more check intervals: no further attempts
        starts = [e for e in self.events("service_start") if e["result"] == "failed"]
        self.assertEqual(len(starts), FAST.max_failures)
        self.assertEqual(len(self.events("service_fatal")), 1)
        states = [i.get("state") for i in w.items if "service" in i]
        self.assertEqual(states.count(BACKOFF), FAST.max_failures - 1)

    def test_second_watch_refuses(self):
        with WatchThread(Watch(self.cfg, [CP], FAST)) as w:
            w.wait_for(lambda i: i.get("state") == RUNNING)
            self.remember_pids()
            code, _, err = self.cli("service", "watch", CP)
            self.assertEqual(code, CONFLICT)
            self.assertIn("service watch is already running", err)

    def test_already_running_service_is_left_running(self):
        self.assertEqual(self.cli("service", "start", CP)[0], 0)
        self.remember_pids()
        with WatchThread(Watch(self.cfg, [CP], FAST)) as w:
            w.wait_for(lambda i: i.get("state") == RUNNING)
        self.assertTrue(stack.is_running(self.cfg, CP))

    def test_sigterm_stops_what_it_started(self):
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        proc = subprocess.Popen([sys.executable, "-m", "llm_router", "--config", str(self.config_path), "service",
                                 "watch", CP, "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        deadline = time.monotonic() + 60
        while not stack.is_running(self.cfg, CP) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.remember_pids()
        record, _ = process.read_record(self.cfg.layout, CP)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("watch stopped; stopped what it started: cliproxyapi_plus", out)
        self.assertFalse(psutil.pid_exists(record.pid))


class UnitTest(StackRepo):
    def test_systemd_and_launchd_units_render_install_uninstall(self):
        units_dir = self.root / "units"
        code, out, err = self.cli("service", "install", "--systemd", "--unit-dir", str(units_dir))
        self.assertEqual(code, 0, err)
        unit = (units_dir / "llm-router.service").read_text()
        self.assertIn(f"--config {self.config_path} service watch all", unit)
        self.assertIn("Restart=on-failure", unit)
        self.assertIn("loginctl enable-linger", unit + out)
        self.assertIn("WantedBy=default.target", unit)
        self.assertIn("systemctl --user daemon-reload", out)
        code, out, err = self.cli("service", "install", "--launchd", "--unit-dir", str(units_dir))
        self.assertEqual(code, 0, err)
        plist = (units_dir / "dev.llm-router.plist").read_text()
        self.assertIn("<string>watch</string>", plist)
        self.assertIn("<key>KeepAlive</key>", plist)
        code, out, err = self.cli("service", "uninstall", "--systemd", "--unit-dir", str(units_dir))
        self.assertEqual(code, 0, err)
        self.assertFalse((units_dir / "llm-router.service").exists())
        code, _, err = self.cli("service", "uninstall", "--systemd", "--unit-dir", str(units_dir))
        self.assertEqual(code, 4)
        self.assertIn("no systemd unit installed", err)

    def test_system_unit_runs_as_the_user(self):
        code, out, err = self.cli("service", "install", "--systemd", "--system", "--unit-dir", str(self.root))
        self.assertEqual(code, 0, err)
        unit = (self.root / "llm-router.service").read_text()
        self.assertIn("User=", unit)
        self.assertIn("WantedBy=multi-user.target", unit)


if __name__ == "__main__":
    unittest.main()
