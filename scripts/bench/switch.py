"""Profile-switch benchmark: what a client load through LiteLLM sees while `llm-router profile set` switches live.

A temporary repo (the tests' StackRepo layout: CLIProxyAPIPlus stand-in as the binary, plus a `paid` stand-in
upstream) routes model group `coder` over two deployments whose order differs between profiles: `balanced` puts the
paid one first, `cost` the subscription one (`x-litellm-model-id` tells which profile served a request). The stack is
started with `service start all`, every profile is proven (`litellm.prove.prove_profiles`), then for each LiteLLM mode:
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

Before those passes, gunicorn mode runs an early pass (RETRIES `early`): the load starts the moment `service start
all` returns, and `profile set` runs EARLY_AT (2 s) after that, with the proof cache emptied first, so the switch
proves its profile synchronously whatever the background prover has done by then (the first switch a user makes
right after start; issue 18). Its row says whether the background prover was still running (BG_PROVER).
Memory: RSS (and PSS: shared pages counted once) of the stack's processes right after start, after the early
switch, and after --memory-switches (10) more switches without load; plus the processes of LiteLLM's launch that are
neither the master nor a worker (a resident prover would show there; the target is none above 100 MB when idle).

    uv run python scripts/bench/switch.py [--rate R] [--threads N] [--switches N] [--mode gunicorn|uvicorn]
                                          [--memory-switches N] [--bytecode-cache] [--json]
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

from llm_router import events, profiles  # noqa: E402
from llm_router import stack as router_stack  # noqa: E402
from llm_router.litellm import prove  # noqa: E402
from llm_router.litellm import service as litellm_service  # noqa: E402
from llm_router.output import table  # noqa: E402
from llm_router.standin.cliproxy import write_codex_login  # noqa: E402
from llm_router.standin.process import start_upstream  # noqa: E402
from llm_router.supervisor import process  # noqa: E402
from scripts.bench.start import (  # noqa: E402
    BenchError,
    Processes,
    StackDir,
    bytecode_cache,
    cache_note,
    epoch,
    fmt,
    loadavg,
    source_state,
    wait_gone,
)
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
EARLY_AT = 2.0  # the early pass switches this long after `service start all` returned
IDLE_PROVER_MB = 100.0


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
            switches.append(run_switch(stack, procs, mode, retries))
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


def run_switch(stack: StackDir, procs: Processes, mode: str, retries, target: str | None = None) -> dict:
    """One `profile set` in a subprocess, timed; returns the switch row (window figures are added later)."""
    cfg = stack.cfg
    current = profiles.active(cfg)["name"]
    target = target or OTHER[current]
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
    return {"mode": mode, "retries": retries, "from": current, "to": target, "t_cmd": t_cmd,
            "t_done": t_done, "cli_s": t_done - t_cmd, "event_s": detail.get("seconds"),
            "worker_ready_s": detail.get("worker_ready_s"), "switch_s": detail.get("switch_s"),
            "applied": detail.get("applied"), "replaced_hung": detail.get("replaced_hung") or [],
            "load": loadavg()}


def prover_running(cfg) -> bool:
    record, _ = process.read_record(cfg.layout, litellm_service.PROVER)
    return record is not None and process.owned_leader(record) is not None


def early_pass(stack: StackDir, procs: Processes, mode: str, started_at: float, args) -> tuple[list[dict], dict]:
    """The load from the moment `service start all` returned (`started_at`, monotonic), and one switch EARLY_AT
    seconds later with an empty proof cache: its proof is made inside the switch."""
    cfg = stack.cfg
    load = Load(stack.litellm_base(), cfg.secret("LITELLM_MASTER_KEY"), threads=args.threads, rate=args.rate,
                max_retries=2)
    with load:
        time.sleep(max(0.0, started_at + EARLY_AT - time.monotonic()))
        background = prover_running(cfg)
        cache = cfg.layout.litellm_dir / "proven.json"
        cache.write_text("{}\n")  # nothing proven: the switch proves its profile itself
        sw = run_switch(stack, procs, mode, "early")
        sw["since_start_s"] = sw["t_cmd"] - started_at
        sw["bg_prover"] = background
        time.sleep(SETTLE)
    samples = sorted(load.samples, key=lambda s: s.started)
    span = (samples[-1].started - samples[0].started) if len(samples) > 1 else 0.0
    stats_for(sw, samples, float("inf"))
    first = [s for s in samples if s.ok][:1]
    summary = {"mode": mode, "retries": "early", "requests": len(samples), "failed": len(load.failures),
               "rate": len(samples) / span if span else None, "steady_p50_s": None, "steady_p99_s": None,
               "warmup_max_s": max((s.latency for s in samples if s.ok and s.started < sw["t_cmd"] - PRE),
                                   default=None),
               "first_s": first[0].latency if first else None,
               "errors": dict(Counter(s.error for s in load.failures).most_common(6))}
    return [sw], summary


def stack_memory(cfg, label: str) -> dict:
    """RSS and PSS (MB) of every process of the stack's launches: LiteLLM's master, its workers, anything else that
    carries LiteLLM's launch marker (a resident prover would), CLIProxyAPIPlus, and the background prover job."""
    import psutil

    from llm_router.supervisor import process

    row = {"state": label, "master_mb": None, "workers_mb": [], "others": [], "cliproxy_mb": None,
           "prover_job_mb": None, "total_rss_mb": 0.0, "total_pss_mb": 0.0}

    def mem(proc) -> tuple[float, float]:
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            return info.rss / 2**20, getattr(info, "pss", info.rss) / 2**20
        return 0.0, 0.0

    def add(rss_pss):
        row["total_rss_mb"] += rss_pss[0]
        row["total_pss_mb"] += rss_pss[1]
        return round(rss_pss[0], 1)

    record, _ = process.read_record(cfg.layout, "litellm")
    if record is not None:
        leader = process.owned_leader(record)
        kids = {c.pid for c in process.children(record)}
        for member in process.owned_members(record):
            if leader is not None and member.pid == leader.pid:
                row["master_mb"] = add(mem(member))
            elif member.pid in kids:
                row["workers_mb"].append(add(mem(member)))
            else:
                rss = add(mem(member))
                with contextlib.suppress(psutil.Error):
                    row["others"].append({"pid": member.pid, "rss_mb": rss, "name": " ".join(member.cmdline())[:60]})
    for name, key in (("cliproxyapi_plus", "cliproxy_mb"), (litellm_service.PROVER, "prover_job_mb")):
        other, _ = process.read_record(cfg.layout, name)
        leader = process.owned_leader(other) if other is not None else None
        if leader is not None:
            row[key] = add(mem(leader))
    row["total_rss_mb"] = round(row["total_rss_mb"], 1)
    row["total_pss_mb"] = round(row["total_pss_mb"], 1)
    return row


