"""Process identity (issue: never signal what is not ours; readiness from our own process; no orphan on a failed
start). Every process here is started by the test itself and stopped by pid in a cleanup, whatever happens."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import unittest

import psutil

from llm_router.errors import CONFLICT, UNAVAILABLE
from llm_router.supervisor import process
from llm_router.supervisor import services as supervisor
from tests.support import StackRepo

CP = "cliproxyapi_plus"

# A process group whose leader exits at once, leaving a member behind (as after a reboot reused the pid of an
# old record, or a hand-edited pid file names somebody's group). The member prints its pid and sleeps.
ORPHANED_GROUP = textwrap.dedent("""
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    print(os.getpid(), child.pid, flush=True)
    time.sleep(0.5)
""")

# Like the real binary, both fixtures below answer `-h` with the banner and exit 0 (llm-router runs `-h` to learn the
# line before a start, cliproxy.write_runtime_config); only a start does what the fixture is for.
HELP = """\
    if "-h" in sys.argv:
        print("CLIProxyAPI Version: 6.9.28-0-plus, Commit: fixture, BuiltAt: 2026-04-17T00:00:00Z")
        sys.exit(0)
"""
# A fake CLIProxyAPIPlus binary that starts a foreign HTTP server on its own port (not carrying our marker, in a
# session of its own, its pid written to a file), then never binds anything itself.
FOREIGN_ANSWER = textwrap.dedent("""\
    #!{python}
    import os, subprocess, sys, time
""" + HELP + """\
    port = int(open(os.environ["TEST_PORT_FILE"]).read())
    env = {{k: v for k, v in os.environ.items() if k != "LLM_ROUTER_LAUNCH_ID"}}
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                              env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    open(os.environ["TEST_PID_FILE"], "w").write(str(server.pid))
    time.sleep(300)
""")

# A binary that never gets ready, and leaves a daemon behind in a session of its own (double fork, setsid).
NEVER_READY_DAEMON = textwrap.dedent("""\
    #!{python}
    import os, sys, time
""" + HELP + """\
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            open(os.environ["TEST_PID_FILE"], "w").write(str(os.getpid()))
            time.sleep(300)
        os._exit(0)
    os.execv("/bin/sleep", ["sleep", "300"])
