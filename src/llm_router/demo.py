"""`llm-router demo`: the whole stack on any machine, offline, with no accounts, in a temporary folder.

The CLIProxyAPIPlus stand-in (with a Codex-like and a Copilot-like account) and the real LiteLLM proxy on the
`balanced` profile run in a sandbox (see `sandbox`). The demo then shows the status table, a chat completion and a
streamed one through the northbound endpoint, a streamed Responses API call (what Codex CLI speaks) and a streamed
Anthropic Messages call (what Claude Code speaks, forwarded to CLIProxyAPIPlus untranslated), a simulated quota
exhaustion (429) on the first deployment with the request still answered by the second one (which deployment
answered, and the latency that added against the healthy requests of the same run), the event log, what the
usage store recorded of it all (requests, failures by kind, p50 latency per deployment), and a clean stop.
`keep=True` leaves it running.

Returns data; `commands/demo.py` renders it. Progress goes to `notify` as it happens.
"""
from __future__ import annotations

import sqlite3
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from . import events, sandbox, stack
from .config import MASTER_KEY_ENV, SERVICE_DEFAULTS
from .errors import NOT_FOUND, RouterError

DEFAULT_LITELLM_PORT = SERVICE_DEFAULTS["litellm"]["port"]
HEALTHY_SAMPLES = 5
USAGE_WAIT = 60.0  # seconds to wait for LiteLLM's usage callback to write every row of the demo's requests
USAGE_POLL = 0.1
PROMPT = "Say hello from the llm-router demo."
Notify = Callable[[str], None]


@dataclass
class DemoReport:
    root: str
    base_url: str = ""
    profile: str = sandbox.DEMO_PROFILE
    group: str = sandbox.DEMO_GROUP
    deployments: list[str] = field(default_factory=list)
    started: list[dict] = field(default_factory=list)
    status: list[dict] = field(default_factory=list)
    chat: dict = field(default_factory=dict)
    stream: dict = field(default_factory=dict)
    responses: dict = field(default_factory=dict)  # the streamed Responses API call
    messages: dict = field(default_factory=dict)  # the streamed Anthropic Messages call
    failover: dict = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=dict)  # the sandbox's usage store, per deployment (see collect_usage)
    stopped: list[dict] = field(default_factory=list)
    kept: bool = False
    api_key: str | None = None  # only with keep: the sandbox's throwaway master key, to try it with any client
    config_path: str = ""
    keep_hints: list[str] = field(default_factory=list)  # only with keep: what to try next (see keep_hints())
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _quiet(_: str) -> None:
    return None


# ============================================================================ --keep hints: the ONE place
def keep_hints(report: DemoReport) -> list[str]:
    """The lines `demo --keep` prints under "still running" (the front end prints them as they are). Every hint for
    a kept stack belongs here, so clients' snippets (`llm-router connect ...`) are added in this one place."""
    connect = f"uv run llm-router --config {report.config_path}"
    return [f"export OPENAI_BASE_URL={report.base_url}",
            f"export OPENAI_API_KEY={report.api_key}",
            f"agents (docs/clients.md): {connect} connect codex|claude|openai|llm|aider",
            f"  one command, nothing written: {connect} run codex -- exec --skip-git-repo-check \"say hello\"",
            f"  or: {connect} run claude -- -p \"say hello\"",
            f"stop it: uv run llm-router --config {report.config_path} service stop all && rm -rf {report.root}"]
# ============================================================================ end of the --keep hints


def _responses_stream(client, group: str) -> dict:
    """One streamed Responses API call (`responses.stream()`, which checks the event order strictly)."""
    start = time.perf_counter()
    with client.responses.stream(model=group, input=PROMPT) as stream:
        response = getattr(stream, "_response", None)  # the SDK keeps the HTTP response there (headers only)
        deployment = response.headers.get("x-litellm-model-id", "?") if response is not None else "?"
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    return {"model": group, "deployment": deployment, "events": len(kinds), "first_event": kinds[0],
            "last_event": kinds[-1], "content": final.output_text or "",
            "ms": round((time.perf_counter() - start) * 1000, 1)}


def _messages_stream(cfg, group: str) -> dict:
    from .checks.smoke import messages_stream

    start = time.perf_counter()
    result = messages_stream(cfg, group, None, prompt=PROMPT)
    return {"model": group, "deployment": result["deployment"], "events": len(result["events"]),
            "first_event": result["events"][0] if result["events"] else "",
            "last_event": result["events"][-1] if result["events"] else "", "content": result["text"],
            "ms": round((time.perf_counter() - start) * 1000, 1)}


def _timed(client, group: str, **kwargs) -> tuple[float, str, str]:
    """(milliseconds, deployment that answered, text) of one non-streamed request."""
    start = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model=group, messages=[{"role": "user", "content": PROMPT}], **kwargs)
    elapsed = (time.perf_counter() - start) * 1000
    reply = raw.parse()
    return round(elapsed, 1), raw.headers.get("x-litellm-model-id", "?"), reply.choices[0].message.content or ""


