"""bench.failover"""
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


ns = Collection("bench", failover)
