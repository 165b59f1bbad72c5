"""The LiteLLM launcher's warm-up, warm-proof and collector hooks in the gunicorn master
(`llm_router.litellm.launch`), without starting LiteLLM.

The real master running it is covered by the gunicorn integration tests (`test_integration_switch.py`), which
also check its `llm-router: warmed` log line."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import unittest
from unittest import mock

from llm_router.litellm import launch as litellm_launch


class WarmTest(unittest.TestCase):
    def tearDown(self):
        sys.modules.pop("email.mime.audio", None)

    def test_imports_what_is_missing_and_skips_what_fails(self):
        sys.modules.pop("email.mime.audio", None)
        result = litellm_launch.warm(("json", "email.mime.audio", "llm_router_no_such_module.sub"))
        self.assertIn("email.mime.audio", sys.modules)
        self.assertGreaterEqual(result["imported"], 1)
        self.assertEqual(result["skipped"], ["llm_router_no_such_module.sub (ModuleNotFoundError)"])

    def test_a_module_that_raises_is_skipped_not_fatal(self):
        with mock.patch.object(litellm_launch.importlib, "import_module", side_effect=RuntimeError("boom")):
            result = litellm_launch.warm(("llm_router_not_imported_yet",))
        self.assertEqual(result["skipped"], ["llm_router_not_imported_yet (RuntimeError)"])


def fake_normalizer(calls: list) -> dict:
    """LiteLLM's route normaliser as a stand-in module (importing LiteLLM itself takes seconds), recording calls."""
    import types

    module = types.ModuleType("litellm.proxy.auth.auth_utils")
    module.normalize_request_route = calls.append
    return {module.__name__: module}


class WarmAppTest(unittest.TestCase):
    def test_matches_each_path_once_and_skips_what_is_missing(self):
        import types

        from starlette.routing import Match

        seen = []

        class Route:
            def __init__(self, path):
                self.path = path

            def matches(self, scope):
                seen.append((self.path, scope["path"]))
                return (Match.FULL if scope["path"] == self.path else Match.NONE), {}

        fake = types.ModuleType("litellm.proxy.proxy_server")
        fake.app = types.SimpleNamespace(router=types.SimpleNamespace(routes=[Route("/a"), Route("/b"), Route("/c")]))
        with mock.patch.dict(sys.modules, {"litellm.proxy.proxy_server": fake, **fake_normalizer([])}):
            result = litellm_launch.warm_app(paths=("/b",), models=("llm_router_no_such_module.Model",
                                                                       "json.JSONDecoder"))
        self.assertEqual(seen, [("/a", "/b"), ("/b", "/b")])  # stops at the full match, as a request does
        self.assertEqual((result["paths"], result["routes"]), (1, 0))  # matched, but no FastAPI endpoint there
        self.assertEqual(result["models"], 0)
        self.assertEqual(result["skipped"], ["llm_router_no_such_module.Model (ModuleNotFoundError)",
                                             "json.JSONDecoder (AttributeError)"])

    def test_one_failing_step_leaves_the_others(self):
        import types

        class Route:
            path = "/ok"

            def matches(self, scope):
                if scope["path"] == "/boom":
                    raise RuntimeError("boom")
                from starlette.routing import Match

                return Match.NONE, {}

        def normalize(path):
            if path == "/ok":
                raise ValueError(path)

        fake = types.ModuleType("litellm.proxy.proxy_server")
        fake.app = types.SimpleNamespace(router=types.SimpleNamespace(routes=[Route()]))
        auth = types.ModuleType("litellm.proxy.auth.auth_utils")
        auth.normalize_request_route = normalize
        with mock.patch.dict(sys.modules, {fake.__name__: fake, auth.__name__: auth}):
            result = litellm_launch.warm_app(paths=("/boom", "/ok"), models=("json.JSONDecoder",))
        self.assertEqual(result["skipped"], ["/boom (RuntimeError)", "normalise /ok (ValueError)",
                                             "json.JSONDecoder (AttributeError)"])

    def test_a_real_fastapi_app_gets_its_endpoint_contexts_through_included_routers(self):
        import types

        from fastapi import APIRouter, FastAPI
        from fastapi import routing as fastapi_routing

        def chat_completion():
            return {}

        def responses_api():
            return {}

        app, chat, responses = FastAPI(), APIRouter(), APIRouter()
        chat.post("/v1/chat/completions")(chat_completion)
        responses.post("/responses")(responses_api)
        app.include_router(chat)
        app.include_router(responses, prefix="/v1")
        fake = types.ModuleType("litellm.proxy.proxy_server")
        fake.app = app
        normalized = []
        with mock.patch.dict(sys.modules, {"litellm.proxy.proxy_server": fake, **fake_normalizer(normalized)}):
            result = litellm_launch.warm_app(paths=("/v1/chat/completions", "/v1/responses", "/v1/messages"),
                                             models=())
        self.assertEqual(result["skipped"], [])
        self.assertEqual(normalized, ["/v1/chat/completions", "/v1/responses", "/v1/messages"])
        # /v1/messages has no route before LiteLLM's startup loads its lazy feature: walked, not routed
        self.assertEqual((result["paths"], result["routes"]), (3, 2))
        # FastAPI's private cache: this fails first when a FastAPI release renames it, as the warm-up then skips it
        for endpoint in (chat_completion, responses_api):
            self.assertEqual(fastapi_routing._endpoint_context_cache[id(endpoint)]["function"], endpoint.__name__)


