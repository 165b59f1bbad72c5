"""`llm-router smoke` with real processes: the whole flow in a stand-in sandbox (mocked, then live), a service that
fails to start (the table shows where; what smoke started is stopped), a failing doctor, the sandbox itself and
the LiteLLM hook that answers mocked requests."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import unittest
import unittest.mock
from pathlib import Path

import psutil

from llm_router import config as config_mod
from llm_router import sandbox, stack
from llm_router.litellm import hooks as litellm_hooks
from llm_router.standin.cliproxy import write_codex_login
from tests.litellm_support import requires_litellm
from tests.support import StackRepo, TempRepo

NO_TIMEOUT_ENV = {"STARTUP_TIMEOUT": None, "PROFILE": None}


def processes_under(folder: str) -> list[int]:
    """Live processes whose command line mentions `folder` (a sandbox root): there must be none after a run."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and any(folder in part for part in proc.info["cmdline"] or []):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def steps(envelope: dict) -> dict[str, dict]:
    return {s["name"]: s for s in envelope["data"]["steps"]}


@requires_litellm
class SmokeStandinTest(TempRepo):
    """The example config (Codex/Copilot through CLIProxyAPIPlus plus a paid custom upstream whose key is not
    set) runs offline in a sandbox."""

    def test_mocked_then_live(self):
        self.write_config()
        (self.root / "config" / "cliproxyapi.yaml").write_text("debug: false\n")
        code, out, err = self.cli("smoke", "--standin", "--json", env={**NO_TIMEOUT_ENV, "CUSTOM_API_KEY": None})
        envelope = json.loads(out)
        self.assertEqual(code, 0, json.dumps(envelope["data"]["steps"], indent=1) + err)
        by_name = steps(envelope)
        self.assertEqual(list(by_name), ["sandbox", "doctor", "profile set", "service start", "health",
                                         "chat completion", "streamed completion", "streamed responses",
                                         "streamed messages", "service stop"])
        self.assertTrue(all(s["status"] == "ok" for s in by_name.values()))
        self.assertIn("nothing sent upstream", by_name["chat completion"]["detail"])
        self.assertIn("response.created ... response.completed", by_name["streamed responses"]["detail"])
        self.assertIn("'llm-router smoke ok'", by_name["streamed responses"]["detail"])
        self.assertIn("coder/cliproxy/gpt-5-codex: ", by_name["streamed messages"]["detail"])
        self.assertIn("message_start ... message_stop", by_name["streamed messages"]["detail"])
        self.assertIn("LiteLLM was not running", by_name["profile set"]["detail"])
        self.assertIn("coder/cliproxy/gpt-5-codex", by_name["chat completion"]["detail"])
        self.assertEqual(envelope["data"]["upstream_requests"], 0)  # mocked: the stand-ins answered nothing
        self.assertEqual(envelope["data"]["started"], ["cliproxyapi_plus", "litellm"])
        root = envelope["data"]["sandbox"]
        self.assertFalse(Path(root).exists())
        self.assertEqual(processes_under(root), [])
        self.assertFalse((self.root / ".router").exists())  # the user's runtime is untouched

        code, out, err = self.cli("smoke", "--standin", "--live", "--profile", "cost", env=NO_TIMEOUT_ENV)
        self.assertEqual(code, 0, out + err)
        self.assertIn("live, max_tokens 1", out)
        self.assertIn("'standin cliproxy model gpt-5-codex'", out)  # answered by the stand-in, not mocked
        self.assertIn("the stand-ins answered 1 inference request(s)", out)
        self.assertIn("smoke passed: profile cost", out)
        self.assertIn("smoke: service start: ok", err)  # progress on stderr as it happens (not with --json)


