"""The supervisor: start, stop, restart and inspect CLIProxyAPIPlus and LiteLLM as detached process groups.

A service's record is its pid file `.router/runtime/pids/<service>.json`; it is a claim, proven only by the rules
of process.py (the launch marker in the process's environment, the boot id, the create time), so a recycled pid,
a hand-edited file or a process group that is not ours is never signalled. Reading state never signals: a stale
pid file is reported and removed, and what its launch left running is ended by the next `start` or `stop`.
Start, stop and restart hold the runtime lock, so concurrent callers are serialised. A service is ready when its
readiness path answers 2xx AND a process of its own launch holds the listening socket (another program answering
on the port does not count); the CLIProxyAPIPlus binary exits 0 even when it fails to start.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from . import events, health, keys, process
from .config import MASTER_KEY_ENV, REDIS_PASSWORD_ENV, UPSTREAM_KEY_ENV, RouterConfig, remember_parse
from .errors import CONFLICT, NOT_FOUND, UNAVAILABLE, USAGE, RouterError
from .fsutil import ensure_dir
from .layout import ALL_SERVICES, SERVICES, Layout
from .process import ProcessRecord, read_record

# psutil costs ~30 ms to import, so the functions that use it import it themselves (process.py too):
# `llm-router status` of a stopped stack never does.
STOPPED, STARTING, RUNNING, STALE = "STOPPED", "STARTING", "RUNNING", "STALE"
ORDER = SERVICES  # start order of the services every config has; stop goes in reverse
# Optional services (Redis) come first when routertool.yaml turns them on: `expand(names, cfg)`.
STOP_TIMEOUT = 35.0  # LiteLLM drains in-flight requests for up to GRACEFUL_SHUTDOWN_TIMEOUT (30 s)
POLL = 0.2
LOG_TAIL = 15
LOCK_TIMEOUT_ENV = "LLM_ROUTER_LOCK_TIMEOUT"
STARTUP_TIMEOUT_ENV = "STARTUP_TIMEOUT"

# LiteLLM makes no outbound call except to its upstreams with these (reference: litellm.md §4).
LITELLM_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "true",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_OFFLINE_MODE": "true",  # not read by 1.108.7 (the LITELLM_LOCAL_* switches above are); harmless
    "LITELLM_LOG": "INFO",
}
# Never handed to children: a stray OpenAI key would be sent upstream; MANAGEMENT_PASSWORD forces allow-remote.
SCRUBBED_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MANAGEMENT_PASSWORD", "LITELLM_MASTER_KEY", "PORT", "HOST")

_children: dict[int, subprocess.Popen] = {}  # processes this interpreter spawned, reaped when they exit


# --------------------------------------------------------------------------- process identity (process.py)

# The supervisor's names for the identity rules of process.py (doctor, watch and the tests use them).
live_process = process.owned_leader


# --------------------------------------------------------------------------- status

@dataclass
class ServiceStatus:
    name: str
    state: str
    host: str
    port: int
    log: str
    pid: int | None = None
    uptime: float | None = None
    rss_bytes: int | None = None
    profile: str | None = None
    version: str | None = None
    line: str | None = None  # cliproxyapi_plus: which CLIProxyAPI line (cliproxy_lines)
    mode: str | None = None
    restarts: int = 0
    detail: str | None = None
    workers: list[dict] = field(default_factory=list)  # litellm (gunicorn): {pid, uptime, rss_bytes, serving}

    def to_dict(self) -> dict:
        return asdict(self)


def names_for(cfg: RouterConfig | None) -> list[str]:
    """Every service of this config in start order: Redis first when llm-router runs it."""
    if cfg is None:
        return list(ORDER)
    return [name for name in ALL_SERVICES if name in cfg.services]


def expand(names: list[str] | tuple[str, ...] | str, cfg: RouterConfig | None = None) -> list[str]:
    """`all` or service names → service names in start order; unknown names are a usage error. With `cfg`,
    `all` includes the optional services it turns on (Redis)."""
    if isinstance(names, str):
        names = [names]
    known = names_for(cfg)
    if not names or "all" in names:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        if unknown[0] in ALL_SERVICES:
            raise RouterError(f"service '{unknown[0]}' is not enabled in this config",
                              hint=f"set services.{unknown[0]}.enabled: true in routertool.yaml", exit_code=USAGE)
        raise RouterError(f"unknown service '{unknown[0]}'", hint=f"services: all, {', '.join(known)}",
                          exit_code=USAGE)
    return [n for n in known if n in names]


def inspect(cfg: RouterConfig, name: str, clean: bool = True) -> ServiceStatus:
    """A service's state from its pid file and the live process. A stale pid file is removed when `clean`
    and nobody holds the runtime lock (a start in progress may be about to rewrite it)."""
    layout, svc = cfg.layout, cfg.services[name]
    status = ServiceStatus(name=name, state=STOPPED, host=svc.host, port=svc.port, log=str(layout.log_file(name)))
    record, problem = read_record(layout, name)
    if record is None and problem is None:
        return status
    proc = process.owned_leader(record) if record else None
    if proc is None:
        status.state = STALE
        status.detail = problem or _stale_detail(record)
        if record is not None and process.owned_members(record):
            status.detail += f"; processes of that launch are still running: `llm-router service stop {name}` " \
                             "ends them"
        elif clean:
            _clean_stale(layout, name)
        return status
    status.state = RUNNING
    status.pid = record.pid
    status.port = record.port
    status.uptime = time.time() - record.started_at
    status.rss_bytes = process.group_rss(record)
    status.version = record.version
    if name == "cliproxyapi_plus" and record.version:
        from .cliproxy_lines import classify  # from the recorded banner: no probe, nothing started

        with contextlib.suppress(ValueError, KeyError):
            status.line = classify(record.version).title
    status.mode = record.mode
    status.restarts = record.restarts
    status.profile = _active_profile(layout) if name == "litellm" else None
    if name == "litellm" and record.mode == "gunicorn":
        status.workers = worker_details(record)
    return status


def worker_details(record: ProcessRecord) -> list[dict]:
    """Each live gunicorn worker of the proven master, oldest first: pid, uptime, RSS, and whether it logged the
    end of its startup (`serving`). Read-only."""
    import psutil

    from . import workers

    booted = workers.booted_workers(Path(record.log))
    details = []
    for pid in workers.worker_pids(record):
        with contextlib.suppress(psutil.Error):
            child = psutil.Process(pid)
            details.append({"pid": child.pid, "uptime": round(time.time() - child.create_time(), 1),
                            "rss_bytes": child.memory_info().rss, "serving": child.pid in booted})
    return details


def status(cfg: RouterConfig, names: list[str] | str = "all") -> list[ServiceStatus]:
    return [inspect(cfg, name) for name in expand(names, cfg)]


def pending_switch(cfg: RouterConfig) -> str | None:
    """A warning when an interrupted profile switch waits to be rolled back (read-only: nothing is changed)."""
    if cfg.layout.switch_journal.exists():
        return "an interrupted profile switch is pending: the next `service start`, `service stop` or " \
               "`profile set` rolls it back"
    return None


def is_running(cfg: RouterConfig, name: str) -> bool:
    return inspect(cfg, name, clean=False).state == RUNNING


def _stale_detail(record: ProcessRecord) -> str:
    if process.legacy_alive(record):
        return (f"pid {record.pid} was started by an older llm-router (no launch id): not proven ours, so it is "
                "never signalled; stop it yourself, then remove its pid file")
    why = process.unproven_reason(record)
    return f"stale pid file (pid {record.pid}): {why}" if why else f"stale pid file, process gone (pid {record.pid})"


def _clean_stale(layout: Layout, name: str) -> None:
    """Forget a stale pid file (read-only commands call this): nothing is signalled here, ever. Whatever that
    launch left running carries its marker, and `start`/`stop` end it (process.end_leftovers) before forgetting."""
    lock = layout.lock()
    try:
        lock.timeout = 0
        lock.acquire()
    except RouterError:
        return
    try:
        record, _ = read_record(layout, name)  # again, under the lock
        if record is None or not (process.owned_leader(record) or process.owned_members(record)
                                  or process.legacy_alive(record)):
            with contextlib.suppress(OSError):
                layout.pid_file(name).unlink()
    except OSError:
        pass
    finally:
        lock.release()


def _active_profile(layout: Layout) -> str | None:
    from .journal import read_active

    info = read_active(layout)
    return info["name"] if info else None


# --------------------------------------------------------------------------- start

@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    ready_key: str | None
    profile: str | None = None
    mode: str | None = None
    notes: list[str] = field(default_factory=list)
    # A service that does not speak HTTP (Redis): called instead of the GET on ready_url; "answered" means
    # the returned Probe has a latency (something replied on the port), ready means the reply was right.
    ready_probe: Callable[[], health.Probe] | None = None


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    if any(os.environ.get(k) for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")):
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost,::1"]))
        env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env.update(extra)
    return env


def _prepare_cliproxy(cfg: RouterConfig) -> Launch:
    from . import cliproxy

    layout, svc = cfg.layout, cfg.services["cliproxyapi_plus"]
    binary = layout.cliproxy_binary
    if not binary.exists():
        raise RouterError(f"CLIProxyAPIPlus is not installed ({binary} is missing)",
                          hint="run `llm-router bootstrap download`", exit_code=NOT_FOUND)
    if not os.access(binary, os.X_OK):
        raise RouterError(f"{binary} is not executable", hint=f"chmod 755 {binary}, or run "
                          "`llm-router bootstrap download --force`", exit_code=USAGE)
    if svc.config_file is not None and not svc.config_file.exists() and \
            "config_file" in (cfg.raw.get("services", {}).get("cliproxyapi_plus") or {}):
        raise RouterError(f"services.cliproxyapi_plus.config_file {svc.config_file} does not exist",
                          hint="cp config/examples/cliproxyapi.yaml config/cliproxyapi.yaml", exit_code=USAGE)
    config_path = cliproxy.write_runtime_config(cfg)
    key = keys.ensure_key(cfg, UPSTREAM_KEY_ENV)
    return Launch(argv=[str(binary), "-config", config_path], env=_child_env({}),
                  ready_url=svc.base_url + svc.readiness_path, ready_key=key)


def required_secrets(cfg: RouterConfig) -> dict[str, str]:
    """Provider key variables that the configured model groups use: {VAR: provider}."""
    used = {d.provider for group in cfg.models for d in group.deployments}
    return {cfg.providers[p].key_env: p for p in sorted(used) if cfg.providers[p].type != "cliproxyapi_plus"}


def _prepare_litellm(cfg: RouterConfig) -> Launch:
    from . import profiles, runner

    layout, svc = cfg.layout, cfg.services["litellm"]
    missing = [f"{var} (provider {provider})" for var, provider in required_secrets(cfg).items()
               if not cfg.secret(var)]
    if missing:
        raise RouterError(f"secret not set: {', '.join(missing)}",
                          hint="export the variable, or name a file for it under secret_files in routertool.yaml",
                          exit_code=USAGE)
    active = profiles.ensure_active(cfg)
    env = litellm_env(cfg)
    master = env[MASTER_KEY_ENV]
    program = runner.ensure_litellm_runner(layout)
    argv = [str(program), "--config", str(layout.active_config), "--host", svc.host, "--port", str(svc.port)]
    mode, notes = svc.mode, []
    if cfg.redis is not None and cfg.redis.managed and not is_running(cfg, "redis"):
        notes.append("Redis (services.redis) is not running: LiteLLM keeps cooldowns and rpm/tpm counters in each "
                     "worker's memory until it is (`llm-router service start redis`)")
    if mode == "gunicorn" and not gunicorn_available():
        mode = "uvicorn"
        notes.append("gunicorn is not installed in the runtime environment: LiteLLM runs in uvicorn mode, so a "
                     "profile switch restarts it (`uv sync --group runtime` installs gunicorn)")
    if mode == "gunicorn":
        # services.litellm.workers (default 1); the master preloads the app and holds the socket, so workers
        # can be swapped live, one at a time.
        argv += ["--run_gunicorn", "--num_workers", str(svc.workers)]
    elif svc.workers > 1:
        notes.append(f"services.litellm.workers is {svc.workers}, but uvicorn mode runs one process")
    return Launch(argv=argv, env=env, ready_url=svc.base_url + svc.readiness_path, ready_key=master,
                  profile=active.get("name"), mode=mode, notes=notes)


def litellm_env(cfg: RouterConfig) -> dict[str, str]:
    """LiteLLM's environment: ours without stray keys, the offline switches, and every secret the config names
    (the local keys generated when unset), which rendered configs reference as os.environ/NAME."""
    secrets_env = {name: cfg.secret(name) or "" for name in cfg.secret_names()}
    secrets_env[UPSTREAM_KEY_ENV] = keys.ensure_key(cfg, UPSTREAM_KEY_ENV)
    secrets_env[MASTER_KEY_ENV] = keys.ensure_key(cfg, MASTER_KEY_ENV)
    if cfg.redis is not None and cfg.redis.managed:  # so a LiteLLM started before its Redis still gets in later
        secrets_env[REDIS_PASSWORD_ENV] = keys.ensure_key(cfg, REDIS_PASSWORD_ENV)
    return _child_env({**LITELLM_OFFLINE_ENV, **{k: v for k, v in secrets_env.items() if v}})


def litellm_mode(cfg: RouterConfig) -> str | None:
    """The mode of the running LiteLLM (from its record), or None when it is not running."""
    record, _ = read_record(cfg.layout, "litellm")
    if record is None or live_process(record) is None:
        return None
    return record.mode or "uvicorn"


def gunicorn_available() -> bool:
    """Probed at run time from package metadata (importing it is not needed)."""
    import importlib.metadata

    try:
        importlib.metadata.version("gunicorn")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _prepare_redis(cfg: RouterConfig) -> Launch:
    """Debian's redis-server on the rendered runtime/redis/redis.conf (0600; the password is only in there)."""
    from . import redis_service

    argv = redis_service.prepare_argv(cfg)
    redis = cfg.redis
    secret = redis_service.password(cfg)
    notes = [] if redis.is_loopback else [
        f"Redis listens on {redis.host}: only its password protects the router state; prefer 127.0.0.1 and an "
        "SSH tunnel (docs/scale-out.md)"]
    return Launch(argv=argv, env=_child_env({}), ready_url=f"redis://{redis.host}:{redis.port}", ready_key=None,
                  notes=notes,
                  ready_probe=lambda: redis_service.probe(redis.host, redis.port, secret, timeout=2.0))


