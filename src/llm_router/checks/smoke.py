"""The operator flow end to end on the real runtime (`llm-router smoke`):

doctor → profile set PROFILE → service start all → health → one chat completion and one streamed completion through
the LiteLLM endpoint with the `openai` client → service stop (only what smoke itself started).

By default both completions are answered by LiteLLM's `mock_response` after the router picked a deployment of the
model group (see `litellm_hooks`), so nothing is sent upstream and nothing is billed. `live=True` sends the
non-streamed one for real with `max_tokens: 1`. `standin=True` runs the same flow in a sandbox (see `sandbox`)
where CLIProxyAPIPlus is the stand-in, so it runs offline with no accounts.

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
        applied = "; LiteLLM restarted on it" if info["applied"] else ""
        return f"{profile} activated (was {info['previous'] or 'none'}){applied}"

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
        return f"{restore[0]} active again" + ("; LiteLLM restarted on it" if info["applied"] else "")

    try:
        flow.step("doctor", run_doctor)
        flow.step("profile set", set_profile)
        flow.step("service start", start)
        flow.step("health", health)
        flow.step("chat completion", chat)
        flow.step("streamed completion", stream)
    finally:
        if before_stop is not None:
            before_stop()
        flow.step("service stop", stop, always=True)
        if restore[0]:
            flow.step("profile restore", put_back, always=True)
