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

from .. import stack, switch
from ..config import MASTER_KEY_ENV, RouterConfig
from ..errors import RouterError
from ..litellm.hooks import MOCK_KEY
from ..switch import SwitchResult
from . import FAIL, OK, Finding

SKIP = "skip"
INTERRUPTED = "interrupted"
MOCK_TEXT = "llm-router smoke ok"
PROMPT = "llm-router smoke test: answer with one word."
REQUEST_TIMEOUT = 120.0
HOOK = "llm_router.litellm.hooks.smoke_mock"
HOOKS = (HOOK, "llm_router.litellm_hooks.smoke_mock")  # the old name, in profiles written before the move
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


def _applied_text(result: SwitchResult) -> str:
    """What the switch really did to the running LiteLLM (`SwitchResult.how`), as a clause for the step's
    detail: workers swapped, restarted, or not running."""
    how = result.how
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


class _Steps:
    """Runs named steps into the report: a step that raises is recorded as failed (or interrupted) and the later
    ones are skipped, except those run with `always` (the clean-up)."""

    def __init__(self, report: SmokeReport, notify: Notify | None, failed: bool = False):
        self.report = report
        self.notify = notify
        self.failed = failed

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
    if standin:
        StandinSmoke(cfg, report, profile, live, timeout, model, notify).run()
    else:
        OperatorFlow(cfg, report, profile, live, timeout, model, _Steps(report, notify)).run()
    return report


class StandinSmoke:
    """`smoke --standin`: the "sandbox" step (a temporary stack with the CLIProxyAPIPlus stand-in), the operator
    flow on it, and the sandbox closed whatever happened (a failed close is one more step)."""

    def __init__(self, cfg: RouterConfig, report: SmokeReport, profile: str, live: bool, timeout: float | None,
                 model: str | None, notify: Notify | None):
        self.cfg = cfg
        self.report = report
        self.profile = profile
        self.live = live
        self.timeout = timeout
        self.model = model
        self.notify = notify
        self.box = None

    def run(self) -> None:
        steps = _Steps(self.report, self.notify)
        try:
            steps.step("sandbox", self.make_sandbox)
            if self.box is not None:
                flow = OperatorFlow(self.box.cfg, self.report, self.profile, self.live, self.timeout, self.model,
                                    _Steps(self.report, self.notify, failed=steps.failed))
                flow.run(before_stop=self.count_upstream_requests)
        finally:
            if self.box is not None:
                problems = self.box.close()
                if problems:
                    self.report.steps.append(Step("sandbox cleanup", FAIL, 0.0, "; ".join(problems)))

    def make_sandbox(self) -> str:
        from .. import sandbox

        self.box = sandbox.from_config(self.cfg, self.profile)
        self.report.sandbox = str(self.box.root)
        paid = "; upstream stand-in for the openai_compatible providers" if self.box.upstream is not None else ""
        return f"temporary stack in {self.box.root}: CLIProxyAPIPlus stand-in with a Codex and a Copilot account{paid}"

    def count_upstream_requests(self) -> None:
        self.report.upstream_requests = self.box.upstream_requests()


