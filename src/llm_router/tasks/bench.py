"""bench.failover, bench.start, bench.switch, bench.scale, bench.usage: thin wrappers over the checkout's
scripts/bench/*.py"""
import importlib

from invoke import Collection, task
from invoke.exceptions import Exit


@task(help={"profile": "one profile (default: balanced, reliability and cost)",
            "requests": "requests per measurement (default 40)"}, auto_shortflags=False)
def failover(c, profile="", requests=40):
    """Added latency per request while the first deployment is down (429, 500, refused), per profile."""
    try:  # the checkout's scripts/ folder, importable when inv runs from the repo root
        from scripts.bench import failover as bench
    except ModuleNotFoundError:
        raise Exit("error: bench.failover runs from a source checkout (scripts/bench/failover.py)", code=2) from None
    code = bench.main([*(["--profile", profile] if profile else []), "--requests", str(requests)])
    if code:
        raise Exit(code=code)


def _script(name: str):
    try:  # the checkout's scripts/ folder, importable when inv runs from the repo root
        return importlib.import_module(f"scripts.bench.{name}")
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("scripts"):
            raise
        raise Exit(f"error: bench.{name} runs from a source checkout (scripts/bench/{name}.py)", code=2) from None


@task(help={"runs": "start rounds per LiteLLM mode (default 6)", "status_runs": "status runs each (default 15)",
            "mode": "gunicorn or uvicorn (default: both)", "bytecode_cache": "children cache bytecode in a temp dir",
            "compare_warmup": "add a router kind that warms after the first fork",
            "compare_gc": "add a router kind with the collector on during the import", "json": "print JSON"},
      auto_shortflags=False)
def start(c, runs=6, status_runs=15, mode="", bytecode_cache=False, compare_warmup=False, compare_gc=False,
          json=False):
    """`service start all` against the bare `litellm` command (both modes), and `status` against `python -c pass`."""
    code = _script("start").main([f"--runs={runs}", f"--status-runs={status_runs}",
                                  *([f"--mode={mode}"] if mode else []),
                                  *(["--bytecode-cache"] if bytecode_cache else []),
                                  *(["--compare-warmup"] if compare_warmup else []),
                                  *(["--compare-gc"] if compare_gc else []), *(["--json"] if json else [])])
    if code:
        raise Exit(code=code)


@task(help={"rate": "requests per second over all client threads (default 25)", "threads": "client threads (4)",
            "switches": "switches per pass (default 2)", "mode": "gunicorn or uvicorn (default: both)",
            "bytecode_cache": "children cache bytecode in a temp dir", "json": "print JSON"}, auto_shortflags=False)
def switch(c, rate=25.0, threads=4, switches=2, mode="", bytecode_cache=False, json=False):
    """Failed requests, latency and time to the new profile while `profile set` switches under a client load."""
    code = _script("switch").main([f"--rate={rate}", f"--threads={threads}", f"--switches={switches}",
                                   *([f"--mode={mode}"] if mode else []),
                                   *(["--bytecode-cache"] if bytecode_cache else []), *(["--json"] if json else [])])
    if code:
        raise Exit(code=code)


@task(help={"delay_ms": "the upstream stand-in's fixed delay (default 50)",
            "p99_ms": "the p99 a throughput level must stay within (default 400)",
            "seconds": "seconds per load level (default 8)",
            "levels": "client concurrencies (default 1,2,4,8,12,16,24,32)",
            "latency_requests": "sequential requests per stack for the Redis latency (default 300)",
            "json": "print JSON"}, auto_shortflags=False)
def scale(c, delay_ms=50.0, p99_ms=400.0, seconds=8.0, levels="1,2,4,8,12,16,24,32", latency_requests=300, json=False):
    """Req/s at a fixed p99 for 1 vs 2 LiteLLM workers, and the added latency of Redis-shared router state."""
    code = _script("scale").main([f"--delay-ms={delay_ms}", f"--p99-ms={p99_ms}", f"--seconds={seconds}",
                                  f"--levels={levels}", f"--latency-requests={latency_requests}",
                                  *(["--json"] if json else [])])
    if code:
        raise Exit(code=code)


@task(help={"requests": "requests per proxy per round (default 200)", "rounds": "alternating rounds (default 5)",
            "sustained": "requests in the sustained run (default 10000)", "max_mb": "the store's bound (default 1)",
            "json": "print JSON"}, auto_shortflags=False)
def usage(c, requests=200, rounds=5, sustained=10000, max_mb=1.0, json=False):
    """The usage callback's cost (store on vs off, same run) and a sustained run within the store's bounds."""
    code = _script("usage").main([f"--requests={requests}", f"--rounds={rounds}", f"--sustained={sustained}",
                                  f"--max-mb={max_mb}", *(["--json"] if json else [])])
    if code:
        raise Exit(code=code)


ns = Collection("bench", failover, start, switch, scale, usage)
