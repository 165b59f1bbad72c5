"""Shared HTTP plumbing for the stand-ins.

A loopback-only threading server and a request handler that answers inference in every protocol
of `protocols.py`, with per-model fault injection, request counters and a request log behind the
test-only `/_standin/*` routes.
"""

from __future__ import annotations

import json
import math
import signal
import socket
import socketserver
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from llm_router.standin import protocols

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
    tool_call: str | None = None
    command: str | None = None

    @classmethod
    def from_request(cls, data: dict[str, Any]) -> tuple[str, Fault]:
        """Validate a fault request body; returns (model, fault)."""
        model = data.get("model", "*")
        status = data.get("status")
        retry_after = data.get("retry_after")
        count = data.get("count", -1)
        delay = data.get("delay", 0) or 0
        drop_stream = data.get("drop_stream", False)
        tool_call = data.get("tool_call")
        command = data.get("command")
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
        if tool_call is not None and (not isinstance(tool_call, str) or not tool_call):
            raise invalid_request("tool_call must be a tool name, '*' or null")
        if command is not None and not isinstance(command, str):
            raise invalid_request("command must be a string or null")
        return model, cls(status, retry_after, count, float(delay), drop_stream, tool_call, command)


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


class RequestLog:
    """The last API requests, in order, for `GET /_standin/requests` (never headers or keys)."""

    def __init__(self, limit: int = 1000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._seq = 0

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append({"seq": self._seq, **entry})

    def since(self, seq: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._entries if entry["seq"] > seq]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class StandinServer(ThreadingHTTPServer):
    """A threading HTTP server bound to 127.0.0.1 (port 0 picks a free port)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, handler: type[StandinHandler], name: str) -> None:
        self.name = name
        self.faults = FaultTable()
        self.counter = RequestCounter()
        self.requests = RequestLog()
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


class StandinHandler(BaseHTTPRequestHandler):
    """Request handler base: routing hooks, JSON and SSE helpers, OpenAI-compatible answers."""

    protocol_version = "HTTP/1.1"
    server_version = "standin"
    server: StandinServer
    url_path = ""
    query: dict[str, str]
    body: bytes
    record: dict[str, Any] | None = None

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

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.url_path = url.path
        self.query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.record = None
        if url.path.startswith("/v1/"):
            self.record = {
                "time": round(time.time(), 3),
                "method": self.command,
                "path": url.path,
                "protocol": protocols.PROTOCOL_PATHS.get(url.path),
                "server": self.server.name,
                "status": None,
                "model": None,
                "stream": None,
                "tools_offered": False,
                "tool_names": [],
                "tool_result": False,
                "tool_result_text": None,
                "answer": None,
            }
        try:
            if url.path.startswith("/_standin/"):
                self.handle_control()
            else:
                self.handle_api()
        except RequestError as exc:
            if self.record is not None:
                self.record["error"] = protocols.error_message(exc.body)[:300]
            self.send_reply(exc.status, exc.body, exc.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if self.record is not None:
                self.server.requests.add(self.record)
                self.record = None

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
            self.server.requests.clear()
            self.send_json(200, {"status": "ok"})
        elif route == ("GET", "/_standin/stats"):
            self.send_json(200, self.server.counter.snapshot())
        elif route == ("GET", "/_standin/requests"):
            since = self.query.get("since", "0")
            if not since.isdigit():
                raise invalid_request("since must be a sequence number")
            self.send_json(200, {"requests": self.server.requests.since(int(since))})
        elif route == ("DELETE", "/_standin/requests"):
            self.server.requests.clear()
            self.send_json(200, {"status": "ok"})
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
        if self.record is not None and self.record["status"] is None:
            self.record["status"] = code

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
        if self.command != "HEAD":
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

    def answer_inference(self, protocol: str, check: Any = None) -> None:
        """Parse the body, run `check(model)`, then answer; errors take the protocol's shape."""
        try:
            body = self.json_body()
            model = self.model_of(body)
            if self.record is not None:
                self.record.update(model=model, stream=bool(body.get("stream")))
            if check is not None:
                check(model)
            self.serve_inference(protocol, body, model)
        except RequestError as exc:
            raise self.protocol_error(protocol, exc) from None

    def protocol_error(self, protocol: str, error: RequestError) -> RequestError:
        """Anthropic routes answer errors in the Anthropic envelope; the others keep theirs."""
        if protocol not in ("messages", "count_tokens"):
            return error
        body = protocols.anthropic_error(error.status, protocols.error_message(error.body))
        return RequestError(error.status, body, error.headers)

    def answering(self, model: str) -> dict[str, Any]:
        """Who answers `model` (account, provider), recorded in the request log; subclasses add to it."""
        return {}

    def serve_inference(self, protocol: str, body: dict[str, Any], model: str) -> None:
        """Count, apply the model's fault, then answer `body` in `protocol` (see protocols.py)."""
        turn = protocols.parse_turn(protocol, body, model)
        record = self.record if self.record is not None else {}
        record.update(turn.log_fields())
        if protocol == "count_tokens":  # counted locally, as the real server does: no upstream, no fault
            self.send_json(200, protocols.count_tokens_json(turn))
            return
        self.server.counter.add(model)
        fault = self.server.faults.take(model)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.status is not None:
            record["fault"] = fault.status
            raise self.fault_error(fault, model)
        drop = bool(fault and fault.drop_stream)
        if drop:
            record["fault"] = "drop_stream"
        if drop and not turn.stream:
            self.close_connection = True
            return
        record.update(self.answering(model))
        forced = fault.tool_call if fault else None
        answer = protocols.decide(turn, self.server.name, forced, fault.command if fault else None)
        record.update(answer.log_fields())
        if not turn.stream:
            self.send_json(200, protocols.render_json(turn, answer))
            return
        self.send_sse(protocols.render_events(turn, answer), drop_after=2 if drop else None)
    def log_message(self, format: str, *args: Any) -> None:
        print(f"[{self.server.name}] {self.address_string()} {format % args}", flush=True)
