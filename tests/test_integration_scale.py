"""Scale-out with the real LiteLLM and a real redis-server: several workers and instances sharing router state.

One stack for the whole class (a LiteLLM start costs 10-30 s on this machine): Redis run by llm-router
(`services.redis.enabled`), instance A (gunicorn, 2 workers) on the same root, and instance B, a second
llm-router root that points at A's Redis with `services.redis.url` and A's password file (what a second host
does, on loopback). Both serve an upstream stand-in.

Proof, correctness only (no timing assertions):
- a 429 seen by A makes B skip that deployment (B's cooldown store re-reads Redis every second);
- an rpm limit of N across A's two workers lets N requests through, not 2N;
- Redis stopped mid-run: every request is still answered; `health` and `doctor` say where the state went;
- a live profile switch with 2 workers under load: 0 failed requests, both workers replaced, still 2.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import unittest
from collections import Counter
from pathlib import Path

import psutil

from llm_router import config as config_mod
from llm_router import stack, switch
from llm_router.litellm import workers
from llm_router.standin.process import free_port, reset, set_fault, start_upstream, stats
from llm_router.supervisor import process
from tests.load_support import Load

KEY = "sk-scale-standin-key-0123"
HAVE_REDIS = shutil.which("redis-server") is not None
RPM = 6
# A profile whose router_settings enforce deployment rpm limits (LiteLLM's `enforce_model_rate_limits`).
PROFILE = """\
{# scale: order failover, no retry on 429, a failed deployment cools down for 60 s, deployment rpm limits enforced #}
{% extends "base.yaml.j2" %}
{% set paid_last = false %}
{% set cooldown_time = 60 %}
{% set timeout = 60 %}
{% set stream_timeout = 60 %}
{% block router_settings %}
router_settings:
  routing_strategy: simple-shuffle
  optional_pre_call_checks: {{ pre_call_checks | tojson }}   # the shipped profiles' list: rpm is set below
  num_retries: 1
  retry_policy: {RateLimitErrorRetries: 0, TimeoutErrorRetries: 1, InternalServerErrorRetries: 1}
  allowed_fails: 0
  cooldown_time: {{ cooldown_time }}
  retry_after: 0
{% endblock %}
"""
CONFIG = """\
config_version: 2
runtime_dir: .router/runtime
default_profile: scale
services:
  cliproxyapi_plus: {{port: {cliproxy_port}}}
  litellm: {{port: {litellm_port}, startup_timeout: 240, worker_boot_timeout: 10, workers: {workers}}}
  redis: {redis}
providers:
  paid: {{type: openai_compatible, api_base: "{upstream}/v1", api_key_env: SCALE_KEY}}
models:
  - name: coder
    deployments: [{{provider: paid, model: m-a}}, {{provider: paid, model: m-b}}]
  - name: limited
    deployments: [{{provider: paid, model: m-limited, rpm: {rpm}}}]
{extra}"""


def _root(prefix: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=prefix))
    (root / "config" / "profiles").mkdir(parents=True)
    (root / "config" / "profiles" / "scale.yaml.j2").write_text(PROFILE)
    return root


def _chat(base_url: str, key: str, model: str, retries: int = 0):
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=retries, timeout=60)
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "ping"}], max_tokens=5)


@unittest.skipUnless(HAVE_REDIS, "redis-server is not installed (.ci/run installs Debian's redis-server)")
class ScaleOutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._cleanups_cls = []
        try:
            cls._build()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _build(cls):
        cls.upstream = start_upstream(api_key=KEY, models=["m-a", "m-b", "m-limited"], name="paid")
        cls._cleanups_cls.append(cls.upstream.stop)
        os.environ["SCALE_KEY"] = KEY
        cls._cleanups_cls.append(lambda: os.environ.pop("SCALE_KEY", None))
        cls.redis_port = free_port()
        cls.root_a, cls.root_b = _root("llm-router-scale-a-"), _root("llm-router-scale-b-")
        for root in (cls.root_a, cls.root_b):
            cls._cleanups_cls.append(lambda root=root: shutil.rmtree(root, True))
        common = {"upstream": cls.upstream.base_url, "rpm": RPM}
        (cls.root_a / "config" / "routertool.yaml").write_text(CONFIG.format(
            cliproxy_port=free_port(), litellm_port=free_port(), workers=2, extra="",
            redis=f"{{enabled: true, port: {cls.redis_port}}}", **common))
        cls.cfg_a = config_mod.load(cls.root_a / "config" / "routertool.yaml")
        # instance B: another llm-router (a second host, here on loopback) on A's Redis, with A's password file
        password_file = cls.cfg_a.layout.secret_file(config_mod.REDIS_PASSWORD_ENV)
        (cls.root_b / "config" / "routertool.yaml").write_text(CONFIG.format(
            cliproxy_port=free_port(), litellm_port=free_port(), workers=1,
            redis=f'{{url: "redis://127.0.0.1:{cls.redis_port}/0"}}',
            extra=f"secret_files:\n  REDIS_PASSWORD: {password_file}\n", **common))
        cls._cleanups_cls.append(lambda: stack.stop(cls.cfg_b, "all"))
        cls._cleanups_cls.append(lambda: stack.stop(cls.cfg_a, "all"))
        stack.start(cls.cfg_a, ["redis"])
        cls.cfg_b = config_mod.load(cls.root_b / "config" / "routertool.yaml")
        # both LiteLLMs start at once (each imports LiteLLM for 10-30 s here)
        errors = []

        def start(cfg):
            try:
                stack.start(cfg, ["litellm"])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(cfg,)) for cfg in (cls.cfg_a, cls.cfg_b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        cls.url_a = cls.cfg_a.services["litellm"].base_url
        cls.url_b = cls.cfg_b.services["litellm"].base_url
        cls.key_a = cls.cfg_a.secret("LITELLM_MASTER_KEY")
        cls.key_b = cls.cfg_b.secret("LITELLM_MASTER_KEY")

    @classmethod
    def tearDownClass(cls):
        leftovers = []
        for cfg_name in ("cfg_a", "cfg_b"):
            cfg = getattr(cls, cfg_name, None)
            if cfg is None:
                continue
            for name in stack.names_for(cfg):
                record, _ = process.read_record(cfg.layout, name)
                if record is not None:
                    leftovers.append(record)
        for cleanup in reversed(cls._cleanups_cls):
            with contextlib.suppress(Exception):
                cleanup()
        for record in leftovers:  # anything of these launches still alive is a bug: end it, then say so
            alive = [p for p in psutil.process_iter() if p.pid == record.pid and p.is_running()
                     and p.status() != psutil.STATUS_ZOMBIE]
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    if abs(proc.create_time() - record.create_time) < 0.1:
                        os.killpg(record.pid, 9)
                        raise AssertionError(f"{record.service} (pid {record.pid}) was left running")
        super().tearDownClass()

    def setUp(self):
        reset(self.upstream.base_url)
        self.assertTrue(stack.is_running(self.cfg_a, "redis"), "Redis must be running at the start of a test")

    # ------------------------------------------------------------------ 1. shared cooldowns

    def test_1_a_429_on_one_instance_makes_the_other_skip_that_deployment(self):
        set_fault(self.upstream.base_url, model="m-a", status=429, count=1)
        raw = _chat(self.url_a, self.key_a, "coder")
        self.assertEqual(raw.headers.get("x-litellm-model-id"), "coder/paid/m-b", "A moves on to the next order")
        self.assertEqual(stats(self.upstream.base_url)["requests"].get("m-a"), 1)
        # B never saw m-a fail. Its cooldown store re-reads Redis for a missing key once a second
        # (DEFAULT_COOLDOWN_REDIS_READ_INTERVAL_SECONDS = 1): after that second, B skips m-a too.
        time.sleep(1.2)
        for _ in range(3):
            raw = _chat(self.url_b, self.key_b, "coder")
            self.assertEqual(raw.headers.get("x-litellm-model-id"), "coder/paid/m-b")
        self.assertEqual(stats(self.upstream.base_url)["requests"].get("m-a"), 1,
                         "B sent nothing to the deployment A saw fail (m-a is healthy again by now)")

    # ------------------------------------------------------------------ 2. shared rpm counters

    def test_2_an_rpm_limit_across_two_workers_lets_through_n_not_2n(self):
        master, _ = process.read_record(self.cfg_a.layout, "litellm")
        pids = workers.worker_pids(master)
        self.assertEqual(len(pids), 2, "services.litellm.workers: 2")
        cpu_before = {pid: sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids}
        if time.gmtime().tm_sec > 35:  # rpm counters are per UTC minute: stay inside one
            time.sleep(61 - time.gmtime().tm_sec)
        outcomes = []
        lock = threading.Lock()

        def send(count):
            for _ in range(count):
                try:
                    _chat(self.url_a, self.key_a, "limited")
                    ok = True
                except Exception:  # noqa: BLE001 - a 429 (or "no deployment available") once the limit is used
                    ok = False
                with lock:
                    outcomes.append(ok)

        threads = [threading.Thread(target=send, args=(5,)) for _ in range(6)]  # 30 requests, 6 at a time
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        served = stats(self.upstream.base_url)["requests"].get("m-limited", 0)
        self.assertEqual(len(outcomes), 30)
        self.assertEqual(served, RPM, f"the upstream got {served} requests for rpm {RPM} across 2 workers")
        self.assertEqual(outcomes.count(True), RPM)
        busy = [pid for pid in pids if sum(psutil.Process(pid).cpu_times()[:2]) > cpu_before[pid]]
        self.assertEqual(sorted(busy), sorted(pids), "both workers took requests")

    # ------------------------------------------------------------------ 3. Redis goes away

    def test_3_redis_stopped_mid_run_requests_keep_being_answered(self):
        from llm_router.checks import doctor

        try:
            with Load(self.url_a, self.key_a, threads=3) as load:
                load.wait_for(15)
                self.assertEqual(load.failures, [])
                stack.stop(self.cfg_a, "redis")
                stopped = time.monotonic()
                deadline = stopped + 120  # 30 requests that all started after Redis was gone
                while len(load.after(stopped)) < 30 and time.monotonic() < deadline:
                    time.sleep(0.05)
                health = {r["service"]: r for r in stack.health_check(self.cfg_a)}
                after = load.after(stopped)
            self.assertGreaterEqual(len(after), 30)
            self.assertEqual(load.failures, [], [s.error for s in load.failures][:3])
            self.assertFalse(health["redis"]["ready"])
            self.assertTrue(health["litellm"]["ready"])
            self.assertFalse(health["litellm"]["shared_state"]["ok"])
            self.assertIn("in-memory state", health["litellm"]["shared_state"]["detail"])
            found = {f.check: f for f in doctor.check_redis(self.cfg_a)}
            self.assertEqual(found["redis"].status, "warn")
            self.assertIn("in-memory", found["redis"].detail)
            # instance B (external url) sees it the same way
            b = {r["service"]: r for r in stack.health_check(self.cfg_b)}
            self.assertTrue(b["litellm"]["ready"])
            self.assertFalse(b["litellm"]["shared_state"]["ok"])
        finally:
            stack.start(self.cfg_a, ["redis"])
        self.assertTrue({r["service"]: r for r in stack.health_check(self.cfg_a)}["litellm"]["shared_state"]["ok"])
        _chat(self.url_a, self.key_a, "coder")  # and LiteLLM uses it again without a restart

    # ------------------------------------------------------------------ 4. live switch with 2 workers

    def test_4_live_switch_with_two_workers_under_load_fails_nothing(self):
        master, _ = process.read_record(self.cfg_a.layout, "litellm")
        before = set(workers.worker_pids(master))
        self.assertEqual(len(before), 2)
        with Load(self.url_a, self.key_a, threads=4) as load:
            load.wait_for(20)
            info = switch.set_profile(self.cfg_a, "balanced")
            switched = time.monotonic()
            load.wait_for(len(load.samples) + 20)
        self.assertEqual(info.how, "worker swap")
        self.assertEqual(load.failures, [], [s.error for s in load.failures][:3])
        self.assertGreaterEqual(len(load.after(switched)), 20)
        after = workers.worker_pids(master)
        self.assertEqual(len(after), 2, "back to services.litellm.workers")
        self.assertFalse(before & set(after), "every worker was replaced")
        status = {s.name: s for s in stack.status(self.cfg_a)}["litellm"]
        self.assertEqual(sorted(w["pid"] for w in status.workers), sorted(after))
        self.assertTrue(all(w["serving"] for w in status.workers))

    # ------------------------------------------------------------------ 5. the usage store across workers

    def test_5_the_usage_store_has_one_row_per_request_whichever_worker_served_it(self):
        try:
            from llm_router import usage
        except ImportError:
            self.skipTest("no usage store in this checkout")
        usage_dir = self.cfg_a.layout.runtime_dir / "usage"
        since = time.time()
        for _ in range(20):  # a new client (so a new connection) each: both workers take some
            self.assertEqual(_chat(self.url_a, self.key_a, "coder").http_response.status_code, 200)
        rows = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with usage.Reader(usage_dir) as reader:
                rows = [r for r in reader.requests(since) if r["outcome"] == "ok"]
                seen = {w["pid"] for w in reader.workers()}
            if len(rows) >= 20:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # nothing more is coming
        with usage.Reader(usage_dir) as reader:
            rows = [r for r in reader.requests(since) if r["outcome"] == "ok"]
            seen = {w["pid"] for w in reader.workers()}
        self.assertEqual(len(rows), 20, "one row per request, from both workers into the one store")
        self.assertTrue(seen, "the workers that wrote are listed")

    def test_6_each_instance_store_gets_the_other_instance_rows_through_redis(self):
        from llm_router import usage

        since = time.time()
        for url, key in ((self.url_a, self.key_a), (self.url_b, self.key_b)) * 3:
            self.assertEqual(_chat(url, key, "coder").http_response.status_code, 200)
        stores = {name: cfg.layout.usage_dir for name, cfg in (("a", self.cfg_a), ("b", self.cfg_b))}

        def rows_in(usage_dir):
            with usage.Reader(usage_dir) as reader:
                return [r for r in reader.requests(since) if r["outcome"] == "ok"]
        deadline = time.monotonic() + 60  # the writers poll the stream every 0.5 s (a restarted Redis: 5 s back-off)
        while time.monotonic() < deadline and not all(len(rows_in(d)) >= 6 for d in stores.values()):
            time.sleep(0.5)
        seen = {name: rows_in(d) for name, d in stores.items()}
        for name, rows in seen.items():
            self.assertEqual(len(rows), 6, f"instance {name}'s store: one row per request of both instances")
            self.assertEqual(sorted(Counter(r["instance"] for r in rows).values()), [3, 3], "3 rows of each instance")
        self.assertEqual(sorted((r["instance"], r["ts"]) for r in seen["a"]),
                         sorted((r["instance"], r["ts"]) for r in seen["b"]), "the same rows in both stores")



# --------------------------------------------------------------------------- worker rolls without LiteLLM

APP = '''
import os
STATE = {}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                with open(os.environ["ROLL_CONFIG"]) as handle:  # read at boot, like LiteLLM's WORKER_CONFIG
                    STATE["config"] = handle.read().strip()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        body = f"{os.getpid()} {STATE['config']}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
'''


class GunicornWorkersTest(unittest.TestCase):
    """workers.swap / workers.reconcile with N workers on a real gunicorn master (uvicorn workers, the class
    LiteLLM uses) serving a tiny app that answers with the config it read at boot: a second per boot, not 10-30."""

    def setUp(self):
        import subprocess
        import sys

        self.dir = Path(tempfile.mkdtemp(prefix="llm-router-roll-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        (self.dir / "rollapp.py").write_text(APP)
        self.config = self.dir / "config.txt"
        self.config.write_text("v1")
        self.log = self.dir / "master.log"
        self.port = free_port()
        launch_id = process.new_launch_id()
        with open(self.log, "ab") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
                 "-b", f"127.0.0.1:{self.port}", "--chdir", str(self.dir), "--graceful-timeout", "5",
                 "--log-level", "info", "rollapp:app"],
                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "ROLL_CONFIG": str(self.config), process.LAUNCH_ENV: launch_id})
        self.proc = proc
        self.record = process.ProcessRecord(
            service="litellm", pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(), cmdline=[],
            port=self.port, started_at=time.time(), log=str(self.log), mode="gunicorn", launch_id=launch_id,
            boot_id=process.boot_id())
        self.addCleanup(self._stop)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers.booted_workers(self.log) & set(self.pids())) < 2:
            time.sleep(0.1)
        self.assertEqual(len(self.pids()), 2, self.log.read_text()[-2000:])

    def _stop(self):
        process.terminate(self.record, 10.0, wait_leader=self.proc.wait)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(5)

    def pids(self) -> list[int]:
        return workers.worker_pids(self.record)

    def get(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=10) as reply:
            return reply.read().decode()

    def load(self, stop: threading.Event, results: list) -> None:
        """Requests back to back. A connection the retiring worker accepted but had not read yet is closed by its
        graceful shutdown; like the openai client (max_retries=2), a connection error is retried once."""
        while not stop.is_set():
            for attempt in (1, 2):
                try:
                    results.append(self.get())
                    break
                except (ConnectionError, OSError) as exc:
                    if attempt == 2:
                        results.append(exc)
                except Exception as exc:  # noqa: BLE001 - every other failure counts at once
                    results.append(exc)
                    break

    def test_swap_replaces_every_worker_one_at_a_time_without_a_failed_request(self):
        before = set(self.pids())
        self.config.write_text("v2")
        stop, results = threading.Event(), []
        threads = [threading.Thread(target=self.load, args=(stop, results)) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            outcome = workers.swap(self.record, self.log, boot_timeout=10, target=2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        failures = [r for r in results if isinstance(r, Exception)]
        self.assertEqual(failures, [])
        self.assertGreater(len(results), 10)
        after = set(self.pids())
        self.assertEqual(len(after), 2)
        self.assertFalse(before & after)
        self.assertEqual(sorted(outcome["retired"]), sorted(before))
        self.assertEqual({self.get().split()[1] for _ in range(10)}, {"v2"})

    def test_reconcile_brings_an_interrupted_swap_back_to_n_fresh_workers(self):
        initial = set(self.pids())
        process.send(self.record, self.record.pid, __import__("signal").SIGTTIN)  # a swap that never finished
        deadline = time.monotonic() + 30
        while len(self.pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(self.pids()), 3)
        self.config.write_text("v3")  # the restored config
        done = workers.reconcile(self.record, self.log, boot_timeout=10, target=2)
        self.assertEqual(len(done["workers"]), 2)
        self.assertFalse(set(done["workers"]) & initial)
        time.sleep(0.5)
        self.assertEqual(len(self.pids()), 2, "the master keeps 2 workers")
        self.assertEqual({self.get().split()[1] for _ in range(10)}, {"v3"})


if __name__ == "__main__":
    unittest.main()
