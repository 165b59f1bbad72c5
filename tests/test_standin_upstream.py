"""The OpenAI-compatible upstream stand-in, run as a real process."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import unittest
from typing import Any

from llm_router.standin.process import (
    Reply,
    StandinError,
    call,
    free_port,
    reset,
    set_fault,
    start_upstream,
    stats,
)

KEY = "sk-test-upstream"


def sse_payloads(body: bytes) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    events = body.decode().split("\n\n")
    return [line[len("data: ") :] for event in events for line in event.splitlines() if line.startswith("data: ")]


class UpstreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.upstream = start_upstream(api_key=KEY, models=["m-one", "m-two"], name="paid")
        cls.addClassCleanup(cls.upstream.stop)
        cls.url = cls.upstream.base_url

    def setUp(self) -> None:
        reset(self.url)

    def chat(self, body: dict[str, Any], key: str = KEY) -> Reply:
        return call("POST", f"{self.url}/v1/chat/completions", body, {"Authorization": f"Bearer {key}"})

    def test_picks_a_free_port_and_prints_it(self) -> None:
        self.assertGreater(self.upstream.port, 0)
        self.assertIn(f"standin upstream listening on 127.0.0.1:{self.upstream.port}", self.upstream.output())

    def test_requires_the_bearer_key(self) -> None:
        missing = call("GET", f"{self.url}/v1/models")
        wrong = call("GET", f"{self.url}/v1/models", headers={"Authorization": "Bearer nope"})
        for reply in (missing, wrong):
            self.assertEqual(reply.status, 401)
            self.assertEqual(reply.json()["error"]["code"], "invalid_api_key")
        self.assertEqual(self.chat({"model": "m-one"}, key="nope").status, 401)
        self.assertEqual(stats(self.url)["total"], 0)

    def test_lists_its_models(self) -> None:
        reply = call("GET", f"{self.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        self.assertEqual(reply.status, 200)
        self.assertEqual([model["id"] for model in reply.json()["data"]], ["m-one", "m-two"])

    def test_chat_names_server_and_model(self) -> None:
        reply = self.chat({"model": "m-two", "messages": [{"role": "user", "content": "hi"}], "mock_response": "x"})
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.headers["x-standin-server"], "paid")
        answer = reply.json()
        self.assertEqual(answer["choices"][0]["message"]["content"], "standin paid model m-two")
        self.assertEqual(answer["choices"][0]["finish_reason"], "stop")

    def test_max_tokens_cuts_the_answer(self) -> None:
        answer = self.chat({"model": "m-one", "max_tokens": 2}).json()
        self.assertEqual(answer["choices"][0]["message"]["content"], "standin paid")
        self.assertEqual(answer["choices"][0]["finish_reason"], "length")
        self.assertEqual(answer["usage"]["completion_tokens"], 2)

    def test_unknown_model_is_404(self) -> None:
        reply = self.chat({"model": "other"})
        self.assertEqual(reply.status, 404)
        self.assertEqual(reply.json()["error"]["code"], "model_not_found")

    def test_streams_sse_chunks_then_done(self) -> None:
        reply = self.chat({"model": "m-one", "stream": True, "stream_options": {"include_usage": True}})
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.headers["Content-Type"], "text/event-stream")
        self.assertEqual(reply.headers["Transfer-Encoding"], "chunked")
        payloads = sse_payloads(reply.body)
        self.assertEqual(payloads[-1], "[DONE]")
        chunks = [json.loads(payload) for payload in payloads[:-1]]
        text = "".join(choice["delta"].get("content", "") for chunk in chunks for choice in chunk["choices"])
        self.assertEqual(text, "standin paid model m-one")
        self.assertEqual(chunks[-1]["usage"]["completion_tokens"], 4)

    def test_responses_api(self) -> None:
        body = {"model": "m-one", "input": "hello"}
        reply = call("POST", f"{self.url}/v1/responses", body, {"Authorization": f"Bearer {KEY}"})
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.json()["output"][0]["content"][0]["text"], "standin paid model m-one")

    def test_counts_requests_per_model_until_reset(self) -> None:
        for model in ("m-one", "m-one", "m-two"):
            self.chat({"model": model})
        self.assertEqual(stats(self.url), {"requests": {"m-one": 2, "m-two": 1}, "total": 3})
        reset(self.url)
        self.assertEqual(stats(self.url), {"requests": {}, "total": 0})

    def test_429_fault_with_and_without_retry_after(self) -> None:
        set_fault(self.url, "m-one", status=429, retry_after=4, count=1)
        limited = self.chat({"model": "m-one"})
        self.assertEqual(limited.status, 429)
        self.assertEqual(limited.headers["Retry-After"], "4")
        self.assertEqual(limited.json()["error"]["code"], "rate_limit_exceeded")
        self.assertEqual(self.chat({"model": "m-one"}).status, 200)
        set_fault(self.url, "*", status=429, count=1)
        self.assertIsNone(self.chat({"model": "m-two"}).headers["Retry-After"])

    def test_500_fault_expires_after_count(self) -> None:
        set_fault(self.url, "m-two", status=500, count=2)
        statuses = [self.chat({"model": "m-two"}).status for _ in range(3)]
        self.assertEqual(statuses, [500, 500, 200])
        self.assertEqual(self.chat({"model": "m-one"}).status, 200)

    def test_delay_fault_answers_after_sleeping(self) -> None:
        set_fault(self.url, "m-one", delay=0.3, count=1)
        started = time.monotonic()
        reply = self.chat({"model": "m-one"})
        self.assertEqual(reply.status, 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.3)

    def test_drop_stream_closes_without_terminator(self) -> None:
        set_fault(self.url, "m-one", drop_stream=True)
        with self.assertRaises(http.client.IncompleteRead) as caught:
            self.chat({"model": "m-one", "stream": True})
        partial = sse_payloads(caught.exception.partial)
        self.assertEqual(len(partial), 2)
        self.assertNotIn("[DONE]", partial)

    def test_bad_fault_request_is_400(self) -> None:
        self.assertEqual(call("POST", f"{self.url}/_standin/fault", {"model": "m-one", "count": 0}).status, 400)


class UpstreamProcessTest(unittest.TestCase):
    def test_sigterm_exits_zero(self) -> None:
        upstream = start_upstream(port=free_port(), models=["m"])
        self.addCleanup(upstream.stop)
        self.assertEqual(upstream.stop(), 0)
        self.assertEqual(upstream.stop(), 0)

    def test_busy_port_is_a_start_error(self) -> None:
        upstream = start_upstream(models=["m"])
        self.addCleanup(upstream.stop)
        with self.assertRaises(StandinError) as caught:
            start_upstream(port=upstream.port, models=["m"])
        self.assertIn("cannot listen", str(caught.exception))

    def test_cli_requires_key_and_model(self) -> None:
        command = [sys.executable, "-m", "llm_router.standin.upstream", "--port", "0"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--api-key", result.stderr)


if __name__ == "__main__":
    unittest.main()