""")


class ProcessIdentityTest(StackRepo):
    def spawn(self, argv, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, **kw)
        self.addCleanup(self._reap, proc)
        return proc

    def _reap(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)

    def kill_later(self, pid: int) -> None:
        def end():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.addCleanup(end)

    def orphaned_group(self) -> tuple[int, float, psutil.Process]:
        """(dead leader's pid, its create time, the live member), the member killed at cleanup."""
        starter = self.spawn([sys.executable, "-c", ORPHANED_GROUP], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
        leader_pid, member_pid = map(int, starter.stdout.readline().split())
        self.kill_later(member_pid)
        created = psutil.Process(leader_pid).create_time()
        starter.wait(20)
        member = psutil.Process(member_pid)
        self.assertEqual(os.getpgid(member_pid), leader_pid)
        return leader_pid, created, member

    def write_pid_file(self, data: dict) -> None:
        self.cfg.layout.pids_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.layout.pid_file(CP).write_text(json.dumps(data))

    def record_for(self, pid: int, created: float, **extra) -> dict:
        return {"service": CP, "pid": pid, "create_time": created, "cmdline": ["x"], "port": 1,
                "started_at": time.time(), "log": "l", **extra}

    def assert_alive(self, proc: psutil.Process) -> None:
        self.assertTrue(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE, "a foreign process was signalled")

    def test_status_and_stop_never_signal_a_group_whose_leader_is_gone(self):
        leader, created, member = self.orphaned_group()
        for extra in ({}, {"launch_id": "0" * 32, "boot_id": process.boot_id()}):
            with self.subTest(extra=extra):
                self.write_pid_file(self.record_for(leader, created, **extra))
                code, out, err = self.cli("status")
                self.assertEqual(code, 0, err)
                self.assertIn("STALE", out)
                self.assert_alive(member)
                self.write_pid_file(self.record_for(leader, created, **extra))
                code, out, err = self.cli("service", "stop", CP)
                self.assertEqual(code, 0, err)
                self.assertIn("not running", out)
                self.assert_alive(member)
                self.assertFalse(self.cfg.layout.pid_file(CP).exists())

    def test_a_pid_file_naming_a_live_foreign_process_is_never_trusted(self):
        victim = psutil.Process(self.spawn([sys.executable, "-c", "import time; time.sleep(120)"],
                                           start_new_session=True).pid)
        # every claim but the marker matches: right pid, create time and command line
        self.write_pid_file(self.record_for(victim.pid, victim.create_time(), cmdline=victim.cmdline(),
                                            launch_id="f" * 32, boot_id=process.boot_id()))
        for argv in (("status",), ("health", CP), ("service", "stop", CP), ("doctor",)):
            self.cli(*argv)
            self.assert_alive(victim)

    def test_a_live_process_recorded_by_an_older_llm_router_is_neither_signalled_nor_forgotten(self):
        victim = psutil.Process(self.spawn([sys.executable, "-c", "import time; time.sleep(120)"],
                                           start_new_session=True).pid)
        self.write_pid_file(self.record_for(victim.pid, victim.create_time(), cmdline=victim.cmdline()))
        for argv in (("status",), ("service", "stop", CP)):
            code, out, err = self.cli(*argv)
            self.assertEqual(code, 0, out + err)
            self.assertIn("started by an older llm-router (no launch id): not proven ours", out)
            self.assert_alive(victim)
            self.assertTrue(self.cfg.layout.pid_file(CP).exists())

    def test_malformed_pid_files_are_stale_and_nothing_is_signalled(self):
        cases = {"pid 0": self.record_for(0, 1.0), "pid 1": self.record_for(1, 1.0),
                 "negative pid": self.record_for(-5, 1.0), "string pid": self.record_for("abc", 1.0),
                 "bool pid": self.record_for(True, 1.0), "string create_time": self.record_for(os.getpid(), "x"),
                 "NaN create_time": self.record_for(os.getpid(), float("nan")), "a list": [1, 2],
                 "missing field": {"service": CP, "pid": os.getpid()}}
        init = psutil.Process(1)
        for label, data in cases.items():
            with self.subTest(label):
                self.cfg.layout.pids_dir.mkdir(parents=True, exist_ok=True)
                self.cfg.layout.pid_file(CP).write_text(json.dumps(data) if label != "NaN create_time"
                                                        else json.dumps(data).replace("NaN", "NaN"))
                code, out, err = self.cli("status")
                self.assertEqual(code, 0, out + err)
                self.assertIn("unreadable pid file", out)
                self.assertNotIn("Traceback", out + err)
                self.assertFalse(self.cfg.layout.pid_file(CP).exists())  # status forgets it, signalling nothing
                self.cfg.layout.pid_file(CP).write_text(json.dumps(data))
                code, out, err = self.cli("service", "stop", CP)
                self.assertEqual(code, 0, out + err)
                self.assert_alive(init)
        self.assert_alive(psutil.Process())

    def test_leftovers_of_our_own_launch_are_ended_by_stop_not_by_status(self):
        code, out, err = self.cli("service", "start", CP)
        self.assertEqual(code, 0, err)
        self.remember_pids()
        record, _ = process.read_record(self.cfg.layout, CP)
        # a child of the service that outlives it, in a session of its own: ours only by the launch marker
        survivor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
                                    env={**os.environ, process.LAUNCH_ENV: record.launch_id})
        self.addCleanup(self._reap, survivor)
        leader = psutil.Process(record.pid)  # before the kill: it may be reaped at any moment after it
        os.killpg(record.pid, signal.SIGKILL)  # the test's own service, by its group
        child = supervisor._children.pop(record.pid, None)
        if child is not None:
            child.wait(10)
        psutil.wait_procs([leader], timeout=10)
        code, out, _ = self.cli("status")
        self.assertIn("processes of that launch are still running", out)
        self.assertIsNone(survivor.poll())  # status only looks
        code, out, err = self.cli("service", "stop", CP)
        self.assertEqual(code, 0, err)
        self.assertIsNotNone(survivor.wait(10))
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())

    def install_binary(self, script: str) -> None:
        binary = self.cfg.layout.cliproxy_binary
        binary.write_text(script.format(python=sys.executable))
        binary.chmod(0o755)

    def test_another_program_answering_on_the_port_is_not_readiness(self):
        pid_file, port_file = self.root / "foreign.pid", self.root / "port"
        port_file.write_text(str(self.ports["cliproxy_port"]))
        self.install_binary(FOREIGN_ANSWER)
        env = {"TEST_PID_FILE": str(pid_file), "TEST_PORT_FILE": str(port_file), "STARTUP_TIMEOUT": "6"}
        self.addCleanup(lambda: pid_file.exists() and self.kill_later(int(pid_file.read_text())))
        code, out, err = self.cli("service", "start", CP, env=env)
        self.assertEqual(code, UNAVAILABLE, out + err)
        self.assertIn("was not ready within 6 s", err)
        self.assertIn("not by the started cliproxyapi_plus", err)
        self.assertNotIn("Traceback", err)
        foreign = psutil.Process(int(pid_file.read_text()))
        self.kill_later(foreign.pid)
        self.assert_alive(foreign)  # never ours to stop
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())
        self.assertEqual(self.cli("status")[1].split()[1], "STOPPED")

    def test_a_start_that_never_gets_ready_leaves_nothing_running(self):
        pid_file = self.root / "daemon.pid"
        self.install_binary(NEVER_READY_DAEMON)
        self.addCleanup(lambda: pid_file.exists() and self.kill_later(int(pid_file.read_text())))
        code, out, err = self.cli("service", "start", CP, env={"TEST_PID_FILE": str(pid_file),
                                                               "STARTUP_TIMEOUT": "3"})
        self.assertEqual(code, UNAVAILABLE, out + err)
        self.assertIn("was not ready within 3 s", err)
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        daemon = int(pid_file.read_text())
        self.assertFalse(psutil.pid_exists(daemon) and psutil.Process(daemon).status() != psutil.STATUS_ZOMBIE,
                         "the forked-away daemon of a failed start was left running")
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())

    def test_failed_litellm_start_stops_the_cliproxy_this_command_started(self):
        # LiteLLM cannot start: its port is held by a listener of the test's own
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", self.ports["litellm_port"]))
            sock.listen()
            code, out, err = self.cli("service", "start", "all")
        self.remember_pids()
        self.assertEqual(code, CONFLICT, out + err)
        self.assertIn(f"port {self.ports['litellm_port']} is in use", err)
        self.assertIn("cliproxyapi_plus was started by this command and has been stopped again", err)
        self.assertFalse(self.cfg.layout.pid_file(CP).exists())

    def test_a_host_beyond_loopback_is_warned_at_start(self):
        self.assertEqual(supervisor.exposure_notes(self.cfg, CP), [])
        self.config_path.write_text(self.config_path.read_text().replace(
            f"host: 127.0.0.1, port: {self.ports['cliproxy_port']}",
            f"host: 0.0.0.0, port: {self.ports['cliproxy_port']}"))
        notes = supervisor.exposure_notes(self.load(), CP)
        self.assertEqual(len(notes), 1)
        self.assertIn("cliproxyapi_plus listens on 0.0.0.0, reachable from other machines", notes[0])

    def test_privileged_port_is_a_usage_error(self):
        if os.geteuid() == 0:
            self.skipTest("root may listen on a privileged port")
        self.write_stack_config(cliproxy_port=80)
        code, _, err = self.cli("service", "start", CP)
        self.assertEqual(code, 2)
        self.assertIn("port 80 is privileged", err)


