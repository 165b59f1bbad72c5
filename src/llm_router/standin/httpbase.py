"""Shared HTTP plumbing for the stand-ins.

A loopback-only threading server and a request handler that speaks the OpenAI-compatible
subset both stand-ins serve (`/v1/models`, `/v1/chat/completions`, `/v1/responses`), with
per-model fault injection and request counters behind the test-only `/_standin/*` routes.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import socketserver
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
MODEL_CREATED = 1_776_384_000  # 2026-04-17, the "created" stamp of every listed model
JSON_TYPE = "application/json; charset=utf-8"


class RequestError(Exception):
    """Raised inside a handler to answer with `status` and `body` (dict -> JSON, str -> text)."""

    def __init__(self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def openai_error(message: str, kind: str, code: str | None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def invalid_request(message: str) -> RequestError:
    """A 400 with an OpenAI-style `invalid_request_error` body."""
    return RequestError(400, openai_error(message, "invalid_request_error", None))


@dataclass
class Fault:
    """What to do to the next requests for one model (see `POST /_standin/fault`)."""

    status: int | None = None
    retry_after: float | None = None
    count: int = -1
    delay: float = 0.0
    drop_stream: bool = False

    @classmethod
    def from_request(cls, data: dict[str, Any]) -> tuple[str, Fault]:
        """Validate a fault request body; returns (model, fault)."""
        model = data.get("model", "*")
        status = data.get("status")
        retry_after = data.get("retry_after")
        count = data.get("count", -1)
        delay = data.get("delay", 0) or 0
        drop_stream = data.get("drop_stream", False)
        if not isinstance(model, str) or not model:
            raise invalid_request("model must be a model id or '*'")
        if status is not None and (not _is_int(status) or not 100 <= status <= 599):
            raise invalid_request("status must be an HTTP status or null")
        if retry_after is not None and (not _is_number(retry_after) or retry_after < 0):
            raise invalid_request("retry_after must be seconds or null")
        if not _is_int(count) or count == 0 or count < -1:
            raise invalid_request("count must be a positive integer or -1")
        if not _is_number(delay) or delay < 0:
            raise invalid_request("delay must be seconds")
        if not isinstance(drop_stream, bool):
            raise invalid_request("drop_stream must be a boolean")
        return model, cls(status, retry_after, count, float(delay), drop_stream)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FaultTable:
    """Faults per model id (`*` matches any model without its own fault)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}

    def set(self, model: str, fault: Fault) -> None:
        with self._lock:
            self._faults[model] = fault

    def take(self, model: str) -> Fault | None:
        """The fault that applies to one request for `model`, consuming one use of it."""
        with self._lock:
            key = model if model in self._faults else "*"
            fault = self._faults.get(key)
            if fault is None:
                return None
            if fault.count > 0:
                fault.count -= 1
                if fault.count == 0:
                    del self._faults[key]
            return Fault(**asdict(fault))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


class RequestCounter:
    """Inference requests received, per model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}

    def add(self, model: str) -> None:
        with self._lock:
            self._requests[model] = self._requests.get(model, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": dict(self._requests), "total": sum(self._requests.values())}

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()


class StandinServer(ThreadingHTTPServer):
    """A threading HTTP server bound to 127.0.0.1 (port 0 picks a free port)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, handler: type[StandinHandler], name: str) -> None:
        self.name = name
        self.faults = FaultTable()
        self.counter = RequestCounter()
        super().__init__((LOOPBACK, port), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn); loopback needs no lookup.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


def install_stop_handlers(stop: threading.Event) -> None:
    """Make SIGTERM and SIGINT set `stop` instead of killing the process."""

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def serve_until_stopped(server: StandinServer, stop: threading.Event) -> None:
    """Serve on a background thread until `stop` is set, then shut the server down."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()


def completion_words(server: str, model: str, limit: int | None) -> tuple[list[str], str]:
    """The answer text as words ("tokens"), cut to `limit`, and its finish reason."""
    words = f"standin {server} model {model}".split()
    if limit is not None and limit < len(words):
        return words[: max(limit, 0)], "length"
    return words, "stop"


def count_words(value: Any) -> int:
    """Rough prompt token count: words in every string inside `value`."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(item) for item in value)
    if isinstance(value, dict):
        return sum(count_words(item) for key, item in value.items() if key in ("content", "text", "input"))
    return 0