class SmokeFailureTest(StackRepo):
    def setUp(self):
        super().setUp()
        write_codex_login(self.cfg.layout.auths_dir, "dev@example.com", "plus").chmod(0o600)

    @requires_litellm
    def test_service_that_fails_to_start_and_cleanup(self):
        # LiteLLM cannot be ready within 1 s: CLIProxyAPIPlus, which smoke started, must be stopped again
        self.write_stack_config(litellm_port=self.ports["litellm_port"])
        text = self.config_path.read_text().replace("startup_timeout: 120", "startup_timeout: 1")
        self.config_path.write_text(text)
        self.cfg = self.load()
        code, out, err = self.cli("smoke", "--json", env=NO_TIMEOUT_ENV)
        self.assertEqual(code, 1, out + err)
        envelope = json.loads(out)
        by_name = steps(envelope)
        self.assertEqual(by_name["doctor"]["status"], "ok", by_name["doctor"])
        self.assertEqual(by_name["service start"]["status"], "fail")
        self.assertIn("litellm: litellm was not ready within 1 s", by_name["service start"]["detail"])
        self.assertIn("cliproxyapi_plus started", by_name["service start"]["detail"])
        for name in ("health", "chat completion", "streamed completion", "streamed responses", "streamed messages"):
            self.assertEqual(by_name[name]["status"], "skip")
        self.assertEqual(by_name["service stop"]["status"], "ok")
        self.assertIn("cliproxyapi_plus stopped", by_name["service stop"]["detail"])
        self.assertEqual(envelope["data"]["started"], ["cliproxyapi_plus"])
        for name in stack.ORDER:
            self.assertFalse(stack.is_running(self.cfg, name))
        code, out, _ = self.cli("smoke", env=NO_TIMEOUT_ENV)
        self.assertRegex(out, r"service start\s+FAIL")
        self.assertIn("smoke FAILED at service start", out)

    def test_failing_doctor_stops_the_flow(self):
        for path in self.cfg.layout.auths_dir.iterdir():
            path.unlink()
        code, out, err = self.cli("smoke", "--json", env=NO_TIMEOUT_ENV)
        self.assertEqual(code, 1)
        by_name = steps(json.loads(out))
        self.assertEqual(by_name["doctor"]["status"], "fail")
        self.assertIn("accounts", by_name["doctor"]["detail"])
        self.assertIn("auth", by_name["doctor"]["hint"])
        self.assertEqual(by_name["service start"]["status"], "skip")
        self.assertEqual((by_name["service stop"]["status"], by_name["service stop"]["detail"]),
                         ("ok", "nothing was started"))
        self.assertFalse(self.cfg.layout.pid_file("cliproxyapi_plus").exists())


class SandboxTest(TempRepo):
    def test_from_config_rewrites_providers_and_copies_user_profiles(self):
        self.write_config()
        profiles_dir = self.root / "config" / "profiles"
        profiles_dir.mkdir()
        (profiles_dir / "mine.yaml.j2").write_text((Path(__file__).resolve().parents[1] / "templates" / "litellm" /
                                                    "profiles" / "cost.yaml.j2").read_text())
        cfg = config_mod.load(self.config_path)
        box = sandbox.from_config(cfg, "mine")
        try:
            scfg = box.cfg
            self.assertTrue(str(box.root).startswith(tempfile.gettempdir()))
            self.assertEqual(scfg.default_profile, "mine")
            self.assertTrue((box.root / "config" / "profiles" / "mine.yaml.j2").is_file())
            custom = scfg.providers["custom"]
            self.assertEqual(custom.api_base, box.upstream.base_url + "/v1")
            self.assertEqual(custom.key_env, sandbox.UPSTREAM_KEY_ENV)
            self.assertEqual(scfg.secret_source(sandbox.UPSTREAM_KEY_ENV), "generated")
            self.assertNotEqual(scfg.services["litellm"].port, scfg.services["cliproxyapi_plus"].port)
            modes = {p.name: p.stat().st_mode & 0o777 for p in scfg.layout.auths_dir.iterdir()}
            self.assertEqual(set(modes.values()), {0o600})
            self.assertEqual(len(modes), 2)
            self.assertTrue(os.access(scfg.layout.cliproxy_binary, os.X_OK))
        finally:
            box.close()
        self.assertFalse(box.root.exists())
        self.assertIsNotNone(box.upstream.returncode)

    def test_demo_sandbox_prefers_a_free_port(self):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            taken = sock.getsockname()[1]
            box = sandbox.demo(litellm_port=taken)
        try:
            self.assertNotEqual(box.cfg.services["litellm"].port, taken)
            self.assertEqual([g.name for g in box.cfg.models], ["coder"])
            self.assertIsNone(box.upstream)
        finally:
            box.close()
        root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root, True)
        free = box.cfg.services["litellm"].port
        box = sandbox.demo(root=root / "box", litellm_port=free)
        self.assertEqual(box.cfg.services["litellm"].port, free)
        box.close()


