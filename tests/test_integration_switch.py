"""Zero-downtime profile switches with the real LiteLLM under gunicorn, with a client load running.

Correctness only (no timings): no request fails while a profile is switched live, the new profile is served
afterwards, a hung worker boot is replaced, an unloadable profile is refused before anything is switched, two
switches are serialised, and a killed master rolls the profile back.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import unittest
from unittest import mock

import psutil

from llm_router import config as config_mod
from llm_router import profiles, stack, switch
from llm_router.litellm import prove, workers
from llm_router.litellm import service as litellm_service
from llm_router.standin.cliproxy import write_codex_login
from llm_router.standin.process import start_upstream
from llm_router.supervisor import process
from tests.load_support import Load
from tests.support import REPO, StackRepo

PAID_KEY = "sk-paid-standin-key-0123"
EXTRA = """\
providers:
  cliproxy: {{type: cliproxyapi_plus}}
  paid: {{type: openai_compatible, api_base: "{paid}/v1", api_key_env: SWITCH_PAID_KEY, tier: paid}}
models:
  - name: coder
    deployments: [{{provider: paid, model: m-paid}}, {{provider: cliproxy, model: gpt-5-codex}}]
"""
PAID_FIRST, SUBSCRIPTION_FIRST = "coder/paid/m-paid", "coder/cliproxy/gpt-5-codex"
# Watches a gunicorn master from a separate process and acts the moment it forks a new worker: `stop` freezes
# that worker (a hung boot), `kill-master` kills the master (mid-switch). Prints the pid it signalled.
INTERFERE = """
import os, signal, sys, time, psutil
action, master, before = sys.argv[1], int(sys.argv[2]), set(map(int, sys.argv[3:]))
print("ready", flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    for child in psutil.Process(master).children():
        if child.pid not in before:
            target, sig = (child.pid, signal.SIGSTOP) if action == "stop" else (master, signal.SIGKILL)
            os.kill(target, sig)
            print(target)
            sys.exit(0)
    time.sleep(0.001)
sys.exit(1)
"""
BROKEN = """\
{# broken: renders and validates, but LiteLLM refuses its routing strategy #}
{% extends "base.yaml.j2" %}
{% set paid_last = false %}
{% set cooldown_time = 60 %}
{% set timeout = 300 %}
{% set stream_timeout = 120 %}
{% block router_settings %}
router_settings:
  routing_strategy: no-such-strategy
{% endblock %}
"""


class LiveSwitchTest(StackRepo):
    """One LiteLLM (gunicorn) for the whole flow: starting it costs ~10-20 s here."""

    def setUp(self):
        super().setUp()
        self.paid = start_upstream(api_key=PAID_KEY, models=["m-paid"], name="paid")
        self.addCleanup(self.paid.stop)
        os.environ["SWITCH_PAID_KEY"] = PAID_KEY
        self.addCleanup(os.environ.pop, "SWITCH_PAID_KEY", None)
        text = self.config_path.read_text()
        head = text[:text.index("providers:")]
        self.config_path.write_text(head.replace("startup_timeout: 120}",
                                                 "startup_timeout: 120, worker_boot_timeout: 8}")
                                    + EXTRA.format(paid=self.paid.base_url))
        (self.root / "config" / "profiles").mkdir()
        (self.root / "config" / "profiles" / "broken.yaml.j2").write_text(BROKEN)
        self.cfg = self.load()
        write_codex_login(self.cfg.layout.auths_dir, "dev@example.com", "plus")

    def start_stack(self):
        code, out, err = self.cli("service", "start", "all")
        self.assertEqual(code, 0, out + err)
        self.remember_pids()
        self.assertIn("mode gunicorn", self.cli("status")[1])
        self.master_record = process.read_record(self.cfg.layout, "litellm")[0]
        self.master = self.master_record.pid
        # every shipped profile proven now: a warm proof forks the master for a few ms, which the interfering
        # helpers below would take for a new worker
        prove.prove_profiles(self.cfg, ["balanced", "cost", "reliability"])
        # the master imports LiteLLM's lazily loaded modules (and builds its lazy state) before its first fork
        # (llm_router.litellm.launch); every name of the list still exists in this LiteLLM, so none is skipped
        warmed = []
        deadline = time.monotonic() + 120
        while not warmed and time.monotonic() < deadline:
            warmed = [line for line in self.cfg.layout.log_file("litellm").read_text().splitlines()
                      if line.startswith("llm-router: warmed")]
            time.sleep(0.2)
        self.assertEqual(len(warmed), 1, warmed)
        self.assertNotIn("skipped", warmed[0])
        # /v1/messages is LiteLLM's lazy feature: matched, but routed only from the first Messages request on
        self.assertIn("3 paths (2 routed before the first request)", warmed[0])
        # the collector was off while the master imported; the heap is frozen before the first fork
        self.assertIn(" objects frozen for the workers", self.cfg.layout.log_file("litellm").read_text())

    def client_load(self, **kw):
        return Load(self.cfg.services["litellm"].base_url, self.cfg.secret("LITELLM_MASTER_KEY"), **kw)

    def test_switches_under_load(self):
        self.start_stack()
        with self.client_load(threads=4) as load:
            load.wait_for(20)
            self.assertEqual({s.model_id for s in load.samples if s.ok}, {PAID_FIRST})

            # 1. a live switch: no request fails, the new order is served afterwards
            code, out, err = self.cli("profile", "set", "cost")
            self.assertEqual(code, 0, out + err)
            self.assertIn("LiteLLM serves it now", out)
            switched = time.monotonic()
            load.wait_for(len(load.samples) + 20)
            self.assertEqual({s.model_id for s in load.after(switched) if s.ok}, {SUBSCRIPTION_FIRST})
            self.assertEqual(len(workers.worker_pids(self.master_record)), 1)

            # 2. a hung worker boot (SIGSTOP, from a separate process so that it lands within milliseconds of
            #    the fork) is replaced and the switch still completes
            freezer = self.interfere("stop")
            code, out, err = self.cli("profile", "set", "balanced")
            frozen = int(freezer.communicate(timeout=60)[0].strip())
            self.assertEqual(code, 0, out + err)
            last = profiles.events.for_config(self.cfg).read(event="profile_switch")[-1]
            self.assertIn(frozen, last["detail"]["replaced_hung"])
            self.assertFalse(psutil.pid_exists(frozen) and psutil.Process(frozen).status() != psutil.STATUS_ZOMBIE)
            switched = time.monotonic()
            load.wait_for(len(load.samples) + 20)
            self.assertEqual({s.model_id for s in load.after(switched) if s.ok}, {PAID_FIRST})

            # 3. a profile LiteLLM cannot load is refused before anything is switched
            code, out, err = self.cli("profile", "set", "broken")
            self.assertEqual(code, 2, out + err)
            self.assertIn("LiteLLM cannot load profile 'broken'", err)
            self.assertEqual(profiles.active(self.cfg)["name"], "balanced")

            # 4. two switches at once are serialised by the lock; the later one wins
            results = []
            threads = [threading.Thread(target=lambda n=n: results.append((n, switch.set_profile(self.load_cfg(), n))))
                       for n in ("cost", "reliability")]
            for t in threads:
                t.start()
                time.sleep(0.2)
            for t in threads:
                t.join(300)
            self.assertEqual(sorted(n for n, _ in results), ["cost", "reliability"])
            self.assertEqual(profiles.active(self.cfg)["name"], results[-1][0])
            self.assertEqual(len(workers.worker_pids(self.master_record)), 1)
            load.wait_for(len(load.samples) + 10)
        self.assertEqual(load.failures, [], [s.error for s in load.failures][:5])
        switches = [e for e in profiles.events.for_config(self.cfg).read(event="profile_switch")
                    if e["result"] == "ok" and e["detail"].get("applied") == "worker swap"]
        self.assertGreaterEqual(len(switches), 4)
        self.assertIn("switch_s", switches[-1]["detail"])

    def test_first_switch_right_after_start_is_proven_by_the_warm_master(self):
        from llm_router.litellm import prove
        from llm_router.supervisor import process

        self.start_stack()
        log = self.cfg.layout.log_file("litellm").read_text()
        self.assertIn("llm-router: warmed", log)
        self.assertIn("before the first worker", log)  # the first worker is forked warm too
        with self.client_load(threads=2) as load:
            load.wait_for(10)
            # a config never proven before is proven by the running master, not by a fresh interpreter
            fresh = profiles.checked(self.cfg, profiles.find(self.cfg, "cost")).text + "# never proven\n"
            with mock.patch.object(prove, "_prove_cold", side_effect=AssertionError("cold way used")):
                verdict = prove.prove_texts(self.cfg, {"fresh": fresh})["fresh"]
                self.assertEqual((verdict["via"], verdict["ok"], verdict["models"]), ("master", True, 2))
                # one LiteLLM refuses: refused by the warm proof, and the master goes on serving
                broken = profiles.checked(self.cfg, profiles.find(self.cfg, "broken")).text + "# fresh\n"
                verdict = prove.prove_texts(self.cfg, {"broken": broken})["broken"]
                self.assertEqual((verdict["via"], verdict["ok"]), ("master", False))
                self.assertIn("no-such-strategy", verdict["error"])
            code, out, err = self.cli("profile", "set", "broken")
            self.assertEqual(code, 2, out + err)
            self.assertIn("LiteLLM cannot load profile 'broken'", err)
            code, out, err = self.cli("profile", "set", "cost")
            self.assertEqual(code, 0, out + err)
            switched = time.monotonic()
            load.wait_for(len(load.samples) + 10)
            self.assertEqual({s.model_id for s in load.after(switched) if s.ok}, {SUBSCRIPTION_FIRST})
            self.assertIsNotNone(process.owned_leader(self.master_record))
        self.assertEqual(load.failures, [], [s.error for s in load.failures][:5])
        # stopped with the stack: nothing of the master's launch is left, no prover and no request files
        code, out, err = self.cli("service", "stop", "all")
        self.assertEqual(code, 0, out + err)
        self.assertEqual(process.owned_members(self.master_record), [])
        self.assertFalse(self.cfg.layout.pid_file(litellm_service.PROVER).exists())
        left = sorted(p.name for p in (self.cfg.layout.litellm_dir / "prove").iterdir())
        self.assertEqual(left, ["master.json"])

    def interfere(self, action: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", INTERFERE, action, str(self.master),
                                 *map(str, workers.worker_pids(self.master_record))], stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertEqual(proc.stdout.readline().strip(), "ready")  # watching before the switch begins
        return proc

    def load_cfg(self):
        return config_mod.load(self.config_path)

    def test_master_killed_during_a_switch_rolls_back(self):
        self.start_stack()
        prove.prove_profiles(self.cfg, ["cost"])
        killer = self.interfere("kill-master")
        code, out, err = self.cli("profile", "set", "cost")
        self.assertEqual(int(killer.communicate(timeout=60)[0].strip()), self.master)
        self.assertNotEqual(code, 0, out + err)
        self.assertIn("profile 'cost' was not applied", err)
        self.assertEqual(profiles.active(self.cfg)["name"], "balanced")
        # the stack recovers: status reports the dead master, start brings LiteLLM back on the restored profile
        self.assertIn("STALE", self.cli("status", "litellm")[1])
        code, out, err = self.cli("service", "start", "litellm")
        self.assertEqual(code, 0, out + err)
        self.remember_pids()
        self.assertIn("profile balanced", out)


    # `profile set` killed (-9) or interrupted (Ctrl-C) in the middle of a worker swap: the previous profile comes
    # back, the master is back to one worker, and no request fails meanwhile.
    def switch_in_background(self, profile: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        proc = subprocess.Popen([sys.executable, "-m", "llm_router", "--config", str(self.config_path), "profile",
                                 "set", profile], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, start_new_session=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc

    def wait_for_extra_worker(self, child: subprocess.Popen) -> None:
        deadline = time.monotonic() + 120
        while len(workers.worker_pids(self.master_record)) < 2:
            self.assertIsNone(child.poll(), "the switch ended before its new worker was forked")
            self.assertLess(time.monotonic(), deadline, "no new worker was forked")
            time.sleep(0.005)

    def test_switch_killed_or_interrupted_mid_swap_is_rolled_back(self):
        self.start_stack()
        prove.prove_profiles(self.cfg, ["cost"])
        with self.client_load(threads=2) as load:
            load.wait_for(10)
            # kill -9: nothing can run in the dying process; the journal is left for the next command
            child = self.switch_in_background("cost")
            self.wait_for_extra_worker(child)
            child.kill()  # the test's own child, by pid
            child.wait(10)
            self.assertTrue(self.cfg.layout.switch_journal.exists())
            self.assertIn("an interrupted profile switch is pending", self.cli("status")[2])
            code, out, err = self.cli("service", "start", "litellm")
            self.assertEqual(code, 0, out + err)
            self.assertIn("an interrupted switch to profile 'cost' was rolled back; 'balanced' is active again", out)
            self.assertEqual(profiles.active(self.cfg)["name"], "balanced")
            self.assertFalse(self.cfg.layout.switch_journal.exists())
            self.assertEqual(len(workers.worker_pids(self.master_record)), 1)
            reconciled = time.monotonic()
            load.wait_for(len(load.samples) + 10)
            self.assertEqual({s.model_id for s in load.after(reconciled) if s.ok}, {PAID_FIRST})

            # Ctrl-C: the command rolls back itself before it exits
            child = self.switch_in_background("cost")
            self.wait_for_extra_worker(child)
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=120)
            self.assertEqual(child.returncode, 130, err)
            self.assertIn("interrupted", err)
            self.assertEqual(profiles.active(self.cfg)["name"], "balanced")
            self.assertFalse(self.cfg.layout.switch_journal.exists())
            self.assertEqual(len(workers.worker_pids(self.master_record)), 1)
            interrupted = time.monotonic()
            load.wait_for(len(load.samples) + 10)
            self.assertEqual({s.model_id for s in load.after(interrupted) if s.ok}, {PAID_FIRST})
        self.assertEqual(load.failures, [], [s.error for s in load.failures][:5])
        rolled = [e["detail"].get("error") for e in profiles.events.for_config(self.cfg).read(event="profile_switch")
                  if e["result"] == "rolled_back"]
        self.assertEqual(rolled, ["the switch was interrupted", "interrupted"])


class UvicornFallbackTest(StackRepo):
    def test_without_gunicorn_a_switch_is_a_restart(self):
        with mock.patch.object(litellm_service, "gunicorn_available", return_value=False):
            code, out, err = self.cli("service", "start", "litellm")
        self.assertEqual(code, 0, out + err)
        self.remember_pids()
        self.assertIn("gunicorn is not installed", out)
        self.assertEqual(stack.inspect(self.cfg, "litellm").mode, "uvicorn")
        code, out, err = self.cli("profile", "set", "cost")
        self.assertEqual(code, 0, out + err)
        self.remember_pids()
        self.assertIn("LiteLLM restarted on it", out)
        self.assertTrue(stack.is_running(self.cfg, "litellm"))


if __name__ == "__main__":
    unittest.main()
