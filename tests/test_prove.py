"""Warm proofs (prove.py, prove_worker.py) without LiteLLM: the master side's double fork, the client's protocol
against a stand-in master process, and the fallbacks to the cold way.

The stand-in master runs `prove_worker.serve_requests` on SIGWINCH like the real gunicorn master does
(`litellm_launch.install_warmup`); its loader says ok unless the config text contains `broken`. The real master is
covered by `test_integration_switch.py`."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path
from unittest import mock

import psutil

from llm_router.litellm import prove, prove_worker
from llm_router.supervisor import process
from tests.support import REPO, STACK_CONFIG, TempRepo


def wait_until(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def ok_loader(path: str) -> dict:
    text = Path(path).read_text()
    if "broken" in text:
        return {"ok": False, "models": 0, "error": "ValueError: broken on purpose"}
    return {"ok": True, "models": text.count("model_name"), "error": None}


class ServeRequestsTest(unittest.TestCase):
    """The master side, forked from this test process."""

    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="prove-folder-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.folder]))
        # children this test process had before (other tests' in a whole-suite run): never reaped or counted here
        self.earlier = {child.pid for child in psutil.Process().children()}

    def new_children(self) -> list[int]:
        return [child.pid for child in psutil.Process().children() if child.pid not in self.earlier]

    def reap_new(self) -> list[int]:
        """Wait for the intermediate children serve_requests forked, as gunicorn would: their exit statuses."""
        return [os.waitpid(pid, 0)[1] for pid in self.new_children()]

    def request(self, text: str) -> str:
        request_id = os.urandom(8).hex()
        Path(self.folder, f"{request_id}.yaml").write_text(text)
        Path(self.folder, f"{request_id}.req").touch()
        return request_id

    def verdict(self, request_id: str) -> dict | None:
        path = Path(self.folder, f"{request_id}.json")
        return json.loads(path.read_text()) if path.exists() else None

    def test_each_request_is_proven_once_in_a_detached_grandchild_and_the_reaped_child_exits_0(self):
        good, bad = self.request("model_list:\n- model_name: a\n"), self.request("broken")
        claimed = prove_worker.serve_requests(self.folder, load=ok_loader)
        self.assertEqual(sorted(claimed), sorted([good, bad]))
        self.assertEqual(prove_worker.serve_requests(self.folder, load=ok_loader), [])  # claimed once
        # what gunicorn reaps: only the intermediate children, each with exit status 0 (never 3 or 4)
        statuses = self.reap_new()
        self.assertEqual(len(statuses), len(claimed))
        self.assertTrue(all(status == 0 for status in statuses), statuses)
        self.assertEqual(self.new_children(), [])  # the provers are nobody's children
        self.assertTrue(wait_until(lambda: self.verdict(good) and self.verdict(bad)))
        self.assertEqual(self.verdict(good)["ok"], True)
        self.assertEqual(self.verdict(good)["models"], 1)
        self.assertEqual(self.verdict(bad), {"ok": False, "models": 0, "error": "ValueError: broken on purpose",
                                             "file": str(Path(self.folder, f"{bad}.yaml"))})
        self.assertTrue(wait_until(lambda: not list(Path(self.folder).glob("*.taken"))))
        self.assertEqual(list(Path(self.folder).glob("*.req")), [])

    def test_a_hung_prover_ends_itself_and_a_raising_loader_leaves_no_verdict(self):
        pid_file = Path(self.folder, "prover.pid")

        def hang(path):
            tmp = pid_file.with_suffix(".tmp")
            tmp.write_text(str(os.getpid()))
            os.replace(tmp, pid_file)  # whole, never half-written
            time.sleep(600)

        hung = self.request("x")
        with mock.patch.object(prove_worker, "PROVER_ALARM", 1):
            prove_worker.serve_requests(self.folder, load=hang)
        self.reap_new()  # the intermediate child, as gunicorn would
        self.assertTrue(wait_until(pid_file.exists))
        prover = int(pid_file.read_text())
        self.addCleanup(lambda: gone(prover) or os.kill(prover, signal.SIGKILL))
        self.assertNotIn(prover, [c.pid for c in psutil.Process().children()])  # detached: nobody's worker
        self.assertTrue(wait_until(lambda: gone(prover), timeout=60), "the hung prover is still running")
        self.assertIsNone(self.verdict(hung))

        def boom(path):
            raise SystemExit(3)  # what a gunicorn worker exits with when it cannot boot

        raised = self.request("x")
        prove_worker.serve_requests(self.folder, load=boom)
        self.reap_new()
        self.assertTrue(wait_until(lambda: not Path(self.folder, f"{raised}.taken").exists()))
        self.assertIsNone(self.verdict(raised))

    def test_unrelated_and_malformed_names_are_ignored(self):
        Path(self.folder, "notes.req").touch()
        Path(self.folder, "0123456789ABCDEF.req").touch()
        self.assertEqual(prove_worker.pending(self.folder), [])
        self.assertEqual(prove_worker.pending(os.path.join(self.folder, "missing")), [])

    def test_hello_names_this_process_and_clears_stale_requests(self):
        stale = self.request("old")
        with mock.patch.dict(os.environ, {process.LAUNCH_ENV: "launch-1"}):
            prove_worker.write_hello(self.folder)
        self.assertEqual(sorted(os.listdir(self.folder)), [prove_worker.HELLO])
        hello = json.loads(Path(self.folder, prove_worker.HELLO).read_text())
        self.assertEqual(hello, {"pid": os.getpid(), "launch_id": "launch-1"})
        self.assertEqual(os.stat(self.folder).st_mode & 0o777, 0o700)
        self.assertIsNone(self.verdict(stale))

    def test_folder_is_beside_the_config(self):
        self.assertEqual(prove_worker.folder_for("/x/runtime/litellm/active.yaml"), "/x/runtime/litellm/prove")


# A stand-in gunicorn master: announces itself, then serves proofs on SIGWINCH from its main loop. With `deaf` it
# announces itself but never answers.
MASTER = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, sys.argv[3])
    from llm_router.litellm import prove_worker
    from tests.test_prove import ok_loader
    folder, mode = sys.argv[1], sys.argv[2]
    prove_worker.write_hello(folder)
    woken, served = [], []
    signal.signal(signal.SIGWINCH, lambda *a: woken.append(1))
    print("ready", flush=True)

    def dies(path):
        os._exit(0)  # a prover that ends before its verdict (killed, say)

    while True:
        time.sleep(0.02)
        if woken and mode != "deaf":
            woken.clear()
            first = mode == "flaky" and not served
            served += prove_worker.serve_requests(folder, load=dies if first else ok_loader)
""")


