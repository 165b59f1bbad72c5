"""Scale-out benchmark: throughput of 1 vs 2 LiteLLM workers at a fixed p99, and Redis's added latency.

Against the upstream stand-in answering every request after a fixed delay (--delay-ms, default 50), three
llm-router stacks in temporary repos (LiteLLM only, `balanced` profile, one model group):
  A: services.litellm.workers 1, no Redis (router state in memory)
  C: workers 1, services.redis.enabled (router state in Redis run by llm-router)
  B: workers 2, no Redis
1. Added latency: sequential requests on one keep-alive connection, alternating A and C request by request (so the
   machine's load drifts equally over both); median of C minus median of A. Target <= 2 ms.
2. Throughput at a fixed p99: for A then B, closed-loop load at rising concurrency (--levels), each level for
   --seconds; requests per second of the best level whose p99 stays <= --p99-ms. Ratio B/A; target >= 1.6.
Clients are light (http.client on keep-alive connections, one thread each), but they share the machine's cores
with the workers and the stand-in, as everything does on a 2-core machine: each level prints the CPU (% of one
core) the LiteLLM workers, the stand-in and the client used, and the load average.

    uv run python scripts/bench/scale.py [--delay-ms 50] [--p99-ms 400] [--seconds 8] [--levels 1,2,4,8,12,16,24,32]
                                         [--latency-requests 300] [--json]
    uv run inv bench.scale [...same flags]
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the checkout root makes `tests` and `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llm_router import config as config_mod  # noqa: E402
from llm_router import stack as router_stack  # noqa: E402
from llm_router.output import table  # noqa: E402
from llm_router.standin.process import free_port, set_fault, start_upstream  # noqa: E402
from llm_router.supervisor import process  # noqa: E402

KEY = "sk-bench-scale-standin-key-0123"
KEY_ENV = "BENCH_SCALE_KEY"
CONFIG = """\
config_version: 2
runtime_dir: .router/runtime
default_profile: balanced
services:
  cliproxyapi_plus: {{port: {cliproxy_port}}}
  litellm: {{port: {litellm_port}, startup_timeout: 300, workers: {workers}}}
{redis}
providers:
  paid: {{type: openai_compatible, api_base: "{upstream}/v1", api_key_env: %s}}
models:
  - name: coder
    deployments: [{{provider: paid, model: m-bench}}]
