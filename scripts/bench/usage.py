"""Usage-store benchmark: what the in-LiteLLM callback costs a request, and whether the store keeps its bounds.

1. The callback alone, in this process: `usage_hook.row_for` + `Writer.submit` on a realistic logging object
   (microseconds per call; the writer thread runs meanwhile).
2. Healthy latency with the store on and off in the same run: two real LiteLLM proxies on the same stand-in
   upstream, the same rendered `balanced` config except the `usage_recorder` callback; sequential non-streaming
   requests, alternated in rounds so both see the same machine load. Target: < 1 ms added (median).
3. A sustained run (default 10,000 requests, 4 client threads) against the proxy with the store on and a small
   bound (`--max-mb`, default 1): the database and its WAL are sampled throughout and must stay within the bound
   (+ the WAL's checkpoint size); rows written and dropped are reported.

    uv run python scripts/bench/usage.py [--requests 200] [--rounds 5] [--sustained 10000] [--max-mb 1] [--json]
    uv run inv bench.usage
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the checkout root makes `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llm_router import usage as store  # noqa: E402
from llm_router.litellm import usage_hook  # noqa: E402
from tests.litellm_support import MASTER_KEY, StandinStack  # noqa: E402

GROUPS = {"coder": [("cliproxy", "bench-first"), ("paid", "bench-paid")]}
TARGET_ADDED_MS = 1.0
HOOK = '"llm_router.litellm.usage_hook.usage_recorder"'


def callback_cost(calls: int = 20000) -> dict:
    """Microseconds per `row_for` + `submit` (the whole request-path work of the callback)."""
    from datetime import datetime, timedelta

    folder = Path(tempfile.mkdtemp(prefix="usage-bench-cb-"))
    writer = store.Writer(folder / "usage").start()
    start = datetime.now()
    kwargs = {"standard_logging_object": {
        "model_group": "coder", "model_id": "coder/cliproxy/gpt-5", "call_type": "acompletion", "stream": False,
        "startTime": start.timestamp(), "endTime": start.timestamp() + 0.02, "completionStartTime": None,
        "prompt_tokens": 12, "completion_tokens": 30, "custom_llm_provider": "openai", "trace_id": "t" * 36,
        "hidden_params": {"additional_headers": {}}, "messages": [{"role": "user", "content": "x" * 2000}]},
        "litellm_params": {"proxy_server_request": {"url": "http://127.0.0.1:4000/v1/chat/completions"},
                           "model_info": {"id": "coder/cliproxy/gpt-5"}, "metadata": {}}}
    end = start + timedelta(milliseconds=20)
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls // 5):
            writer.submit(usage_hook.row_for(kwargs, start, end))
        samples.append((time.perf_counter() - t0) / (calls // 5) * 1e6)
        writer.flush(60)
    writer.stop()
    return {"calls": calls, "us_per_call_median": round(statistics.median(samples), 2),
            "us_per_call_max": round(max(samples), 2), "written": writer.written, "dropped": writer.dropped}


def _client(proxy):
    import httpx

    return httpx.Client(base_url=proxy.base_url, trust_env=False, timeout=60,
                        headers={"Authorization": f"Bearer {MASTER_KEY}"})


def _one(client) -> float:
    t0 = time.perf_counter()
    response = client.post("/v1/chat/completions", json={"model": "coder", "messages": [
        {"role": "user", "content": "hi"}]})
    elapsed = (time.perf_counter() - t0) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
    return elapsed


def _db_bytes(usage_dir: Path) -> tuple[int, int]:
    path = store.db_path(usage_dir)
    wal = path.with_name(path.name + "-wal")
    return (path.stat().st_size if path.exists() else 0, wal.stat().st_size if wal.exists() else 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per proxy per round (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--sustained", type=int, default=10000, help="requests in the sustained run (10000)")
    parser.add_argument("--threads", type=int, default=4, help="client threads in the sustained run (4)")
    parser.add_argument("--max-mb", type=float, default=1.0, help="the store's size bound in the run (1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    result: dict = {"callback": callback_cost()}
    print(f"callback alone: {result['callback']['us_per_call_median']} µs per request (median of 5 x "
          f"{result['callback']['calls'] // 5})", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="usage-bench-"))
    stack = StandinStack(root, GROUPS)
    proxies = []
    try:
        on = stack.proxy("balanced")
        text = on.config_path.read_text()
        if HOOK not in text:
            raise RuntimeError("the rendered config has no usage_recorder callback")
        off_path = root / "balanced-off.yaml"
        off_path.write_text(text.replace(", " + HOOK, "").replace(HOOK + ", ", ""))
        usage_dir = root / "usage"
        on.env.update({usage_hook.DIR_ENV: str(usage_dir), usage_hook.MAX_MB_ENV: str(args.max_mb)})
        from tests.litellm_support import LiteLLMProxy

        off = LiteLLMProxy(off_path, {**stack.env})
        proxies = [on, off]
        for proxy in proxies:
            proxy.start()
        clients = {"on": _client(on), "off": _client(off)}
        for client in clients.values():
            for _ in range(20):
                _one(client)  # warm-up
        times: dict[str, list[float]] = {"on": [], "off": []}
        for round_ in range(args.rounds):
            for name in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
                times[name] += [_one(clients[name]) for _ in range(args.requests)]
        medians = {k: statistics.median(v) for k, v in times.items()}
        p90 = {k: statistics.quantiles(v, n=10)[-1] for k, v in times.items()}
        result["latency"] = {"requests_each": len(times["on"]),
                             "median_ms": {k: round(v, 2) for k, v in medians.items()},
                             "p90_ms": {k: round(v, 2) for k, v in p90.items()},
                             "added_median_ms": round(medians["on"] - medians["off"], 2),
                             "target_ms": TARGET_ADDED_MS}
        print(f"healthy latency: store on {medians['on']:.2f} ms, off {medians['off']:.2f} ms (median of "
              f"{len(times['on'])} each): added {medians['on'] - medians['off']:+.2f} ms", file=sys.stderr)

        # sustained run, store on, small bound
        peak = [0, 0]
        bound = int(args.max_mb * 1024 * 1024)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                main_b, wal_b = _db_bytes(usage_dir)
                peak[0], peak[1] = max(peak[0], main_b), max(peak[1], wal_b)
                time.sleep(0.05)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        per_thread = args.sustained // args.threads
        failures: list[str] = []
        t0 = time.perf_counter()

        def load():
            client = _client(on)
            for _ in range(per_thread):
                try:
                    _one(client)
                except Exception as exc:  # noqa: BLE001
                    failures.append(str(exc)[:200])
        threads = [threading.Thread(target=load) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - t0
        time.sleep(store.PRUNE_INTERVAL + 3)  # the writer's next prune after the last batch
        stop.set()
        sampler.join()
        main_b, wal_b = _db_bytes(usage_dir)
        with store.Reader(usage_dir) as reader:
            rows = reader._rows("SELECT COUNT(*) AS n FROM requests")[0]["n"]
            workers = reader.workers()
        wal_limit = (store.WAL_PAGES + 16) * 4096
        within = peak[0] <= bound * 1.05 + 64 * 1024 and main_b <= bound and peak[1] <= wal_limit * 2
        result["sustained"] = {
            "requests": per_thread * args.threads, "threads": args.threads, "seconds": round(elapsed, 1),
            "req_per_s": round(per_thread * args.threads / elapsed, 1), "failed": len(failures),
            "bound_bytes": bound, "peak_db_bytes": peak[0], "peak_wal_bytes": peak[1], "final_db_bytes": main_b,
            "final_wal_bytes": wal_b, "rows_kept": rows, "written": sum(w["written"] or 0 for w in workers),
            "dropped": sum(w["dropped"] or 0 for w in workers), "within_bounds": within}
        s = result["sustained"]
        print(f"sustained: {s['requests']} requests in {s['seconds']} s ({s['req_per_s']}/s), {s['failed']} failed; "
              f"db peak {s['peak_db_bytes'] / 1024:.0f} KiB (bound {bound / 1024:.0f} KiB), WAL peak "
              f"{s['peak_wal_bytes'] / 1024:.0f} KiB, final {s['final_db_bytes'] / 1024:.0f} KiB, "
              f"{s['rows_kept']} rows kept, {s['written']} written, {s['dropped']} dropped", file=sys.stderr)
        for client in clients.values():
            client.close()
    finally:
        for proxy in proxies:
            proxy.stop()
        stack.stop()
    if args.json:
        print(json.dumps(result, indent=2))
    ok = result["latency"]["added_median_ms"] < TARGET_ADDED_MS and result["sustained"]["within_bounds"] \
        and not result["sustained"]["failed"]
    print("targets " + ("met" if ok else "NOT met"), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
