"""The operator flow end to end on the real runtime (`llm-router smoke`):

doctor → profile set PROFILE → service start all → health → through the LiteLLM endpoint: one chat completion and
one streamed completion (`openai` client), one streamed Responses API call (`responses.stream()`, what Codex CLI
speaks) and one streamed Anthropic Messages call (`/v1/messages`, what Claude Code speaks) → service stop (only what
smoke itself started).

By default every call is mocked after the router picked a deployment of the model group (see `litellm_hooks`):
chat by LiteLLM's `mock_response`, Responses and Messages by the in-process mock upstream that LiteLLM's own code
for that deployment talks to. Nothing is sent upstream and nothing is billed. `live=True` sends the non-streamed
chat completion for real with `max_tokens: 1` (the other calls stay mocked). `standin=True` runs the same flow in a
sandbox (see `sandbox`) where CLIProxyAPIPlus is the stand-in, so it runs offline with no accounts.

Smoke leaves the machine as it found it: a service that was already running is not stopped, and a profile it
changed is put back. Cleanup runs on failure and on Ctrl-C too.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from .. import services
from ..config import MASTER_KEY_ENV, RouterConfig
from ..errors import RouterError
from ..litellm_hooks import MOCK_KEY
from . import FAIL, OK, Finding

SKIP = "skip"
INTERRUPTED = "interrupted"
MOCK_TEXT = "llm-router smoke ok"
PROMPT = "llm-router smoke test: answer with one word."
REQUEST_TIMEOUT = 120.0
HOOK = "llm_router.litellm_hooks.smoke_mock"
Notify = Callable[["Step"], None]


@dataclass
class Step:
    name: str
    status: str
    seconds: float
    detail: str
    hint: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SmokeReport:
    profile: str
    mode: str  # "mock" or "live"
    standin: bool
    steps: list[Step] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    base_url: str | None = None
    model: str | None = None
    upstream_requests: int | None = None  # stand-in mode: inference requests the stand-ins answered
    sandbox: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.status == OK for s in self.steps)

    @property
    def interrupted(self) -> bool:
        return any(s.status == INTERRUPTED for s in self.steps)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def client(cfg: RouterConfig, timeout: float = REQUEST_TIMEOUT):
    """An `openai` client for the LiteLLM endpoint with the master key; no proxy from the environment, no retries."""
    import openai

    return openai.OpenAI(base_url=cfg.services["litellm"].base_url + "/v1", api_key=cfg.secret(MASTER_KEY_ENV),
                         max_retries=0, timeout=timeout, http_client=openai.DefaultHttpxClient(trust_env=False))


def _applied_text(info: dict) -> str:
    """What `profiles.set_profile` did to the running LiteLLM, as a clause for the step's detail."""
    applied = info.get("applied") or {}
    how = applied.get("how") if isinstance(applied, dict) else None
    if how == "worker swap":
        return "; LiteLLM serves it now (worker swap)"
    if how == "restart":
        return "; LiteLLM restarted on it"
    if how == "not running":
        return "; LiteLLM was not running (it starts on it)"
    return f"; applied: {how}" if how else ""


def _sse_events(response) -> list[tuple[str, dict]]:
    """(event, data) pairs of a server-sent event stream (an httpx streaming response)."""
    import json

    events, kind, data = [], "", []
    for line in response.iter_lines():
        if not line:
            if data:
                payload = "\n".join(data)
                events.append((kind, json.loads(payload) if payload.startswith("{") else {"raw": payload}))
            kind, data = "", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    if data:
        payload = "\n".join(data)
        events.append((kind, json.loads(payload) if payload.startswith("{") else {"raw": payload}))
    return events


