"""Hooks that run inside the LiteLLM proxy process (named by the rendered config).

`smoke_mock` (`litellm_settings.callbacks`): a request whose body `metadata` holds `llm_router_mock: "<text>"` is
answered with that text after the router has picked a deployment of the group, so `llm-router smoke` exercises the
northbound endpoint, the master key, the profile's model group, deployment selection and streaming without sending
anything upstream. LiteLLM 1.108.7 strips a client-sent `mock_response` (it is honoured only for virtual keys
flagged `allow_client_mock_response`, which need a database), so the marker is turned into one here, after that
stripping, for chat completions (`async_pre_call_hook`; LiteLLM streams it too). On `/v1/responses` and
`/v1/messages` LiteLLM's `mock_response` short-circuits into a non-streamed answer even for `stream: true`, so there
the hook instead points the chosen deployment's call at `MockUpstream`, a loopback server inside the LiteLLM
process (`async_pre_call_deployment_hook`, which runs after deployment selection): LiteLLM's real code for that
deployment (the untranslated Messages forwarding, the Responses-to-chat translation, ...) runs against it and the
client gets the real event sequences. A mocked answer costs nothing and reveals nothing, so any caller holding the
master key may ask. The same hook raises the deferred `/v1/messages` refusals of `custom_auth` (below).

`custom_auth` (`general_settings.custom_auth`): the northbound key check. LiteLLM's own check, without a database,
answers a missing key with HTTP 500 (its error path imports `prisma`) and a wrong one with 400 "No connected db".
This one compares the presented key (`Authorization: Bearer KEY` or `x-api-key: KEY`) with the master key in
constant time and refuses with HTTP 401 and a message naming where the key is (OpenAI-shaped; on `/v1/messages`
Anthropic-shaped, because there the refusal is raised by `smoke_mock` inside the route, whose own error handler
writes that shape; only while `smoke_mock` is an active callback, else it is refused here). `/health/liveliness` and
`/health/readiness` take no key at all (LiteLLM serves them without its auth dependency), so the supervisor's
probes are not affected.

LiteLLM builds `smoke_mock` through `getattr`; llm-router itself imports only the constants and pure helpers (this
module imports LiteLLM only inside functions).
"""
from __future__ import annotations

import hmac
import os

MOCK_KEY = "llm_router_mock"
MAX_MOCK_CHARS = 200
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"  # = config.MASTER_KEY_ENV (not imported: this module runs inside LiteLLM)
KEY_HINT = (f"use the router's master key: ${MASTER_KEY_ENV}, or the file .router/secrets/{MASTER_KEY_ENV} "
            "when llm-router generated it (as `Authorization: Bearer KEY` or `x-api-key: KEY`)")
MISSING_KEY = f"No API key was sent to llm-router's LiteLLM endpoint; {KEY_HINT}"
WRONG_KEY = f"The API key sent to llm-router's LiteLLM endpoint is not its master key; {KEY_HINT}"
AUTH_ERROR_KEY = "llm_router_auth_error"  # in a refused identity's metadata: the refusal `smoke_mock` raises
REFUSED_USER = "llm-router-refused"
DEFERRED_ROUTES = frozenset({"/v1/messages"})  # routes whose own error handler writes the Anthropic error shape
NO_MASTER_KEY = (f"llm-router's LiteLLM endpoint has no master key configured ({MASTER_KEY_ENV} is unset), so it "
                 "refuses every request; start it with `llm-router service start litellm`")


def mock_text(data: dict) -> str | None:
    """The mock answer a request asks for, or None."""
    for field in ("metadata", "litellm_metadata"):
        metadata = data.get(field)
        if isinstance(metadata, dict):
            value = metadata.get(MOCK_KEY)
            if isinstance(value, str) and value:
                return value[:MAX_MOCK_CHARS]
    return None


def key_problem(presented: str | None, master: str | None) -> str | None:
    """Why `presented` does not open the endpoint (None: it does). Compared in constant time."""
    if not master:
        return NO_MASTER_KEY
    presented = (presented or "").strip()
    if presented.lower().startswith("bearer "):
        presented = presented[7:].strip()
    if not presented:
        return MISSING_KEY
    if not hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), master.encode("utf-8", "surrogateescape")):
        return WRONG_KEY
    return None


def _master_key() -> str | None:
    """The master key LiteLLM resolved from `general_settings.master_key` (else the environment)."""
    try:
        from litellm.proxy import proxy_server

        key = getattr(proxy_server, "master_key", None)
    except ImportError:  # not inside the proxy
        key = None
    return key if isinstance(key, str) and key else os.environ.get(MASTER_KEY_ENV) or None