class StandinHandler(BaseHTTPRequestHandler):
    """Request handler base: routing hooks, JSON and SSE helpers, OpenAI-compatible answers."""

    protocol_version = "HTTP/1.1"
    server_version = "standin"
    server: StandinServer
    url_path = ""
    query: dict[str, str]
    body: bytes

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.url_path = url.path
        self.query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if url.path.startswith("/_standin/"):
                self.handle_control()
            else:
                self.handle_api()
        except RequestError as exc:
            self.send_reply(exc.status, exc.body, exc.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # --- hooks for subclasses -------------------------------------------------------------

    def handle_api(self) -> None:
        """Serve the public routes; subclasses override."""
        self.not_found()

    def handle_control(self) -> None:
        """Serve the test-only `/_standin/*` routes (the server only listens on loopback)."""
        route = (self.command, self.url_path)
        if route == ("POST", "/_standin/fault"):
            model, fault = Fault.from_request(self.json_body())
            self.server.faults.set(model, fault)
            self.send_json(200, {"status": "ok", "model": model, "fault": asdict(fault)})
        elif route == ("POST", "/_standin/reset"):
            self.server.faults.clear()
            self.server.counter.clear()
            self.send_json(200, {"status": "ok"})
        elif route == ("GET", "/_standin/stats"):
            self.send_json(200, self.server.counter.snapshot())
        else:
            self.not_found()

    def fault_error(self, fault: Fault, model: str) -> RequestError:
        """The error to answer for an injected status (OpenAI style; 429 carries Retry-After if set)."""
        headers = {}
        if fault.status == 429:
            body = openai_error(f"Rate limit reached for {model} (standin fault)", "requests", "rate_limit_exceeded")
            if fault.retry_after is not None:
                headers["Retry-After"] = str(math.ceil(fault.retry_after))
        elif fault.status is not None and fault.status >= 500:
            body = openai_error("The server had an error processing your request (standin fault)", "server_error", None)
        else:
            body = openai_error(f"standin fault {fault.status}", "invalid_request_error", None)
        return RequestError(fault.status or 500, body, headers)

    # --- helpers ----------------------------------------------------------------------------

    def send_response(self, code: int, message: str | None = None) -> None:
        super().send_response(code, message)
        self.send_header("x-standin-server", self.server.name)

    def send_reply(self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None) -> None:
        if isinstance(body, str):
            self.send_text(status, body, headers)
        else:
            self.send_json(status, body, headers)

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(body).encode(), JSON_TYPE, headers)

    def send_text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, text.encode(), "text/plain; charset=utf-8", headers)

    def _send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def not_found(self) -> None:
        self.send_text(404, "404 page not found")

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object (400 otherwise)."""
        try:
            data = json.loads(self.body or b"null")
        except ValueError as exc:
            raise invalid_request(f"invalid JSON body: {exc}") from exc
        if not isinstance(data, dict):
            raise invalid_request("request body must be a JSON object")
        return data

    @staticmethod
    def model_of(body: dict[str, Any]) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid_request("model is required")
        return model

    def send_sse(self, events: list[str], drop_after: int | None = None) -> None:
        """Stream `events` with chunked encoding; with `drop_after`, close without the terminator."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, event in enumerate(events):
            if drop_after is not None and index == drop_after:
                self.close_connection = True
                return
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")

    # --- OpenAI-compatible behaviour ----------------------------------------------------------

    def send_models(self, models: list[tuple[str, str]]) -> None:
        """`GET /v1/models` for (id, owned_by) pairs."""
        data = [
            {"id": model, "object": "model", "created": MODEL_CREATED, "owned_by": owner} for model, owner in models
        ]
        self.send_json(200, {"object": "list", "data": data})

    def serve_inference(self, body: dict[str, Any], responses_api: bool) -> None:
        """Count, apply the model's fault, then answer a chat or responses request."""
        model = self.model_of(body)
        self.server.counter.add(model)
        fault = self.server.faults.take(model)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status is not None:
            raise self.fault_error(fault, model)
        stream = bool(body.get("stream"))
        drop = bool(fault and fault.drop_stream)
        if drop and not stream:
            self.close_connection = True
            return
        if responses_api:
            limit = body.get("max_output_tokens")
            words, finish = completion_words(self.server.name, model, limit if _is_int(limit) else None)
            self._answer_responses(body, model, words, finish, stream, drop)
        else:
            limit = body.get("max_tokens", body.get("max_completion_tokens"))
            words, finish = completion_words(self.server.name, model, limit if _is_int(limit) else None)
            self._answer_chat(body, model, words, finish, stream, drop)

    def _answer_chat(
        self, body: dict[str, Any], model: str, words: list[str], finish: str, stream: bool, drop: bool
    ) -> None:
        prompt = count_words(body.get("messages"))
        usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
        base = {"id": f"chatcmpl-standin-{uuid.uuid4().hex[:16]}", "created": int(time.time()), "model": model}
        if not stream:
            message = {"role": "assistant", "content": " ".join(words)}
            choice = {"index": 0, "message": message, "finish_reason": finish}
            self.send_json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        deltas = [{"role": "assistant", "content": words[0] if words else ""}]
        deltas += [{"content": " " + word} for word in words[1:]]
        chunks = [{"index": 0, "delta": delta, "finish_reason": None} for delta in deltas]
        chunks.append({"index": 0, "delta": {}, "finish_reason": finish})
        payloads = [{**base, "object": "chat.completion.chunk", "choices": [choice]} for choice in chunks]
        if (body.get("stream_options") or {}).get("include_usage"):
            payloads.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        events = [f"data: {json.dumps(payload)}\n\n" for payload in payloads] + ["data: [DONE]\n\n"]
        self.send_sse(events, drop_after=2 if drop else None)

    def _answer_responses(
        self, body: dict[str, Any], model: str, words: list[str], finish: str, stream: bool, drop: bool
    ) -> None:
        text = " ".join(words)
        prompt = count_words(body.get("input"))
        item = {
            "type": "message",
            "id": f"msg_standin_{uuid.uuid4().hex[:16]}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        response = {
            "id": f"resp_standin_{uuid.uuid4().hex[:16]}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed" if finish == "stop" else "incomplete",
            "incomplete_details": None if finish == "stop" else {"reason": "max_output_tokens"},
            "model": model,
            "output": [item],
            "usage": {"input_tokens": prompt, "output_tokens": len(words), "total_tokens": prompt + len(words)},
        }
        if not stream:
            self.send_json(200, response)
            return
        pieces = [words[0]] + [" " + word for word in words[1:]] if words else []
        payloads = [{"type": "response.created", "response": {**response, "status": "in_progress", "output": []}}]
        delta = {"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0, "content_index": 0}
        payloads += [{**delta, "delta": piece} for piece in pieces]
        payloads.append({"type": "response.completed", "response": response})
        events = [f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n" for payload in payloads]
        self.send_sse(events, drop_after=2 if drop else None)

    def log_message(self, format: str, *args: Any) -> None:
        print(f"[{self.server.name}] {self.address_string()} {format % args}", flush=True)
