"""The inference protocols both stand-ins speak, written once (see docs/standins.md).

`parse_turn` reads a request of one protocol (chat completions, Responses, Anthropic Messages,
legacy completions, count_tokens) into a `Turn`; `decide` picks the answer (plain text, the text
of a tool result, or a tool call); `render_json` / `render_events` shape it the way the real
servers do, streamed as the exact SSE event sequences the clients require.

The tool-call rule (deterministic, for tests and real agents):
1. If the latest input is a tool result (`role: tool` messages, `function_call_output` items or
   `tool_result` blocks after the last plain user turn), the answer is the text
   `tool said: <output>` with every result's output verbatim.
2. Otherwise, if the request offers tools and the latest user text contains `call tool NAME`
   (NAME an offered tool), or contains `RUN: <command>` and a shell-like tool is offered, or a
   `tool_call` fault is pending, the answer is a call to that tool. Its arguments are the JSON
   object after `ARGS:` on the same line if given, else built from the tool's schema: the
   command property (`command`, `cmd`, ...) gets the command as a string, or as
   `["bash", "-lc", command]` when the schema says array; other required properties get
   type defaults.
3. Otherwise the answer is `standin <server> model <model>`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_PATHS = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/models": "models",
}
SHELL_TOOLS = (
    "shell",
    "shell_command",
    "exec_command",
    "local_shell",
    "container.exec",
    "Bash",
    "bash",
    "run_shell_command",
    "execute_command",
    "run_command",
    "terminal",
)
COMMAND_KEYS = ("command", "cmd", "commands", "script", "code")
DEFAULT_COMMAND = "echo standin"
RESULT_LOG_LIMIT = 2000
CALL_TOOL = re.compile(r"call tool[ \t]+`?([A-Za-z0-9_.:-]+)`?", re.IGNORECASE)
RUN_LINE = re.compile(r"RUN:[ \t]*(.+)")
ARGS_LINE = re.compile(r"ARGS:[ \t]*(\{.*\})")
PIECE = re.compile(r"\s*\S+|\s+$")


@dataclass
class Tool:
    """An offered tool: its name and JSON-schema parameters (None: not a function tool)."""

    name: str
    schema: dict[str, Any] | None

    @property
    def callable(self) -> bool:
        return self.schema is not None


@dataclass
class Turn:
    """One inference request, read independently of its protocol."""

    protocol: str
    model: str
    stream: bool
    body: dict[str, Any]
    tools: list[Tool] = field(default_factory=list)
    user_text: str = ""
    tool_results: list[str] = field(default_factory=list)
    limit: int | None = None
    prompt_tokens: int = 0

    def log_fields(self) -> dict[str, Any]:
        """What the request log records about the request (never keys or headers)."""
        text = "\n".join(self.tool_results)
        return {
            "model": self.model,
            "stream": self.stream,
            "tools_offered": bool(self.tools),
            "tool_names": [tool.name for tool in self.tools],
            "tool_result": bool(self.tool_results),
            "tool_result_text": text[:RESULT_LOG_LIMIT] if self.tool_results else None,
            "user_text": self.user_text[:RESULT_LOG_LIMIT],
        }


@dataclass
class ToolCall:
    name: str
    arguments: str
    call_id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")


@dataclass
class Answer:
    """What to answer: text pieces (streamed one by one) or a tool call."""

    pieces: list[str]
    finish: str  # "stop", "length" or "tool"
    tool_call: ToolCall | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def log_fields(self) -> dict[str, Any]:
        if self.tool_call:
            call = {"name": self.tool_call.name, "arguments": self.tool_call.arguments}
            return {"answer": "tool_call", "tool_call": call}
        return {"answer": "text", "tool_call": None, "answer_text": self.text[:RESULT_LOG_LIMIT]}


# --- reading requests -------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def count_words(value: Any) -> int:
    """Rough prompt token count: words in every string inside `value`."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(item) for item in value)
    if isinstance(value, dict):
        keys = ("content", "text", "input", "output", "messages", "system", "instructions", "prompt")
        return sum(count_words(item) for key, item in value.items() if key in keys)
    return 0