def memory_switches(stack: StackDir, procs: Processes, mode: str, count: int) -> list[dict]:
    rows = []
    for _ in range(count):
        rows.append(run_switch(stack, procs, mode, "memory"))
    return rows


def measure_mode(stack: StackDir, procs: Processes, mode: str, args) -> tuple[list[dict], list[dict], list[dict]]:
    stack.write(mode)
    print(f"{mode}: service start all ...", file=sys.stderr, flush=True)
    memory = []
    try:
        done = stack.cli("service", "start", "all")
        started_at = time.monotonic()
        procs.remember_records(stack.cfg)
        if done.returncode != 0:
            raise BenchError(f"`service start all` failed: {(done.stdout + done.stderr)[-800:]}")
        rows, passes = [], []
        if mode == "gunicorn":
            memory.append(stack_memory(stack.cfg, "after start"))
            switches, summary = early_pass(stack, procs, mode, started_at, args)
            rows += switches
            passes.append(summary)
            memory.append(stack_memory(stack.cfg, "after the early switch"))
        prover, _ = process.read_record(stack.cfg.layout, litellm_service.PROVER)
        if prover is not None:  # let the background prover finish
            print("  waiting for the background prover ...", file=sys.stderr, flush=True)
            wait_gone(prover.pid, 300)
        verdicts = prove.prove_profiles(stack.cfg)  # every profile proven before the measured switches
        bad = {name: v["error"] for name, v in verdicts.items() if not v["ok"]}
        if bad:
            raise BenchError(f"profiles not loadable: {bad}")
        for retries in (2, 0):
            switches, summary = run_pass(stack, procs, mode, retries, args)
            rows += switches
            passes.append(summary)
        if mode == "gunicorn" and args.memory_switches:
            print(f"  {args.memory_switches} switches without load, then memory ...", file=sys.stderr, flush=True)
            done_switches = memory_switches(stack, procs, mode, args.memory_switches)
            time.sleep(2.0)
            row = stack_memory(stack.cfg, f"after {args.memory_switches} more switches")
            row["switch_cli_s"] = [round(r["cli_s"], 2) for r in done_switches]
            memory.append(row)
        return rows, passes, memory
    finally:
        procs.remember_records(stack.cfg)
        router_stack.stop(stack.cfg, "all")


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
    early = [r for r in report["switches"] if r["retries"] == "early"]
    if early:
        out.append("")
        out.append(f"early switch: `profile set` {EARLY_AT:g} s after `service start all` returned, "
                   "proof cache emptied")
        out.append(table([[r["mode"], fmt(r.get("since_start_s")), "yes" if r.get("bg_prover") else "no",
                           fmt(r["cli_s"]), fmt(r["new_served_s"]), r["window_failed"], r["target"]] for r in early],
                         ["MODE", "SINCE_START", "BG_PROVER", "CLI", "NEW_SERVED", "FAILED", "TARGET"]))
        firsts = [p for p in report["passes"] if p["retries"] == "early"]
        for p in firsts:
            out.append(f"  first request of the load (sent as `service start all` returned): "
                       f"{fmt(p.get('first_s'), 0, 1000)} ms; slowest before the switch window: "
                       f"{fmt(p.get('warmup_max_s'), 0, 1000)} ms")
    if report.get("memory"):
        out.append("")
        out.append("memory (MB): RSS per process, totals as RSS and PSS (shared pages counted once)")
        out.append(table([[m["state"], fmt(m["master_mb"], 0), ", ".join(f"{w:.0f}" for w in m["workers_mb"]) or "-",
                           fmt(m["cliproxy_mb"], 0), fmt(m["prover_job_mb"], 0),
                           ", ".join(f"{o['pid']}:{o['rss_mb']:.0f}" for o in m["others"]) or "none",
                           fmt(m["total_rss_mb"], 0), fmt(m["total_pss_mb"], 0)] for m in report["memory"]],
                         ["STATE", "MASTER", "WORKERS", "CLIPROXY", "PROVER_JOB", "OTHER_LITELLM", "TOTAL_RSS",
                          "TOTAL_PSS"]))
        out.append("OTHER_LITELLM: processes carrying LiteLLM's launch marker that are neither master nor worker "
                   "(a resident or leftover prover); PROVER_JOB: the background prover "
                   "(`python -m llm_router.litellm.prove`) if still running")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=25.0, help="requests per second over all threads (default 25)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--switches", type=int, default=2, help="switches per pass, alternating (default 2)")
    parser.add_argument("--mode", action="append", choices=MODES, help="repeatable; default: both")
    parser.add_argument("--memory-switches", type=int, default=10,
                        help="switches without load before the last memory reading (gunicorn; default 10, 0: none)")
    parser.add_argument("--bytecode-cache", action="store_true",
                        help="run every child with a bytecode cache in a temporary PYTHONPYCACHEPREFIX, as an "
                             "install whose venv holds .pyc files")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report: dict = {"load_before": loadavg(), "cpus": os.cpu_count(), "rate": args.rate, "threads": args.threads,
                    "bytecode_cache": args.bytecode_cache, "source": source_state(),
                    "switches": [], "passes": [], "memory": []}
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
                rows, passes, memory = measure_mode(stack, procs, mode, args)
                report["switches"] += rows
                report["passes"] += passes
                report["memory"] += memory
    finally:
        if stack is not None:
            with contextlib.suppress(Exception):
                router_stack.stop(stack.cfg, "all")
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
    big = [o for m in report["memory"] for o in m["others"] if o["rss_mb"] > IDLE_PROVER_MB]
    ok = all(r["target"] in ("ok", "baseline") for r in report["switches"]) and not big
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
