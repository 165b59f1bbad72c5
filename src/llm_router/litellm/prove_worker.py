"""Runs inside the LiteLLM runtime interpreter: load a config file the way `litellm --validate_config` does and
report the verdict {"file", "ok", "models", "error"}. Two ways in:

- cold: `python -m llm_router.litellm.prove_worker FILE [FILE ...]` (started by `prove.py` when no warm master can
  prove),
  importing LiteLLM once for all the files and printing one `LLM_ROUTER_PROVE <json>` line per file;
- warm: inside the running gunicorn master (`litellm_launch` installs `serve_requests` as its SIGWINCH action).
  The master has LiteLLM imported already, so a proof is a fork plus the config load: well under a second, where
  the cold way pays LiteLLM's import (~11-20 s) every time.

The warm way keeps the master safe (reference: litellm.md §9: a *worker* that cannot load its config makes gunicorn
halt the whole server, through the worker's exit code 3). The config is loaded in a grandchild of the master, never
in the master and never in a gunicorn worker: the master forks a child that forks the prover and exits 0 at once, so
the only process gunicorn ever reaps is one that exited 0 (an exit code 3 or 4 of its own child is what would halt
it), and the prover is not a child of the master, so nothing counts it as a worker. The master never waits for
either (a stopped child cannot block its main loop); gunicorn's own SIGCHLD handler reaps the intermediate one. For
the few milliseconds it lives, that intermediate child is a child of the master that is not a worker. The prover
carries the master's launch marker (LLM_ROUTER_LAUNCH_ID, inherited), so `service stop` ends it with the stack; it
closes the listening sockets it inherited, takes default signal handlers, and ends itself after PROVER_ALARM seconds
whatever happens (SIGALRM), so it can never be left running.

Protocol, in `<runtime>/litellm/prove/` (0700, beside `active.yaml`):
  master.json    written by the master when it starts: {"pid", "launch_id"}; a client proves warm only through a
                 master whose pid and launch id match the LiteLLM record;
  <id>.yaml      the config to prove (client);
  <id>.req       the request, written after the config (client); the master claims it by renaming it to
                 <id>.taken, so each request is proven once;
  <id>.json      the verdict (the prover; written to a temp name and renamed);
the client then sends SIGWINCH to the master (through process.send, which proves the master ours first; gunicorn
ignores SIGWINCH when not daemonized, which LiteLLM never is) and removes its files when done.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys

PREFIX = "LLM_ROUTER_PROVE "
FOLDER = "prove"  # beside active.yaml
HELLO = "master.json"
REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")
PROVER_ALARM = 60  # seconds: a warm prover that is still running then ends itself (SIGALRM, default action)


def verdict(file: str) -> dict:
    """Load one config file as LiteLLM's `--validate_config` does; any failure to load is the verdict."""
    from litellm.proxy.proxy_server import ProxyConfig

    try:
        _, model_list, _ = asyncio.run(ProxyConfig().load_config(router=None, config_file_path=file))
        return {"file": file, "ok": True, "models": len(model_list), "error": None}
    except Exception as exc:  # noqa: BLE001 - any failure to load is the verdict we report
        return {"file": file, "ok": False, "models": 0, "error": f"{type(exc).__name__}: {exc}"[:2000]}


def main(files: list[str]) -> int:
    for file in files:
        print(PREFIX + json.dumps(verdict(file)), flush=True)
    return 0


# --------------------------------------------------------------------------- warm: inside the gunicorn master

def folder_for(config_path: str) -> str:
    """The request folder of a master started with `--config config_path`."""
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), FOLDER)


def write_hello(folder: str) -> None:
    """Announce this process as a warm prover (called in the master before it forks anything); stale requests of
    an earlier master are removed."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    for name in os.listdir(folder):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))
    _write_json(os.path.join(folder, HELLO), {"pid": os.getpid(),
                                              "launch_id": os.environ.get("LLM_ROUTER_LAUNCH_ID")})


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def pending(folder: str) -> list[str]:
    """Request ids waiting in `folder`, oldest name first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(name[:-4] for name in names if name.endswith(".req") and REQUEST_ID.match(name[:-4]))


def serve_requests(folder: str, close_fds: tuple[int, ...] = (), load=verdict) -> list[str]:
    """Claim every pending request and start one detached prover for each; returns the claimed ids. Never raises
    (it runs in the gunicorn master's main loop) and never waits for a proof."""
    claimed = []
    for request_id in pending(folder):
        base = os.path.join(folder, request_id)
        try:
            os.rename(base + ".req", base + ".taken")  # claimed once, by this master
        except OSError:
            continue
        try:
            _spawn(base, close_fds, load)
            claimed.append(request_id)
        except Exception as exc:  # noqa: BLE001 - the master must go on serving; the client falls back
            with contextlib.suppress(Exception):
                _write_json(base + ".json", {"ok": False, "models": 0, "error": None,
                                             "unavailable": f"the master could not fork a prover: {exc}"})
    return claimed


def _spawn(base: str, close_fds: tuple[int, ...], load) -> None:
    if os.fork():
        return  # never waited for here: gunicorn's SIGCHLD handler reaps it (exit 0, not a worker: ignored)
    # the intermediate child: fork the prover and exit 0 at once (gunicorn reaps this one; its code must be 0).
    # It leaves the master's process group first, so that nothing counts it (or the prover) as a worker
    # (workers.worker_pids); both keep the launch marker, so `service stop` still ends them.
    try:
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        if os.fork() == 0:
            _prove(base, close_fds, load)  # never returns
    finally:
        os._exit(0)


def _prove(base: str, close_fds: tuple[int, ...], load) -> None:
    code = 0
    try:
        signal.alarm(PROVER_ALARM)
        for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGINT, signal.SIGTERM, signal.SIGTTIN, signal.SIGTTOU,
                    signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        for fd in close_fds:  # the listening socket and gunicorn's wake-up pipe: never this process's business
            with contextlib.suppress(OSError):
                os.close(fd)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # LiteLLM prints while it loads; the verdict carries what matters
            os.dup2(devnull, fd)
        with contextlib.suppress(Exception):
            from gunicorn import util

            util._setproctitle("llm-router prover")
        result = load(base + ".yaml")
        result["file"] = base + ".yaml"
        _write_json(base + ".json", result)
    except BaseException:  # noqa: BLE001 - no verdict: the client times out and proves the cold way
        code = 1
    finally:
        with contextlib.suppress(OSError):
            os.unlink(base + ".taken")
        os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
