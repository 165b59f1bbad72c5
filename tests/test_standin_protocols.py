"""The stand-ins speak chat, Responses, Anthropic Messages and completions as the real servers do.

Checked with the real `openai` and `anthropic` SDKs (whose stream helpers validate event order),
plus raw HTTP for the exact event sequences, the tool-call rule and the request log.
"""

from __future__ import annotations

import http.client
import json
import tempfile
import unittest
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai

from llm_router.standin.process import (
    call,
    clear_requests,
    free_port,
    requests_log,
    reset,
    set_fault,
    start_cliproxy,
    start_upstream,
    stats,
)

KEY = "sk-protocols-key"
RUN = "Please run it. RUN: echo hello-123"
SHELL_ARRAY = {  # Codex CLI's classic `shell` tool
    "type": "object",
    "properties": {"command": {"type": "array", "items": {"type": "string"}}, "workdir": {"type": "string"}},
    "required": ["command"],
    "additionalProperties": False,
}
EXEC_STRING = {  # Codex CLI's `exec_command` (unified exec)
    "type": "object",
    "properties": {"cmd": {"type": "string"}, "yield_time_ms": {"type": "number"}},
    "required": ["cmd"],
}
BASH = {  # Claude Code's `Bash`
    "type": "object",
    "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
    "required": ["command"],
}
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
RESPONSES_TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 4,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def sse_events(body: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each SSE frame; `[DONE]` stays a string."""
    frames = []
    for frame in body.decode().split("\n\n"):
        event, data = None, None
        for line in frame.splitlines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        if data is not None:
            frames.append((event, data if data == "[DONE]" else json.loads(data)))
    return frames


def chat_tools(*specs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": name, "parameters": schema}} for name, schema in specs]


def responses_tools(*specs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "function", "name": name, "parameters": schema, "strict": False} for name, schema in specs]


def messages_tools(*specs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": name, "description": f"the {name} tool", "input_schema": schema} for name, schema in specs]


def write_cliproxy_config(directory: Path) -> Path:
    auth_dir = directory / "auths"
    auth_dir.mkdir()
    for email in ("a@example.com", "b@example.com"):
        (auth_dir / f"codex-{email}-plus.json").write_text(json.dumps({"type": "codex", "email": email}))
    path = directory / "config.yaml"
    lines = ["host: 127.0.0.1", f"port: {free_port()}", f'auth-dir: "{auth_dir}"', "api-keys:", f"  - {KEY}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class OpenAIProtocolCases:
    """Chat, Responses and the request log; run against both stand-ins by the subclasses."""

    url: str
    model: str
    server: str
    assertEqual: Any
    assertIn: Any
    assertTrue: Any
    assertFalse: Any
    assertIsNone: Any
    assertNotIn: Any
    assertRaises: Any
    addCleanup: Any

    def setUp(self) -> None:
        reset(self.url)
        http_client = httpx.Client(trust_env=False, timeout=30)
        self.addCleanup(http_client.close)
        self.openai = openai.OpenAI(base_url=f"{self.url}/v1", api_key=KEY, max_retries=0, http_client=http_client)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return call("POST", self.url + path, {"model": self.model, **body}, {"Authorization": f"Bearer {KEY}"})

    # Responses

    def test_responses_create_with_tools_calls_the_shell_tool(self) -> None:
        tools = responses_tools(("weather", WEATHER), ("shell", SHELL_ARRAY))
        response = self.openai.responses.create(model=self.model, input=RUN, tools=tools)
        self.assertEqual(response.status, "completed")
        [item] = response.output
        self.assertEqual((item.type, item.name, item.status), ("function_call", "shell", "completed"))
        self.assertTrue(item.call_id.startswith("call_"))
        self.assertEqual(json.loads(item.arguments), {"command": ["bash", "-lc", "echo hello-123"]})
        self.assertTrue(response.usage.input_tokens > 0 and response.usage.output_tokens > 0)

    def test_string_command_schema_gets_a_string(self) -> None:
        tools = responses_tools(("exec_command", EXEC_STRING))
        response = self.openai.responses.create(model=self.model, input=RUN, tools=tools)
        self.assertEqual(json.loads(response.output[0].arguments), {"cmd": "echo hello-123"})

    def test_call_tool_marker_and_args(self) -> None:
        tools = responses_tools(("shell", SHELL_ARRAY), ("weather", WEATHER))
        prompt = 'call tool weather\nARGS: {"city": "Oslo"}'
        response = self.openai.responses.create(model=self.model, input=prompt, tools=tools)
        self.assertEqual(
            (response.output[0].name, json.loads(response.output[0].arguments)), ("weather", {"city": "Oslo"})
        )
        defaults = self.openai.responses.create(model=self.model, input="call tool weather", tools=tools)
        self.assertEqual(json.loads(defaults.output[0].arguments), {"city": "echo standin"})

    def test_no_marker_or_no_tools_answers_text(self) -> None:
        tools = responses_tools(("shell", SHELL_ARRAY))
        plain = self.openai.responses.create(model=self.model, input="hello", tools=tools)
        self.assertEqual(plain.output_text, f"standin {self.server} model {self.model}")
        untooled = self.openai.responses.create(model=self.model, input=RUN)
        self.assertEqual(untooled.output[0].type, "message")

    def test_responses_tool_round_trip(self) -> None:
        tools = responses_tools(("shell", SHELL_ARRAY))
        first = self.openai.responses.create(model=self.model, input=RUN, tools=tools)
        call_item = first.output[0]
        follow_up = [
            {"role": "user", "content": RUN},
            {"type": "function_call", "call_id": call_item.call_id, "name": "shell", "arguments": call_item.arguments},
            {"type": "function_call_output", "call_id": call_item.call_id, "output": "hello-123\n"},
        ]
        second = self.openai.responses.create(model=self.model, input=follow_up, tools=tools)
        self.assertEqual(second.output_text, "tool said: hello-123\n")

    def test_responses_stream_text_event_sequence(self) -> None:
        with self.openai.responses.stream(model=self.model, input="hello") as stream:
            types = [event.type for event in stream]
            final = stream.get_final_response()
        self.assertEqual(types, RESPONSES_TEXT_EVENTS)
        self.assertEqual(final.output_text, f"standin {self.server} model {self.model}")
        self.assertEqual(final.status, "completed")
        self.assertTrue(final.usage.total_tokens > 0)

    def test_responses_stream_raw_frames(self) -> None:
        reply = self.post("/v1/responses", {"input": "hello", "stream": True})
        self.assertEqual(reply.headers["Content-Type"], "text/event-stream")
        frames = sse_events(reply.body)
        self.assertEqual([name for name, _ in frames], RESPONSES_TEXT_EVENTS)
        self.assertEqual([data["type"] for _, data in frames], RESPONSES_TEXT_EVENTS)
        self.assertEqual([data["sequence_number"] for _, data in frames], list(range(len(frames))))
        added = frames[2][1]["item"]
        self.assertEqual((added["type"], added["content"], added["status"]), ("message", [], "in_progress"))
        ids = {data.get("item_id") for _, data in frames if "item_id" in data} | {added["id"]}
        self.assertEqual(len(ids), 1)
        completed = frames[-1][1]["response"]
        self.assertEqual(completed["status"], "completed")
        self.assertEqual(completed["output"][0]["content"][0]["text"], f"standin {self.server} model {self.model}")
        self.assertEqual(completed["id"], frames[0][1]["response"]["id"])

    def test_responses_stream_function_call(self) -> None:
        tools = responses_tools(("shell", SHELL_ARRAY))
        with self.openai.responses.stream(model=self.model, input=RUN, tools=tools) as stream:
            types = [event.type for event in stream]
            final = stream.get_final_response()
        self.assertEqual(types[:3], ["response.created", "response.in_progress", "response.output_item.added"])
        self.assertIn("response.function_call_arguments.delta", types)
        self.assertEqual(
            types[-3:], ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
        )
        self.assertEqual(json.loads(final.output[0].arguments), {"command": ["bash", "-lc", "echo hello-123"]})
        frames = sse_events(self.post("/v1/responses", {"input": RUN, "tools": tools, "stream": True}).body)
        added = frames[2][1]["item"]
        self.assertEqual((added["type"], added["name"], added["arguments"]), ("function_call", "shell", ""))

    def test_responses_max_output_tokens_is_incomplete(self) -> None:
        response = self.openai.responses.create(model=self.model, input="hello", max_output_tokens=2)
        self.assertEqual((response.status, response.output_text), ("incomplete", "standin " + self.server))
        frames = sse_events(self.post("/v1/responses", {"input": "x", "stream": True, "max_output_tokens": 2}).body)
        self.assertEqual(frames[-1][0], "response.incomplete")

    # chat completions

    def test_chat_stream_tool_call_deltas(self) -> None:
        tools = chat_tools(("shell", SHELL_ARRAY))
        messages = [{"role": "user", "content": RUN}]
        stream = self.openai.chat.completions.create(
            model=self.model, messages=messages, tools=tools, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        first = chunks[0].choices[0].delta.tool_calls[0]
        self.assertEqual(
            (first.index, first.type, first.function.name, first.function.arguments), (0, "function", "shell", "")
        )
        self.assertTrue(first.id.startswith("call_"))
        pieces = [chunk.choices[0].delta.tool_calls for chunk in chunks[1:] if chunk.choices]
        arguments = "".join(calls[0].function.arguments for calls in pieces if calls)
        self.assertTrue(all(calls[0].id is None for calls in pieces if calls))
        self.assertEqual(json.loads(arguments), {"command": ["bash", "-lc", "echo hello-123"]})
        self.assertEqual(chunks[-2].choices[0].finish_reason, "tool_calls")
        self.assertEqual((chunks[-1].choices, chunks[-1].usage.prompt_tokens > 0), ([], True))

    def test_chat_tool_call_and_round_trip(self) -> None:
        tools = chat_tools(("Bash", BASH))
        messages: list[dict[str, Any]] = [{"role": "user", "content": RUN}]
        first = self.openai.chat.completions.create(model=self.model, messages=messages, tools=tools)
        choice = first.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        self.assertIsNone(choice.message.content)
        tool_call = choice.message.tool_calls[0]
        self.assertEqual(json.loads(tool_call.function.arguments), {"command": "echo hello-123"})
        messages += [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": tool_call.id, "content": "hello-123"},
        ]
        second = self.openai.chat.completions.create(model=self.model, messages=messages, tools=tools, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in second if chunk.choices)
        self.assertEqual(text, "tool said: hello-123")

    def test_chat_stream_text_unchanged(self) -> None:
        stream = self.openai.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = list(stream)
        self.assertEqual(
            "".join(c.choices[0].delta.content or "" for c in chunks), f"standin {self.server} model {self.model}"
        )
        self.assertEqual(chunks[-1].choices[0].finish_reason, "stop")

    # faults on every path

    def test_429_on_responses_streamed_and_not(self) -> None:
        set_fault(self.url, self.model, status=429, retry_after=3, count=2)
        with self.assertRaises(openai.RateLimitError):
            self.openai.responses.create(model=self.model, input="hi")
        with self.assertRaises(openai.RateLimitError):
            with self.openai.responses.stream(model=self.model, input="hi") as stream:
                list(stream)
        self.assertEqual(self.openai.responses.create(model=self.model, input="hi").status, "completed")
        self.assertEqual(stats(self.url)["requests"], {self.model: 3})

    def test_drop_stream_on_responses(self) -> None:
        set_fault(self.url, self.model, drop_stream=True, count=1)
        with self.assertRaises(http.client.IncompleteRead) as caught:
            self.post("/v1/responses", {"input": "hi", "stream": True})
        frames = sse_events(caught.exception.partial)
        self.assertEqual([name for name, _ in frames], ["response.created", "response.in_progress"])

    def test_forced_tool_call_fault(self) -> None:
        set_fault(self.url, "*", tool_call="*", command="ls -la", count=1)
        tools = responses_tools(("shell", SHELL_ARRAY))
        forced = self.openai.responses.create(model=self.model, input="just say hi", tools=tools)
        self.assertEqual(json.loads(forced.output[0].arguments), {"command": ["bash", "-lc", "ls -la"]})
        after = self.openai.responses.create(model=self.model, input="just say hi", tools=tools)
        self.assertEqual(after.output[0].type, "message")

    # request log

    def test_request_log_records_the_round_trip(self) -> None:
        tools = chat_tools(("shell", SHELL_ARRAY), ("weather", WEATHER))
        messages = [
            {"role": "user", "content": RUN},
            {
                "role": "assistant",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "hello-123 " + "x" * 3000},
        ]
        self.openai.chat.completions.create(model=self.model, messages=messages[:1], tools=tools, stream=True)
        self.openai.chat.completions.create(model=self.model, messages=messages, tools=tools)
        set_fault(self.url, self.model, status=500, count=1)
        self.post("/v1/responses", {"input": "hi"})
        log = requests_log(self.url)
        self.assertEqual([entry["seq"] for entry in log], sorted(entry["seq"] for entry in log))
        first, second, failed = log
        self.assertEqual(
            (first["path"], first["protocol"], first["model"]), ("/v1/chat/completions", "chat", self.model)
        )
        self.assertEqual(
            (first["stream"], first["tools_offered"], first["tool_names"]), (True, True, ["shell", "weather"])
        )
        self.assertEqual((first["tool_result"], first["answer"], first["status"]), (False, "tool_call", 200))
        self.assertEqual(first["tool_call"]["name"], "shell")
        self.assertEqual((second["tool_result"], second["stream"], second["answer"]), (True, False, "text"))
        self.assertTrue(second["tool_result_text"].startswith("hello-123 x"))
        self.assertEqual(len(second["tool_result_text"]), 2000)
        self.assertEqual((failed["protocol"], failed["status"], failed["fault"]), ("responses", 500, 500))
        self.assertEqual(first["server"], self.server)
        self.assertNotIn(KEY, json.dumps(log))
        self.assertEqual(requests_log(self.url, since=second["seq"]), [failed])
        clear_requests(self.url)
        self.assertEqual(requests_log(self.url), [])
        self.assertEqual(stats(self.url)["total"], 3)


class CliproxyProtocolTest(OpenAIProtocolCases, unittest.TestCase):
    model = "gpt-5.1-codex"
    server = "cliproxy"

    @classmethod
    def setUpClass(cls) -> None:
        temp = tempfile.TemporaryDirectory(prefix="standin-protocols-")
        cls.addClassCleanup(temp.cleanup)
        cls.proxy = start_cliproxy(write_cliproxy_config(Path(temp.name)))
        cls.addClassCleanup(cls.proxy.stop)
        cls.url = cls.proxy.base_url

    def setUp(self) -> None:
        super().setUp()
        self.anthropic = anthropic.Anthropic(base_url=self.url, api_key=KEY, max_retries=0, timeout=30)
        self.addCleanup(self.anthropic.close)

    def message(self, text: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"type": "text", "text": text}]}]

    def test_messages_create_plain(self) -> None:
        message = self.anthropic.messages.create(model=self.model, max_tokens=100, messages=self.message("hi"))
        self.assertEqual((message.type, message.role, message.stop_reason), ("message", "assistant", "end_turn"))
        self.assertEqual(message.content[0].text, "standin cliproxy model gpt-5.1-codex")
        self.assertTrue(message.usage.input_tokens > 0 and message.usage.output_tokens > 0)

    def test_messages_create_with_tools_and_round_trip(self) -> None:
        tools = messages_tools(("Read", WEATHER), ("Bash", BASH))
        messages = self.message(RUN)
        first = self.anthropic.messages.create(model=self.model, max_tokens=100, messages=messages, tools=tools)
        self.assertEqual(first.stop_reason, "tool_use")
        [block] = first.content
        self.assertEqual((block.type, block.name, block.input), ("tool_use", "Bash", {"command": "echo hello-123"}))
        messages += [
            {"role": "assistant", "content": [block.model_dump()]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": block.id, "content": [{"type": "text", "text": "hello-123"}]}
                ],
            },
        ]
        second = self.anthropic.messages.create(model=self.model, max_tokens=100, messages=messages, tools=tools)
        self.assertEqual((second.stop_reason, second.content[0].text), ("end_turn", "tool said: hello-123"))

    def test_messages_stream_text(self) -> None:
        with self.anthropic.messages.stream(model=self.model, max_tokens=100, messages=self.message("hi")) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        self.assertEqual(text, "standin cliproxy model gpt-5.1-codex")
        self.assertEqual((final.content[0].text, final.stop_reason), (text, "end_turn"))
        frames = sse_events(
            self.post("/v1/messages", {"max_tokens": 9, "messages": self.message("hi"), "stream": True}).body
        )
        names = [name for name, _ in frames]
        self.assertEqual(names[:3], ["message_start", "content_block_start", "ping"])
        self.assertEqual(names[-3:], ["content_block_stop", "message_delta", "message_stop"])
        self.assertEqual(set(names[3:-3]), {"content_block_delta"})
        self.assertEqual(frames[1][1]["content_block"], {"type": "text", "text": ""})
        self.assertEqual(frames[-2][1]["delta"]["stop_reason"], "end_turn")
        self.assertEqual([data["type"] for _, data in frames], names)

    def test_messages_stream_tool_use(self) -> None:
        tools = messages_tools(("Bash", BASH))
        with self.anthropic.messages.stream(
            model=self.model, max_tokens=100, messages=self.message(RUN), tools=tools
        ) as stream:
            events = [event.type for event in stream]
            final = stream.get_final_message()
        self.assertIn("input_json", events)
        self.assertEqual((final.stop_reason, final.content[0].input), ("tool_use", {"command": "echo hello-123"}))
        body = {"max_tokens": 9, "messages": self.message(RUN), "tools": tools, "stream": True}
        frames = sse_events(self.post("/v1/messages", body).body)
        start = frames[1][1]["content_block"]
        self.assertEqual((start["type"], start["name"], start["input"]), ("tool_use", "Bash", {}))
        self.assertTrue(
            all(data["delta"]["type"] == "input_json_delta" for name, data in frames if name == "content_block_delta")
        )

    def test_count_tokens(self) -> None:
        counted = self.anthropic.messages.count_tokens(model=self.model, messages=self.message("one two three"))
        self.assertEqual(counted.input_tokens, 3)
        [entry] = requests_log(self.url)
        self.assertEqual((entry["protocol"], entry["status"]), ("count_tokens", 200))
        self.assertEqual(stats(self.url)["total"], 0)

    def test_429_on_messages_is_anthropic_shaped(self) -> None:
        set_fault(self.url, self.model, status=429, retry_after=2, count=2)
        with self.assertRaises(anthropic.RateLimitError) as caught:
            self.anthropic.messages.create(model=self.model, max_tokens=10, messages=self.message("hi"))
        self.assertEqual(caught.exception.body["type"], "error")
        self.assertEqual(caught.exception.body["error"]["type"], "rate_limit_error")
        self.assertIn("cooling down", caught.exception.body["error"]["message"])
        self.assertEqual(caught.exception.response.headers["Retry-After"], "2")
        with self.assertRaises(anthropic.RateLimitError):
            with self.anthropic.messages.stream(model=self.model, max_tokens=10, messages=self.message("hi")) as stream:
                list(stream)
        self.assertEqual(
            self.anthropic.messages.create(model=self.model, max_tokens=10, messages=self.message("hi")).stop_reason,
            "end_turn",
        )

    def test_messages_errors(self) -> None:
        unknown = call("POST", self.url + "/v1/messages", {"model": "raptor-mini", "messages": []}, {"x-api-key": KEY})
        self.assertEqual(unknown.status, 400)
        self.assertEqual(
            unknown.json(),
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "unknown provider for model raptor-mini"},
            },
        )
        self.assertEqual([(e["model"], e["status"]) for e in requests_log(self.url)], [("raptor-mini", 400)])
        missing = call("POST", self.url + "/v1/messages", {"model": self.model, "messages": []})
        self.assertEqual((missing.status, missing.json()), (401, {"error": "Missing API key"}))

    def test_completions(self) -> None:
        completion = self.openai.completions.create(model=self.model, prompt="say something")
        self.assertEqual(completion.choices[0].text, "standin cliproxy model gpt-5.1-codex")
        streamed = self.openai.completions.create(model=self.model, prompt="x", stream=True)
        self.assertEqual("".join(chunk.choices[0].text for chunk in streamed), completion.choices[0].text)

    def test_embeddings_are_a_gin_404(self) -> None:
        with self.assertRaises(openai.NotFoundError):
            self.openai.embeddings.create(model=self.model, input="hi")
        reply = self.post("/v1/embeddings", {"input": "hi"})
        self.assertEqual((reply.status, reply.text), (404, "404 page not found"))
        self.assertTrue(reply.headers["Content-Type"].startswith("text/plain"))
        self.assertEqual([(e["protocol"], e["status"]) for e in requests_log(self.url)], [("embeddings", 404)] * 2)

    def test_head_root_has_no_body(self) -> None:
        reply = call("HEAD", self.url + "/")
        self.assertEqual((reply.status, reply.body), (404, b""))
        self.assertEqual(call("GET", self.url + "/").status, 200)

    def test_accounts_rotate_in_the_log(self) -> None:
        for _ in range(3):
            self.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
        log = requests_log(self.url)
        self.assertEqual({entry["provider"] for entry in log}, {"codex"})
        accounts = [entry["account"] for entry in log]
        self.assertEqual(len(set(accounts)), 2)
        self.assertEqual(accounts[0], accounts[2])


class UpstreamProtocolTest(OpenAIProtocolCases, unittest.TestCase):
    model = "m-paid"
    server = "paid"

    @classmethod
    def setUpClass(cls) -> None:
        cls.upstream = start_upstream(api_key=KEY, models=[cls.model], name=cls.server)
        cls.addClassCleanup(cls.upstream.stop)
        cls.url = cls.upstream.base_url

    def test_no_anthropic_messages(self) -> None:
        reply = self.post("/v1/messages", {"messages": [], "max_tokens": 5})
        self.assertEqual(reply.status, 404)
        self.assertEqual(reply.json()["error"]["message"], "Invalid URL (POST /v1/messages)")
        self.assertEqual(requests_log(self.url)[0]["protocol"], "messages")


class ChatOnlyUpstreamTest(unittest.TestCase):
    def test_serves_only_the_apis_it_is_given(self) -> None:
        upstream = start_upstream(api_key=KEY, models=["m"], apis=["chat"])
        self.addCleanup(upstream.stop)
        headers = {"Authorization": f"Bearer {KEY}"}
        chat = call("POST", upstream.base_url + "/v1/chat/completions", {"model": "m"}, headers)
        responses = call("POST", upstream.base_url + "/v1/responses", {"model": "m", "input": "x"}, headers)
        self.assertEqual((chat.status, responses.status), (200, 404))


if __name__ == "__main__":
    unittest.main()
