"""Prove that LiteLLM loads a rendered config before any live worker reads it.

Under gunicorn a worker that cannot load its config exits with code 3 and the master then stops the whole
server (reference: litellm.md §9), so a live profile switch first proves the file. Two ways, the first that can:

- warm (`via: master`): the running gunicorn master, which has LiteLLM imported, forks a detached prover that loads
  the file (protocol and safety in prove_worker.py); 0.06-0.7 s a proof on the shared 2-core machine;
- cold (`via: cold`): a fresh runtime interpreter imports LiteLLM and loads the files (~11-20 s), when LiteLLM is not
  running in gunicorn mode, its master does not announce itself as a prover (started by an older llm-router), or a
  warm proof did not answer within WARM_TIMEOUT.

Verdicts are cached by the file's sha256 in `litellm/proven.json` (passing ones only). After `service start`,
`start_background` proves every profile in the background (`python -m llm_router.litellm.prove CONFIG`, cold)
only when the
master cannot prove warm; with a warm master each switch proves its own profile the first time, in well under a
second, and nothing runs after start.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..config import RouterConfig
from ..errors import USAGE, RouterError
from ..events import now_iso
from ..fsutil import atomic_write, ensure_dir
from ..layout import Layout
from .prove_worker import FOLDER, HELLO, PREFIX

TIMEOUT = 300.0  # the cold way
WARM_TIMEOUT = 30.0  # a warm proof takes well under a second; after this the cold way is tried
RETRY_AFTER = 8.0  # a request with no verdict this long after it was made is made again (at most ATTEMPTS times)
ATTEMPTS = 3
RESEND = 1.0  # SIGWINCH again while a request is unclaimed (gunicorn drops signals beyond a queue of 5)
POLL = 0.01
SWEEP_AFTER = 600.0  # files of abandoned requests (a client killed mid-proof) older than this are removed


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cache_path(layout: Layout) -> Path:
    return layout.proven_cache


def _load_cache(layout: Layout) -> dict:
    try:
        data = json.loads(_cache_path(layout).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached(layout: Layout, text: str) -> dict | None:
    return _load_cache(layout).get(sha256(text))


def prove_texts(cfg: RouterConfig, texts: dict[str, str]) -> dict[str, dict]:
    """Verdicts `{name: {ok, error, models, sha256, cached}}` for rendered configs; unknown ones are loaded by
    LiteLLM (warm through the running master, else cold in one process) and cached, and say `via` which. Only
    passing verdicts are cached: a failure may be the environment's."""
    layout = cfg.layout
    cache = _load_cache(layout)
    verdicts: dict[str, dict] = {}
    todo: dict[str, str] = {}
    for name, text in texts.items():
        digest = sha256(text)
        if digest in cache:
            verdicts[name] = {**cache[digest], "sha256": digest, "cached": True}
        else:
            todo[name] = text
    if not todo:
        return verdicts
    for name, verdict in _prove_warm(cfg, todo).items():
        verdicts[name] = {**verdict, "sha256": sha256(todo.pop(name)), "cached": False, "via": "master"}
    if todo:
        for name, verdict in _prove_cold(cfg, todo).items():
            verdicts[name] = {**verdict, "sha256": sha256(todo[name]), "cached": False, "via": "cold"}
    fresh = _load_cache(layout)  # merged again: a background prover may have written meanwhile
    for verdict in verdicts.values():
        if verdict["ok"] and not verdict["cached"]:
            fresh[verdict["sha256"]] = {"ok": True, "models": verdict["models"], "error": None,
                                        "proven_at": now_iso()}
    with contextlib.suppress(RouterError):
        atomic_write(_cache_path(layout), json.dumps(fresh, indent=2) + "\n")
    return verdicts