def content_text(content: Any) -> str:
    """The text of a message content: a string, or the text of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [content_text(part) for part in content]
        return "\n".join(text for text in texts if text)
    if isinstance(content, dict):
        if content.get("type") in ("text", "input_text", "output_text") or "text" in content:
            text = content.get("text")
            return text if isinstance(text, str) else ""
        if "content" in content:
            return content_text(content["content"])
    return ""


def _tools(protocol: str, tools: Any) -> list[Tool]:
    found = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        if protocol == "chat":
            function = tool.get("function") if tool.get("type", "function") == "function" else None
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                found.append(Tool(function["name"], function.get("parameters") or {}))
        elif protocol == "responses":
            name = tool.get("name") or tool.get("type")
            if isinstance(name, str):
                function = tool.get("type", "function") == "function"
                found.append(Tool(name, (tool.get("parameters") or {}) if function else None))
        elif protocol == "messages" and isinstance(tool.get("name"), str):
            schema = tool.get("input_schema")
            found.append(Tool(tool["name"], schema if isinstance(schema, dict) else None))
    return found


def _chat_turn(messages: list[Any]) -> tuple[str, list[str]]:
    """The client's latest turn: everything after the last assistant message. Tool results win; else every
    user message of the turn counts (a translated Anthropic turn can end with a system-reminder message after
    the prompt)."""
    results: list[str] = []
    texts: list[str] = []
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "assistant":
            break
        if role in ("tool", "function"):
            results.insert(0, content_text(message.get("content")))
        elif role == "user":
            texts.insert(0, content_text(message.get("content")))
    return ("", results) if results else ("\n".join(texts), [])


def _responses_turn(items: Any) -> tuple[str, list[str]]:
    if isinstance(items, str):
        return items, []
    results: list[str] = []
    for item in reversed(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind.endswith("_call_output"):
            output = item.get("output")
            results.insert(0, output if isinstance(output, str) else content_text(output))
            continue
        if kind.endswith("_call") or kind == "reasoning":
            continue
        if results or item.get("role") == "assistant":
            return "", results
        if item.get("role") == "user":
            return content_text(item.get("content")), []
    return "", results


def _messages_turn(messages: list[Any]) -> tuple[str, list[str]]:
    for message in reversed(messages):
        if not isinstance(message, dict):
            continue
        if message.get("role") == "assistant":
            return "", []
        if message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        results = [
            content_text(block.get("content"))
            for block in blocks
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]
        if results:
            return "", results
        return content_text(content), []
    return "", []


def parse_turn(protocol: str, body: dict[str, Any], model: str) -> Turn:
    """Read a request body of `protocol` (chat, responses, messages, count_tokens, completions)."""
    turn = Turn(protocol, model, bool(body.get("stream")), body)
    kind = "messages" if protocol == "count_tokens" else protocol
    turn.tools = _tools(kind, body.get("tools"))
    if kind == "chat":
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        turn.user_text, turn.tool_results = _chat_turn(messages)
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        turn.prompt_tokens = count_words(messages)
    elif kind == "responses":
        turn.user_text, turn.tool_results = _responses_turn(body.get("input"))
        limit = body.get("max_output_tokens")
        turn.prompt_tokens = count_words(body.get("input")) + count_words(body.get("instructions"))
    elif kind == "messages":
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        turn.user_text, turn.tool_results = _messages_turn(messages)
        limit = body.get("max_tokens")
        turn.prompt_tokens = count_words(messages) + count_words(body.get("system"))
    else:  # completions
        prompt = body.get("prompt")
        turn.user_text = prompt if isinstance(prompt, str) else content_text(prompt)
        limit = body.get("max_tokens")
        turn.prompt_tokens = count_words(prompt)
    turn.limit = limit if _is_int(limit) else None
    return turn


# --- deciding the answer ----------------------------------------------------------------------


def split_pieces(text: str) -> list[str]:
    """Stream pieces whose concatenation is `text`: each word with the whitespace before it."""
    return PIECE.findall(text)


def _pick_tool(turn: Turn, forced: str | None) -> Tool | None:
    callable_tools = [tool for tool in turn.tools if tool.callable]
    if not callable_tools:
        return None
    match = CALL_TOOL.search(turn.user_text)
    wanted = forced if forced and forced != "*" else (match.group(1) if match else None)
    if wanted:
        exact = [tool for tool in callable_tools if tool.name == wanted]
        loose = [tool for tool in callable_tools if tool.name.lower() == wanted.lower()]
        if exact or loose:
            return (exact or loose)[0]
    if forced or RUN_LINE.search(turn.user_text):
        shell = [tool for tool in callable_tools if tool.name in SHELL_TOOLS]
        commanded = [tool for tool in callable_tools if _command_key(tool) is not None]
        if shell or commanded:
            return (shell or commanded)[0]
        return callable_tools[0] if forced else None
    return None


def _command_key(tool: Tool) -> str | None:
    properties = (tool.schema or {}).get("properties")
    if not isinstance(properties, dict):
        return None
    return next((key for key in COMMAND_KEYS if key in properties), None)


def _default_for(schema: Any, command: str) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    return {"string": command, "integer": 1, "number": 1, "boolean": False, "array": [], "object": {}}.get(
        kind, command
    )


def tool_arguments(tool: Tool, command: str) -> dict[str, Any]:
    """Arguments for `tool` that run `command`, shaped by the tool's schema."""
    schema = tool.schema or {}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    arguments: dict[str, Any] = {}
    key = _command_key(tool)
    if key is None and not properties:
        key = "command"
    if key is not None:
        spec = properties.get(key) or {}
        is_array = isinstance(spec, dict) and spec.get("type") == "array"
        arguments[key] = ["bash", "-lc", command] if is_array else command
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    for name in required:
        if isinstance(name, str) and name not in arguments:
            arguments[name] = _default_for(properties.get(name), command)
    return arguments


