"""Profile-switch benchmark: what a client load through LiteLLM sees while `llm-router profile set` switches live.

A temporary repo (the tests' StackRepo layout: CLIProxyAPIPlus stand-in as the binary, plus a `paid` stand-in
upstream) routes model group `coder` over two deployments whose order differs between profiles: `balanced` puts the
paid one first, `cost` the subscription one (`x-litellm-model-id` tells which profile served a request). The stack is
started with `service start all`, every profile is proven (`profiles.prove_all`), then for each LiteLLM mode:
  gunicorn (default): `profile set` swaps the worker live (the measured path);
  uvicorn (baseline): `profile set` restarts LiteLLM;
a threaded openai-client load (tests/load_support.Load, default --rate 25 req/s over 4 staggered threads) runs two
passes, the client's default max_retries=2 and then max_retries=0 (every raw connection error shows), and in each pass
`llm-router profile set <other>` runs in a subprocess --switches times, alternating balanced <-> cost.
Per switch: failed requests in the window [CLI launch - 2 s, CLI exit + 3 s] and in the whole pass; p50/p99/max of
the successful requests started in the window; the longest stretch without a successful answer (MAX_GAP); the CLI's
wall time; the `profile_switch` event's seconds / worker_ready_s / switch_s; NEW_SERVED: CLI launch -> first answer
from the new profile's first deployment; LAST_OLD: CLI launch -> start of the last request the old profile served.
Targets (gunicorn): 0 failed, window p99 < 1 s, NEW_SERVED and LAST_OLD <= 2 s.

    uv run python scripts/bench/switch.py [--rate R] [--threads N] [--switches N] [--mode gunicorn|uvicorn]
                                          [--bytecode-cache] [--json]
    uv run inv bench.switch [--rate R] [--threads N] [--switches N] [--mode M] [--bytecode-cache] [--json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the checkout root makes `tests` and `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llm_router import events, profiles, services  # noqa: E402
from llm_router.output import table  # noqa: E402
from llm_router.standin.cliproxy import write_codex_login  # noqa: E402
from llm_router.standin.process import start_upstream  # noqa: E402
from scripts.bench.start import (BenchError, Processes, StackDir, bytecode_cache, cache_note, epoch, fmt,  # noqa: E402
                                 loadavg, source_state, wait_gone)
from tests.load_support import Load, Sample  # noqa: E402

MODES = ("gunicorn", "uvicorn")
PAID_KEY = "sk-bench-paid-standin-key-0123"
PAID_ENV = "BENCH_SWITCH_PAID_KEY"
EXTRA = """\
providers:
  cliproxy: {{type: cliproxyapi_plus}}
  paid: {{type: openai_compatible, api_base: "{paid}/v1", api_key_env: %s, tier: paid}}
models:
  - name: coder
    deployments: [{{provider: paid, model: m-paid}}, {{provider: cliproxy, model: gpt-5-codex}}]
