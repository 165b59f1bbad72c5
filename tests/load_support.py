"""A bounded client load through LiteLLM with the `openai` client, for the switch test and benchmark.

Threads send small chat completions back to back (optionally paced to a target rate, the threads staggered so that
requests arrive evenly rather than in bursts of `threads` at once) until stopped, and record each request's start
time, latency, outcome and the deployment that answered (`x-litellm-model-id`); a failure keeps its innermost cause
(the openai client says only "Connection error."; the httpx cause tells a reset from a refused connection)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Sample:
    started: float
    latency: float
    ok: bool
    model_id: str | None
    error: str | None = None


@dataclass
class Load:
    base_url: str
    api_key: str
    model: str = "coder"
    threads: int = 4
    rate: float | None = None  # requests per second over all threads; None: as fast as answers come
    max_requests: int = 100_000
    # The openai client's own default (2): when a retiring worker closes its idle keep-alive connections, a
    # request sent on one at that instant is retried by the client as every openai user's client does.
    max_retries: int = 2
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(slot,), daemon=True) for slot in range(self.threads)]

    def _run(self, slot: int) -> None:
        from openai import OpenAI

        client = OpenAI(base_url=f"{self.base_url}/v1", api_key=self.api_key, max_retries=self.max_retries, timeout=30)
        gap = self.threads / self.rate if self.rate else 0.0
        self._stop.wait(gap * slot / self.threads)
        while not self._stop.is_set() and len(self.samples) < self.max_requests:
            started = time.monotonic()
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=self.model, messages=[{"role": "user", "content": "ping"}], max_tokens=5)
                raw.parse()
                sample = Sample(started, time.monotonic() - started, True, raw.headers.get("x-litellm-model-id"))
            except Exception as exc:  # every failure counts, whatever its kind
                sample = Sample(started, time.monotonic() - started, False, None, describe(exc))
            with self._lock:
                self.samples.append(sample)
            if gap:
                self._stop.wait(max(0.0, gap - (time.monotonic() - started)))

    def __enter__(self) -> "Load":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.samples) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    def after(self, moment: float) -> list[Sample]:
        return [s for s in self.samples if s.started >= moment]


def describe(exc: BaseException) -> str:
    """The exception and its innermost cause (ConnectError, RemoteProtocolError, ...), each cut to 120 characters."""
    text = f"{type(exc).__name__}: {str(exc)[:120]}"
    cause = exc.__cause__ or exc.__context__
    while cause is not None and cause.__cause__ is not None:
        cause = cause.__cause__
    return text + (f" <- {type(cause).__name__}: {str(cause)[:120]}" if cause is not None else "")