def run(keep: bool = False, litellm_port: int | None = DEFAULT_LITELLM_PORT, timeout: float | None = None,
        notify: Notify = _quiet) -> DemoReport:
    """Run the demo in a new sandbox, step by step (see `DemoRun`); the sandbox is removed at the end unless `keep`
    (and also with `keep` when a step raised)."""
    from .litellm.runner import litellm_available

    if not litellm_available()[0]:
        raise RouterError("the demo runs the real LiteLLM proxy, which is not installed",
                          hint="uv sync --group runtime", exit_code=NOT_FOUND)
    notify("preparing a temporary stack (CLIProxyAPIPlus stand-in, a Codex and a Copilot account)")
    box = sandbox.demo(litellm_port=litellm_port, notify=notify)
    report = DemoReport(root=str(box.root), config_path=str(box.config_path))
    demo = DemoRun(box, report, notify, timeout)
    try:
        demo.start_stack()
        demo.send_chat_and_stream()
        demo.send_native_streams()
        demo.measure_healthy_latency()
        demo.simulate_quota_exhaustion()
        demo.check_answers()
        demo.collect_usage()
        if keep:
            demo.keep_running()
        else:
            demo.stop_stack()
        report.events = demo.log.read()
    except BaseException:
        keep = False
        raise
    finally:
        box.keep = keep
        problems = box.close()
        report.problems += problems
    return report