""" % PAID_ENV
FIRST_DEPLOYMENT = {"balanced": "coder/paid/m-paid", "cost": "coder/cliproxy/gpt-5-codex"}
OTHER = {"balanced": "cost", "cost": "balanced"}
PRE, POST = 2.0, 3.0  # the window around a switch: [CLI launch - PRE, CLI exit + POST]
SETTLE = 6.0  # load after each switch before the next one (>= POST); a fresh worker is slow for a few seconds
WARMUP = 8.0  # load before the first switch of a pass, so that the serving worker is warm
TARGET_P99_S = 1.0
TARGET_NEW_S = 2.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


def switch_events(cfg, since: float) -> list[dict]:
    return [e for e in events.for_config(cfg).read(event=profiles.SWITCH_EVENT) if epoch(e["timestamp"]) >= since]


def run_pass(stack: StackDir, procs: Processes, mode: str, retries: int, args) -> tuple[list[dict], dict]:
    cfg = stack.cfg
    switches = []
    load = Load(stack.litellm_base(), cfg.secret("LITELLM_MASTER_KEY"), threads=args.threads, rate=args.rate,
                max_retries=retries)
    with load:
        load.wait_for(args.threads * 2, timeout=60)
        time.sleep(WARMUP)
        warm = time.monotonic()
        for _ in range(args.switches):
            current = profiles.active(cfg)["name"]
            target = OTHER[current]
            print(f"  {mode} retries={retries}: profile set {target} ... load {loadavg()}", file=sys.stderr, flush=True)
            wall = time.time()
            t_cmd = time.monotonic()
            done = stack.cli("profile", "set", target)
            t_done = time.monotonic()
            procs.remember_records(cfg)
            if done.returncode != 0:
                raise BenchError(f"`profile set {target}` failed (exit {done.returncode}): "
                                 f"{(done.stdout + done.stderr)[-800:]}")
            found = [e for e in switch_events(cfg, wall - 0.01) if e["profile"] == target and e["result"] == "ok"]
            detail = found[-1]["detail"] if found else {}
            switches.append({"mode": mode, "retries": retries, "from": current, "to": target, "t_cmd": t_cmd,
                             "t_done": t_done, "cli_s": t_done - t_cmd, "event_s": detail.get("seconds"),
                             "worker_ready_s": detail.get("worker_ready_s"), "switch_s": detail.get("switch_s"),
                             "applied": detail.get("applied"), "replaced_hung": detail.get("replaced_hung") or [],
                             "load": loadavg()})
            time.sleep(SETTLE)
    samples = sorted(load.samples, key=lambda s: s.started)
    span = (samples[-1].started - samples[0].started) if len(samples) > 1 else 0.0
    in_windows = lambda s: any(sw["t_cmd"] - PRE <= s.started <= sw["t_done"] + POST for sw in switches)  # noqa: E731
    steady = [s.latency for s in samples if s.ok and s.started >= warm and not in_windows(s)]
    warming = [s.latency for s in samples if s.ok and s.started < warm]
    summary = {"mode": mode, "retries": retries, "requests": len(samples), "failed": len(load.failures),
               "rate": len(samples) / span if span else None,
               "steady_p50_s": percentile(steady, 0.5), "steady_p99_s": percentile(steady, 0.99),
               "warmup_max_s": max(warming, default=None),
               "errors": dict(Counter(s.error for s in load.failures).most_common(6))}
    for i, sw in enumerate(switches):
        until = switches[i + 1]["t_cmd"] if i + 1 < len(switches) else float("inf")
        stats_for(sw, samples, until)
    return switches, summary


def stats_for(sw: dict, samples: list[Sample], until: float) -> None:
    """Window figures of one switch; `until` is the next switch's launch (its samples are not this one's)."""
    t_cmd, lo, hi = sw["t_cmd"], sw["t_cmd"] - PRE, sw["t_done"] + POST
    window = [s for s in samples if lo <= s.started <= hi]
    ok = [s for s in window if s.ok]
    new_id, old_id = FIRST_DEPLOYMENT[sw["to"]], FIRST_DEPLOYMENT[sw["from"]]
    segment = [s for s in samples if lo <= s.started < until and s.ok]
    new_done = [s.started + s.latency for s in segment if s.model_id == new_id and s.started + s.latency >= t_cmd]
    old_started = [s.started for s in segment if s.model_id == old_id]
    done_times = sorted(s.started + s.latency for s in ok)
    gaps = [b - a for a, b in zip(done_times, done_times[1:])]
    sw.update({
        "window_requests": len(window), "window_failed": len(window) - len(ok),
        "p50_s": percentile([s.latency for s in ok], 0.5), "p99_s": percentile([s.latency for s in ok], 0.99),
        "max_s": max((s.latency for s in ok), default=None), "max_gap_s": max(gaps, default=None),
        "new_served_s": (min(new_done) - t_cmd) if new_done else None,
        # the same from when set_profile began inside the CLI (~ CLI exit - the event's seconds)
        "new_served_lib_s": (min(new_done) - (sw["t_done"] - sw["event_s"])) if new_done and sw["event_s"] else None,
        "last_old_s": (max(old_started) - t_cmd) if old_started else None,
        "old_after_cli_exit": len([t for t in old_started if t > sw["t_done"]]),
        "other_ids": sorted({s.model_id for s in segment if s.model_id not in (new_id, old_id)} - {None}),
        "window_errors": dict(Counter(s.error for s in window if not s.ok).most_common(4)),
    })
    sw["target"] = verdict(sw)


def verdict(sw: dict) -> str:
    if sw["mode"] != "gunicorn":
        return "baseline"
    missed = []
    if sw["window_failed"]:
        missed.append("failed > 0")
    if sw["p99_s"] is None or sw["p99_s"] >= TARGET_P99_S:
        missed.append(f"p99 >= {TARGET_P99_S:g} s")
    if sw["new_served_s"] is None or sw["new_served_s"] > TARGET_NEW_S:
        missed.append(f"new served > {TARGET_NEW_S:g} s")
    if sw["last_old_s"] is not None and sw["last_old_s"] > TARGET_NEW_S:
        missed.append(f"old served > {TARGET_NEW_S:g} s")
    return "; ".join(missed) or "ok"


def measure_mode(stack: StackDir, procs: Processes, mode: str, args) -> tuple[list[dict], list[dict]]:
    stack.write(mode)
    print(f"{mode}: service start all ...", file=sys.stderr, flush=True)
    try:
        done = stack.cli("service", "start", "all")
        procs.remember_records(stack.cfg)
        if done.returncode != 0:
            raise BenchError(f"`service start all` failed: {(done.stdout + done.stderr)[-800:]}")
        prover, _ = services.read_record(stack.cfg.layout, services.PROVER)
        if prover is not None:  # let the background prover finish: it imports LiteLLM at nice 10
            print("  waiting for the background prover ...", file=sys.stderr, flush=True)
            wait_gone(prover.pid, 300)
        verdicts = profiles.prove_all(stack.cfg)  # every profile proven before the measured switches
        bad = {name: v["error"] for name, v in verdicts.items() if not v["ok"]}
        if bad:
            raise BenchError(f"profiles not loadable: {bad}")
        rows, passes = [], []
        for retries in (2, 0):
            switches, summary = run_pass(stack, procs, mode, retries, args)
            rows += switches
            passes.append(summary)
        return rows, passes
    finally:
        procs.remember_records(stack.cfg)
        services.stop(stack.cfg, "all")


def render(report: dict) -> str:
    out = [f"machine: {report['cpus']} CPUs; load before {report['load_before']}, after {report['load_after']}; "
           f"children's bytecode cache: {cache_note(report['bytecode_cache'])}; load {report['threads']} threads at "
           f"{report['rate']:g} req/s",
           f"source: HEAD {report['source']['head']}, modified under src/: "
           f"{', '.join(report['source']['modified']) or 'none'}", ""]
    out.append(f"per switch (window: CLI launch - {PRE:g} s .. CLI exit + {POST:g} s; latencies of successful "
               "requests in it; seconds unless ms)")
    out.append(table([[r["mode"], r["retries"], f"{r['from']}->{r['to']}", r["window_requests"], r["window_failed"],
                       fmt(r["p50_s"], 0, 1000), fmt(r["p99_s"], 0, 1000), fmt(r["max_s"], 0, 1000),
                       fmt(r["max_gap_s"]), fmt(r["cli_s"]), fmt(r["event_s"]), fmt(r["worker_ready_s"]),
                       fmt(r["switch_s"]), fmt(r["new_served_s"]), fmt(r["new_served_lib_s"]), fmt(r["last_old_s"]),
                       len(r["replaced_hung"]), r["load"].split(" ")[0], r["target"]] for r in report["switches"]],
                     ["MODE", "RETRIES", "SWITCH", "REQS", "FAILED", "P50_MS", "P99_MS", "MAX_MS", "MAX_GAP",
                      "CLI", "EVENT", "WORKER_READY", "SWAP", "NEW_SERVED", "NEW_LIB", "LAST_OLD", "HUNG", "LOAD1",
                      "TARGET"]))
    out.append("CLI: `profile set` wall time; EVENT/WORKER_READY/SWAP: the profile_switch event's seconds, "
               "worker_ready_s, switch_s; NEW_SERVED: CLI launch -> first answer by the new first deployment; "
               "NEW_LIB: the same from set_profile's start (CLI exit - EVENT); "
               "LAST_OLD: CLI launch -> start of the last request the old profile answered; MAX_GAP: longest time "
               "between two successful answers in the window")
    out.append("")
    out.append("per pass (whole load)")
    out.append(table([[p["mode"], p["retries"], p["requests"], fmt(p["rate"], 1), p["failed"],
                       fmt(p["steady_p50_s"], 0, 1000), fmt(p["steady_p99_s"], 0, 1000),
                       fmt(p.get("warmup_max_s"), 0, 1000)] for p in report["passes"]],
                     ["MODE", "RETRIES", "REQUESTS", "REQ_PER_S", "FAILED", "STEADY_P50_MS", "STEADY_P99_MS",
                      "WARMUP_MAX_MS"]))
    out.append(f"STEADY: successful requests after the {WARMUP:g} s warm-up and outside every switch window; "
               "WARMUP_MAX: the slowest request of the warm-up (pass 1: the worker `service start` forked; pass 2: "
               "the worker of the previous pass's last switch)")
    for p in report["passes"]:
        for error, count in p["errors"].items():
            out.append(f"  {p['mode']} retries={p['retries']}: {count} x {error}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second over all threads (default 25)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--switches", type=int, default=2, help="switches per pass, alternating (default 2)")
    parser.add_argument("--mode", action="append", choices=MODES, help="repeatable; default: both")
    parser.add_argument("--bytecode-cache", action="store_true",
                        help="run every child with a bytecode cache in a temporary PYTHONPYCACHEPREFIX, as an "
                             "install whose venv holds .pyc files")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report: dict = {"load_before": loadavg(), "cpus": os.cpu_count(), "rate": args.rate, "threads": args.threads,
                    "bytecode_cache": args.bytecode_cache, "source": source_state(),
                    "switches": [], "passes": []}
    procs = Processes()
    root = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    paid = stack = None
    saved_env = os.environ.get(PAID_ENV)
    os.environ[PAID_ENV] = PAID_KEY  # the CLI subprocesses and LiteLLM read the paid provider's key from here
    try:
        with bytecode_cache(args.bytecode_cache):
            paid = start_upstream(api_key=PAID_KEY, models=["m-paid"], name="paid")
            procs.remember(paid.pid)
            stack = StackDir(root, extra=EXTRA.format(paid=paid.base_url))
            write_codex_login(stack.cfg.layout.auths_dir, "bench@example.com", "plus")
            for mode in args.mode or MODES:
                rows, passes = measure_mode(stack, procs, mode, args)
                report["switches"] += rows
                report["passes"] += passes
    finally:
        if stack is not None:
            with contextlib.suppress(Exception):
                services.stop(stack.cfg, "all")
        if paid is not None:
            paid.stop()
        leftovers = procs.cleanup()
        if leftovers:
            print(f"note: killed leftover process groups {leftovers}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
        if saved_env is None:
            os.environ.pop(PAID_ENV, None)
        else:
            os.environ[PAID_ENV] = saved_env
    report["load_after"] = loadavg()
    for row in report["switches"]:  # monotonic instants mean nothing outside this process
        row.pop("t_cmd", None)
        row.pop("t_done", None)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if all(r["target"] in ("ok", "baseline") for r in report["switches"]) else 1


if __name__ == "__main__":
    sys.exit(main())
