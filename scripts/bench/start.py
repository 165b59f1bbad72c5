"""Start-up benchmark: `llm-router service start all` against the bare `litellm` command, and `llm-router status`
against an empty interpreter.

(a) Start. A temporary repo on free loopback ports with the CLIProxyAPIPlus stand-in installed as the binary (the
tests' StackRepo layout). Each round runs, per LiteLLM mode (gunicorn: the default, worker boot watched; uvicorn:
`services.litellm.mode: uvicorn`), in alternating order:
  - router: `llm-router --config X service start all` in a subprocess, then `service stop all`;
  - bare:   `litellm --config <the same rendered active.yaml> --host 127.0.0.1 --port N` (+ `--run_gunicorn
            --num_workers 1` in gunicorn mode) with the environment the router gives LiteLLM
            (`litellm.env.litellm_env`), the same working directory, CLIProxyAPIPlus running as in the router run.
What the ratio compares (LiteLLM part only):
  ROUTER_LITELLM = from the router's `service_start` event for CLIProxyAPIPlus (written the moment it is ready, just
                   before the router turns to LiteLLM) to the exit of `service start all`: profile check, runner
                   script, spawn, worker-boot watch, readiness polling (every 0.2 s) and the CLI's exit.
  BARE           = from Popen of the bare command to its first 200 on /health/readiness (polled every 50 ms).
  RATIO          = median(ROUTER_LITELLM) / median(BARE) per mode; target <= 1.10.
First request (issue 18): the moment a start is ready (the CLI exited; the bare command answered readiness), one
chat completion is sent (model `coder`, a fresh connection each, answered by the CLIProxyAPIPlus stand-in), then
FIRST_NEXT (20) more back to back: FIRST_MS against the median of the next ones, target <= 3x for the router
(plain LiteLLM, the bare row, imports about a hundred modules on its first request). Then the first Anthropic
Messages request (what Claude Code sends) and MESSAGES_NEXT (5) more: MSG_FIRST_MS against their median (no
target; reported). Two switches of the launcher (llm_router.litellm.launch) add gunicorn router kinds to the same
interleaved rounds, so what each costs or saves shows in the ratio: `--compare-warmup` adds `router-after-fork`
(LLM_ROUTER_WARMUP=after-fork: the master warms after its first fork, as before issue 18), `--compare-gc` adds
`router-gc-plain` (LLM_ROUTER_IMPORT_GC=plain: the collector left on while the master imports LiteLLM).
The CLIProxyAPIPlus part (start of the CLI process to that event: the CLI's own start-up included) and the total
are reported beside it; FIRST_200 is when an outside poller (every 50 ms) first got 200 from the router's LiteLLM,
counted from its spawn, so ROUTER_LITELLM - FIRST_200 is what the router adds around LiteLLM's own start.

(b) Status. `llm-router --config X status` against `python -c pass` with the same interpreter, interleaved, median of
N runs each, with the stack stopped and running; target: difference <= 150 ms. Both run as an ordinary install
does: Python may write bytecode (into a temporary PYTHONPYCACHEPREFIX primed by one untimed run; the checkout is not
touched). This sandbox sets PYTHONDONTWRITEBYTECODE=1, which no default install has, so a diagnostic row repeats the
running case in the inherited environment: there llm-router compiles its own modules at every run (`uv sync`
writes bytecode for the installed packages, see `compile-bytecode` in pyproject.toml, but not for the editable
checkout). One `python -X importtime` run of the status command names the heaviest imports.

    uv run python scripts/bench/start.py [--runs N] [--status-runs N] [--mode gunicorn|uvicorn] [--compare-warmup]
                                         [--compare-gc] [--json]
    uv run inv bench.start [--runs N] [--status-runs N] [--compare-warmup] [--compare-gc] [--json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the checkout root makes `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil  # noqa: E402

from llm_router import config as config_mod  # noqa: E402
from llm_router import events  # noqa: E402
from llm_router import stack as router_stack  # noqa: E402
from llm_router.litellm import service as litellm_service  # noqa: E402
from llm_router.litellm.env import litellm_env  # noqa: E402
from llm_router.litellm.launch import IMPORT_GC_ENV, WARMUP_ENV  # noqa: E402
from llm_router.litellm.workers import STARTED  # noqa: E402
from llm_router.output import table  # noqa: E402
from llm_router.standin.cliproxy import install_fake_binary, write_codex_login  # noqa: E402
from llm_router.standin.process import free_port  # noqa: E402
from llm_router.supervisor import (
    health,  # noqa: E402
    process,  # noqa: E402
)
from tests.support import STACK_CONFIG, patched_env  # noqa: E402

BIN = Path(sys.prefix) / "bin"
LITELLM = BIN / "litellm"
ROUTER = [str(BIN / "llm-router")] if (BIN / "llm-router").exists() else [sys.executable, "-m", "llm_router"]
MODES = ("gunicorn", "uvicorn")
TARGET_RATIO = 1.10
TARGET_STATUS_MS = 150.0
TARGET_FIRST_X = 3.0
FIRST_NEXT = 20
READY_POLL = 0.05  # the outside poller; the router itself polls every supervisor.POLL (0.2 s)
START_TIMEOUT = 180.0  # generous: other test suites share the 2 cores
BARE_HUNG_AFTER = 20.0  # a bare gunicorn worker not started this long after its fork hung (reference: litellm.md §9)
BOOTING = re.compile(rb"Booting worker with pid: (\d+)")


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- shared helpers (switch.py uses them)

def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "?"


def source_state() -> dict:
    """The checkout measured: HEAD and the files under src/ that differ from it (others edit the tree too)."""
    root = Path(__file__).resolve().parents[2]

    def git(*argv: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True, timeout=10).stdout
        return ""

    return {"head": git("rev-parse", "--short", "HEAD").strip(),
            "modified": [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


@contextlib.contextmanager
def bytecode_cache(enabled: bool):
    """Every child (CLI, LiteLLM, stand-ins) caches bytecode in a temporary PYTHONPYCACHEPREFIX, as a normal
    install writes __pycache__; the venv is not touched. Off: the inherited environment as it is."""
    if not enabled:
        yield None
        return
    cache = Path(tempfile.mkdtemp(prefix="bench-pycache-"))
    try:
        with patched_env({"PYTHONDONTWRITEBYTECODE": None, "PYTHONPYCACHEPREFIX": str(cache)}):
            yield cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def cache_note(enabled: bool) -> str:
    if enabled:
        return "a temporary PYTHONPYCACHEPREFIX (--bytecode-cache)"
    return f"as inherited (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', 'unset')})"


class Processes:
    """Every process group a benchmark started, ended by leader pid (checked against its create time) on cleanup."""

    def __init__(self) -> None:
        self.groups: dict[int, float] = {}
        self.popens: list[subprocess.Popen] = []

    def remember(self, pid: int, create_time: float | None = None) -> None:
        if create_time is None:
            with contextlib.suppress(psutil.Error):
                create_time = psutil.Process(pid).create_time()
        if create_time is not None:
            self.groups[pid] = create_time

    def remember_records(self, cfg: config_mod.RouterConfig) -> None:
        for name in (*router_stack.ORDER, litellm_service.PROVER):
            record, _ = process.read_record(cfg.layout, name)
            if record is not None:
                self.remember(record.pid, record.create_time)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
        self.popens.append(proc)
        self.remember(proc.pid)
        return proc

    @staticmethod
    def stop_group(proc: subprocess.Popen, timeout: float = 40.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL (LiteLLM drains for up to 30 s)."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        Processes.kill_members(proc.pid)

    @staticmethod
    def kill_members(pgid: int) -> None:
        """SIGKILL what is left of a process group we led (a gunicorn worker that outlived its master, say)."""
        for member in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                if os.getpgid(member.pid) == pgid:
                    member.kill()

    def cleanup(self) -> list[int]:
        """End everything still alive; returns the leaders that had to be killed here."""
        killed = []
        for proc in self.popens:
            with contextlib.suppress(Exception):
                self.stop_group(proc, timeout=10)
        for pid, created in self.groups.items():
            try:
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) > 0.05 or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            killed.append(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for pid in self.groups:  # members whose leader is already gone
            self.kill_members(pid)
        return killed


class StackDir:
    """A temporary repo like the tests' StackRepo: free loopback ports, the CLIProxyAPIPlus stand-in as the binary.
    `extra` replaces the providers/models part of the config (switch.py routes over two providers)."""

    def __init__(self, root: Path, extra: str | None = None) -> None:
        self.root = Path(root)
        self.ports = {"cliproxy_port": free_port(), "litellm_port": free_port()}
        self.config_path = self.root / "config" / "routertool.yaml"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.extra = extra
        self.mode = ""
        self.write("gunicorn")
        install_fake_binary(self.cfg.layout.cliproxy_binary)

    def write(self, mode: str, worker_boot_timeout: float | None = None) -> None:
        text = STACK_CONFIG.format(**self.ports)
        boot = f", worker_boot_timeout: {worker_boot_timeout:g}" if worker_boot_timeout else ""
        text = text.replace("startup_timeout: 120}", f"startup_timeout: {START_TIMEOUT:.0f}, mode: {mode}{boot}}}")
        if self.extra is not None:
            text = text[:text.index("providers:")] + self.extra
        self.config_path.write_text(text)
        self.mode = mode
        self.cfg = config_mod.load(self.config_path)

    def cli(self, *argv: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
        return subprocess.run([*ROUTER, "--config", str(self.config_path), *argv], capture_output=True, text=True,
                              cwd=self.root, timeout=timeout, stdin=subprocess.DEVNULL)

    def litellm_base(self) -> str:
        return self.cfg.services["litellm"].base_url


class FirstReady(threading.Thread):
    """Polls a readiness URL every READY_POLL seconds and keeps the wall time of the first 2xx."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.at: float | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            if health.probe(self.url, None, timeout=1.0).ready:
                self.at = time.time()
                return
            self._halt.wait(READY_POLL)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def boots_since(path: Path, offset: int) -> tuple[list[int], set[int]]:
    """Workers forked and workers that finished startup in a log since `offset`."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return [], set()
    return [int(p) for p in BOOTING.findall(data)], {int(p) for p in STARTED.findall(data)}


# --------------------------------------------------------------------------- (a) start

CHAT = ("/v1/chat/completions", {"model": "coder", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 5})
MESSAGES = ("/v1/messages", {"model": "coder", "max_tokens": 5, "messages": [{"role": "user", "content": "ping"}]})
MESSAGES_NEXT = 5


def _timed_posts(base_url: str, key: str | None, path: str, body: dict, count: int) -> tuple[list[float], list[str]]:
    """`count` POSTs of `body` to `path`, each on a fresh connection: latencies in seconds, and errors."""
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    data = json.dumps(body)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    latencies, errors = [], []
    for _ in range(count):
        p0 = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
            conn.request("POST", path, body=data, headers=headers)
            answer = conn.getresponse()
            answer.read()
            conn.close()
            if answer.status != 200:
                errors.append(f"{path} HTTP {answer.status}")
        except OSError as exc:
            errors.append(f"{path} {type(exc).__name__}")
        latencies.append(time.perf_counter() - p0)
    return latencies, errors


def first_requests(base_url: str, key: str | None, count: int = FIRST_NEXT) -> dict:
    """Against a just-started LiteLLM: the first chat completion, then `count` more; then the first Anthropic
    Messages request (what Claude Code sends; the chat path is warm by then, the messages path is not unless the
    master warmed it), then MESSAGES_NEXT more. Latencies in seconds."""
    chat, errors = _timed_posts(base_url, key, *CHAT, count + 1)
    messages, more = _timed_posts(base_url, key, *MESSAGES, MESSAGES_NEXT + 1)
    nxt, msg_next = median(chat[1:]), median(messages[1:])
    return {"first_s": chat[0], "next_median_s": nxt, "next_max_s": max(chat[1:], default=None),
            "first_x": chat[0] / nxt if nxt else None,
            "msg_first_s": messages[0], "msg_next_s": msg_next,
            "msg_first_x": messages[0] / msg_next if msg_next else None, "request_errors": (errors + more)[:3]}


# The router kinds: the default, and the launcher's A/B switches (llm_router.litellm.launch), gunicorn only.
ROUTER_KINDS = {
    "router": {},
    "router-after-fork": {WARMUP_ENV: "after-fork"},  # --compare-warmup: the master warms after its first fork
    "router-gc-plain": {IMPORT_GC_ENV: "plain"},  # --compare-gc: the collector left on during the import
}


def router_start(stack: StackDir, procs: Processes, kind: str = "router") -> dict:
    cfg, layout = stack.cfg, stack.cfg.layout
    log = layout.log_file("litellm")
    offset = log_size(log)
    poller = FirstReady(stack.litellm_base() + cfg.services["litellm"].readiness_path)
    poller.start()
    t0 = time.time()
    p0 = time.perf_counter()
    try:
        # every kind sets both switches (the default: neither), so an exported one cannot leak into another kind
        with patched_env({WARMUP_ENV: None, IMPORT_GC_ENV: None, **ROUTER_KINDS[kind]}):
            done = stack.cli("service", "start", "all", timeout=2 * START_TIMEOUT + 60)
    finally:
        total = time.perf_counter() - p0
        procs.remember_records(cfg)
        poller.stop()
    if done.returncode != 0:
        raise BenchError(f"`service start all` failed (exit {done.returncode}): {(done.stdout + done.stderr)[-800:]}")
    first = first_requests(stack.litellm_base(), cfg.secret("LITELLM_MASTER_KEY"))
    t_end = t0 + total
    started = [e for e in events.for_config(cfg).read(event="service_start")
               if e["result"] == "ok" and epoch(e["timestamp"]) >= t0 - 0.01]
    cliproxy_ready = epoch(next(e for e in started if e["service"] == "cliproxyapi_plus")["timestamp"])
    record, _ = process.read_record(layout, "litellm")
    forked, ready_workers = boots_since(log, offset)
    return {"kind": kind, "mode": stack.mode, "total_s": total,
            "cliproxy_s": cliproxy_ready - t0, "litellm_s": t_end - cliproxy_ready,
            "first_200_s": (poller.at - record.started_at) if poller.at and record else None,
            "workers_forked": len(forked), "hung_replaced": len([p for p in forked if p not in ready_workers]),
            "pid": record.pid if record else None, **first}


def bare_start(stack: StackDir, procs: Processes) -> dict:
    """The bare command on the router's rendered active.yaml, with the router's environment for LiteLLM."""
    cfg, layout = stack.cfg, stack.cfg.layout
    router_stack.start(cfg, ["cliproxyapi_plus"])  # as in the router run (LiteLLM does not call it at start-up)
    procs.remember_records(cfg)
    port = free_port()
    argv = [str(LITELLM), "--config", str(layout.active_config), "--host", "127.0.0.1", "--port", str(port)]
    if stack.mode == "gunicorn":
        argv += ["--run_gunicorn", "--num_workers", "1"]
    env = litellm_env(cfg)
    url = f"http://127.0.0.1:{port}{cfg.services['litellm'].readiness_path}"
    with tempfile.NamedTemporaryFile(prefix="bench-bare-litellm-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        t0 = time.perf_counter()
        proc = procs.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=layout.runtime_dir)
    result = {"kind": "bare", "mode": stack.mode, "total_s": None, "cliproxy_s": None, "litellm_s": None,
              "first_200_s": None, "workers_forked": 0, "hung_replaced": 0, "pid": proc.pid, "hung": False}
    try:
        deadline = t0 + START_TIMEOUT
        while True:
            if health.probe(url, None, timeout=1.0).ready:
                elapsed = time.perf_counter() - t0
                result.update(total_s=elapsed, litellm_s=elapsed, first_200_s=elapsed)
                result.update(first_requests(f"http://127.0.0.1:{port}", env.get("LITELLM_MASTER_KEY")))
                break
            if proc.poll() is not None:
                raise BenchError(f"bare litellm exited with {proc.returncode}: {log_path.read_text()[-800:]}")
            forked, ready_workers = boots_since(log_path, 0)
            if forked and forked[-1] not in ready_workers:
                with contextlib.suppress(psutil.Error):
                    if time.time() - psutil.Process(forked[-1]).create_time() > BARE_HUNG_AFTER:
                        result["hung"] = True  # the bare command never serves: gunicorn waits 600 s
                        break
            if time.perf_counter() > deadline:
                raise BenchError(f"bare litellm not ready within {START_TIMEOUT:.0f} s")
            time.sleep(READY_POLL)
        result["workers_forked"] = len(boots_since(log_path, 0)[0])
    finally:
        Processes.stop_group(proc)
        router_stack.stop(cfg, "all")
        log_path.unlink(missing_ok=True)
    return result


def measure_start(stack: StackDir, procs: Processes, modes: list[str], runs: int,
                  compare: tuple[str, ...] = ()) -> list[dict]:
    rows = []
    for round_no in range(runs):
        for mode in modes:
            stack.write(mode)
            kinds = ["router", "bare"] + (list(compare) if mode == "gunicorn" else [])
            order = kinds if round_no % 2 == 0 else kinds[::-1]
            for kind in order:
                print(f"  round {round_no + 1}/{runs} {mode:8s} {kind:6s} ... load {loadavg()}",
                      file=sys.stderr, flush=True)
                if kind.startswith("router"):
                    try:
                        row = router_start(stack, procs, kind)
                    finally:
                        router_stack.stop(stack.cfg, "all")
                else:
                    row = bare_start(stack, procs)
                row["round"] = round_no + 1
                row["load"] = loadavg()
                rows.append(row)
                time.sleep(1.0)
    return rows


def summarize_start(rows: list[dict], modes: list[str]) -> list[dict]:
    summary = []
    for mode in modes:
        bare = [r for r in rows if r["mode"] == mode and r["kind"] == "bare" and not r.get("hung")]
        b_lite = median([r["litellm_s"] for r in bare])
        kinds = sorted({r["kind"] for r in rows if r["mode"] == mode and r["kind"].startswith("router")})
        for kind in kinds:
            router = [r for r in rows if r["mode"] == mode and r["kind"] == kind]
            r_lite = median([r["litellm_s"] for r in router])
            ratio = r_lite / b_lite if r_lite and b_lite else None
            first_x = median([r["first_x"] for r in router if r.get("first_x")])
            missed = []
            if ratio is None or ratio > TARGET_RATIO:
                missed.append(f"ratio > {TARGET_RATIO:.2f}")
            if kind == "router" and mode == "gunicorn" and (first_x is None or first_x > TARGET_FIRST_X):
                missed.append(f"first > {TARGET_FIRST_X:g}x")
            summary.append({
                "mode": mode, "kind": kind, "router_runs": len(router), "bare_runs": len(bare),
                "bare_hung": len([r for r in rows if r["mode"] == mode and r["kind"] == "bare" and r.get("hung")]),
                "router_total_s": median([r["total_s"] for r in router]),
                "router_cliproxy_s": median([r["cliproxy_s"] for r in router]),
                "router_litellm_s": r_lite,
                "router_first_200_s": median([r["first_200_s"] for r in router if r["first_200_s"] is not None]),
                "bare_litellm_s": b_lite, "ratio": ratio,
                "first_ms": _ms(median([r["first_s"] for r in router if r.get("first_s")])),
                "next_ms": _ms(median([r["next_median_s"] for r in router if r.get("next_median_s")])),
                "first_x": first_x,
                "msg_first_ms": _ms(median([r["msg_first_s"] for r in router if r.get("msg_first_s")])),
                "msg_next_ms": _ms(median([r["msg_next_s"] for r in router if r.get("msg_next_s")])),
                "msg_first_x": median([r["msg_first_x"] for r in router if r.get("msg_first_x")]),
                "bare_msg_first_ms": _ms(median([r["msg_first_s"] for r in bare if r.get("msg_first_s")])),
                "bare_first_ms": _ms(median([r["first_s"] for r in bare if r.get("first_s")])),
                "bare_first_x": median([r["first_x"] for r in bare if r.get("first_x")]),
                "router_hung_replaced": sum(r["hung_replaced"] for r in router),
                "target": ("; ".join(missed) or "ok") if kind == "router" else "comparison"})
    return summary


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


# --------------------------------------------------------------------------- (b) status

def timed_run(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    p0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - p0
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with {done.returncode}")
    return elapsed


def measure_status(stack: StackDir, runs: int, label: str, env: dict[str, str] | None = None) -> dict:
    env = dict(os.environ if env is None else env)
    status_argv = [*ROUTER, "--config", str(stack.config_path), "status"]
    pass_argv = [sys.executable, "-c", "pass"]
    timed_run(status_argv, env, stack.root)  # once untimed: checks it works and primes a bytecode cache if any
    timed_run(pass_argv, env, stack.root)
    status_t, pass_t = [], []
    for i in range(runs):
        pair = [(pass_argv, pass_t), (status_argv, status_t)]
        for argv, into in (pair if i % 2 == 0 else pair[::-1]):
            into.append(timed_run(argv, env, stack.root))
    s, p = statistics.median(status_t), statistics.median(pass_t)
    return {"state": label, "runs": runs, "status_ms": s * 1000, "status_min_ms": min(status_t) * 1000,
            "status_max_ms": max(status_t) * 1000, "pass_ms": p * 1000, "pass_min_ms": min(pass_t) * 1000,
            "diff_ms": (s - p) * 1000, "load": loadavg(),
            "target": "ok" if (s - p) * 1000 <= TARGET_STATUS_MS else f"diff > {TARGET_STATUS_MS:.0f} ms"}


def importtime(stack: StackDir, env: dict[str, str], top: int = 10) -> dict:
    """One `python -X importtime` run of the status command: the heaviest imports, by cumulative time."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "llm_router", "--config",
                           str(stack.config_path), "status"], capture_output=True, text=True, cwd=stack.root,
                          stdin=subprocess.DEVNULL, env=env)
    entries = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if match:
            entries.append({"self_ms": int(match.group(1)) / 1000, "cumulative_ms": int(match.group(2)) / 1000,
                            "depth": len(match.group(3)) // 2, "module": match.group(4)})
    roots = sorted((e for e in entries if e["depth"] == 0), key=lambda e: -e["cumulative_ms"])
    packages: dict[str, dict] = {}
    for e in entries:  # the heaviest third-party or stdlib packages, wherever they were first imported
        if "." not in e["module"] and not e["module"].startswith("llm_router"):
            packages.setdefault(e["module"], e)
    return {"total_ms": sum(e["cumulative_ms"] for e in roots), "modules": len(entries),
            "top_level": roots[:top],
            "packages": sorted(packages.values(), key=lambda e: -e["cumulative_ms"])[:top]}


def bytecode_state() -> dict:
    import importlib.util

    cached = Path(importlib.util.cache_from_source(router_stack.__file__)).exists()
    import yaml

    return {"PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "dont_write_bytecode": bool(sys.flags.dont_write_bytecode),
            "llm_router_pyc": cached,
            "site_packages_pyc": Path(importlib.util.cache_from_source(yaml.__file__)).exists()}


def wait_gone(pid: int | None, timeout: float) -> bool:
    if pid is None:
        return True
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout)
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def measure_status_all(stack: StackDir, procs: Processes, runs: int, diagnostic: bool) -> dict:
    """The two targeted rows (stack stopped, running) with bytecode as an ordinary install has it; the diagnostic
    row repeats the running one in the inherited environment (here: no bytecode for llm-router's own modules)."""
    result = {"rows": [], "bytecode": bytecode_state()}
    inherited = dict(os.environ)
    # As an ordinary install: Python writes bytecode (here into a temporary PYTHONPYCACHEPREFIX, primed by each
    # measurement's untimed first run), unless --bytecode-cache already arranged that for the whole run.
    cached = bool(os.environ.get("PYTHONPYCACHEPREFIX")) and not os.environ.get("PYTHONDONTWRITEBYTECODE")
    with bytecode_cache(not cached):
        env = dict(os.environ)
        print("  status: stack stopped ...", file=sys.stderr, flush=True)
        result["rows"].append(measure_status(stack, runs, "stopped", env))
        stack.write("gunicorn")
        print("  status: starting the stack (gunicorn) ...", file=sys.stderr, flush=True)
        try:
            router_stack.start(stack.cfg, "all")
            procs.remember_records(stack.cfg)
            prover, _ = process.read_record(stack.cfg.layout, litellm_service.PROVER)
            if not wait_gone(prover.pid if prover else None, 240):  # the background prover would load the CPU
                print("  note: the background prover is still running", file=sys.stderr)
            print("  status: stack running ...", file=sys.stderr, flush=True)
            result["rows"].append(measure_status(stack, runs, "running", env))
            result["importtime"] = importtime(stack, env)
            if diagnostic:
                print("  status: running, inherited environment (diagnostic) ...", file=sys.stderr, flush=True)
                label = ("running, no bytecode written (PYTHONDONTWRITEBYTECODE=1)"
                         if inherited.get("PYTHONDONTWRITEBYTECODE") else "running, inherited environment")
                result["rows"].append(measure_status(stack, runs, label, inherited))
        finally:
            router_stack.stop(stack.cfg, "all")
    return result


# --------------------------------------------------------------------------- report

def render(report: dict) -> str:
    out = [f"machine: {os.cpu_count()} CPUs; load before {report['load_before']}, after {report['load_after']}; "
           f"children's bytecode cache: {cache_note(report['bytecode_cache'])}",
           f"source: HEAD {report['source']['head']}, modified under src/: "
           f"{', '.join(report['source']['modified']) or 'none'}", ""]
    if report.get("start"):
        start = report["start"]
        out.append("(a) start, every run (seconds)")
        out.append(table([[r["round"], r["mode"], r["kind"], fmt(r["total_s"]), fmt(r["cliproxy_s"]),
                           fmt(r["litellm_s"]) + (" HUNG" if r.get("hung") else ""), fmt(r["first_200_s"]),
                           fmt(r.get("first_s"), 0, 1000), fmt(r.get("next_median_s"), 0, 1000),
                           fmt(r.get("first_x"), 1), fmt(r.get("msg_first_s"), 0, 1000),
                           fmt(r.get("msg_next_s"), 0, 1000), r["workers_forked"], r["hung_replaced"],
                           r["load"].split(" ")[0]]
                          for r in start["runs"]],
                         ["ROUND", "MODE", "KIND", "TOTAL", "CLIPROXY", "LITELLM", "FIRST_200", "FIRST_MS",
                          "NEXT20_MS", "FIRST_X", "MSG_FIRST_MS", "MSG_NEXT_MS", "FORKED", "HUNG_REPLACED",
                          "LOAD1"]))
        errors = [f"round {r['round']} {r['mode']} {r['kind']}: {', '.join(r['request_errors'])}"
                  for r in start["runs"] if r.get("request_errors")]
        if errors:
            out.append("request errors (the latencies of these rounds are not of answered requests): "
                       + "; ".join(errors))
        out.append("")
        out.append("(a) start, medians (seconds); RATIO = ROUTER_LITELLM / BARE")
        out.append(table([[s["mode"], s["kind"], f"{s['router_runs']}/{s['bare_runs']}", fmt(s["router_total_s"]),
                           fmt(s["router_cliproxy_s"]), fmt(s["router_litellm_s"]), fmt(s["router_first_200_s"]),
                           fmt(s["bare_litellm_s"]), fmt(s["ratio"], 3), fmt(s["first_ms"], 0),
                           fmt(s["next_ms"], 0), fmt(s["first_x"], 1), fmt(s["msg_first_ms"], 0),
                           fmt(s["msg_next_ms"], 0), fmt(s["msg_first_x"], 1), fmt(s["bare_first_ms"], 0),
                           fmt(s["bare_first_x"], 1), fmt(s["bare_msg_first_ms"], 0), s["bare_hung"],
                           s["router_hung_replaced"], s["target"]] for s in start["summary"]],
                         ["MODE", "KIND", "RUNS", "ROUTER_TOTAL", "CLIPROXY", "ROUTER_LITELLM", "FIRST_200", "BARE",
                          "RATIO", "FIRST_MS", "NEXT20_MS", "FIRST_X", "MSG_FIRST_MS", "MSG_NEXT_MS", "MSG_X",
                          "BARE_FIRST_MS", "BARE_FIRST_X", "BARE_MSG_FIRST_MS", "BARE_HUNG", "ROUTER_REPLACED",
                          "TARGET"]))
        out.append(f"FIRST_MS: the first chat completion once ready; NEXT20_MS: median of the {FIRST_NEXT} after it; "
                   f"FIRST_X = FIRST_MS / NEXT20_MS (target <= {TARGET_FIRST_X:g} for the gunicorn `router`; "
                   "uvicorn mode forks nothing, so nothing is warmed); MSG_*: then the first Anthropic Messages "
                   f"request and the median of the {MESSAGES_NEXT} after it; BARE_*: the same against the bare "
                   "command")
        out.append("ROUTER_LITELLM: CLIProxyAPIPlus ready (its service_start event) -> `service start all` exited; "
                   "BARE: Popen -> first 200 on /health/readiness (50 ms polls); CLIPROXY: CLI launched -> "
                   "CLIProxyAPIPlus ready (includes the CLI's own start-up); FIRST_200: the router's LiteLLM spawn "
                   "-> first 200 seen by an outside 50 ms poller")
        out.append("")
    if report.get("status"):
        status = report["status"]
        out.append(f"(b) status wall time (ms), median of {status['rows'][0]['runs']} interleaved runs each; stopped "
                   "and running as an ordinary install (bytecode written, here into a temporary PYTHONPYCACHEPREFIX)")
        out.append(table([[r["state"], fmt(r["status_ms"], 0), f"{fmt(r['status_min_ms'], 0)}-"
                           f"{fmt(r['status_max_ms'], 0)}", fmt(r["pass_ms"], 0), fmt(r["diff_ms"], 0),
                           r["load"].split(" ")[0], r["target"]] for r in status["rows"]],
                         ["STACK", "STATUS", "STATUS_RANGE", "PYTHON_C_PASS", "DIFF", "LOAD1", "TARGET"]))
        b = status["bytecode"]
        out.append(f"bytecode: PYTHONDONTWRITEBYTECODE={b['PYTHONDONTWRITEBYTECODE']}, llm_router .pyc present: "
                   f"{b['llm_router_pyc']}, site-packages .pyc present: {b['site_packages_pyc']}")
        imp = status.get("importtime")
        if imp:
            out.append("")
            out.append(f"(b) `python -X importtime -m llm_router status`: {imp['modules']} modules, "
                       f"{imp['total_ms']:.0f} ms of imports")
            out.append(table([[e["module"], f"{e['cumulative_ms']:.0f}", f"{e['self_ms']:.0f}"]
                              for e in imp["top_level"]], ["TOP-LEVEL IMPORT", "CUMULATIVE_MS", "SELF_MS"]))
            out.append(table([[e["module"], f"{e['cumulative_ms']:.0f}", e["depth"]] for e in imp["packages"]],
                             ["PACKAGE", "CUMULATIVE_MS", "DEPTH"]))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6,
                        help="start rounds per mode (default 6: single starts vary by about ±15 %% here)")
    parser.add_argument("--status-runs", type=int, default=15, help="status runs per measurement (default 15)")
    parser.add_argument("--mode", action="append", choices=MODES, help="repeatable; default: both")
    parser.add_argument("--compare-warmup", action="store_true",
                        help="add a gunicorn router kind with LLM_ROUTER_WARMUP=after-fork to every round")
    parser.add_argument("--compare-gc", action="store_true",
                        help="add a gunicorn router kind with LLM_ROUTER_IMPORT_GC=plain to every round")
    parser.add_argument("--skip-start", action="store_true", help="only the status part")
    parser.add_argument("--skip-status", action="store_true", help="only the start part")
    parser.add_argument("--no-diagnostic", action="store_true",
                        help="skip the status diagnostic row (inherited environment)")
    parser.add_argument("--bytecode-cache", action="store_true",
                        help="run every child with a bytecode cache in a temporary PYTHONPYCACHEPREFIX (primed by "
                             "one unmeasured start), as an install whose venv holds .pyc files")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    modes = args.mode or list(MODES)
    report: dict = {"load_before": loadavg(), "cpus": os.cpu_count(), "bytecode_cache": args.bytecode_cache,
                    "source": source_state()}
    procs = Processes()
    root = Path(tempfile.mkdtemp(prefix="bench-start-"))
    stack = None
    try:
        with bytecode_cache(args.bytecode_cache):
            stack = StackDir(root)
            # an account for the stand-in, so that the first-request chat completions are answered (200)
            write_codex_login(stack.cfg.layout.auths_dir, "bench@example.com", "plus")
            try:
                if args.bytecode_cache:
                    print("priming the bytecode cache (one unmeasured start) ...", file=sys.stderr, flush=True)
                    stack.write(modes[0])
                    try:
                        router_start(stack, procs)
                    finally:
                        router_stack.stop(stack.cfg, "all")
                if not args.skip_start:
                    print(f"start: {args.runs} rounds x {', '.join(modes)} (~15-40 s per start) ...",
                          file=sys.stderr, flush=True)
                    compare = (("router-after-fork",) if args.compare_warmup else ()) + \
                        (("router-gc-plain",) if args.compare_gc else ())
                    runs = measure_start(stack, procs, modes, args.runs, compare)
                    report["start"] = {"runs": runs, "summary": summarize_start(runs, modes)}
                if not args.skip_status:
                    report["status"] = measure_status_all(stack, procs, args.status_runs,
                                                          not (args.no_diagnostic or args.bytecode_cache))
            finally:
                with contextlib.suppress(Exception):
                    router_stack.stop(stack.cfg, "all")
    finally:
        leftovers = procs.cleanup()
        if leftovers:
            print(f"note: killed leftover process groups {leftovers}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
    report["load_after"] = loadavg()
    print(json.dumps(report, indent=2) if args.json else render(report))
    missed = [s for s in report.get("start", {}).get("summary", []) if s["target"] not in ("ok", "comparison")]
    missed += [r for r in report.get("status", {}).get("rows", [])[:2] if r["target"] != "ok"]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