class OperatorFlow:
    """The operator flow on one runtime, one method per step, in the order of `STEPS`. `run` then stops what the
    flow started (and only that) and puts back a profile it changed, also after a failure or Ctrl-C."""

    STEPS = (("doctor", "run_doctor"), ("profile set", "set_profile"), ("service start", "start"),
             ("health", "health"), ("chat completion", "chat"), ("streamed completion", "stream"),
             ("streamed responses", "responses_stream"), ("streamed messages", "anthropic_stream"))

    def __init__(self, cfg: RouterConfig, report: SmokeReport, profile: str, live: bool, timeout: float | None,
                 model: str | None, steps: _Steps):
        from .. import profiles

        self.cfg = cfg
        self.report = report
        self.profile = profile
        self.live = live
        self.timeout = timeout
        self.steps = steps
        report.base_url = cfg.services["litellm"].base_url + "/v1"
        report.model = model or (cfg.models[0].name if cfg.models else None)
        self.was_running = {name: stack.is_running(cfg, name) for name in stack.ORDER}
        self.before = profiles.active(cfg)
        self.restore_to: str | None = None  # the profile to put back, once `set_profile` changed it

    def run(self, before_stop: Callable[[], None] | None = None) -> None:
        try:
            for name, method in self.STEPS:
                self.steps.step(name, getattr(self, method))
        finally:
            if before_stop is not None:
                before_stop()
            self.steps.step("service stop", self.stop, always=True)
            if self.restore_to:
                self.steps.step("profile restore", self.restore_profile, always=True)

    # ------------------------------------------------------------------ the steps, in order
    def run_doctor(self) -> str:
        from . import doctor

        findings = doctor.run(self.cfg)
        self.report.findings = findings
        counts = doctor.summary(findings)
        failed_ones = [f for f in findings if f.status == FAIL]
        if failed_ones:
            first = failed_ones[0]
            raise RouterError(f"{len(failed_ones)} check(s) failed, first: {first.check}: {first.detail}",
                              hint=first.fix or "llm-router doctor")
        return f"{counts[OK]} ok, {counts.get('warn', 0)} warning(s)"

    def set_profile(self) -> str:
        from .. import profiles

        cfg, profile, before = self.cfg, self.profile, self.before
        rendered = profiles.render(cfg, profile)
        if before and before["name"] == profile and cfg.layout.active_config.is_file() and \
                cfg.layout.active_config.read_text(encoding="utf-8") == rendered:
            return f"{profile} is already active (unchanged)"
        result = switch.set_profile(cfg, profile)
        if before and before["name"] != profile:
            self.restore_to = before["name"]
        return f"{profile} activated (was {result.previous or 'none'}){_applied_text(result)}"

    def start(self) -> str:
        parts = []
        for name in stack.ORDER:
            try:
                outcome = stack.start(self.cfg, [name], timeout=self.timeout)[0]
            except RouterError as exc:
                raise RouterError(f"{name}: {exc.message}" + (f" (after: {', '.join(parts)})" if parts else ""),
                                  hint=exc.hint, exit_code=exc.exit_code, details=exc.details) from None
            if outcome.result == "started":
                self.report.started.append(name)
            parts.append(f"{name} {outcome.result} (pid {outcome.pid}, port {outcome.port})")
        return "; ".join(parts)

    def health(self) -> str:
        parts, bad = [], []
        for r in stack.health_check(self.cfg):
            probe = r["probe"]
            if r["ready"]:
                parts.append(f"{r['service']} ready ({probe['latency_ms']:.0f} ms)")
            else:
                bad.append(f"{r['service']} not ready ({probe['error'] or r['state']})")
        if bad:
            raise RouterError("; ".join(bad), hint="llm-router service logs NAME")
        return ", ".join(parts)

    def chat(self) -> str:
        model, live = self._model(), self.live
        if not live:
            self._require_mock_hook()
        extra = {"extra_body": {"metadata": {MOCK_KEY: MOCK_TEXT}}} if not live else {"max_tokens": 1}
        raw = client(self.cfg).chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], **extra)
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
        return f"{model} -> {deployment}: {content[:40]!r} ({how}{tokens})"

    def stream(self) -> str:
        model = self._model()
        self._require_mock_hook()
        chunks = client(self.cfg).chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], stream=True,
            extra_body={"metadata": {MOCK_KEY: MOCK_TEXT}})
        parts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        text = "".join(parts)
        if text != MOCK_TEXT:
            raise RouterError(f"the stream ended with {text[:60]!r} instead of the mocked answer")
        return f"{model}: {len(parts)} chunks, {text!r} (mocked by LiteLLM, nothing sent upstream)"

    def responses_stream(self) -> str:
        model = self._model()
        self._require_mock_hook()
        with client(self.cfg).responses.stream(model=model, input=PROMPT,
                                               extra_body={"metadata": {MOCK_KEY: MOCK_TEXT}}) as events:
            kinds = [event.type for event in events]
            final = events.get_final_response()
        text = final.output_text or ""
        if text != MOCK_TEXT:
            raise RouterError(f"the Responses stream ended with {text[:60]!r} instead of the mocked answer")
        return (f"{model}: {len(kinds)} events ({kinds[0]} ... {kinds[-1]}), {text!r} "
                "(mocked, nothing sent upstream)")

    def anthropic_stream(self) -> str:
        model = self._model()
        self._require_mock_hook()
        result = messages_stream(self.cfg, model, MOCK_TEXT)
        if result["text"] != MOCK_TEXT or "message_stop" not in result["events"]:
            raise RouterError(f"the Messages stream ended with {result['text'][:60]!r} after "
                              f"{', '.join(result['events'][-3:]) or 'no events'} instead of the mocked answer")
        return (f"{model} -> {result['deployment']}: {len(result['events'])} events "
                f"(message_start ... message_stop), {result['text']!r} (mocked, nothing sent upstream)")

    # ------------------------------------------------------------------ the clean-up, always run
    def stop(self) -> str:
        left = [n for n in stack.ORDER if self.was_running[n]]
        notes = [f"left running as found: {', '.join(left)}"] if left else []
        if self.report.started:
            outcomes = stack.stop(self.cfg, self.report.started)
            notes.insert(0, "; ".join(f"{o.service} {o.result}" for o in outcomes))
        elif not left:
            notes.append("nothing was started")
        return "; ".join(notes)

    def restore_profile(self) -> str:
        return f"{self.restore_to} active again" + _applied_text(switch.set_profile(self.cfg, self.restore_to))

    # ------------------------------------------------------------------ helpers of the steps
    def _model(self) -> str:
        if not self.report.model:
            raise RouterError("routertool.yaml defines no model group", hint="add one under models:")
        return self.report.model

    def _require_mock_hook(self) -> None:
        """Refuse a mocked request unless the active profile loads the mock hook (else it would go upstream)."""
        import yaml

        try:
            data = yaml.safe_load(self.cfg.layout.active_config.read_text(encoding="utf-8")) or {}
        except (OSError, ValueError):
            data = {}
        callbacks = (data.get("litellm_settings") or {}).get("callbacks") or []
        if not set(HOOKS) & set(callbacks if isinstance(callbacks, list) else [callbacks]):
            raise RouterError(f"profile {self.profile} does not load {HOOK}, so a mocked request would reach the "
                              "upstream; nothing was sent",
                              hint="extend templates/litellm/base.yaml.j2 (it loads the hook), or run with --live")