class DemoRun:
    """The steps of one demo on a sandbox, in the order `run` calls them; each fills its part of the report."""

    def __init__(self, box, report: DemoReport, notify: Notify, timeout: float | None):
        self.box = box
        self.report = report
        self.notify = notify
        self.timeout = timeout
        self.cfg = box.cfg
        self.group = sandbox.DEMO_GROUP
        self.client = None
        self.log = None
        self.healthy: list[float] = []
        self.healthy_ms = 0.0
        self.answered = 0  # requests answered so far: each is one `ok` row in the usage store

    def start_stack(self) -> None:
        from .checks.smoke import client as make_client

        report = self.report
        report.deployments = [f"{sandbox.DEMO_GROUP}/{p}/{m}" for p, m in sandbox.DEMO_DEPLOYMENTS]
        self.notify(f"starting CLIProxyAPIPlus (stand-in) and LiteLLM ({sandbox.DEMO_PROFILE} profile): LiteLLM "
                    "takes 10-20 s to import")
        report.started = [o.to_dict() for o in self.box.start(timeout=self.timeout)]
        self.cfg = self.box.cfg  # new ports if the first ones were taken meanwhile
        report.base_url = self.cfg.services["litellm"].base_url + "/v1"
        report.status = [s.to_dict() for s in stack.status(self.cfg)]
        self.client = make_client(self.cfg)

    def send_chat_and_stream(self) -> None:
        client, group = self.client, self.group
        self.notify("sending a chat completion and a streamed one")
        _timed(client, group)  # warm-up: the first request after start pays for lazy imports
        self.answered += 3  # the warm-up, the chat completion and the stream
        ms, deployment, text = _timed(client, group)
        self.report.chat = {"model": group, "deployment": deployment, "content": text, "ms": ms}
        start = time.perf_counter()
        chunks = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=group, messages=[{"role": "user", "content": PROMPT}], stream=True) if c.choices]
        self.report.stream = {"model": group, "chunks": len(chunks), "content": "".join(chunks),
                              "ms": round((time.perf_counter() - start) * 1000, 1)}

    def send_native_streams(self) -> None:
        self.notify("sending a streamed Responses API call (Codex CLI) and a streamed Anthropic Messages call "
                    "(Claude Code)")
        self.report.responses = _responses_stream(self.client, self.group)
        self.report.messages = _messages_stream(self.cfg, self.group)
        self.answered += 2

    def measure_healthy_latency(self) -> None:
        """The median of HEALTHY_SAMPLES requests (the chat completion's first), against which failover is timed."""
        self.healthy = [self.report.chat["ms"]] + [_timed(self.client, self.group)[0]
                                                   for _ in range(HEALTHY_SAMPLES - 1)]
        self.healthy_ms = round(statistics.median(self.healthy), 1)
        self.answered += HEALTHY_SAMPLES - 1

    def simulate_quota_exhaustion(self) -> None:
        """429 on the first deployment: which deployment answers during it and right after, and what it added."""
        from .standin.process import set_fault, stats

        box, client, group = self.box, self.client, self.group
        first, second = self.report.deployments
        codex_model = sandbox.DEMO_DEPLOYMENTS[0][1]
        self.notify(f"simulating quota exhaustion: CLIProxyAPIPlus answers 429 for {codex_model}")
        before = stats(box.cliproxy_url)["requests"].get(codex_model, 0)
        set_fault(box.cliproxy_url, codex_model, status=429, count=-1)
        self.log = log = events.for_config(self.cfg)
        log.append("demo_fault", service="cliproxyapi_plus", profile=sandbox.DEMO_PROFILE, provider="cliproxy",
                   result="ok", detail={"model": codex_model, "status": 429, "via": "/_standin/fault"})
        fail_ms, fail_by, fail_text = _timed(client, group)
        tried = stats(box.cliproxy_url)["requests"].get(codex_model, 0) - before
        next_ms, next_by, _ = _timed(client, group)
        self.answered += 2
        healthy_ms = self.healthy_ms
        self.report.failover = {"fault": f"HTTP 429 (quota) on {first}", "healthy_ms": healthy_ms,
                                "healthy_samples": len(self.healthy), "answered_by": fail_by, "content": fail_text,
                                "ms": fail_ms, "added_ms": round(fail_ms - healthy_ms, 1), "first_tried": tried,
                                "next_answered_by": next_by, "next_ms": next_ms,
                                "next_added_ms": round(next_ms - healthy_ms, 1)}
        log.append("demo_failover", service="litellm", profile=sandbox.DEMO_PROFILE, provider="cliproxy",
                   result="ok" if fail_by == second else "failed",
                   detail={"answered_by": fail_by, "added_ms": self.report.failover["added_ms"]})

    def check_answers(self) -> None:
        """Each answer came from the deployment it should have: the problems go into the report."""
        report = self.report
        first, second = report.deployments
        deployment, fail_by, next_by = (report.chat["deployment"], report.failover["answered_by"],
                                        report.failover["next_answered_by"])
        if deployment != first:
            report.problems.append(f"the healthy request was answered by {deployment}, expected {first}")
        if fail_by != second:
            report.problems.append(f"during the 429 the request was answered by {fail_by}, expected {second}")
        if next_by != second:
            report.problems.append(f"while {first} cools down the request was answered by {next_by}, expected "
                                   f"{second}")
        if not report.stream["chunks"]:
            report.problems.append("the streamed completion returned no chunks")
        for name, call in (("Responses", report.responses), ("Messages", report.messages)):
            if call["deployment"] != first or not call["content"]:
                report.problems.append(f"the streamed {name} call was answered by {call['deployment']} with "
                                       f"{call['content'][:40]!r}, expected text from {first}")

    def collect_usage(self) -> None:
        """What the usage store recorded: requests, failures by kind, tokens and latency per deployment (the
        figures of `llm-router usage --by deployment`, from usage_queries). LiteLLM's callback writes the rows from
        a writer thread after each answer, so the store is polled until every answered request's `ok` row and
        the 429 have landed, for at most USAGE_WAIT seconds; short of that is a problem of the demo."""
        from . import usage as store

        self.notify("reading the usage store")
        path = store.db_path(self.cfg.layout.usage_dir)
        deadline = time.monotonic() + USAGE_WAIT
        started = time.monotonic()
        rows: list[dict] = []
        workers: list[dict] = []
        size = 0
        while True:
            try:
                with store.Reader(self.cfg.layout.usage_dir) as reader:
                    rows, workers, size = reader.requests(0.0), reader.workers(), reader.size_bytes()
            except sqlite3.DatabaseError:  # created but not yet written: read again
                pass
            ok = sum(1 for r in rows if r.get("outcome") == "ok")
            complete = ok >= self.answered and len(rows) > ok
            if complete or time.monotonic() >= deadline:
                break
            time.sleep(USAGE_POLL)
        totals = store.summarize([{**r, "all": "all"} for r in rows], "all")
        self.report.usage = {
            "by": "deployment", "rows": store.summarize(rows, "deployment"),
            "total": totals[0] if totals else {"all": "all", "requests": 0, "ok": 0, "failures": 0, "by_outcome": {}},
            "store": {"path": str(path), "exists": path.is_file(), "size_bytes": size,
                      "dropped": sum(w.get("dropped") or 0 for w in workers),
                      "written": sum(w.get("written") or 0 for w in workers)},
            "expected_ok": self.answered, "complete": complete,
            "waited_ms": round((time.monotonic() - started) * 1000, 1)}
        if not complete:
            self.report.problems.append(f"the usage store had {ok} of {self.answered} answered requests and "
                                        f"{len(rows) - ok} failure(s) after {USAGE_WAIT:.0f} s")

    def keep_running(self) -> None:
        from .standin.process import reset

        reset(self.box.cliproxy_url)  # no more 429s (LiteLLM still lets the first deployment cool down for 60 s)
        self.report.kept = True
        self.report.api_key = self.cfg.secret(MASTER_KEY_ENV)
        self.report.keep_hints = keep_hints(self.report)

    def stop_stack(self) -> None:
        self.notify("stopping the stack")
        self.report.stopped = [o.to_dict() for o in stack.stop(self.cfg, "all")]
