"""Every client protocol through the real LiteLLM proxy on a rendered profile, against the stand-ins (one sandbox,
one LiteLLM start for the whole module):

- chat completions, Responses and Anthropic Messages reach CLIProxyAPIPlus in the client's own protocol (the
  stand-in's request log says which path arrived), and an `openai_compatible` upstream gets chat completions only;
- a 429 on the first deployment of a group is answered by the next one, for every protocol, streamed and not;
- requests no deployment can serve (embeddings, count_tokens, a malformed body) never cool a deployment and reach
  the client as a clear 4xx;
- a missing or wrong client key is a 401 with the hint, OpenAI-shaped (Anthropic-shaped on /v1/messages), on Bearer
  and x-api-key, and nothing reaches an upstream; readiness and liveliness need no key;
- mocked Responses and Messages calls (the smoke hook) are answered without any upstream request."""
from __future__ import annotations

import json
import shutil
import tempfile
import unittest
from pathlib import Path

from llm_router.config import MASTER_KEY_ENV
from llm_router.litellm.hooks import MOCK_KEY
from llm_router.standin.process import requests_log, set_fault
from tests.litellm_support import class_sandbox, requires_litellm

CLIPROXY, PAID = "cliproxy", "paid"
PROTOCOLS = ("chat", "responses", "messages")
# group -> deployments (provider, upstream model). The fo-* groups each get a 429 on their first deployment; every
# other group stays healthy, so no test depends on another's cooldowns.
GROUPS = {
    "native": [(CLIPROXY, "claude-sonnet-4.5"), (CLIPROXY, "gpt-4.1")],
    "paid": [(PAID, "paid-chat-model")],
    "emb": [(CLIPROXY, "emb-first"), (CLIPROXY, "emb-second")],
    **{f"fo-{p}-{'stream' if s else 'plain'}": [(CLIPROXY, f"fo-{p}-{int(s)}-first"),
                                                (CLIPROXY, f"fo-{p}-{int(s)}-second")]
       for p in PROTOCOLS for s in (False, True)},
}
PROMPT = "Say hello."
TIMEOUT = 120.0


def dep_id(group: str, index: int) -> str:
    provider, model = GROUPS[group][index]
    return f"{group}/{provider}/{model}"


def sse(text: str) -> list[tuple[str, dict]]:
    """(event, data) frames of an SSE body (the event is the data's `type` when a frame has no event line, '' for
    chat chunks; data that is not JSON, such as [DONE], is skipped)."""
    frames = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        kind, data = "", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data and data[0].startswith("{"):
            payload = json.loads("\n".join(data))
            frames.append((kind or str(payload.get("type") or ""), payload))  # LiteLLM sends Responses data-only
    return frames


