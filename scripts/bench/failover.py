"""Failover benchmark: what a request pays while the first deployment of its model group is down.

For each profile, the real LiteLLM proxy (runtime group) runs on the profile's rendered config over stand-in
upstreams. For each way the first deployment fails (429, 500, refused connection; each on its own model group,
so cooldowns do not mix) it measures, in the same run: the healthy median, the first failing request, and the
median while the first deployment stays down. Added latency = that minus the healthy median.
Targets: steady-state added <= 60 ms in every profile; first failing request <= 250 ms in balanced and cost.

    uv run python scripts/bench/failover.py [--profile NAME ...] [--requests N]
    uv run inv bench.failover [--profile NAME] [--requests N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the checkout root makes `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llm_router.output import table  # noqa: E402
from llm_router.standin.process import set_fault, stats  # noqa: E402
from tests.litellm_support import StandinStack  # noqa: E402

PROFILES = ("balanced", "reliability", "cost")
FAILURES = ("429", "500", "refused")
GROUPS_PER_FAILURE = 5  # the first failing request is measured once per group: its median is reported
TARGET_STEADY_MS = 60.0
TARGET_FIRST_MS = {"balanced": 250.0, "cost": 250.0}
WARMUP = 3


def groups_of(failure: str) -> dict[str, list[tuple[str, str]]]:
    """Model groups whose first deployment will fail; `refused` ones live on the `flaky` upstream, which stops."""
    first = "flaky" if failure == "refused" else "cliproxy"
    return {f"{failure}-{k}": [(first, f"{failure}-{k}-1"), ("cliproxy", f"{failure}-{k}-2"),
                               ("paid", f"{failure}-{k}-paid")] for k in range(GROUPS_PER_FAILURE)}


def break_first(stack: StandinStack, failure: str) -> None:
    if failure == "refused":
        stack.servers["flaky"].stop()
        return
    for deployments in groups_of(failure).values():  # a long Retry-After: the profile's cooldown must still win
        set_fault(stack.url("cliproxy"), deployments[0][1], status=int(failure), retry_after=1800, count=-1)


def attempts_on_broken(stack: StandinStack, failure: str) -> int | None:
    """Requests the failing deployments have received so far (None: refused connections are not counted)."""
    if failure == "refused":
        return None
    counts = stats(stack.url("cliproxy"))["requests"]
    return sum(counts.get(deployments[0][1], 0) for deployments in groups_of(failure).values())


def timed(client, group: str) -> tuple[float, str]:
    """Milliseconds for one non-streaming request, and the deployment that answered."""
    start = time.perf_counter()
    response = client.chat.completions.with_raw_response.create(
        model=group, messages=[{"role": "user", "content": "ping"}], max_tokens=8)
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, response.headers.get("x-litellm-model-id", "?")


def measure(profile: str, requests: int) -> list[dict]:
    rows = []
    all_groups = {name: deps for failure in FAILURES for name, deps in groups_of(failure).items()}
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as root:
        stack = StandinStack(Path(root), all_groups)
        try:
            with stack.proxy(profile) as proxy:
                client = proxy.client()
                for failure in FAILURES:
                    groups = list(groups_of(failure))
                    for group in groups * WARMUP:
                        timed(client, group)
                    healthy = statistics.median(timed(client, groups[i % len(groups)])[0] for i in range(requests))
                    break_first(stack, failure)
                    firsts = [timed(client, group)[0] for group in groups]
                    before = attempts_on_broken(stack, failure)
                    down = [timed(client, groups[i % len(groups)])[0] for i in range(requests)]
                    after = attempts_on_broken(stack, failure)
                    rows.append({"profile": profile, "failure": failure, "healthy_ms": healthy,
                                 "first_ms": statistics.median(firsts), "first_max_ms": max(firsts),
                                 "steady_ms": statistics.median(down),
                                 "reached_broken": "-" if after is None else after - before})
                    rows[-1]["first_added_ms"] = rows[-1]["first_ms"] - healthy
                    rows[-1]["steady_added_ms"] = rows[-1]["steady_ms"] - healthy
        finally:
            stack.stop()
    return rows


def verdict(row: dict) -> str:
    missed = []
    if row["steady_added_ms"] > TARGET_STEADY_MS:
        missed.append(f"steady > {TARGET_STEADY_MS:.0f} ms")
    limit = TARGET_FIRST_MS.get(row["profile"])
    if limit is not None and row["first_ms"] > limit:
        missed.append(f"first > {limit:.0f} ms")
    return "; ".join(missed) or "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", choices=PROFILES, help="repeatable; default: all three")
    parser.add_argument("--requests", type=int, default=40, help="requests per median (default 40)")
    args = parser.parse_args(argv)
    rows = []
    for profile in args.profile or PROFILES:
        print(f"measuring {profile} (starting LiteLLM, ~10 s) ...", file=sys.stderr, flush=True)
        rows += measure(profile, args.requests)
    print(table([[r["profile"], r["failure"], f"{r['healthy_ms']:.1f}", f"{r['first_ms']:.1f}",
                  f"{r['first_max_ms']:.1f}", f"{r['first_added_ms']:+.1f}", f"{r['steady_ms']:.1f}",
                  f"{r['steady_added_ms']:+.1f}", str(r["reached_broken"]), verdict(r)]
                 for r in rows],
                ["PROFILE", "FAILURE", "HEALTHY", "FIRST", "FIRST_MAX", "FIRST_ADDED", "STEADY", "STEADY_ADDED",
                 "HIT_BROKEN", "TARGET"]))
    print(f"milliseconds. HEALTHY, STEADY: medians of {args.requests} sequential non-streaming requests before "
          f"and after the first deployment broke; FIRST: median (and max) of the first failing request of "
          f"{GROUPS_PER_FAILURE} groups; ADDED: against HEALTHY of the same run; HIT_BROKEN: attempts the broken "
          f"deployments still received during the STEADY requests")
    return 0 if all(verdict(r) == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
