"""The supervisor with real processes: the CLIProxyAPIPlus stand-in installed as the binary."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

import psutil

from llm_router.errors import CONFLICT, NOT_FOUND, UNAVAILABLE, USAGE
from llm_router.supervisor import process
from llm_router.supervisor import services as supervisor
from tests.support import REPO, StackRepo

CP = "cliproxyapi_plus"


def _hold_lock(config_path, ready, release):
    from llm_router import config as config_mod

    with config_mod.load(config_path).layout.lock():
        ready.set()
        release.wait(30)


class CliproxyServiceTest(StackRepo):
    def test_start_status_health_stop(self):
        code, out, err = self.cli("service", "start", CP)
        self.assertEqual(code, 0, err)
        self.assertIn("cliproxyapi_plus  started", out)
        self.assertIn("note: CLIProxyAPIPlus 6.x 6.9.28-0", out)  # the line, probed from the running binary
        self.remember_pids()
        record, _ = process.read_record(self.cfg.layout, CP)
        self.assertEqual(record.port, self.ports["cliproxy_port"])
        self.assertEqual(record.version, "6.9.28-0-plus")
        proc = psutil.Process(record.pid)
        self.assertEqual(os.getpgid(record.pid), record.pid)  # own process group / session

        code, out, _ = self.cli("status", "--json")
        entry = json.loads(out)["data"]["services"][0]
        self.assertEqual((entry["name"], entry["state"], entry["pid"]), (CP, "RUNNING", record.pid))
        self.assertGreater(entry["rss_bytes"], 0)
        code, out, _ = self.cli("status")
        self.assertRegex(out, rf"cliproxyapi_plus\s+RUNNING\s+pid {record.pid}, port {record.port}, uptime 0:00:\d\d")
        self.assertIn("version 6.9.28-0-plus (CLIProxyAPIPlus 6.x)", out)

        code, out, err = self.cli("health", CP)
        self.assertEqual(code, 0, out + err)
        self.assertIn("ready", out)

        code, out, _ = self.cli("service", "start", CP)
        self.assertIn("already running", out)

        # the runtime config enforces our keys and lives with private modes
        runtime = self.cfg.layout.cliproxy_runtime_config.read_text()
        self.assertIn("host: 127.0.0.1", runtime)
        self.assertIn("allow-remote: false", runtime)
        self.assertEqual(self.cfg.layout.cliproxy_runtime_config.stat().st_mode & 0o777, 0o600)
        self.assertEqual(self.cfg.layout.auths_dir.stat().st_mode & 0o777, 0o700)
        self.assertEqual(self.cfg.layout.secrets_dir.stat().st_mode & 0o777, 0o700)

        code, out, err = self.cli("service", "stop", "all")
        self.assertEqual(code, 0, err)
        self.assertIn("cliproxyapi_plus  stopped", out)
        self.assertFalse(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())
        kinds = [(e["event"], e["service"], e["result"]) for e in
                 map(json.loads, self.cfg.layout.events_log.read_text().splitlines())]
        self.assertIn(("service_start", CP, "ok"), kinds)
        self.assertIn(("service_start", CP, "noop"), kinds)
        self.assertIn(("service_stop", CP, "ok"), kinds)

    def test_killed_process_is_reported_and_start_recovers(self):
        self.assertEqual(self.cli("service", "start", CP)[0], 0)
        record, _ = process.read_record(self.cfg.layout, CP)
        os.killpg(record.pid, signal.SIGKILL)
        psutil.Process(record.pid).wait(10) if psutil.pid_exists(record.pid) else None
        supervisor._children.pop(record.pid, None)
        code, out, _ = self.cli("status")
        self.assertIn("STALE", out)
        self.assertIn("stale pid file, process gone", out)
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())
        code, out, err = self.cli("service", "start", CP)
        self.assertEqual(code, 0, err)
        self.assertIn("started", out)
        self.remember_pids()

    def test_missing_binary(self):
        self.cfg.layout.cliproxy_binary.unlink()
        code, _, err = self.cli("service", "start", CP)
        self.assertEqual(code, NOT_FOUND)
        self.assertIn("CLIProxyAPIPlus is not installed", err)
        self.assertIn("bootstrap download", err)

    def test_binary_not_executable(self):
        self.cfg.layout.cliproxy_binary.chmod(0o644)
        code, _, err = self.cli("service", "start", CP)
        self.assertEqual(code, USAGE)
        self.assertIn("is not executable", err)

    def test_port_busy_is_reported_with_owner(self):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.ports["cliproxy_port"]))
            sock.listen()
            code, _, err = self.cli("service", "start", CP)
        self.assertEqual(code, CONFLICT)
        self.assertIn(f"port {self.ports['cliproxy_port']} is in use by pid {os.getpid()}", err)
        self.assertNotIn("timeout", err)
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())

    def test_crash_during_startup_shows_log_lines(self):
        # The real binary exits 0 when it cannot start, e.g. on a broken config: only readiness tells.
        user_config = self.root / "config" / "cliproxyapi.yaml"
        user_config.write_text("host: [unclosed\n")
        self.write_stack_config()
        code, _, err = self.cli("service", "start", CP)
        self.assertEqual(code, USAGE)
        self.assertIn("cannot read services.cliproxyapi_plus.config_file", err)
        self.cfg.layout.cliproxy_binary.write_text("#!/bin/sh\necho 'CLIProxyAPI Version: 1.0.0-plus'\n"
                                                   "echo 'failed to load config: boom'\nexit 0\n")
        user_config.unlink()
        code, _, err = self.cli("service", "start", CP)
        self.assertEqual(code, UNAVAILABLE)
        self.assertIn("exited during start-up (exit status 0)", err)
        self.assertIn("failed to load config: boom", err)
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())

    def test_readiness_timeout_stops_what_it_started(self):
        text = self.config_path.read_text().replace("readiness_path: /v1/models", "readiness_path: /nope")
        self.config_path.write_text(text)
        self.cfg = self.load()
        code, _, err = self.cli("service", "start", CP, "--timeout", "2")
        self.assertEqual(code, UNAVAILABLE)
        self.assertIn("was not ready within 2 s", err)
        self.assertIn("HTTP 404", err)
        self.assertIn("startup_timeout", err)
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())
        time.sleep(0.2)
        ours = str(self.cfg.layout.cliproxy_runtime_config)
        new = [p for p in psutil.process_iter(["cmdline"]) if ours in " ".join(p.info["cmdline"] or [])]
        self.assertEqual(new, [])

    def test_recycled_pid_is_never_signalled(self):
        victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        self.addCleanup(victim.wait)
        self.addCleanup(victim.kill)
        fake = process.ProcessRecord(service=CP, pid=victim.pid, create_time=psutil.Process(victim.pid).create_time()
                                      - 1000, cmdline=["x", "-config", "y"], port=1, started_at=time.time(), log="l")
        self.cfg.layout.pids_dir.mkdir(parents=True, exist_ok=True)
        fake.save(self.cfg.layout)
        code, out, err = self.cli("service", "stop", CP)
        self.assertEqual(code, 0, err)
        self.assertIn("stale pid file", out)
        self.assertIsNone(victim.poll())
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())

    def test_garbage_pid_file(self):
        self.cfg.layout.pids_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.layout.pid_file(CP).write_text("{not json")
        code, out, _ = self.cli("status")
        self.assertIn("unreadable pid file", out)
        code, out, err = self.cli("service", "start", CP)
        self.assertEqual(code, 0, err)
        self.remember_pids()

    def test_lock_held_by_another_caller(self):
        ctx = multiprocessing.get_context("fork")
        ready, release = ctx.Event(), ctx.Event()
        holder = ctx.Process(target=_hold_lock, args=(str(self.config_path), ready, release))
        holder.start()
        self.addCleanup(holder.join, 10)
        self.addCleanup(release.set)
        self.assertTrue(ready.wait(10))
        code, _, err = self.cli("service", "start", CP, env={"LLM_ROUTER_LOCK_TIMEOUT": "0.3"})
        self.assertEqual(code, CONFLICT)
        self.assertIn(f"locked by pid {holder.pid}", err)
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())

    def test_concurrent_starts_give_one_process(self):
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        argv = [sys.executable, "-m", "llm_router", "--config", str(self.config_path), "service", "start", CP]
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(10)]
        outputs = [p.communicate(timeout=120) for p in procs]
        self.remember_pids()
        self.assertEqual([p.returncode for p in procs], [0] * 10, outputs)
        started = sum(out.decode().count("  started") for out, _ in outputs)
        self.assertEqual(started, 1)
        matches = [p for p in psutil.process_iter(["cmdline"])
                   if str(self.cfg.layout.cliproxy_runtime_config) in " ".join(p.info["cmdline"] or [])]
        self.assertEqual(len(matches), 1)

    def test_unknown_service_name(self):
        code, _, err = self.cli("service", "start", "nginx")
        self.assertEqual(code, USAGE)
        self.assertIn("unknown service 'nginx'", err)

    def test_logs(self):
        self.assertEqual(self.cli("service", "start", CP)[0], 0)
        code, out, _ = self.cli("service", "logs", CP, "-n", "50")
        self.assertEqual(code, 0)
        self.assertIn("CLIProxyAPI Version", out)
        code, _, err = self.cli("service", "logs", "litellm")
        self.assertEqual(code, NOT_FOUND)


if __name__ == "__main__":
    unittest.main()