PREPARE = {"redis": _prepare_redis, "cliproxyapi_plus": _prepare_cliproxy, "litellm": _prepare_litellm}


def port_owner(host: str, port: int) -> str | None:
    """None when `host:port` can be bound; else who holds it (`pid 812 (python3)` when the OS tells)."""
    import psutil
    import socket  # here, not at the top: `status` never binds

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return None
        except OSError:
            pass
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return "another program"


def exposure_notes(cfg: RouterConfig, name: str) -> list[str]:
    """The warning a start gives when a service will listen beyond this machine."""
    svc = cfg.services[name]
    if svc.is_loopback:
        return []
    return [f"{name} listens on {svc.host}, reachable from other machines: set services.{name}.host to 127.0.0.1 "
            "unless you mean it"]


def _check_port(cfg: RouterConfig, name: str) -> None:
    svc = cfg.services[name]
    if 0 < svc.port < 1024 and hasattr(os, "geteuid") and os.geteuid() != 0:
        raise RouterError(f"port {svc.port} is privileged (below 1024): only root may listen on it",
                          hint=f"set services.{name}.port to 1024 or above", exit_code=USAGE)
    owner = port_owner(svc.host, svc.port)
    if owner:
        raise RouterError(f"port {svc.port} is in use by {owner}",
                          hint=f"stop that program, or set services.{name}.port to a free port",
                          exit_code=CONFLICT)