""" % KEY_ENV
BODY = json.dumps({"model": "coder", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 5}).encode()


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Stack:
    def __init__(self, name: str, upstream: str, workers: int, redis: bool):
        self.name = name
        self.root = Path(tempfile.mkdtemp(prefix=f"llm-router-bench-scale-{name}-"))
        (self.root / "config").mkdir()
        redis_line = f"  redis: {{enabled: true, port: {free_port()}}}" if redis else ""
        (self.root / "config" / "routertool.yaml").write_text(CONFIG.format(
            cliproxy_port=free_port(), litellm_port=free_port(), workers=workers, redis=redis_line, upstream=upstream))
        self.cfg = config_mod.load(self.root / "config" / "routertool.yaml")
        self.port = self.cfg.services["litellm"].port
        self.started = None

    def start(self) -> None:
        began = time.monotonic()
        router_stack.start(self.cfg, [n for n in ("redis", "litellm") if n in self.cfg.services])
        self.started = time.monotonic() - began
        self.key = self.cfg.secret("LITELLM_MASTER_KEY")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            router_stack.stop(self.cfg, "all")
        shutil.rmtree(self.root, True)

    def connection(self) -> "Client":
        return Client(self.port, self.key)


class Client:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, port: int, key: str):
        self.port, self.headers = port, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.conn = None

    def request(self) -> tuple[bool, float]:
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.conn.request("POST", "/v1/chat/completions", BODY, self.headers)
            reply = self.conn.getresponse()
            reply.read()
            ok = reply.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None
        return ok, time.perf_counter() - started


def warm(stack: Stack, requests: int = 60, threads: int = 4) -> None:
    """Every worker's first requests import LiteLLM's lazy modules: spread some over all workers first."""
    def run():
        client = stack.connection()
        for _ in range(requests // threads):
            client.request()
            client.conn = None if client.conn is None else (client.conn.close() or None)  # new conn: any worker
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _cpu(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def level(stack: Stack, concurrency: int, seconds: float, upstream_pid: int) -> dict:
    """One closed-loop level. Also the CPU the LiteLLM workers, the stand-in and this client used, in % of one
    core: on a 2-core machine they all share the same cores."""
    from llm_router.litellm import workers

    master, _ = process.read_record(stack.cfg.layout, "litellm")
    worker_pids = workers.worker_pids(master) if master else []
    cpu_before = (_cpu(worker_pids), _cpu([upstream_pid]), _cpu([os.getpid()]))
    stop = threading.Event()
    lat: list[float] = []
    failed = [0]
    lock = threading.Lock()

    def run():
        client = stack.connection()
        while not stop.is_set():
            ok, took = client.request()
            with lock:
                if ok:
                    lat.append(took)
                else:
                    failed[0] += 1

    pool = [threading.Thread(target=run, daemon=True) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join(60)
    elapsed = time.perf_counter() - began
    cpu = [(after - before) / elapsed * 100 for before, after in
           zip(cpu_before, (_cpu(worker_pids), _cpu([upstream_pid]), _cpu([os.getpid()])))]
    return {"concurrency": concurrency, "rps": len(lat) / elapsed, "p50_ms": (pct(lat, 0.5) or 0) * 1000,
            "p99_ms": (pct(lat, 0.99) or 0) * 1000, "ok": len(lat), "failed": failed[0], "load": loadavg(),
            "cpu_workers_pct": cpu[0], "cpu_standin_pct": cpu[1], "cpu_client_pct": cpu[2]}


def throughput(stack: Stack, levels: list[int], seconds: float, p99_ms: float, upstream_pid: int) -> dict:
    rows = []
    for concurrency in levels:
        rows.append(level(stack, concurrency, seconds, upstream_pid))
        if rows[-1]["p99_ms"] > 3 * p99_ms:  # far past the target: higher levels only queue
            break
    fitting = [r for r in rows if r["p99_ms"] <= p99_ms and not r["failed"]]
    best = max(fitting, key=lambda r: r["rps"]) if fitting else None
    return {"levels": rows, "best": best}


def added_latency(a: Stack, c: Stack, requests: int) -> dict:
    ca, cc = a.connection(), c.connection()
    for _ in range(20):
        ca.request()
        cc.request()
    la, lc = [], []
    for _ in range(requests):
        ok, took = ca.request()
        if ok:
            la.append(took)
        ok, took = cc.request()
        if ok:
            lc.append(took)
    ma, mc = statistics.median(la), statistics.median(lc)
    return {"requests": requests, "memory_median_ms": ma * 1000, "redis_median_ms": mc * 1000,
            "memory_p90_ms": pct(la, 0.9) * 1000, "redis_p90_ms": pct(lc, 0.9) * 1000,
            "added_median_ms": (mc - ma) * 1000, "load": loadavg()}


def run(args) -> dict:
    if shutil.which("redis-server") is None:
        raise SystemExit("error: redis-server is not installed (sudo apt-get install redis-server)")
    upstream = start_upstream(api_key=KEY, models=["m-bench"], name="bench-scale")
    os.environ[KEY_ENV] = KEY
    stacks: list[Stack] = []
    try:
        set_fault(upstream.base_url, model="*", delay=args.delay_ms / 1000.0, count=-1)
        a = Stack("a", upstream.base_url, workers=1, redis=False)
        c = Stack("c", upstream.base_url, workers=1, redis=True)
        stacks += [a, c]
        errors = []
        pool = [threading.Thread(target=lambda s=s: _guard(s.start, errors)) for s in (a, c)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        if errors:
            raise errors[0]
        warm(a)
        warm(c)
        latency = added_latency(a, c, args.latency_requests)
        c.stop()
        stacks.remove(c)
        one = throughput(a, args.levels, args.seconds, args.p99_ms, upstream.pid)
        a.stop()
        stacks.remove(a)
        b = Stack("b", upstream.base_url, workers=2, redis=False)
        stacks.append(b)
        b.start()
        warm(b, requests=120, threads=8)
        two = throughput(b, args.levels, args.seconds, args.p99_ms, upstream.pid)
    finally:
        for stack in stacks:
            stack.stop()
        upstream.stop()
        os.environ.pop(KEY_ENV, None)
    ratio = (two["best"]["rps"] / one["best"]["rps"]) if one["best"] and two["best"] else None
    return {"delay_ms": args.delay_ms, "p99_target_ms": args.p99_ms, "cpus": os.cpu_count(), "latency": latency,
            "one_worker": one, "two_workers": two, "ratio": ratio, "ratio_target": 1.6,
            "added_latency_target_ms": 2.0, "load_end": loadavg()}


def _guard(fn, errors):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
        errors.append(exc)


def render(result: dict) -> str:
    lines = [f"upstream stand-in delay {result['delay_ms']:g} ms; p99 target {result['p99_target_ms']:g} ms; "
             f"{result['cpus']} CPUs; load average at the end {result['load_end']}", ""]
    for key, title in (("one_worker", "1 worker"), ("two_workers", "2 workers")):
        rows = [[str(r["concurrency"]), f"{r['rps']:.1f}", f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}",
                 str(r["failed"]), f"{r['cpu_workers_pct']:.0f}", f"{r['cpu_standin_pct']:.0f}",
                 f"{r['cpu_client_pct']:.0f}", r["load"]] for r in result[key]["levels"]]
        lines.append(f"{title}:")
        lines.append(table(rows, ["CONC", "REQ/S", "P50_MS", "P99_MS", "FAILED", "CPU%_LITELLM", "CPU%_STANDIN",
                                  "CPU%_CLIENT", "LOAD"]))
        best = result[key]["best"]
        lines.append(f"  best within p99 target: {best['rps']:.1f} req/s at concurrency {best['concurrency']}"
                     if best else "  no level met the p99 target")
        lines.append("")
    ratio = result["ratio"]
    lines.append(f"throughput ratio 2 workers / 1 worker: {ratio:.2f}x (target >= 1.6x)" if ratio else
                 "throughput ratio: - (a configuration met no level)")
    lat = result["latency"]
    lines.append(f"added latency of Redis-shared state: median {lat['added_median_ms']:+.2f} ms "
                 f"(in-memory {lat['memory_median_ms']:.2f} ms, Redis {lat['redis_median_ms']:.2f} ms; p90 "
                 f"{lat['memory_p90_ms']:.2f} / {lat['redis_p90_ms']:.2f} ms; {lat['requests']} requests each, "
                 f"alternating; load {lat['load']}) (target <= 2 ms)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--p99-ms", type=float, default=400.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--levels", default="1,2,4,8,12,16,24,32")
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in str(args.levels).split(",") if x.strip()]
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