class MockHookTest(unittest.TestCase):
    def test_marker_becomes_mock_response(self):
        self.assertEqual(litellm_hooks.mock_text({"metadata": {litellm_hooks.MOCK_KEY: "hi"}}), "hi")
        self.assertEqual(litellm_hooks.mock_text({"litellm_metadata": {litellm_hooks.MOCK_KEY: "x" * 999}}),
                         "x" * litellm_hooks.MAX_MOCK_CHARS)
        self.assertIsNone(litellm_hooks.mock_text({"metadata": "nope"}))
        self.assertIsNone(litellm_hooks.mock_text({}))

    @requires_litellm
    def test_hook_instance_is_a_litellm_callback(self):
        from litellm.integrations.custom_logger import CustomLogger

        hook = litellm_hooks.smoke_mock
        self.assertIsInstance(hook, CustomLogger)
        self.assertIs(hook, litellm_hooks.smoke_mock)
        data = {"model": "coder", "metadata": {litellm_hooks.MOCK_KEY: "mocked"}}
        out = asyncio.run(hook.async_pre_call_hook(None, None, data, "completion"))
        self.assertEqual(out["mock_response"], "mocked")
        plain = asyncio.run(hook.async_pre_call_hook(None, None, {"model": "coder"}, "completion"))
        self.assertNotIn("mock_response", plain)
        with self.assertRaises(AttributeError):
            litellm_hooks.no_such_hook  # noqa: B018

    @requires_litellm
    def test_responses_and_messages_go_to_the_mock_upstream_after_routing(self):
        hook = litellm_hooks.smoke_mock
        for call_type in ("aresponses", "anthropic_messages"):
            data = {"model": "coder", "metadata": {litellm_hooks.MOCK_KEY: "mocked"}}
            self.assertNotIn("mock_response", asyncio.run(hook.async_pre_call_hook(None, None, data, call_type)))
            kwargs = {"api_base": "http://127.0.0.1:8317/v1", "metadata": {litellm_hooks.MOCK_KEY: "mocked"}}
            out = asyncio.run(hook.async_pre_call_deployment_hook(kwargs, call_type))
            self.assertEqual(out["api_base"], litellm_hooks.mock_upstream().api_base("mocked"))
        plain = {"api_base": "http://127.0.0.1:8317/v1", "metadata": {}}
        self.assertEqual(asyncio.run(hook.async_pre_call_deployment_hook(dict(plain), "aresponses")), plain)


class MockUpstreamTest(unittest.TestCase):
    """The in-process mock upstream the hook sends mocked Responses and Messages calls to."""

    def post(self, path: str, body: dict, text: str = "mocked ok") -> tuple[int, str]:
        import urllib.error
        import urllib.request

        base = litellm_hooks.mock_upstream().api_base(text)
        request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def test_streams_carry_the_real_event_sequences(self):
        import itertools

        def kinds_of(text: str) -> list[str]:  # one entry per run of deltas: the text streams word by word
            return [kind for kind, _ in itertools.groupby(line[7:] for line in text.splitlines()
                                                            if line.startswith("event: "))]

        status, text = self.post("/responses", {"model": "m", "stream": True})
        self.assertEqual(status, 200)
        self.assertEqual(kinds_of(text), ["response.created", "response.in_progress", "response.output_item.added",
                                          "response.content_part.added", "response.output_text.delta",
                                          "response.output_text.done", "response.content_part.done",
                                          "response.output_item.done", "response.completed"])
        datas = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        self.assertEqual([d["sequence_number"] for d in datas], list(range(len(datas))))
        self.assertEqual("".join(d["delta"] for d in datas if d["type"] == "response.output_text.delta"), "mocked ok")
        status, text = self.post("/messages", {"model": "m", "stream": True}, text="naïve ✓")
        self.assertEqual(kinds_of(text), ["message_start", "content_block_start", "ping", "content_block_delta",
                                          "content_block_stop", "message_delta", "message_stop"])
        deltas = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        self.assertEqual("".join(d["delta"]["text"] for d in deltas if d["type"] == "content_block_delta"),
                         "naïve ✓")
        status, text = self.post("/chat/completions", {"model": "m", "stream": True})
        self.assertTrue(text.rstrip().endswith("data: [DONE]"), text)

    def test_plain_answers_and_unknown_routes(self):
        status, text = self.post("/messages", {"model": "m"})
        self.assertEqual((status, json.loads(text)["content"][0]["text"]), (200, "mocked ok"))
        status, text = self.post("/responses", {"model": "m"})
        self.assertEqual(json.loads(text)["output"][0]["content"][0]["text"], "mocked ok")
        status, text = self.post("/embeddings", {"model": "m"})
        self.assertEqual(status, 404)