def startup_timeout(cfg: RouterConfig, name: str, override: float | None = None) -> float:
    if override:
        return float(override)
    env = os.environ.get(STARTUP_TIMEOUT_ENV)
    if env:
        try:
            return float(env)
        except ValueError:
            raise RouterError(f"{STARTUP_TIMEOUT_ENV} must be a number of seconds, got {env!r}",
                              exit_code=USAGE) from None
    return cfg.services[name].startup_timeout


def log_tail(path: Path, lines: int = LOG_TAIL, since: int = 0) -> list[str]:
    """The last non-blank lines of a log, optionally only those written after byte `since`."""
    try:
        with open(path, "rb") as handle:
            handle.seek(since)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def _start_one(cfg: RouterConfig, name: str, timeout: float | None) -> dict:
    import psutil

    layout = cfg.layout
    current = inspect(cfg, name, clean=False)
    if current.state == RUNNING:
        return {"service": name, "result": "already running", "pid": current.pid, "port": current.port}
    notes = [current.detail] if current.state == STALE else []
    if current.state == STALE:
        _forget(cfg, name)  # ends what that launch left running (proven by its marker), then drops the file
    launch = PREPARE[name](cfg)
    _check_port(cfg, name)
    launch.notes += exposure_notes(cfg, name)
    ensure_dir(layout.logs_dir)
    log_path = layout.log_file(name)
    offset = log_path.stat().st_size if log_path.exists() else 0
    launch_id = process.new_launch_id()
    with open(log_path, "ab") as handle:
        handle.write(f"--- llm-router: starting {name} at {events.now_iso()} ---\n".encode())
        handle.flush()
        try:
            proc = subprocess.Popen(launch.argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                                    env={**launch.env, process.LAUNCH_ENV: launch_id}, cwd=layout.runtime_dir,
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            raise RouterError(f"cannot start {name}: {exc.strerror or exc} ({launch.argv[0]})",
                              hint="run `llm-router bootstrap download`", exit_code=USAGE) from None
    _children[proc.pid] = proc
    record = None
    try:
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            create_time = time.time()
        record = ProcessRecord(service=name, pid=proc.pid, create_time=create_time, cmdline=launch.argv,
                               port=cfg.services[name].port, started_at=time.time(), log=str(log_path),
                               profile=launch.profile, mode=launch.mode,
                               env_fingerprint=_env_fingerprint(cfg) if name == "litellm" else None,
                               launch_id=launch_id, boot_id=process.boot_id())
        record.save(layout)
        _wait_ready(cfg, name, proc, record, launch, startup_timeout(cfg, name, timeout), log_path, offset)
        if name in ("cliproxyapi_plus", "redis"):
            record.version = _banner_version(log_path, offset)
            record.save(layout)
        if name == "cliproxyapi_plus":
            launch.notes += _line_notes(cfg)
        if launch.mode == "gunicorn":
            _start_prover(cfg)
    except BaseException:  # not ready, an error, Ctrl-C: nothing of this launch is left running or recorded
        _abort_start(cfg, name, proc, record)
        raise
    return {"service": name, "result": "started", "pid": proc.pid, "port": record.port, "mode": launch.mode,
            "profile": launch.profile, "version": record.version, "notes": notes + launch.notes}


def _line_notes(cfg: RouterConfig) -> list[str]:
    """Which CLIProxyAPI line was started and what it lacks, probed from the running binary (read-only, never
    fatal: a probe that fails says nothing)."""
    from . import cliproxy, cliproxy_lines

    try:
        features = cliproxy.installed_features(cfg, ask_server=True)
    except (RouterError, OSError, ValueError):
        return []
    if features is None:
        return []
    gaps = cliproxy_lines.missing(features)
    return [cliproxy_lines.describe(features) + (f"; lacks: {'; '.join(gaps)}" if gaps else "")]


def _abort_start(cfg: RouterConfig, name: str, proc: subprocess.Popen, record: ProcessRecord | None) -> None:
    """End a launch that did not become ready: its group and everything that carries its marker; the Popen handle
    is the last resort (an unreaped child's pid cannot have been reused)."""
    try:
        if record is not None:
            with contextlib.suppress(RouterError):
                process.terminate(record, timeout=10.0, wait_leader=proc.wait)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # our own unreaped child leads this group
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        _children.pop(proc.pid, None)
        if name == "litellm":
            _stop_job(cfg, PROVER)
        with contextlib.suppress(OSError):
            cfg.layout.pid_file(name).unlink()


def _wait_ready(cfg: RouterConfig, name: str, proc: subprocess.Popen, record: ProcessRecord, launch: Launch,
                timeout: float, log_path: Path, offset: int) -> None:
    """Until the readiness path answers 2xx from a socket this launch holds (another program answering on the
    port is not readiness), the process exits, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    port = cfg.services[name].port
    watcher = None
    if launch.mode == "gunicorn":  # every worker boot is watched, the first one too (reference: litellm.md §9)
        from .workers import BootWatcher

        watcher = BootWatcher(record, log_path, offset, cfg.services[name].worker_boot_timeout)
    foreign = None
    while True:
        code = proc.poll()
        if code is not None:
            _children.pop(proc.pid, None)
            details = ["last log lines:", *log_tail(log_path, since=offset)]
            # ours has exited, so whoever holds the port now took it while we started (e.g. "address in use")
            foreign = foreign or port_owner(cfg.services[name].host, port)
            raise RouterError(f"{name} exited during start-up (exit status {code})"
                              + (f"; port {port} is held by {foreign}" if foreign else ""),
                              hint=f"read the log: {log_path}", exit_code=CONFLICT if foreign else UNAVAILABLE,
                              details=details)
        serving = True
        if watcher is not None:
            watcher.poll()
            serving = bool(watcher.serving())
        if not serving:
            last = health.Probe(launch.ready_url, False, None, None, "no LiteLLM worker serving yet")
        elif launch.ready_probe is not None:
            last = launch.ready_probe()
        else:
            last = health.probe(launch.ready_url, launch.ready_key, timeout=min(2.0, max(timeout, 0.5)))
        answered = last.ready or last.status is not None or \
            (launch.ready_probe is not None and last.latency_ms is not None)
        if answered:
            if process.listens_on(record, port):
                if last.ready:
                    return
            else:
                foreign = port_owner(cfg.services[name].host, port) or "another program"
                last = health.Probe(launch.ready_url, False, last.status, last.latency_ms,
                                    f"answered by {foreign}, not by the started {name}")
        if time.monotonic() >= deadline:
            raise RouterError(
                f"{name} was not ready within {timeout:g} s "
                f"({'' if launch.ready_probe else 'GET '}{launch.ready_url}: {last.error})",
                hint=f"raise services.{name}.startup_timeout (or set {STARTUP_TIMEOUT_ENV}); log: {log_path}",
                exit_code=UNAVAILABLE, details=["last log lines:", *log_tail(log_path, since=offset)])
        time.sleep(POLL)


def _banner_version(log_path: Path, offset: int) -> str | None:
    for line in log_tail(log_path, lines=200, since=offset):
        if line.startswith("CLIProxyAPI Version:"):
            return line.split(":", 1)[1].split(",")[0].strip()
        if "Redis version=" in line:  # redis-server: "... * Redis version=7.0.15, bits=64, ..."
            return line.split("Redis version=", 1)[1].split(",")[0].strip()
    return None


# --------------------------------------------------------------------------- stop

def _terminate(record: ProcessRecord, timeout: float = STOP_TIMEOUT) -> int | None:
    """End a launch through process.terminate (only what is proven ours is signalled); the leader's exit status
    when known. A child this interpreter started is reaped through its Popen handle."""
    child = _children.pop(record.pid, None)
    return process.terminate(record, timeout, wait_leader=child.wait if child is not None else None)


def reaped_exit_status(pid: int) -> int | None:
    """The exit status of a process this interpreter started and that has exited (None if unknown)."""
    child = _children.get(pid)
    if child is None or child.poll() is None:
        return None
    del _children[pid]
    return child.returncode


PROVER = "prove"  # the background job that proves every profile loadable after LiteLLM starts (prove.py)


def _start_prover(cfg: RouterConfig) -> None:
    import psutil

    from . import prove

    _stop_job(cfg, PROVER)
    launch_id = process.new_launch_id()
    pid = prove.start_background(cfg, {process.LAUNCH_ENV: launch_id})
    if pid is None:  # the master proves warm: nothing to run in the background
        return
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        ProcessRecord(service=PROVER, pid=pid, create_time=proc.create_time(), cmdline=proc.cmdline(), port=0,
                      started_at=time.time(), log=str(cfg.layout.log_file(PROVER)), launch_id=launch_id,
                      boot_id=process.boot_id()).save(cfg.layout)


def _stop_job(cfg: RouterConfig, name: str) -> None:
    """End a helper job of a service (by its recorded identity, like a service) and forget it."""
    record, _ = read_record(cfg.layout, name)
    if record is not None:
        _terminate(record, timeout=5.0)
    cfg.layout.pid_file(name).unlink(missing_ok=True)


def _forget(cfg: RouterConfig, name: str) -> str | None:
    """Drop a stale record after ending whatever its launch left running (processes carrying its marker).
    Returns why the record was stale."""
    record, problem = read_record(cfg.layout, name)
    if record is not None:
        process.end_leftovers(record)
        problem = _stale_detail(record)
        if process.legacy_alive(record):
            return problem  # kept: the only record of a live process that is not proven ours
    cfg.layout.pid_file(name).unlink(missing_ok=True)
    return problem


def _stop_one(cfg: RouterConfig, name: str) -> dict:
    layout = cfg.layout
    if name == "litellm":
        _stop_job(cfg, PROVER)
    record, problem = read_record(layout, name)
    if record is None:
        if problem:
            layout.pid_file(name).unlink(missing_ok=True)
        return {"service": name, "result": "not running", "notes": [problem] if problem else []}
    if process.owned_leader(record) is None:
        return {"service": name, "result": "not running", "notes": [_forget(cfg, name)]}
    exit_status = _terminate(record)
    layout.pid_file(name).unlink(missing_ok=True)
    clean = exit_status in (0, -signal.SIGTERM, 128 + signal.SIGTERM, None)
    return {"service": name, "result": "stopped", "pid": record.pid, "exit_status": exit_status,
            "notes": [] if clean else [f"exit status {exit_status}"]}


# --------------------------------------------------------------------------- public actions

def _lock_timeout() -> float:
    try:
        return float(os.environ.get(LOCK_TIMEOUT_ENV, "300"))
    except ValueError:
        return 300.0


def _record_event(log: events.EventLog, event: str, outcome: dict, profile: str | None = None) -> None:
    result = {"started": "ok", "stopped": "ok", "restarted": "ok", "already running": "noop",
              "not running": "noop"}.get(
        outcome.get("result"), outcome.get("result"))
    detail = {k: v for k, v in outcome.items() if k not in ("service", "result") and v not in (None, [], "")}
    log.append(event, service=outcome["service"], profile=profile or outcome.get("profile"), result=result,
               detail=detail or None)


def _each(cfg: RouterConfig, event: str, names: list[str], action: Callable[[str], dict]) -> list[dict]:
    """Run `action` per service under the runtime lock, recording one event per service (a failure too).

    What an interrupted switch left is reconciled first. When a start fails (or is interrupted), the services
    this same call started are stopped again, so a failed `start all` leaves things as they were; the error says
    so."""
    log = events.for_config(cfg)
    outcomes = []
    with cfg.layout.lock(_lock_timeout()):
        recovered = reconcile(cfg, workers_too=event != "service_stop")
        for name in names:
            try:
                outcome = action(name)
            except BaseException as exc:
                error = exc.message if isinstance(exc, RouterError) else "interrupted"
                _record_event(log, event, {"service": name, "result": "failed", "error": error})
                if event == "service_start":
                    _undo_starts(cfg, log, outcomes, exc)
                raise
            _record_event(log, event, outcome)
            outcomes.append(outcome)
    if outcomes and recovered:
        outcomes[0]["notes"] = [*recovered, *outcomes[0].get("notes", [])]
    return outcomes


def _undo_starts(cfg: RouterConfig, log: events.EventLog, outcomes: list[dict], error: BaseException) -> None:
    for outcome in reversed(outcomes):
        if outcome.get("result") != "started":
            continue
        name = outcome["service"]
        try:
            _record_event(log, "service_stop", {**_stop_one(cfg, name), "reason": "a later service failed to start"})
            line = f"{name} was started by this command and has been stopped again"
        except RouterError as again:
            line = f"{name} was started by this command and is still running: {again.message}"
        if isinstance(error, RouterError):
            error.details.insert(0, line)


def start(cfg: RouterConfig, names: list[str] | str = "all", timeout: float | None = None) -> list[dict]:
    """Start services in order (CLIProxyAPIPlus first, ready before LiteLLM starts). Running ones are left alone."""
    outcomes = _each(cfg, "service_start", expand(names, cfg), lambda name: _start_one(cfg, name, timeout))
    remember_parse(cfg)  # so that `status` on this stack need not import PyYAML (config.cached_parse)
    return outcomes


def stop(cfg: RouterConfig, names: list[str] | str = "all") -> list[dict]:
    """Stop services in reverse order (LiteLLM first)."""
    return _each(cfg, "service_stop", list(reversed(expand(names, cfg))), lambda name: _stop_one(cfg, name))


def restart(cfg: RouterConfig, names: list[str] | str = "all", timeout: float | None = None) -> list[dict]:
    """Stop then start the named services (reverse order down, forward order up) under one lock hold."""
    ordered = expand(names, cfg)
    with cfg.layout.lock(_lock_timeout()):
        stopped = {name: _stop_one(cfg, name) for name in reversed(ordered)}
        outcomes = _each(cfg, "service_restart", ordered, lambda name: {
            **_start_one(cfg, name, timeout), "result": "restarted", "previous": stopped[name]["result"]})
    remember_parse(cfg)
    return outcomes


def apply_litellm_config(cfg: RouterConfig, restore: Callable[[], None]) -> dict:
    """Make a running LiteLLM serve the active config file as it is now.

    gunicorn mode: add a worker (it reads the new file), wait until it finished startup (hung ones are replaced),
    then retire the old worker: no request is refused. uvicorn mode: a restart, which refuses connections while
    LiteLLM imports (~10 s). On failure `restore()` puts the previous config back, the previous config is served
    again, and RouterError is raised. Returns how it was applied, with timings."""
    from . import workers

    layout = cfg.layout
    with layout.lock(_lock_timeout()):
        record, _ = read_record(layout, "litellm")
        if record is None or process.owned_leader(record) is None:
            return {"how": "not running"}
        notes = _restart_needed_notes(cfg, record)
        if record.mode != "gunicorn":
            try:
                outcome = restart(cfg, ["litellm"])[0]
                return {"how": "restart", "pid": outcome["pid"], "notes": notes}
            except BaseException as exc:  # Ctrl-C too: the previous config is put back either way
                restore()
                if not isinstance(exc, RouterError):
                    raise
                raise _rolled_back(exc, lambda: restart(cfg, ["litellm"])) from None
        svc = cfg.services["litellm"]
        target = _worker_target(cfg, record)
        serving = set(workers.worker_pids(record))
        try:
            swapped = workers.swap(record, Path(record.log), svc.worker_boot_timeout, target=target)
        except BaseException as exc:
            restore()
            settle = lambda: workers.settle(record, Path(record.log), svc.worker_boot_timeout, keep=serving,  # noqa: E731
                                            target=target)
            if not isinstance(exc, RouterError):  # Ctrl-C: settle, then let the interrupt through
                with contextlib.suppress(RouterError):
                    settle()
                raise
            raise _rolled_back(exc, settle) from None
        return {"how": "worker swap", **swapped, "notes": notes}


def reconcile(cfg: RouterConfig, workers_too: bool = True) -> list[str]:
    """Finish what an interrupted profile switch left (under the runtime lock; every locking action calls it):
    put the files back from the switch journal, and bring a gunicorn master back to one worker that serves the
    active file. Returns what was done, for the command's notes."""
    from . import journal

    layout = cfg.layout
    notes = []
    with layout.lock(_lock_timeout()):
        pending, problem = journal.read(layout)
        if pending is not None and pending.ours:  # this process's own switch, in progress: not interrupted
            return notes
        if pending is not None:
            journal.restore(pending)
            journal.clear(layout)
            events.for_config(cfg).append("profile_switch", service="litellm", profile=pending.profile,
                                          result="rolled_back", detail={"error": "the switch was interrupted",
                                                                        "restored": pending.previous})
            notes.append(f"an interrupted switch to profile '{pending.profile}' was rolled back"
                         + (f"; '{pending.previous}' is active again" if pending.previous else ""))
        elif problem:
            journal.clear(layout)
            notes.append(f"{problem}: removed")
        if not workers_too:
            return notes
        record, _ = read_record(layout, "litellm")
        if record is None or record.mode != "gunicorn" or process.owned_leader(record) is None:
            return notes
        from . import workers

        target = _worker_target(cfg, record)
        if pending is not None or len(workers.worker_pids(record)) > target:
            done = workers.reconcile(record, Path(record.log), cfg.services["litellm"].worker_boot_timeout,
                                     target=target)
            count = "one worker" if target == 1 else f"{target} workers"
            notes.append(f"LiteLLM is back to {count} (pid {', '.join(map(str, done['workers']))}) serving the "
                         "active profile")
    return notes


def _worker_target(cfg: RouterConfig, record: ProcessRecord) -> int:
    """How many workers the running master should have: the `--num_workers` it was started with (a change of
    services.litellm.workers takes a restart, like the port)."""
    argv = record.cmdline
    with contextlib.suppress(ValueError, IndexError):
        return max(1, int(argv[argv.index("--num_workers") + 1]))
    return max(1, cfg.services["litellm"].workers)


def _rolled_back(error: RouterError, reapply: Callable[[], object]) -> RouterError:
    try:
        reapply()
        outcome = "the previous config was put back and is served"
    except RouterError as again:
        outcome = f"the previous config was put back, but LiteLLM is not serving it: {again.message}"
    return RouterError(f"{error.message}; {outcome}", hint=error.hint or "see `llm-router service logs litellm`",
                       exit_code=error.exit_code)


def _restart_needed_notes(cfg: RouterConfig, record: ProcessRecord) -> list[str]:
    """What a worker swap cannot change: the port and the environment (secrets) are fixed at start."""
    notes = []
    if record.port != cfg.services["litellm"].port:
        notes.append(f"services.litellm.port changed ({record.port} -> {cfg.services['litellm'].port}): "
                     "run `llm-router service restart litellm` to use it")
    if record.mode == "gunicorn" and _worker_target(cfg, record) != cfg.services["litellm"].workers:
        notes.append(f"services.litellm.workers changed ({_worker_target(cfg, record)} -> "
                     f"{cfg.services['litellm'].workers}): run `llm-router service restart litellm` to use it")
    if record.env_fingerprint and record.env_fingerprint != _env_fingerprint(cfg):
        notes.append("secrets changed since LiteLLM started: run `llm-router service restart litellm` to use them")
    return notes


def _env_fingerprint(cfg: RouterConfig) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(cfg.secret_names()):
        digest.update(f"{name}\0{cfg.secret(name) or ''}\0".encode())
    return digest.hexdigest()


def recycle_litellm_worker(cfg: RouterConfig) -> dict:
    """Replace the LiteLLM worker by a fresh one through the same add-then-retire swap (memory creeps up in long
    runs); a restart in uvicorn mode."""
    return apply_litellm_config(cfg, restore=lambda: None)


def health_check(cfg: RouterConfig, names: list[str] | str = "all") -> list[dict]:
    """Liveness (the recorded process is alive) and readiness (2xx on the readiness path), probed in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    ordered = expand(names, cfg)
    states = {name: inspect(cfg, name) for name in ordered}
    key_for = {"cliproxyapi_plus": cfg.secret(UPSTREAM_KEY_ENV), "litellm": cfg.secret(MASTER_KEY_ENV)}
    targets = {}
    for name in ordered:
        if name == "redis":
            continue
        svc = cfg.services[name]
        targets[name] = (svc.base_url + svc.readiness_path, key_for[name])
    shared = None
    if cfg.redis is not None and ("litellm" in ordered or "redis" in ordered):
        from . import redis_service

        with ThreadPoolExecutor(1) as pool:  # beside the HTTP probes
            pending = pool.submit(redis_service.probe_config, cfg)
            probes = health.probe_all(targets)
            shared = pending.result()
    else:
        probes = health.probe_all(targets)
    results = []
    for name in ordered:
        probe = shared if name == "redis" else probes[name]
        # an external Redis (services.redis.url) is not ours to run: only its answer counts
        live = states[name].state == RUNNING
        entry = {"service": name, "live": live, "ready": live and probe.ready, "state": states[name].state,
                 "probe": probe.to_dict()}
        if name == "litellm" and shared is not None:
            entry["shared_state"] = shared_state(cfg, shared)
        results.append(entry)
    return results


def probe_ready(cfg: RouterConfig, name: str) -> health.Probe:
    """One readiness probe of a configured service: AUTH + PING for Redis, else GET on its readiness path."""
    if name == "redis":
        from . import redis_service

        return redis_service.probe_config(cfg)
    svc = cfg.services[name]
    return health.probe(svc.base_url + svc.readiness_path,
                        cfg.secret(UPSTREAM_KEY_ENV if name == "cliproxyapi_plus" else MASTER_KEY_ENV))


def shared_state(cfg: RouterConfig, probe: health.Probe) -> dict:
    """Where LiteLLM keeps its router state (cooldowns, allowed_fails, rpm/tpm counters): in Redis, shared by
    every worker and instance, or, when Redis cannot be reached, in each worker's memory (it keeps serving)."""
    where = "external" if cfg.redis is not None and not cfg.redis.managed else "managed"
    if probe.ready:
        return {"redis": where, "ok": True, "detail": f"shared through Redis ({probe.url})"}
    return {"redis": where, "ok": False,
            "detail": f"Redis {probe.url} {probe.error}: LiteLLM serves from each worker's in-memory state "
                      "(cooldowns and rpm limits are per worker until Redis is back)"}


def log_path(cfg: RouterConfig, name: str) -> Path:
    expand([name], cfg)
    return cfg.layout.log_file(name)


def tail_log(cfg: RouterConfig, name: str, lines: int = 50) -> list[str]:
    path = log_path(cfg, name)
    if not path.exists():
        raise RouterError(f"no log yet for {name} ({path})", hint=f"start it: `llm-router service start {name}`",
                          exit_code=NOT_FOUND)
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max(lines, 1) * 512))
            text = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        raise RouterError(f"cannot read {path}: {exc.strerror}", exit_code=USAGE) from None
    return text.splitlines()[-lines:] if lines > 0 else []


def follow_log(cfg: RouterConfig, name: str, poll: float = 0.25):
    """Yield lines appended to the service log from now on (Ctrl-C stops)."""
    path = log_path(cfg, name)
    position = path.stat().st_size if path.exists() else 0
    pending = b""
    while True:
        try:
            with open(path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < position:
                    position = 0  # truncated or replaced
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")
        else:
            time.sleep(poll)