def messages_stream(cfg: RouterConfig, model: str, text: str | None, prompt: str = PROMPT,
                    timeout: float = REQUEST_TIMEOUT) -> dict:
    """One streamed Anthropic Messages call (`POST /v1/messages`, `x-api-key` as Claude Code sends it), mocked with
    `text` unless it is None: {"deployment", "events", "text"}. Raises RouterError on a non-200 answer or an error
    event."""
    import httpx

    body = {"model": model, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    if text is not None:
        body["metadata"] = {MOCK_KEY: text}
    headers = {"x-api-key": cfg.secret(MASTER_KEY_ENV) or "", "anthropic-version": "2023-06-01",
               "content-type": "application/json"}
    url = cfg.services["litellm"].base_url + "/v1/messages"
    with httpx.Client(trust_env=False, timeout=timeout) as http, http.stream("POST", url, json=body,
                                                                            headers=headers) as response:
        if response.status_code != 200:
            response.read()
            raise RouterError(f"/v1/messages answered HTTP {response.status_code}: {response.text[:200]}")
        events = _sse_events(response)
        deployment = response.headers.get("x-litellm-model-id", "?")
    kinds = [k for k, _ in events]
    errors = [d for k, d in events if k == "error" or "error" in d]
    if errors:
        raise RouterError(f"/v1/messages streamed an error: {str(errors[0])[:200]}")
    text_out = "".join(d.get("delta", {}).get("text", "") for k, d in events if k == "content_block_delta")
    return {"deployment": deployment, "events": kinds, "text": text_out}


def _error_text(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", None) or exc).splitlines()[0][:300]
    return f"HTTP {status}: {message}" if status else f"{type(exc).__name__}: {message}"


class _Flow:
    def __init__(self, cfg: RouterConfig, report: SmokeReport, notify: Notify | None):
        self.cfg = cfg
        self.report = report
        self.notify = notify
        self.failed = False

    def step(self, name: str, action: Callable[[], str], always: bool = False) -> None:
        if self.failed and not always:
            self._add(Step(name, SKIP, 0.0, "not run: an earlier step failed"))
            return
        start = time.monotonic()
        try:
            detail = action()
            status, hint = OK, None
        except RouterError as exc:
            status, detail, hint = FAIL, exc.message, exc.hint
            if len(exc.details) > 1:
                detail += " | " + " | ".join(exc.details[-3:])
        except KeyboardInterrupt:
            status, detail, hint = INTERRUPTED, "interrupted (Ctrl-C)", None
        except Exception as exc:  # the openai client's errors, a refused connection, ...
            status, detail, hint = FAIL, _error_text(exc), None
        self._add(Step(name, status, round(time.monotonic() - start, 2), detail, hint))
        if status != OK:
            self.failed = True

    def _add(self, step: Step) -> None:
        self.report.steps.append(step)
        if self.notify:
            self.notify(step)


def run(cfg: RouterConfig, profile: str | None = None, live: bool = False, standin: bool = False,
        timeout: float | None = None, model: str | None = None, notify: Notify | None = None) -> SmokeReport:
    """Run the flow and return its steps; never raises for a failing step (the report says where it failed)."""
    from .. import profiles

    if profile is None:
        current = profiles.active(cfg)
        profile = current["name"] if current else cfg.default_profile
    report = SmokeReport(profile=profile, mode="live" if live else "mock", standin=standin)
    if not standin:
        _flow(cfg, report, profile, live, timeout, model, notify)
        return report
    from .. import sandbox

    flow = _Flow(cfg, report, notify)
    box = None

    def make() -> str:
        nonlocal box
        box = sandbox.from_config(cfg, profile)
        report.sandbox = str(box.root)
        paid = "; upstream stand-in for the openai_compatible providers" if box.upstream is not None else ""
        return f"temporary stack in {box.root}: CLIProxyAPIPlus stand-in with a Codex and a Copilot account{paid}"

    try:
        flow.step("sandbox", make)
        if box is not None:
            _flow(box.cfg, report, profile, live, timeout, model, notify, failed=flow.failed,
                  before_stop=lambda: setattr(report, "upstream_requests", box.upstream_requests()))
    finally:
        if box is not None:
            problems = box.close()
            if problems:
                report.steps.append(Step("sandbox cleanup", FAIL, 0.0, "; ".join(problems)))
    return report


def _flow(cfg: RouterConfig, report: SmokeReport, profile: str, live: bool, timeout: float | None,
          model: str | None, notify: Notify | None, failed: bool = False,
          before_stop: Callable[[], None] | None = None) -> None:
    from .. import profiles
    from . import doctor

    flow = _Flow(cfg, report, notify)
    flow.failed = failed
    report.base_url = cfg.services["litellm"].base_url + "/v1"
    report.model = model or (cfg.models[0].name if cfg.models else None)
    was_running = {name: services.is_running(cfg, name) for name in services.ORDER}
    before = profiles.active(cfg)
    restore: list[str | None] = [None]

    def run_doctor() -> str:
        findings = doctor.run(cfg)
        report.findings = findings
        counts = doctor.summary(findings)
        failed_ones = [f for f in findings if f.status == FAIL]
        if failed_ones:
            first = failed_ones[0]
            raise RouterError(f"{len(failed_ones)} check(s) failed, first: {first.check}: {first.detail}",
                              hint=first.fix or "llm-router doctor")
        return f"{counts[OK]} ok, {counts.get('warn', 0)} warning(s)"

    def set_profile() -> str:
        rendered = profiles.render(cfg, profile)
        if before and before["name"] == profile and cfg.layout.active_config.is_file() and \
                cfg.layout.active_config.read_text(encoding="utf-8") == rendered:
            return f"{profile} is already active (unchanged)"
        info = profiles.set_profile(cfg, profile)
        if before and before["name"] != profile:
            restore[0] = before["name"]
        return f"{profile} activated (was {info['previous'] or 'none'}){_applied_text(info)}"

    def start() -> str:
        parts = []
        for name in services.ORDER:
            try:
                outcome = services.start(cfg, [name], timeout=timeout)[0]
            except RouterError as exc:
                raise RouterError(f"{name}: {exc.message}" + (f" (after: {', '.join(parts)})" if parts else ""),
                                  hint=exc.hint, exit_code=exc.exit_code, details=exc.details) from None
            if outcome["result"] == "started":
                report.started.append(name)
            parts.append(f"{name} {outcome['result']} (pid {outcome.get('pid')}, port {outcome.get('port')})")
        return "; ".join(parts)

    def health() -> str:
        results = services.health_check(cfg)
        parts, bad = [], []
        for r in results:
            probe = r["probe"]
            if r["ready"]:
                parts.append(f"{r['service']} ready ({probe['latency_ms']:.0f} ms)")
            else:
                bad.append(f"{r['service']} not ready ({probe['error'] or r['state']})")
        if bad:
            raise RouterError("; ".join(bad), hint="llm-router service logs NAME")
        return ", ".join(parts)

    def hook_active() -> None:
        import yaml

        try:
            data = yaml.safe_load(cfg.layout.active_config.read_text(encoding="utf-8")) or {}
        except (OSError, ValueError):
            data = {}
        callbacks = (data.get("litellm_settings") or {}).get("callbacks") or []
        if HOOK not in (callbacks if isinstance(callbacks, list) else [callbacks]):
            raise RouterError(f"profile {profile} does not load {HOOK}, so a mocked request would reach the "
                              "upstream; nothing was sent",
                              hint="extend templates/litellm/base.yaml.j2 (it loads the hook), or run with --live")

    def chat() -> str:
        if not report.model:
            raise RouterError("routertool.yaml defines no model group", hint="add one under models:")
        if not live:
            hook_active()
        extra = {"extra_body": {"metadata": {MOCK_KEY: MOCK_TEXT}}} if not live else {"max_tokens": 1}
        raw = client(cfg).chat.completions.with_raw_response.create(
            model=report.model, messages=[{"role": "user", "content": PROMPT}], **extra)
        reply = raw.parse()
        deployment = raw.headers.get("x-litellm-model-id", "?")
        content = (reply.choices[0].message.content or "") if reply.choices else ""
        if not live and content != MOCK_TEXT:
            raise RouterError(f"expected the mocked answer, got {content[:60]!r} from {deployment}: the request may "
                              "have reached the upstream", hint="check litellm_settings.callbacks in the profile")
        if live and not reply.choices:
            raise RouterError(f"{deployment} answered without a choice")
        how = "live, max_tokens 1" if live else "mocked by LiteLLM, nothing sent upstream"
        tokens = f", {reply.usage.total_tokens} tokens" if live and reply.usage else ""
        return f"{report.model} -> {deployment}: {content[:40]!r} ({how}{tokens})"

    def stream() -> str:
        if not report.model:
            raise RouterError("routertool.yaml defines no model group", hint="add one under models:")
        hook_active()
        chunks = client(cfg).chat.completions.create(
            model=report.model, messages=[{"role": "user", "content": PROMPT}], stream=True,
            extra_body={"metadata": {MOCK_KEY: MOCK_TEXT}})
        parts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        text = "".join(parts)
        if text != MOCK_TEXT:
            raise RouterError(f"the stream ended with {text[:60]!r} instead of the mocked answer")
        return f"{report.model}: {len(parts)} chunks, {text!r} (mocked by LiteLLM, nothing sent upstream)"

    def responses_stream() -> str:
        if not report.model:
            raise RouterError("routertool.yaml defines no model group", hint="add one under models:")
        hook_active()
        with client(cfg).responses.stream(model=report.model, input=PROMPT,
                                          extra_body={"metadata": {MOCK_KEY: MOCK_TEXT}}) as events:
            kinds = [event.type for event in events]
            final = events.get_final_response()
        text = final.output_text or ""
        if text != MOCK_TEXT:
            raise RouterError(f"the Responses stream ended with {text[:60]!r} instead of the mocked answer")
        return (f"{report.model}: {len(kinds)} events ({kinds[0]} ... {kinds[-1]}), {text!r} "
                "(mocked, nothing sent upstream)")

    def anthropic_stream() -> str:
        if not report.model:
            raise RouterError("routertool.yaml defines no model group", hint="add one under models:")
        hook_active()
        result = messages_stream(cfg, report.model, MOCK_TEXT)
        if result["text"] != MOCK_TEXT or "message_stop" not in result["events"]:
            raise RouterError(f"the Messages stream ended with {result['text'][:60]!r} after "
                              f"{', '.join(result['events'][-3:]) or 'no events'} instead of the mocked answer")
        return (f"{report.model} -> {result['deployment']}: {len(result['events'])} events "
                f"(message_start ... message_stop), {result['text']!r} (mocked, nothing sent upstream)")

    def stop() -> str:
        left = [n for n in services.ORDER if was_running[n]]
        notes = [f"left running as found: {', '.join(left)}"] if left else []
        if report.started:
            outcomes = services.stop(cfg, report.started)
            notes.insert(0, "; ".join(f"{o['service']} {o['result']}" for o in outcomes))
        elif not left:
            notes.append("nothing was started")
        return "; ".join(notes)

    def put_back() -> str:
        info = profiles.set_profile(cfg, restore[0])
        return f"{restore[0]} active again" + _applied_text(info)

    try:
        flow.step("doctor", run_doctor)
        flow.step("profile set", set_profile)
        flow.step("service start", start)
        flow.step("health", health)
        flow.step("chat completion", chat)
        flow.step("streamed completion", stream)
        flow.step("streamed responses", responses_stream)
        flow.step("streamed messages", anthropic_stream)
    finally:
        if before_stop is not None:
            before_stop()
        flow.step("service stop", stop, always=True)
        if restore[0]:
            flow.step("profile restore", put_back, always=True)