def warm_master(cfg: RouterConfig):
    """The running gunicorn master's record when it serves warm proofs (it wrote `prove/master.json` with its own
    pid and launch id, and it is proven ours); None otherwise."""
    from ..supervisor import process

    layout = cfg.layout
    record, _ = process.read_record(layout, "litellm")
    if record is None or record.mode != "gunicorn" or not record.launch_id:
        return None
    try:
        hello = json.loads((layout.litellm_dir / FOLDER / HELLO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(hello, dict) or hello.get("pid") != record.pid or hello.get("launch_id") != record.launch_id:
        return None
    return record if process.owned_leader(record) is not None else None


def _prove_warm(cfg: RouterConfig, todo: dict[str, str]) -> dict[str, dict]:
    """Verdicts `{name: {ok, models, error}}` from the warm master for what it answered within WARM_TIMEOUT."""
    from ..supervisor import process

    record = warm_master(cfg)
    if record is None:
        return {}
    folder = cfg.layout.litellm_dir / FOLDER
    _sweep(folder)
    found: dict[str, dict] = {}
    asked: dict[str, tuple[str, float, int]] = {}  # name -> (request id, when asked, attempt)
    used: list[str] = []

    def ask(name: str, attempt: int) -> None:
        request_id = secrets.token_hex(8)
        used.append(request_id)
        fd = os.open(folder / f"{request_id}.yaml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(todo[name])
        os.close(os.open(folder / f"{request_id}.req", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        asked[name] = (request_id, time.monotonic(), attempt)

    try:
        for name in todo:
            ask(name, 1)
        deadline = time.monotonic() + WARM_TIMEOUT
        sent = 0.0
        while len(found) < len(todo) and time.monotonic() < deadline:
            now = time.monotonic()
            for name, (request_id, since, attempt) in list(asked.items()):
                if name in found:
                    continue
                verdict = _read_verdict(folder / f"{request_id}.json")
                if verdict is not None:
                    found[name] = verdict
                elif now - since >= RETRY_AFTER and attempt < ATTEMPTS:
                    ask(name, attempt + 1)  # a prover that died before its verdict (killed, or hung and ended)
            unclaimed = [i for name, (i, _, _) in asked.items() if name not in found
                         and (folder / f"{i}.req").exists()]
            if unclaimed and now - sent >= RESEND:
                if not process.send(record, record.pid, signal.SIGWINCH):
                    break  # the master is gone or not ours any more
                sent = now
            time.sleep(POLL)
    except OSError:
        pass  # the folder went away (a restart): what was not answered is proven the cold way
    finally:
        for request_id in used:
            for suffix in (".req", ".taken", ".yaml", ".json"):
                with contextlib.suppress(OSError):
                    (folder / f"{request_id}{suffix}").unlink()
    return {name: {k: v for k, v in verdict.items() if k != "unavailable"}
            for name, verdict in found.items() if not verdict.get("unavailable")}


def _read_verdict(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        return None
    models = data.get("models")
    error = data.get("error")
    return {"ok": data["ok"], "models": models if isinstance(models, int) else 0,
            "error": None if data["ok"] else str(error or "the config did not load")[:2000],
            "unavailable": data.get("unavailable")}


def _sweep(folder: Path) -> None:
    now = time.time()
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.name != HELLO and path.suffix in (".yaml", ".json", ".req", ".taken", ".tmp"):
                with contextlib.suppress(OSError):
                    if now - path.stat().st_mtime > SWEEP_AFTER:
                        path.unlink()


def _prove_cold(cfg: RouterConfig, todo: dict[str, str]) -> dict[str, dict]:
    """Verdicts from a fresh runtime interpreter that imports LiteLLM once for all of `todo`."""
    from . import runner
    from .env import litellm_env

    layout = cfg.layout
    ensure_dir(layout.tmp_dir)
    verdicts = {}
    folder = Path(tempfile.mkdtemp(prefix="prove-", dir=layout.tmp_dir))
    try:
        files = {}
        for name, text in todo.items():
            files[name] = folder / f"{name}.yaml"
            files[name].write_text(text, encoding="utf-8")
        argv = [*runner.runtime_python(layout), "-m", "llm_router.litellm.prove_worker", *map(str, files.values())]
        env = litellm_env(cfg)
        try:
            # same process group as its caller: stopping a background prover ends this loader too
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                                  cwd=layout.runtime_dir)
        except subprocess.TimeoutExpired:
            raise RouterError(f"LiteLLM did not finish loading the config within {TIMEOUT:g} s",
                              exit_code=USAGE) from None
        found = {}
        for line in done.stdout.splitlines():
            if line.startswith(PREFIX):
                verdict = json.loads(line[len(PREFIX):])
                found[verdict["file"]] = verdict
        for name, path in files.items():
            verdict = found.get(str(path))
            if verdict is None:
                tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
                verdict = {"ok": False, "models": 0, "error": f"the LiteLLM loader failed: {tail[:500]}"}
            verdicts[name] = {"ok": verdict["ok"], "models": verdict["models"], "error": verdict["error"]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return verdicts


def ensure_proven(cfg: RouterConfig, name: str, text: str) -> dict:
    """Raise RouterError (exit 2) with LiteLLM's own message unless the rendered config loads."""
    verdict = prove_texts(cfg, {name: text})[name]
    if not verdict["ok"]:
        raise RouterError(f"LiteLLM cannot load profile '{name}': {verdict['error']}",
                          hint="fix the profile template; nothing was switched", exit_code=USAGE)
    return verdict


def prove_profiles(cfg: RouterConfig, names: list[str] | None = None) -> dict[str, dict]:
    """Prove that LiteLLM loads the named profiles (all by default), rendered; verdicts are cached."""
    from .. import profiles  # Jinja2 and PyYAML: only when proving

    chosen = names or [p.name for p in profiles.available(cfg)]
    texts = {name: profiles.checked(cfg, profiles.find(cfg, name)).text for name in chosen}
    return prove_texts(cfg, texts)


DEEP_TIMEOUT = 120.0  # `litellm --validate_config` imports the whole proxy (~11 s measured)


def validate_deep(cfg: RouterConfig, name: str, text: str) -> None:
    """`litellm --validate_config` on a rendered profile (~11 s), offline, with placeholders for the secrets
    (`profile set --deep`)."""
    from ..supervisor.services import SCRUBBED_ENV
    from .env import LITELLM_OFFLINE_ENV

    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update({**LITELLM_OFFLINE_ENV, **{secret: "validate-only" for secret in cfg.secret_names()}})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        try:
            proc = subprocess.run([str(Path(sys.prefix) / "bin" / "litellm"), "--config", handle.name,
                                   "--validate_config"], capture_output=True, text=True, env=env,
                                  timeout=DEEP_TIMEOUT, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise RouterError("litellm is not installed, so --deep cannot run", exit_code=USAGE,
                              hint="uv sync --group runtime") from None
        except subprocess.TimeoutExpired:
            raise RouterError(f"litellm --validate_config did not finish within {DEEP_TIMEOUT:.0f} s",
                              exit_code=USAGE) from None
    output = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode != 0:
        raise RouterError(f"profile '{name}': litellm --validate_config failed "
                          f"(exit {proc.returncode}): {output[-1] if output else 'no output'}",
                          exit_code=USAGE, details=output[-20:])
    # LiteLLM drops a deployment it cannot load (logging why) and still says "config OK (N models)"
    import yaml

    loaded = re.search(r"config OK \((\d+) models?\)", proc.stdout)
    expected = len(yaml.safe_load(text)["model_list"])
    if loaded is None or int(loaded.group(1)) != expected:
        count = loaded.group(1) if loaded else "an unknown number"
        raise RouterError(f"profile '{name}': LiteLLM loaded {count} of {expected} deployments",
                          hint="the lines listed say which deployment LiteLLM rejected and why", exit_code=USAGE,
                          details=output[-20:])


def start_background(cfg: RouterConfig, marker: dict[str, str]) -> int | None:
    """Prove every profile in a detached low-priority process (`python -m llm_router.litellm.prove CONFIG`); its pid
    is kept in `pids/prove.json` so that `service stop` can end it. `marker` (the launch marker of process.py) is added
    to its environment. Returns the pid, or None when nothing needs to run in the background: a running master that
    proves warm makes each switch prove its own profile in well under a second, so pre-proving would only add forks
    of the master (and load) right after start."""
    if warm_master(cfg) is not None:
        return None
    layout = cfg.layout
    ensure_dir(layout.logs_dir)
    argv = [sys.executable, "-m", "llm_router.litellm.prove", str(cfg.path)]
    with open(layout.log_file("prove"), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=layout.runtime_dir, env={**os.environ, **marker},
                                preexec_fn=lambda: os.nice(10))
    return proc.pid


def main(argv: list[str] | None = None) -> int:
    """The background prover's entry point: `python -m llm_router.litellm.prove CONFIG` proves every profile
    (the config's parse is reused from the cache `service start` left), printing one line per verdict."""
    from .. import config

    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = config.load(args[0] if args else None)
        verdicts = prove_profiles(cfg)
    except RouterError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    for name, verdict in verdicts.items():
        print(f"{name}: {'ok' if verdict['ok'] else 'FAILED: ' + str(verdict['error'])}")
    return 0 if all(v["ok"] for v in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