def decide(turn: Turn, server: str, forced_tool: str | None = None, forced_command: str | None = None) -> Answer:
    """The answer to `turn` under the tool-call rule (module docstring)."""
    if turn.tool_results:
        return text_answer("tool said: " + "\n".join(turn.tool_results), turn.limit)
    tool = _pick_tool(turn, forced_tool) if turn.protocol != "completions" else None
    if tool is not None:
        given = ARGS_LINE.search(turn.user_text)
        arguments: dict[str, Any] | None = None
        if given:
            try:
                parsed = json.loads(given.group(1))
                arguments = parsed if isinstance(parsed, dict) else None
            except ValueError:
                arguments = None
        if arguments is None:
            run = RUN_LINE.search(turn.user_text)
            command = forced_command or (run.group(1).strip() if run else DEFAULT_COMMAND)
            arguments = tool_arguments(tool, command)
        return Answer([], "tool", ToolCall(tool.name, json.dumps(arguments)))
    return text_answer(f"standin {server} model {turn.model}", turn.limit)


def text_answer(text: str, limit: int | None) -> Answer:
    pieces = split_pieces(text)
    if limit is not None and limit < len(pieces):
        cut = pieces[: max(limit, 0)]
        if cut:
            cut[0] = cut[0].lstrip()
        return Answer(cut, "length")
    if pieces:
        pieces[0] = pieces[0].lstrip()
    return Answer(pieces, "stop")