class ClientTest(TempRepo):
    """prove.prove_texts against a stand-in master recorded as a gunicorn LiteLLM."""

    def setUp(self):
        super().setUp()
        self.write_config(STACK_CONFIG.format(cliproxy_port=1, litellm_port=2))
        from llm_router import config as config_mod

        self.cfg = config_mod.load(self.config_path)
        self.folder = self.cfg.layout.litellm_dir / prove_worker.FOLDER

    def start_master(self, mode: str = "serve", launch_id: str | None = None, mode_in_record: str = "gunicorn"):
        launch_id = launch_id or process.new_launch_id()
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", MASTER, str(self.folder), mode, str(REPO)],
                                stdout=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, process.LAUNCH_ENV: launch_id})
        self.addCleanup(self.stop_master, proc)
        self.assertEqual(proc.stdout.readline().strip(), "ready")
        record = process.ProcessRecord(service="litellm", pid=proc.pid,
                                       create_time=psutil.Process(proc.pid).create_time(), cmdline=["x"], port=2,
                                       started_at=time.time(), log=str(self.root / "log"), mode=mode_in_record,
                                       launch_id=launch_id, boot_id=process.boot_id())
        record.save(self.cfg.layout)
        return proc, record

    def stop_master(self, proc):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def test_proofs_go_through_the_warm_master_and_only_passing_ones_are_cached(self):
        _, record = self.start_master()
        self.assertIsNotNone(prove.warm_master(self.cfg))
        with mock.patch.object(prove, "_prove_cold", side_effect=AssertionError("cold way used")):
            verdicts = prove.prove_texts(self.cfg, {"good": "model_list:\n- model_name: a\n", "bad": "broken: 1\n"})
        self.assertEqual(verdicts["good"]["via"], "master")
        self.assertTrue(verdicts["good"]["ok"])
        self.assertEqual(verdicts["good"]["models"], 1)
        self.assertFalse(verdicts["bad"]["ok"])
        self.assertEqual(verdicts["bad"]["error"], "ValueError: broken on purpose")
        self.assertEqual(sorted(os.listdir(self.folder)), [prove_worker.HELLO])  # the client removed its files
        again = prove.prove_texts(self.cfg, {"good": "model_list:\n- model_name: a\n"})
        self.assertTrue(again["good"]["cached"])
        with self.assertRaises(prove.RouterError) as caught, \
                mock.patch.object(prove, "_prove_cold", side_effect=AssertionError("cold way used")):
            prove.ensure_proven(self.cfg, "bad", "broken: 1\n")
        self.assertIn("LiteLLM cannot load profile 'bad': ValueError: broken on purpose", caught.exception.message)
        # no prover left running: nothing but the master carries its launch marker
        self.assertTrue(wait_until(lambda: [p.pid for p in process.owned_members(record)] == [record.pid]))

    def test_no_background_job_after_start_when_the_master_proves_warm(self):
        self.start_master()
        with mock.patch.object(prove.subprocess, "Popen", side_effect=AssertionError("a job was started")):
            self.assertIsNone(prove.start_background(self.cfg, {process.LAUNCH_ENV: process.new_launch_id()}))

    def test_a_master_that_does_not_answer_falls_back_to_the_cold_way(self):
        self.start_master(mode="deaf")
        cold = {"x": {"ok": True, "models": 1, "error": None}}
        with mock.patch.object(prove, "WARM_TIMEOUT", 1.0), mock.patch.object(prove, "RESEND", 0.2), \
                mock.patch.object(prove, "_prove_cold", return_value=cold) as cold_way:
            verdicts = prove.prove_texts(self.cfg, {"x": "model_list: []\n"})
        cold_way.assert_called_once()
        self.assertEqual(verdicts["x"]["via"], "cold")
        self.assertEqual(sorted(os.listdir(self.folder)), [prove_worker.HELLO])

    def test_a_request_whose_prover_died_is_made_again(self):
        self.start_master(mode="flaky")
        with mock.patch.object(prove, "RETRY_AFTER", 0.5), \
                mock.patch.object(prove, "_prove_cold", side_effect=AssertionError("cold way used")):
            verdicts = prove.prove_texts(self.cfg, {"x": "model_list: []\n"})
        self.assertEqual(verdicts["x"]["via"], "master")
        self.assertTrue(verdicts["x"]["ok"])
        self.assertEqual(sorted(os.listdir(self.folder)), [prove_worker.HELLO])

    def test_no_warm_master_unless_the_record_and_the_announcement_agree(self):
        self.assertIsNone(prove.warm_master(self.cfg))  # nothing running
        proc, record = self.start_master(mode_in_record="uvicorn")
        self.assertIsNone(prove.warm_master(self.cfg))
        record.mode = "gunicorn"
        record.save(self.cfg.layout)
        self.assertIsNotNone(prove.warm_master(self.cfg))
        record.launch_id = process.new_launch_id()  # the announcement is another launch's
        record.save(self.cfg.layout)
        self.assertIsNone(prove.warm_master(self.cfg))
        (self.folder / prove_worker.HELLO).write_text("not json")
        self.assertIsNone(prove.warm_master(self.cfg))
        with mock.patch.object(prove, "_prove_cold", return_value={"x": {"ok": True, "models": 0, "error": None}}):
            self.assertEqual(prove.prove_texts(self.cfg, {"x": "a: 1\n"})["x"]["via"], "cold")

    def test_abandoned_request_files_are_swept(self):
        self.folder.mkdir(parents=True)
        old = self.folder / "0123456789abcdef.json"
        old.write_text("{}")
        os.utime(old, (time.time() - 2 * prove.SWEEP_AFTER,) * 2)
        fresh = self.folder / "fedcba9876543210.yaml"
        fresh.write_text("a: 1\n")
        prove._sweep(self.folder)
        self.assertFalse(old.exists())
        self.assertTrue(fresh.exists())


if __name__ == "__main__":
    unittest.main()
