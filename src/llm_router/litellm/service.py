"""LiteLLM as a service: its launch (runner, environment, gunicorn or uvicorn mode), the background prover job,
what `status` shows of it (the active profile, each gunicorn worker), and serving a changed config file on the
running master: a live worker swap in gunicorn mode, a restart in uvicorn mode, rolled back on failure.

`SPEC` is what the supervisor needs to know; the caller of `serve_active` holds the runtime lock (the switch).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable

from ..config import MASTER_KEY_ENV, RouterConfig
from ..errors import USAGE, RouterError
from ..supervisor import health, process
from ..supervisor import services as supervisor
from ..supervisor.model import Launch, ServiceSpec, ServiceStatus
from ..supervisor.process import ProcessRecord, read_record
from .env import env_fingerprint, litellm_env, required_secrets

NAME = "litellm"
PROVER = "prove"  # the background job that proves every profile loadable after LiteLLM starts (prove.py)

# --------------------------------------------------------------------------- launch

def gunicorn_available() -> bool:
    """Probed at run time from package metadata (importing it is not needed)."""
    import importlib.metadata

    try:
        importlib.metadata.version("gunicorn")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def prepare(cfg: RouterConfig) -> Launch:
    from .. import profiles  # Jinja2 and PyYAML: only when starting (`status` never does)
    from . import runner

    layout, svc = cfg.layout, cfg.services[NAME]
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
    if cfg.redis is not None and cfg.redis.managed and supervisor.running_record(layout, "redis") is None:
        notes.append("Redis (services.redis) is not running: LiteLLM keeps cooldowns and rpm/tpm counters in each "
                     "worker's memory until it is (`llm-router service start redis`)")
    if mode == "gunicorn" and not gunicorn_available():
        mode = "uvicorn"
        notes.append("gunicorn is not installed in the runtime environment: LiteLLM runs in uvicorn mode, so a "
                     "profile switch restarts it (`uv sync --group runtime` installs gunicorn)")
    serving = None
    if mode == "gunicorn":
        # services.litellm.workers (default 1); the master preloads the app and holds the socket, so workers
        # can be swapped live, one at a time. Every worker boot is watched, the first one too (litellm.md §9).
        argv += ["--run_gunicorn", "--num_workers", str(svc.workers)]
        serving = _boot_watch(svc.worker_boot_timeout)
    elif svc.workers > 1:
        notes.append(f"services.litellm.workers is {svc.workers}, but uvicorn mode runs one process")
    return Launch(argv=argv, env=env, ready_url=svc.base_url + svc.readiness_path, ready_key=master,
                  profile=active.get("name"), mode=mode, notes=notes, serving=serving,
                  env_fingerprint=env_fingerprint(cfg))


def _boot_watch(boot_timeout: float) -> Callable[[ProcessRecord, Path, int], Callable[[], bool]]:
    from . import workers  # psutil, imported when used: `status` of a stopped stack never does

    def watch(record: ProcessRecord, log_path: Path, offset: int) -> Callable[[], bool]:
        watcher = workers.BootWatcher(record, log_path, offset, boot_timeout)

        def serving() -> bool:
            watcher.poll()
            return bool(watcher.serving())
        return serving
    return watch


def litellm_mode(cfg: RouterConfig) -> str | None:
    """The mode of the running LiteLLM (from its record), or None when it is not running."""
    record = supervisor.running_record(cfg.layout, NAME)
    return None if record is None else record.mode or "uvicorn"


def probe(cfg: RouterConfig) -> health.Probe:
    svc = cfg.services[NAME]
    return health.probe(svc.base_url + svc.readiness_path, cfg.secret(MASTER_KEY_ENV))


# --------------------------------------------------------------------------- the prover job

def _after_ready(cfg: RouterConfig, record: ProcessRecord, offset: int) -> list[str]:
    if record.mode == "gunicorn":
        start_prover(cfg)
    return []


def start_prover(cfg: RouterConfig) -> None:
    import psutil

    from . import prove

    stop_prover(cfg)
    launch_id = process.new_launch_id()
    pid = prove.start_background(cfg, {process.LAUNCH_ENV: launch_id})
    if pid is None:  # the master proves warm: nothing to run in the background
        return
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        ProcessRecord(service=PROVER, pid=pid, create_time=proc.create_time(), cmdline=proc.cmdline(), port=0,
                      started_at=time.time(), log=str(cfg.layout.log_file(PROVER)), launch_id=launch_id,
                      boot_id=process.boot_id()).save(cfg.layout)


def stop_prover(cfg: RouterConfig) -> None:
    """End the prover job (by its recorded identity, like a service) and forget it."""
    record, _ = read_record(cfg.layout, PROVER)
    if record is not None:
        supervisor.terminate(record, timeout=5.0)
    cfg.layout.pid_file(PROVER).unlink(missing_ok=True)


# --------------------------------------------------------------------------- status

def worker_details(record: ProcessRecord) -> list[dict]:
    """Each live gunicorn worker of the proven master, oldest first: pid, uptime, RSS, and whether it logged the
    end of its startup (`serving`). Read-only."""
    import psutil

    from . import workers  # psutil, imported when used: `status` of a stopped stack never does

    booted = workers.booted_workers(Path(record.log))
    details = []
    for pid in workers.worker_pids(record):
        with contextlib.suppress(psutil.Error):
            child = psutil.Process(pid)
            details.append({"pid": child.pid, "uptime": round(time.time() - child.create_time(), 1),
                            "rss_bytes": child.memory_info().rss, "serving": child.pid in booted})
    return details


def _describe(cfg: RouterConfig, record: ProcessRecord, status: ServiceStatus) -> None:
    from ..journal import read_active  # only for a running LiteLLM: `status` of a stopped stack never loads it

    info = read_active(cfg.layout)
    status.profile = info["name"] if info else None
    if record.mode == "gunicorn":
        status.workers = worker_details(record)


SPEC = ServiceSpec(name=NAME, prepare=prepare, probe=probe, after_ready=_after_ready,
                   before_stop=stop_prover, describe=_describe)


# --------------------------------------------------------------------------- serving a changed config

def serve_active(cfg: RouterConfig, restore: Callable[[], None]) -> dict:
    """Make a running LiteLLM serve the active config file as it is now (the caller holds the runtime lock).

    gunicorn mode: add a worker (it reads the new file), wait until it finished startup (hung ones are replaced),
    then retire the old worker: no request is refused. uvicorn mode: a restart, which refuses connections while
    LiteLLM imports (~10 s). On failure `restore()` puts the previous config back, the previous config is served
    again, and RouterError is raised. Returns how it was applied (`how`), with timings and notes."""
    from . import workers  # psutil, imported when used: `status` of a stopped stack never does

    record = supervisor.running_record(cfg.layout, NAME)
    if record is None:
        return {"how": "not running"}
    notes = _restart_needed_notes(cfg, record)
    specs = {NAME: SPEC}
    if record.mode != "gunicorn":
        try:
            outcome = supervisor.restart_held(cfg, specs, [NAME])[0]
            return {"how": "restart", "pid": outcome.pid, "notes": notes}
        except BaseException as exc:  # Ctrl-C too: the previous config is put back either way
            restore()
            if not isinstance(exc, RouterError):
                raise
            raise _rolled_back(exc, lambda: supervisor.restart_held(cfg, specs, [NAME])) from None
    svc = cfg.services[NAME]
    target = worker_target(cfg, record)
    serving = set(workers.worker_pids(record))
    try:
        swapped = workers.swap(record, Path(record.log), svc.worker_boot_timeout, target=target)
    except BaseException as exc:
        restore()

        def settle() -> object:
            return workers.settle(record, Path(record.log), svc.worker_boot_timeout, keep=serving, target=target)
        if not isinstance(exc, RouterError):  # Ctrl-C: settle, then let the interrupt through
            with contextlib.suppress(RouterError):
                settle()
            raise
        raise _rolled_back(exc, settle) from None
    return {"how": "worker swap", **swapped, "notes": notes}


def recycle_worker(cfg: RouterConfig) -> dict:
    """Replace the LiteLLM worker by a fresh one through the same add-then-retire swap (memory creeps up in long
    runs); a restart in uvicorn mode."""
    with supervisor.locked(cfg):
        return serve_active(cfg, restore=lambda: None)


def reconcile_workers(cfg: RouterConfig, after_interrupted_switch: bool) -> list[str]:
    """Bring a gunicorn master back to the workers it should have, all serving the active file (the caller holds
    the runtime lock): after an interrupted switch, or when a swap left an extra worker."""
    from . import workers  # psutil, imported when used: `status` of a stopped stack never does

    record = supervisor.running_record(cfg.layout, NAME)
    if record is None or record.mode != "gunicorn":
        return []
    target = worker_target(cfg, record)
    if not after_interrupted_switch and len(workers.worker_pids(record)) <= target:
        return []
    done = workers.reconcile(record, Path(record.log), cfg.services[NAME].worker_boot_timeout, target=target)
    count = "one worker" if target == 1 else f"{target} workers"
    return [f"LiteLLM is back to {count} (pid {', '.join(map(str, done['workers']))}) serving the active profile"]


def worker_target(cfg: RouterConfig, record: ProcessRecord) -> int:
    """How many workers the running master should have: the `--num_workers` it was started with (a change of
    services.litellm.workers takes a restart, like the port)."""
    argv = record.cmdline
    with contextlib.suppress(ValueError, IndexError):
        return max(1, int(argv[argv.index("--num_workers") + 1]))
    return max(1, cfg.services[NAME].workers)


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
    svc = cfg.services[NAME]
    if record.port != svc.port:
        notes.append(f"services.litellm.port changed ({record.port} -> {svc.port}): "
                     "run `llm-router service restart litellm` to use it")
    if record.mode == "gunicorn" and worker_target(cfg, record) != svc.workers:
        notes.append(f"services.litellm.workers changed ({worker_target(cfg, record)} -> "
                     f"{svc.workers}): run `llm-router service restart litellm` to use it")
    if record.env_fingerprint and record.env_fingerprint != env_fingerprint(cfg):
        notes.append("secrets changed since LiteLLM started: run `llm-router service restart litellm` to use them")
    return notes