class CollectorTest(unittest.TestCase):
    """The collector's deferral (point 3 of the launcher's doc), with a real collector and a real fork, in a child
    interpreter: the test process's own collector is never touched."""

    SCRIPT = """
import gc, json, os, sys
from gunicorn.arbiter import Arbiter
from llm_router.litellm import launch

os.environ[launch.WARMUP_ENV] = "off"
read, write = os.pipe()

def spawn(arbiter):  # what gunicorn's spawn_worker does: fork; the child becomes the worker
    pid = os.fork()
    if pid == 0:
        os.write(write, b"1" if gc.isenabled() else b"0")
        os._exit(0)
    return pid

Arbiter.spawn_worker = spawn
launch.install_warmup(None, defer_collector=True)
import email.mime.audio  # an import between the launcher's start and the first fork, as LiteLLM's is
seen = {"enabled_while_importing": gc.isenabled()}
for _ in range(2):
    os.waitpid(Arbiter.spawn_worker(None), 0)
seen.update(worker_enabled=[os.read(read, 1) == b"1" for _ in range(2)], master_enabled=gc.isenabled(),
            frozen=gc.get_freeze_count())
print(json.dumps(seen))
"""

    def run_child(self, env: dict) -> dict:
        import subprocess

        done = subprocess.run([sys.executable, "-c", self.SCRIPT], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env})
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        return json.loads(done.stdout.strip().splitlines()[-1])

    def test_off_while_importing_frozen_before_the_first_fork_and_on_everywhere_after(self):
        seen = self.run_child({litellm_launch.IMPORT_GC_ENV: "frozen"})
        self.assertFalse(seen["enabled_while_importing"])
        self.assertEqual(seen["worker_enabled"], [True, True])  # the first worker and a later one
        self.assertTrue(seen["master_enabled"])
        self.assertGreater(seen["frozen"], 1000)  # the interpreter's heap, in the permanent generation

    def test_plain_leaves_the_collector_alone(self):
        seen = self.run_child({litellm_launch.IMPORT_GC_ENV: "plain"})
        self.assertTrue(seen["enabled_while_importing"])
        self.assertEqual(seen["worker_enabled"], [True, True])
        self.assertEqual(seen["frozen"], 0)

    def test_only_the_gunicorn_mode_defers_it_before_litellm_is_imported(self):
        import types

        calls = []
        fake_litellm = types.ModuleType("litellm")  # LiteLLM's console entry point, not LiteLLM
        fake_litellm.run_server = lambda: calls.append("run_server") or 0
        with mock.patch.object(litellm_launch, "install_warmup",
                               side_effect=lambda config, defer_collector: calls.append(defer_collector)), \
                mock.patch.dict(sys.modules, {"litellm": fake_litellm}):
            for argv, expected in ((["--config", "/a.yaml", "--run_gunicorn", "--num_workers", "1"], True),
                                   (["--config", "/a.yaml"], False)):
                calls.clear()
                with mock.patch.object(sys, "argv", ["launch", *argv]), self.assertRaises(SystemExit):
                    litellm_launch.main()
                self.assertEqual(calls, [expected, "run_server"], argv)

    def test_without_gunicorn_the_collector_is_left_alone(self):
        with mock.patch.dict(sys.modules, {"gunicorn.arbiter": None}), \
                mock.patch.object(litellm_launch, "defer_gc") as defer:
            self.assertFalse(litellm_launch.install_warmup(defer_collector=True))
        defer.assert_not_called()