class SwitchJournalTest(StackRepo):
    """A profile switch killed half-way is rolled back by the next command (the journal of journal.py)."""

    def test_interrupted_switch_is_rolled_back_by_the_next_command(self):
        from llm_router import journal, profiles

        code, out, err = self.cli("profile", "set", "balanced")
        self.assertEqual(code, 0, err)
        before = {p: p.read_bytes() for p in (self.cfg.layout.active_config, self.cfg.layout.active_profile_file)}
        # what a `profile set cost` killed with -9 after writing its files leaves: a journal from another process
        saved = {p: p.read_bytes() for p in before}
        journal.begin(self.cfg.layout, "cost", "balanced", saved)
        data = json.loads(self.cfg.layout.switch_journal.read_text())
        data["writer"] = "a-process-that-died"
        self.cfg.layout.switch_journal.write_text(json.dumps(data))
        rendered = profiles.checked(self.cfg, profiles.find(self.cfg, "cost"))
        for path in before:
            path.write_text(rendered.text if path.suffix == ".yaml" else json.dumps({"name": "cost"}))

        code, out, err = self.cli("status")
        self.assertIn("an interrupted profile switch is pending", err)
        self.assertTrue(self.cfg.layout.switch_journal.exists())  # status only looks

        code, out, err = self.cli("service", "stop", "all")
        self.assertEqual(code, 0, err)
        self.assertIn("an interrupted switch to profile 'cost' was rolled back; 'balanced' is active again", out)
        self.assertEqual({p: p.read_bytes() for p in before}, before)
        self.assertFalse(self.cfg.layout.switch_journal.exists())
        last = [json.loads(line) for line in self.cfg.layout.events_log.read_text().splitlines()
                if '"profile_switch"' in line][-1]
        self.assertEqual((last["profile"], last["result"]), ("cost", "rolled_back"))

    def test_garbage_active_profile_is_no_active_profile(self):
        from llm_router import profiles

        self.cfg.layout.runtime_dir.mkdir(parents=True, exist_ok=True)
        for text in ('{"name": 5}', '["balanced"]', '{"name": "x", "sha256": 3}', "\x00", '{"name": ""}'):
            with self.subTest(text=text):
                self.cfg.layout.active_profile_file.write_text(text)
                self.assertIsNone(profiles.active(self.cfg))
                code, out, err = self.cli("status")
                self.assertEqual(code, 0, err)
                self.assertNotIn("Traceback", out + err)


if __name__ == "__main__":
    unittest.main()