async def custom_auth(request, api_key: str):
    """LiteLLM's `custom_auth`: a UserAPIKeyAuth for the master key, else a 401 ProxyException with the hint."""
    from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

    master = _master_key()
    presented = api_key
    if not presented and request is not None:  # LiteLLM reads x-api-key only for some routes; read it everywhere
        presented = request.headers.get("x-api-key") or ""
    problem = key_problem(presented, master)
    if problem is None:
        return UserAPIKeyAuth(api_key=master, user_role=LitellmUserRoles.PROXY_ADMIN, user_id="llm-router")
    path = getattr(getattr(request, "url", None), "path", "")
    if path in DEFERRED_ROUTES and _gate_registered():
        # An error raised here is written by LiteLLM's OpenAI-shaped handler; on /v1/messages the route's own
        # handler writes Anthropic-shaped errors, so the refusal is raised by `smoke_mock` before any routing
        # (see `_refusal`). Fail-safe: this identity opens nothing, and it is only issued while that hook runs.
        return UserAPIKeyAuth(api_key=None, user_role=LitellmUserRoles.INTERNAL_USER_VIEW_ONLY,
                              user_id=REFUSED_USER, metadata={AUTH_ERROR_KEY: problem})
    raise _refusal(problem)


def _refusal(problem: str):
    from litellm.proxy._types import ProxyException

    return ProxyException(message=problem, type="authentication_error", param="api_key", code=401,
                          openai_code="invalid_api_key")


def _gate_registered() -> bool:
    """Whether `smoke_mock` (which raises the deferred refusals) is one of LiteLLM's active callbacks."""
    instance = _instances.get("smoke_mock")
    if instance is None:
        return False
    try:
        import litellm
    except ImportError:
        return False
    return any(callback is instance for callback in (litellm.callbacks or []))


def _build():
    from litellm.integrations.custom_logger import CustomLogger  # inside the proxy: already imported

    class SmokeMock(CustomLogger):
        async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):  # noqa: D102
            metadata = getattr(user_api_key_dict, "metadata", None) or {}
            if getattr(user_api_key_dict, "user_id", None) == REFUSED_USER or AUTH_ERROR_KEY in metadata:
                raise _refusal(metadata.get(AUTH_ERROR_KEY) or WRONG_KEY)
            text = mock_text(data)
            if text is not None and _call_type_name(call_type) not in UPSTREAM_MOCKED:
                data["mock_response"] = text  # chat: LiteLLM's own mock (it streams too)
            return data

        async def async_pre_call_deployment_hook(self, kwargs: dict, call_type):  # noqa: D102
            # After the router picked the deployment, just before the call: a mocked Responses or Messages
            # request goes to the in-process mock upstream instead (LiteLLM's `mock_response` cannot stream
            # on those routes), so LiteLLM's real path for the deployment (native or translated) still runs.
            text = mock_text(kwargs)
            if text is not None and _call_type_name(call_type) in UPSTREAM_MOCKED:
                kwargs["api_base"] = mock_upstream().api_base(text)
            return kwargs

    return SmokeMock()


def _call_type_name(call_type) -> str:
    return str(getattr(call_type, "value", call_type) or "")


UPSTREAM_MOCKED = frozenset({"aresponses", "responses", "anthropic_messages"})


# --------------------------------------------------------------------------- the in-process mock upstream

class MockUpstream:
    """A loopback HTTP server in a daemon thread of the LiteLLM process that answers chat completions, Responses
    and Anthropic Messages calls, streamed (with the real event sequences) or not, with the text named in the
    request path (`/<base64url text>/v1/...`). It holds nothing and forwards nothing; it exists so a mocked
    request runs through LiteLLM's real code for the chosen deployment without reaching the upstream."""

    def __init__(self) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _mock_handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="llm-router-mock-upstream", daemon=True).start()

    def api_base(self, text: str) -> str:
        import base64

        token = base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=") or "-"
        return f"http://127.0.0.1:{self.port}/{token}/v1"


_mock_lock = None


def mock_upstream() -> MockUpstream:
    global _mock_lock
    import threading

    if _mock_lock is None:
        _mock_lock = threading.Lock()
    with _mock_lock:
        if "mock_upstream" not in _instances:
            _instances["mock_upstream"] = MockUpstream()
        return _instances["mock_upstream"]


MOCK_PATHS = {"/v1/chat/completions": "chat", "/v1/responses": "responses", "/v1/messages": "messages"}


def _mock_handler():
    import base64
    import json
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - quiet: LiteLLM's log is the record
            return None

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            token, _, rest = self.path.lstrip("/").partition("/")
            protocol = MOCK_PATHS.get("/" + rest.split("?", 1)[0])
            try:
                body = json.loads(raw or b"{}")
                text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                protocol = None
            if protocol is None or not isinstance(body, dict):
                self._send(404, {"error": {"message": f"mock upstream: no route {self.path}", "type": "not_found"}})
                return
            from ..standin import protocols  # the stand-ins' one implementation of the real event sequences

            turn = protocols.parse_turn(protocol, body, str(body.get("model") or "mock"))
            answer = protocols.text_answer(text[:MAX_MOCK_CHARS], None)  # a mock ignores max_tokens
            if not turn.stream:
                self._send(200, protocols.render_json(turn, answer))
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for frame in protocols.render_events(turn, answer):
                data = frame.encode("utf-8")
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


_instances: dict[str, object] = {}


def __getattr__(name: str):
    """`smoke_mock` is built on first access, so importing this module (for MOCK_KEY) does not import LiteLLM."""
    if name == "smoke_mock":
        if name not in _instances:
            _instances[name] = _build()
        return _instances[name]
    raise AttributeError(name)