class AuthHookTest(unittest.TestCase):
    """`custom_auth`: the master key in constant time, 401 with the hint otherwise."""

    def test_key_problem(self):
        self.assertIsNone(litellm_hooks.key_problem("sk-right", "sk-right"))
        self.assertIsNone(litellm_hooks.key_problem("Bearer sk-right", "sk-right"))
        self.assertEqual(litellm_hooks.key_problem("", "sk-right"), litellm_hooks.MISSING_KEY)
        self.assertEqual(litellm_hooks.key_problem(None, "sk-right"), litellm_hooks.MISSING_KEY)
        self.assertEqual(litellm_hooks.key_problem("sk-wrong", "sk-right"), litellm_hooks.WRONG_KEY)
        self.assertEqual(litellm_hooks.key_problem("sk-right", None), litellm_hooks.NO_MASTER_KEY)
        self.assertEqual(litellm_hooks.key_problem("\udcff", "sk-right"), litellm_hooks.WRONG_KEY)
        for text in (litellm_hooks.MISSING_KEY, litellm_hooks.WRONG_KEY):
            self.assertIn("LITELLM_MASTER_KEY", text)
            self.assertIn(".router/secrets/LITELLM_MASTER_KEY", text)

    def test_compares_in_constant_time(self):
        import inspect

        self.assertIn("hmac.compare_digest", inspect.getsource(litellm_hooks.key_problem))

    @requires_litellm
    def test_custom_auth(self):
        from litellm.proxy._types import ProxyException

        class Request:
            def __init__(self, path: str, headers: dict | None = None):
                self.url = type("URL", (), {"path": path})()
                self.headers = headers or {}

        env = {"LITELLM_MASTER_KEY": "sk-master-0123"}
        with unittest.mock.patch.dict(os.environ, env):
            ok = asyncio.run(litellm_hooks.custom_auth(Request("/v1/chat/completions"), "sk-master-0123"))
            self.assertEqual(ok.user_role.value, "proxy_admin")
            ok = asyncio.run(litellm_hooks.custom_auth(Request("/v1/models", {"x-api-key": "sk-master-0123"}), ""))
            self.assertEqual(ok.user_role.value, "proxy_admin")
            for path in ("/v1/chat/completions", "/v1/models", "/v1/messages/count_tokens", "/key/generate"):
                with self.assertRaises(ProxyException) as caught:
                    asyncio.run(litellm_hooks.custom_auth(Request(path), "sk-wrong"))
                self.assertEqual((caught.exception.code, caught.exception.type), ("401", "authentication_error"))
            # /v1/messages: refused by the hook (Anthropic error shape), but only while the hook is a callback
            with self.assertRaises(ProxyException):
                asyncio.run(litellm_hooks.custom_auth(Request("/v1/messages"), ""))
            import litellm

            with unittest.mock.patch.object(litellm, "callbacks", [litellm_hooks.smoke_mock]):
                refused = asyncio.run(litellm_hooks.custom_auth(Request("/v1/messages"), ""))
            self.assertEqual(refused.user_id, litellm_hooks.REFUSED_USER)
            self.assertEqual(refused.user_role.value, "internal_user_viewer")
            with self.assertRaises(ProxyException) as caught:
                asyncio.run(litellm_hooks.smoke_mock.async_pre_call_hook(refused, None, {"model": "coder"},
                                                                         "anthropic_messages"))
            self.assertEqual(caught.exception.message, litellm_hooks.MISSING_KEY)


class AppliedTextTest(unittest.TestCase):
    def test_says_what_happened(self):
        from llm_router.checks.smoke import _applied_text
        from llm_router.switch import SwitchResult

        def result(**applied):
            return SwitchResult(name="cost", sha256="0" * 64, time="t", template="t", config="c", previous=None,
                                applied=applied, seconds=0.1)
        self.assertEqual(_applied_text(result(how="not running")), "; LiteLLM was not running (it starts on it)")
        self.assertEqual(_applied_text(result(how="restart")), "; LiteLLM restarted on it")
        self.assertEqual(_applied_text(result(how="worker swap", worker_ready_s=0.3)),
                         "; LiteLLM serves it now (worker swap)")


if __name__ == "__main__":
    unittest.main()