class WarmupHookTest(unittest.TestCase):
    def setUp(self):
        from gunicorn.arbiter import Arbiter

        saved = Arbiter.spawn_worker, Arbiter.handle_winch

        def restore():
            Arbiter.spawn_worker, Arbiter.handle_winch = saved

        self.addCleanup(restore)
        self.Arbiter = Arbiter
        self.forks = []
        self.order = []

    def fake_spawn(self, arbiter):
        self.forks.append(arbiter)
        self.order.append("fork")
        return 4242

    def run_spawns(self, env: dict, count: int = 2) -> str:
        result = {"imported": 3, "skipped": ["x (ImportError)"], "seconds": 0.5}
        with mock.patch.object(self.Arbiter, "spawn_worker", self.fake_spawn), \
                mock.patch.dict("os.environ", env), \
                mock.patch.object(litellm_launch, "warm_all", side_effect=lambda: self.order.append("warm") or result) \
                as warm:
            plain_spawn = self.Arbiter.spawn_worker
            self.assertTrue(litellm_launch.install_warmup())
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                self.assertEqual(self.Arbiter.spawn_worker("arbiter"), 4242)
                self.assertIs(self.Arbiter.spawn_worker, plain_spawn)  # restored: later forks do not warm again
                for _ in range(count - 1):
                    self.Arbiter.spawn_worker("arbiter")
            warm.assert_called_once_with()
        self.assertEqual(self.forks, ["arbiter"] * count)
        return err.getvalue().strip()

    def test_warms_once_before_the_first_fork_by_default(self):
        line = self.run_spawns({litellm_launch.WARMUP_ENV: "before-fork"})
        self.assertEqual(self.order, ["warm", "fork", "fork"])  # the first worker is forked warm too
        self.assertEqual(line, "llm-router: warmed 3 modules before the first worker in 0.50 s; skipped 1: "
                               "x (ImportError)")

    def test_with_the_collector_deferred_the_warm_heap_is_frozen_right_before_the_first_fork(self):
        gc = litellm_launch.gc
        with mock.patch.object(litellm_launch, "defer_gc", return_value=True), \
                mock.patch.object(gc, "freeze", side_effect=lambda: self.order.append("freeze")), \
                mock.patch.object(gc, "enable", side_effect=lambda: self.order.append("enable")), \
                mock.patch.object(self.Arbiter, "spawn_worker", self.fake_spawn), \
                mock.patch.dict("os.environ", {litellm_launch.WARMUP_ENV: "before-fork"}), \
                mock.patch.object(litellm_launch, "warm_all", side_effect=lambda: self.order.append("warm") or
                                  {"imported": 0, "skipped": [], "seconds": 0.0}), \
                contextlib.redirect_stderr(io.StringIO()) as err:
            litellm_launch.install_warmup(defer_collector=True)
            self.Arbiter.spawn_worker("arbiter")
            self.Arbiter.spawn_worker("arbiter")
        self.assertEqual(self.order, ["warm", "freeze", "fork", "enable", "fork"])
        self.assertIn("objects frozen for the workers", err.getvalue())

    def test_after_fork_warms_once_right_after_the_first_fork(self):
        line = self.run_spawns({litellm_launch.WARMUP_ENV: "after-fork"})
        self.assertEqual(self.order, ["fork", "warm", "fork"])
        self.assertTrue(line.startswith("llm-router: warmed 3 modules for the next workers in 0.50 s"), line)

    def test_off_never_warms(self):
        with mock.patch.object(self.Arbiter, "spawn_worker", self.fake_spawn), \
                mock.patch.dict("os.environ", {litellm_launch.WARMUP_ENV: "off"}), \
                mock.patch.object(litellm_launch, "warm_all") as warm:
            litellm_launch.install_warmup()
            self.Arbiter.spawn_worker("arbiter")
        warm.assert_not_called()

    def test_the_forked_worker_never_warms_after_the_fork(self):
        def child(arbiter):  # what gunicorn's spawn_worker does in the child: it ends through SystemExit
            raise SystemExit(0)

        with mock.patch.object(self.Arbiter, "spawn_worker", child), \
                mock.patch.dict("os.environ", {litellm_launch.WARMUP_ENV: "after-fork"}), \
                mock.patch.object(litellm_launch, "warm_all") as warm:
            litellm_launch.install_warmup()
            with self.assertRaises(SystemExit):
                self.Arbiter.spawn_worker("arbiter")
        warm.assert_not_called()

    def test_with_a_config_the_master_announces_itself_and_serves_proofs_on_winch(self):
        from llm_router.litellm import prove_worker

        folder = tempfile.mkdtemp(prefix="launch-prove-")
        self.addCleanup(shutil.rmtree, folder, True)
        config = os.path.join(folder, "active.yaml")
        winched = []

        class Arbiter:  # the attributes gunicorn's arbiter has when its main loop handles a signal
            PIPE = (91, 92)
            LISTENERS = [mock.Mock(fileno=lambda: 93)]

        with mock.patch.object(self.Arbiter, "spawn_worker", self.fake_spawn), \
                mock.patch.object(self.Arbiter, "handle_winch", lambda arbiter: winched.append(arbiter)), \
                mock.patch.dict("os.environ", {litellm_launch.WARMUP_ENV: "off"}), \
                mock.patch.object(prove_worker, "serve_requests") as serve:
            litellm_launch.install_warmup(config)
            self.Arbiter.spawn_worker("arbiter")
            hello = json.loads(open(os.path.join(folder, "prove", prove_worker.HELLO)).read())
            self.assertEqual(hello["pid"], os.getpid())
            arbiter = Arbiter()
            self.Arbiter.handle_winch(arbiter)
        serve.assert_called_once_with(os.path.join(folder, "prove"), (91, 92, 93))
        self.assertEqual(winched, [arbiter])  # gunicorn's own handling still runs (it ignores WINCH undaemonized)

    def test_the_config_flag_is_found(self):
        self.assertEqual(litellm_launch.config_arg(["--config", "/a.yaml", "--port", "1"]), "/a.yaml")
        self.assertEqual(litellm_launch.config_arg(["-c", "/b.yaml"]), "/b.yaml")
        self.assertEqual(litellm_launch.config_arg(["--config=/c.yaml"]), "/c.yaml")
        self.assertIsNone(litellm_launch.config_arg(["--port", "1", "--config"]))

    def test_without_gunicorn_nothing_is_installed(self):
        with mock.patch.dict(sys.modules, {"gunicorn.arbiter": None}):
            self.assertFalse(litellm_launch.install_warmup())


if __name__ == "__main__":
    unittest.main()