def argument_pieces(arguments: str) -> list[str]:
    """Argument JSON in a few pieces, the way models stream it."""
    size = max(1, len(arguments) // 3 + 1)
    return [arguments[index : index + size] for index in range(0, len(arguments), size)] or [""]


# --- rendering ----------------------------------------------------------------------------------


def sse(payload: dict[str, Any], event: str | None = None) -> str:
    data = f"data: {json.dumps(payload)}\n\n"
    return f"event: {event}\n{data}" if event else data


def _hex(size: int = 24) -> str:
    return uuid.uuid4().hex[:size]


def render_json(turn: Turn, answer: Answer) -> dict[str, Any]:
    """The non-streamed answer body of `turn.protocol`."""
    return {
        "chat": _chat_json,
        "responses": _responses_json,
        "messages": _messages_json,
        "completions": _completions_json,
    }[turn.protocol](turn, answer)


def render_events(turn: Turn, answer: Answer) -> list[str]:
    """The streamed answer of `turn.protocol` as SSE frames."""
    return {
        "chat": _chat_events,
        "responses": _responses_events,
        "messages": _messages_events,
        "completions": _completions_events,
    }[turn.protocol](turn, answer)


def count_tokens_json(turn: Turn) -> dict[str, Any]:
    tools = count_words(json.dumps([tool.schema for tool in turn.tools])) if turn.tools else 0
    return {"input_tokens": max(1, turn.prompt_tokens + tools)}


def _output_tokens(answer: Answer) -> int:
    if answer.tool_call:
        return max(1, len(answer.tool_call.arguments.split()))
    return len(answer.pieces)


# chat completions


def _chat_usage(turn: Turn, answer: Answer) -> dict[str, int]:
    out = _output_tokens(answer)
    return {"prompt_tokens": turn.prompt_tokens, "completion_tokens": out, "total_tokens": turn.prompt_tokens + out}


def _chat_finish(answer: Answer) -> str:
    return "tool_calls" if answer.tool_call else answer.finish


def _chat_json(turn: Turn, answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool_call:
        call = answer.tool_call
        message["content"] = None
        message["tool_calls"] = [
            {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        ]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _chat_finish(answer)}
    return {
        "id": f"chatcmpl-standin-{_hex(16)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": turn.model,
        "choices": [choice],
        "usage": _chat_usage(turn, answer),
    }


def _chat_events(turn: Turn, answer: Answer) -> list[str]:
    base = {"id": f"chatcmpl-standin-{_hex(16)}", "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = turn.model
    deltas: list[dict[str, Any]]
    if answer.tool_call:
        call = answer.tool_call
        first = {"index": 0, "id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        deltas = [{"role": "assistant", "content": None, "tool_calls": [first]}]
        deltas += [
            {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            for piece in argument_pieces(call.arguments)
        ]
    else:
        deltas = [{"role": "assistant", "content": answer.pieces[0] if answer.pieces else ""}]
        deltas += [{"content": piece} for piece in answer.pieces[1:]]
    choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None} for delta in deltas]
    choices.append({"index": 0, "delta": {}, "logprobs": None, "finish_reason": _chat_finish(answer)})
    payloads = [{**base, "choices": [choice]} for choice in choices]
    options = turn.body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        payloads.append({**base, "choices": [], "usage": _chat_usage(turn, answer)})
    return [sse(payload) for payload in payloads] + ["data: [DONE]\n\n"]


# legacy completions


def _completions_json(turn: Turn, answer: Answer) -> dict[str, Any]:
    choice = {"text": answer.text, "index": 0, "logprobs": None, "finish_reason": answer.finish}
    return {
        "id": f"cmpl-standin-{_hex(16)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": turn.model,
        "choices": [choice],
        "usage": _chat_usage(turn, answer),
    }


def _completions_events(turn: Turn, answer: Answer) -> list[str]:
    base = {"id": f"cmpl-standin-{_hex(16)}", "object": "text_completion", "created": int(time.time())}
    base["model"] = turn.model
    choices = [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None} for piece in answer.pieces]
    choices.append({"text": "", "index": 0, "logprobs": None, "finish_reason": answer.finish})
    payloads = [{**base, "choices": [choice]} for choice in choices]
    options = turn.body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        payloads.append({**base, "choices": [], "usage": _chat_usage(turn, answer)})
    return [sse(payload) for payload in payloads] + ["data: [DONE]\n\n"]


# Responses API


def _response_object(turn: Turn, answer: Answer, output: list[dict[str, Any]], status: str) -> dict[str, Any]:
    body = turn.body
    out = _output_tokens(answer)
    usage = {
        "input_tokens": turn.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": turn.prompt_tokens + out,
    }
    incomplete = status == "incomplete"
    return {
        "id": f"resp_standin_{_hex()}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": turn.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", False),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage if status in ("completed", "incomplete") else None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _response_item(answer: Answer, done: bool) -> dict[str, Any]:
    status = "completed" if done else "in_progress"
    if answer.tool_call:
        call = answer.tool_call
        return {
            "id": f"fc_standin_{call.call_id[5:]}",
            "type": "function_call",
            "status": status,
            "arguments": call.arguments if done else "",
            "call_id": call.call_id,
            "name": call.name,
        }
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": answer.text}
    return {"id": "", "type": "message", "status": status, "role": "assistant", "content": [part] if done else []}


def _responses_status(answer: Answer) -> str:
    return "incomplete" if answer.finish == "length" else "completed"


def _responses_json(turn: Turn, answer: Answer) -> dict[str, Any]:
    item = _response_item(answer, done=True)
    if item["type"] == "message":
        item["id"] = f"msg_standin_{_hex()}"
    return _response_object(turn, answer, [item], _responses_status(answer))


def _responses_events(turn: Turn, answer: Answer) -> list[str]:
    final_item = _response_item(answer, done=True)
    added_item = _response_item(answer, done=False)
    if final_item["type"] == "message":
        final_item["id"] = added_item["id"] = f"msg_standin_{_hex()}"
    status = _responses_status(answer)
    final = _response_object(turn, answer, [final_item], status)
    started = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    item_id = final_item["id"]
    at = {"item_id": item_id, "output_index": 0}
    payloads: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": added_item},
    ]
    if answer.tool_call:
        arguments = answer.tool_call.arguments
        payloads += [
            {"type": "response.function_call_arguments.delta", **at, "delta": piece}
            for piece in argument_pieces(arguments)
        ]
        payloads.append(
            {
                "type": "response.function_call_arguments.done",
                **at,
                "name": answer.tool_call.name,
                "arguments": arguments,
            }
        )
    else:
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        part = {**at, "content_index": 0}
        payloads.append({"type": "response.content_part.added", **part, "part": empty})
        payloads += [
            {"type": "response.output_text.delta", **part, "delta": piece, "logprobs": []} for piece in answer.pieces
        ]
        payloads.append({"type": "response.output_text.done", **part, "text": answer.text, "logprobs": []})
        payloads.append({"type": "response.content_part.done", **part, "part": final_item["content"][0]})
    payloads.append({"type": "response.output_item.done", "output_index": 0, "item": final_item})
    payloads.append({"type": f"response.{status}", "response": final})
    frames = []
    for number, payload in enumerate(payloads):
        payload = {"type": payload["type"], "sequence_number": number, **payload}
        frames.append(sse(payload, payload["type"]))
    return frames


# Anthropic Messages


def _stop_reason(answer: Answer) -> str:
    return {"tool": "tool_use", "length": "max_tokens"}.get(answer.finish, "end_turn")


def _messages_usage(turn: Turn, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": turn.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _messages_block(answer: Answer) -> dict[str, Any]:
    if answer.tool_call:
        call = answer.tool_call
        return {
            "type": "tool_use",
            "id": f"toolu_standin_{call.call_id[5:]}",
            "name": call.name,
            "input": json.loads(call.arguments),
        }
    return {"type": "text", "text": answer.text}


def _messages_json(turn: Turn, answer: Answer) -> dict[str, Any]:
    return {
        "id": f"msg_standin_{_hex()}",
        "type": "message",
        "role": "assistant",
        "model": turn.model,
        "content": [_messages_block(answer)],
        "stop_reason": _stop_reason(answer),
        "stop_sequence": None,
        "usage": _messages_usage(turn, _output_tokens(answer)),
    }


def _messages_events(turn: Turn, answer: Answer) -> list[str]:
    message = _messages_json(turn, answer)
    started = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": _messages_usage(turn, 1)}
    block = message["content"][0]
    if answer.tool_call:
        start_block = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": piece} for piece in argument_pieces(answer.tool_call.arguments)
        ]
    else:
        start_block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in answer.pieces]
    payloads: list[dict[str, Any]] = [
        {"type": "message_start", "message": started},
        {"type": "content_block_start", "index": 0, "content_block": start_block},
        {"type": "ping"},
    ]
    payloads += [{"type": "content_block_delta", "index": 0, "delta": delta} for delta in deltas]
    payloads += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        },
        {"type": "message_stop"},
    ]
    return [sse(payload, payload["type"]) for payload in payloads]


# --- errors --------------------------------------------------------------------------------------

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    """An Anthropic-style error envelope."""
    kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_message(body: Any) -> str:
    """The human message inside an OpenAI-style, raw-text or CLIProxy error body."""
    if isinstance(body, str):
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    return json.dumps(body)