class _Stack(unittest.TestCase):
    """One sandbox (CLIProxyAPIPlus stand-in, upstream stand-in, real LiteLLM in uvicorn mode) per test class."""

    PROFILE = "balanced"

    @classmethod
    def setUpClass(cls):
        import httpx

        cls.box = box = class_sandbox(cls, "llm-router-protocols-", {CLIPROXY: {"type": "cliproxyapi_plus"},
                                                                   PAID: {"type": "openai_compatible", "tier": "paid"}},
                                      GROUPS, cls.PROFILE)
        cls.cfg = box.cfg
        cls.base = box.litellm_url
        cls.key = box.cfg.secret(MASTER_KEY_ENV)
        cls.http = httpx.Client(trust_env=False, timeout=TIMEOUT)
        cls.addClassCleanup(cls.http.close)
        for p in PROTOCOLS:
            for s in (0, 1):
                set_fault(box.cliproxy_url, f"fo-{p}-{s}-first", status=429, count=-1)

    # ------------------------------------------------------------------ helpers

    def upstream_urls(self) -> dict[str, str]:
        return {CLIPROXY: self.box.cliproxy_url, PAID: self.box.upstream.base_url}

    def mark(self) -> dict[str, int]:
        """The last request-log sequence number of each stand-in (what a test's requests come after)."""
        return {name: max([e["seq"] for e in requests_log(url)] or [0]) for name, url in self.upstream_urls().items()}

    def since(self, mark: dict[str, int], name: str) -> list[dict]:
        return requests_log(self.upstream_urls()[name], since=mark[name])

    def post(self, path: str, body: dict, headers: dict | None = None, key: str | None = "default"):
        headers = dict(headers or {})
        if key == "default":
            headers.setdefault("Authorization", f"Bearer {self.key}")
        return self.http.post(self.base + path, json=body, headers=headers)

    def call(self, protocol: str, group: str, stream: bool, **extra):
        """One request in `protocol`; returns (response, text of the answer)."""
        if protocol == "chat":
            body = {"model": group, "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
            response = self.post("/v1/chat/completions", {**body, **extra})
            if response.status_code != 200:
                return response, ""
            if not stream:
                return response, response.json()["choices"][0]["message"]["content"] or ""
            return response, "".join((d["choices"][0]["delta"].get("content") or "")
                                     for _, d in sse(response.text) if d.get("choices"))
        if protocol == "responses":
            response = self.post("/v1/responses", {"model": group, "input": PROMPT, "stream": stream, **extra})
            if response.status_code != 200:
                return response, ""
            if not stream:
                return response, "".join(c.get("text", "") for item in response.json()["output"]
                                         for c in item.get("content") or [])
            frames = sse(response.text)
            self.assertEqual(frames[-1][0], "response.completed", [k for k, _ in frames])
            return response, "".join(d.get("delta", "") for k, d in frames if k == "response.output_text.delta")
        body = {"model": group, "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]}
        response = self.post("/v1/messages", {**body, **extra}, headers={"anthropic-version": "2023-06-01"})
        if response.status_code != 200:
            return response, ""
        if not stream:
            return response, "".join(b.get("text", "") for b in response.json()["content"])
        frames = sse(response.text)
        self.assertEqual(frames[-1][0], "message_stop", [k for k, _ in frames])
        return response, "".join(d["delta"].get("text", "") for k, d in frames if k == "content_block_delta")

    def litellm_log(self) -> str:
        return self.cfg.layout.log_file("litellm").read_text(errors="replace")


class _EveryProfile:
    """What must hold on every shipped profile."""

    def test_a_429_fails_over_for_every_protocol(self):
        for protocol in PROTOCOLS:
            for stream in (False, True):
                group = f"fo-{protocol}-{'stream' if stream else 'plain'}"
                first, second = (m for _, m in GROUPS[group])
                with self.subTest(group):
                    mark = self.mark()
                    response, text = self.call(protocol, group, stream)
                    self.assertEqual(response.status_code, 200, response.text[:500])
                    self.assertEqual(response.headers["x-litellm-model-id"], dep_id(group, 1))
                    self.assertIn(f"model {second}", text)
                    seen = [(e["model"], e["protocol"], e["status"]) for e in self.since(mark, CLIPROXY)]
                    self.assertEqual(seen, [(first, protocol, 429), (second, protocol, 200)])

    def test_requests_no_deployment_can_serve_never_cool_a_group(self):
        import openai

        client = openai.OpenAI(base_url=self.base + "/v1", api_key=self.key, max_retries=0, timeout=TIMEOUT,
                               http_client=openai.DefaultHttpxClient(trust_env=False))
        self.addCleanup(client.close)
        for _ in range(10):
            with self.assertRaises(openai.NotFoundError) as caught:
                client.embeddings.create(model="emb", input="index me")
            self.assertEqual(caught.exception.status_code, 404)
            self.assertIn("404", str(caught.exception))
        response = self.post("/v1/messages/count_tokens", {"model": "emb", "messages": [{"role": "user",
                                                                                         "content": PROMPT}]})
        self.assertLess(response.status_code, 500, response.text[:300])
        malformed = self.post("/v1/chat/completions", {"model": "emb", "messages": "not a list"})
        self.assertEqual(malformed.status_code, 400, malformed.text[:300])
        for protocol in PROTOCOLS:
            with self.subTest(protocol):
                response, text = self.call(protocol, "emb", False)
                self.assertEqual(response.status_code, 200, response.text[:500])
                self.assertEqual(response.headers["x-litellm-model-id"], dep_id("emb", 0))
                self.assertIn("model emb-first", text)


@requires_litellm
class ProtocolsThroughLiteLLMTest(_EveryProfile, _Stack):
    """The balanced profile (the default), with every protocol, authentication and mock check."""

    # ------------------------------------------------------------------ protocols

    def test_cliproxy_gets_each_protocol_untranslated(self):
        for protocol in PROTOCOLS:
            for stream in (False, True):
                with self.subTest(protocol=protocol, stream=stream):
                    mark = self.mark()
                    response, text = self.call(protocol, "native", stream)
                    self.assertEqual(response.status_code, 200, response.text[:500])
                    self.assertEqual(response.headers["x-litellm-model-id"], dep_id("native", 0))
                    self.assertIn("standin cliproxy model claude-sonnet-4.5", text)
                    seen = [(e["path"], e["protocol"], e["stream"]) for e in self.since(mark, CLIPROXY)]
                    self.assertEqual(seen, [(f"/v1/{'chat/completions' if protocol == 'chat' else protocol}",
                                             protocol, stream)])

    def test_openai_compatible_upstream_gets_chat_completions(self):
        for protocol in ("responses", "messages"):
            for stream in (False, True):
                with self.subTest(protocol=protocol, stream=stream):
                    mark = self.mark()
                    response, text = self.call(protocol, "paid", stream)
                    self.assertEqual(response.status_code, 200, response.text[:500])
                    self.assertIn("model paid-chat-model", text)
                    seen = [(e["path"], e["stream"]) for e in self.since(mark, PAID)]
                    self.assertEqual(seen, [("/v1/chat/completions", stream)])
                    self.assertEqual(self.since(mark, CLIPROXY), [])

    # ------------------------------------------------------------------ client authentication

    def test_missing_or_wrong_key_is_a_401_with_the_hint(self):
        mark = self.mark()
        routes = {"chat": ("POST", "/v1/chat/completions", {"model": "native", "messages": [{"role": "user",
                                                                                               "content": "hi"}]}),
                  "responses": ("POST", "/v1/responses", {"model": "native", "input": "hi"}),
                  "messages": ("POST", "/v1/messages", {"model": "native", "max_tokens": 8, "stream": True,
                                                        "messages": [{"role": "user", "content": "hi"}]}),
                  "models": ("GET", "/v1/models", None)}
        credentials = {"no key": {}, "wrong Bearer": {"Authorization": "Bearer sk-wrong"},
                       "wrong x-api-key": {"x-api-key": "sk-wrong"}, "bare Bearer": {"Authorization": "Bearer"}}
        for route, (method, path, body) in routes.items():
            for label, headers in credentials.items():
                with self.subTest(route=route, credentials=label):
                    response = self.http.request(method, self.base + path, json=body,
                                                 headers={**headers, "anthropic-version": "2023-06-01"})
                    self.assertEqual(response.status_code, 401, response.text[:300])
                    data = response.json()
                    if route == "messages":
                        self.assertEqual(data["type"], "error")
                    error = data["error"]
                    self.assertEqual(error["type"], "authentication_error")
                    self.assertIn("LITELLM_MASTER_KEY", error["message"])
                    self.assertIn(".router/secrets/LITELLM_MASTER_KEY", error["message"])
        for headers in ({"Authorization": f"Bearer {self.key}"}, {"x-api-key": self.key}):
            response = self.http.get(self.base + "/v1/models", headers=headers)
            self.assertEqual(response.status_code, 200, response.text[:300])
            self.assertIn("native", [m["id"] for m in response.json()["data"]])
        response, text = self.call("messages", "native", True)  # Claude Code's x-api-key on /v1/messages
        self.assertEqual(response.status_code, 200)
        for path in ("/health/readiness", "/health/liveliness"):
            self.assertEqual(self.http.get(self.base + path).status_code, 200, path)
        seen = self.since(mark, CLIPROXY) + self.since(mark, PAID)
        self.assertEqual([e["path"] for e in seen], ["/v1/messages"])  # only the authorised call went upstream
        log = self.litellm_log()
        for bad in ("Traceback", "No connected db", "prisma", "sk-wrong"):
            self.assertNotIn(bad, log)

    # ------------------------------------------------------------------ the smoke mock on every route

    def test_mocked_responses_and_messages_send_nothing_upstream(self):
        mark = self.mark()
        for group in ("native", "paid"):
            for protocol in PROTOCOLS:
                for stream in (False, True):
                    with self.subTest(group=group, protocol=protocol, stream=stream):
                        response, text = self.call(protocol, group, stream, metadata={MOCK_KEY: "mocked ok"})
                        self.assertEqual(response.status_code, 200, response.text[:500])
                        self.assertEqual(text, "mocked ok")
                        self.assertEqual(response.headers["x-litellm-model-id"], dep_id(group, 0))
        self.assertEqual(self.since(mark, CLIPROXY) + self.since(mark, PAID), [])

    # ------------------------------------------------------------------ the SDKs' strict stream parsers

    def test_sdk_stream_helpers(self):
        import openai

        client = openai.OpenAI(base_url=self.base + "/v1", api_key=self.key, max_retries=0, timeout=TIMEOUT,
                               http_client=openai.DefaultHttpxClient(trust_env=False))
        self.addCleanup(client.close)
        for group in ("native", "paid"):
            with self.subTest(group=group, sdk="openai responses.stream"):
                with client.responses.stream(model=group, input=PROMPT) as events:
                    kinds = [event.type for event in events]
                    final = events.get_final_response()
                self.assertIn("standin", final.output_text)
                self.assertEqual((kinds[0], kinds[-1]), ("response.created", "response.completed"))
        try:
            import anthropic
        except ImportError:
            self.skipTest("the anthropic SDK is not installed (test group)")
        for auth in ("api_key", "auth_token"):  # x-api-key (ANTHROPIC_API_KEY) and Bearer (ANTHROPIC_AUTH_TOKEN)
            anth = anthropic.Anthropic(base_url=self.base, max_retries=0, timeout=TIMEOUT, **{auth: self.key},
                                       http_client=anthropic.DefaultHttpxClient(trust_env=False))
            self.addCleanup(anth.close)
            for group in ("native", "paid"):
                with self.subTest(group=group, sdk="anthropic messages.stream", auth=auth):
                    with anth.messages.stream(model=group, max_tokens=64,
                                              messages=[{"role": "user", "content": PROMPT}]) as stream:
                        self.assertIn("standin", stream.get_final_text())
        bad = anthropic.Anthropic(base_url=self.base, api_key="sk-wrong", max_retries=0, timeout=TIMEOUT,
                                  http_client=anthropic.DefaultHttpxClient(trust_env=False))
        self.addCleanup(bad.close)
        with self.assertRaises(anthropic.AuthenticationError) as caught:
            bad.messages.create(model="native", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        self.assertIn("LITELLM_MASTER_KEY", str(caught.exception))


@requires_litellm
class CostProfileTest(_EveryProfile, _Stack):
    PROFILE = "cost"


@requires_litellm
class ReliabilityProfileTest(_EveryProfile, _Stack):
    PROFILE = "reliability"


class RenderedProtocolSettingsTest(unittest.TestCase):
    """Every shipped profile tells LiteLLM what each upstream serves and which errors never cool a deployment."""

    def test_every_profile(self):
        import yaml

        from llm_router import config as config_mod
        from llm_router import profiles

        root = Path(tempfile.mkdtemp(prefix="llm-router-render-"))
        self.addCleanup(shutil.rmtree, root, True)
        (root / "config").mkdir()
        (root / "config" / "routertool.yaml").write_text(
            "config_version: 2\nproviders:\n  cliproxy: {type: cliproxyapi_plus}\n"
            "  paid: {type: openai_compatible, api_base: 'http://127.0.0.1:9/v1', api_key_env: PAID_KEY, tier: paid}\n"
            "models:\n  - name: coder\n    deployments: [{provider: cliproxy, model: gpt-5.1-codex-max}, "
            "{provider: paid, model: p1}]\n")
        cfg = config_mod.load(root / "config" / "routertool.yaml")
        for name in ("balanced", "cost", "reliability"):
            with self.subTest(name):
                data = yaml.safe_load(profiles.render(cfg, name))
                by_id = {e["model_info"]["id"]: e for e in data["model_list"]}
                cliproxy, paid = by_id["coder/cliproxy/gpt-5.1-codex-max"], by_id["coder/paid/p1"]
                self.assertEqual(cliproxy["model_info"]["supported_endpoints"],
                                 ["/v1/chat/completions", "/v1/responses", "/v1/messages", "/v1/completions"])
                self.assertNotIn("use_chat_completions_api", cliproxy["litellm_params"])
                self.assertNotIn("supported_endpoints", paid["model_info"])
                self.assertIs(paid["litellm_params"]["use_chat_completions_api"], True)
                for entry in (cliproxy, paid):
                    self.assertEqual(entry["model_info"]["allowed_fails_policy"],
                                     {"NotFoundErrorAllowedFails": 1000000, "BadRequestErrorAllowedFails": 1000000})
                self.assertIs(data["litellm_settings"]["use_chat_completions_url_for_anthropic_messages"], True)
                self.assertEqual(data["general_settings"]["custom_auth"], "llm_router.litellm.hooks.custom_auth")


if __name__ == "__main__":
    unittest.main()
