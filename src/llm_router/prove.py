"""Prove that LiteLLM loads a rendered config before any live worker reads it.

Under gunicorn a worker that cannot load its config exits with code 3 and the master then stops the whole
server (reference: litellm.md §9), so a live profile switch first proves the file. Loading means importing
LiteLLM (~11 s here), so verdicts are cached by the file's sha256 in `litellm/proven.json`, and after
`service start` every profile is proven in the background so that later switches are instant.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .config import RouterConfig
from .errors import USAGE, RouterError
from .events import now_iso
from .fsutil import atomic_write, ensure_dir
from .layout import Layout

PREFIX = "LLM_ROUTER_PROVE "
TIMEOUT = 300.0


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cache_path(layout: Layout) -> Path:
    return layout.litellm_dir / "proven.json"


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
    LiteLLM in one process and cached. Only passing verdicts are cached: a failure may be the environment's."""
    from . import runner, services

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
    ensure_dir(layout.tmp_dir)
    folder = Path(tempfile.mkdtemp(prefix="prove-", dir=layout.tmp_dir))
    try:
        files = {}
        for name, text in todo.items():
            files[name] = folder / f"{name}.yaml"
            files[name].write_text(text, encoding="utf-8")
        argv = [*runner.runtime_python(layout), "-m", "llm_router.prove_worker", *map(str, files.values())]
        env = services.litellm_env(cfg)
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
            verdicts[name] = {"ok": verdict["ok"], "models": verdict["models"], "error": verdict["error"],
                              "sha256": sha256(todo[name]), "cached": False}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    fresh = _load_cache(layout)  # merged again: a background prover may have written meanwhile
    for verdict in verdicts.values():
        if verdict["ok"] and not verdict["cached"]:
            fresh[verdict["sha256"]] = {"ok": True, "models": verdict["models"], "error": None,
                                        "proven_at": now_iso()}
    with contextlib.suppress(RouterError):
        atomic_write(_cache_path(layout), json.dumps(fresh, indent=2) + "\n")
    return verdicts


def ensure_proven(cfg: RouterConfig, name: str, text: str) -> dict:
    """Raise RouterError (exit 2) with LiteLLM's own message unless the rendered config loads."""
    verdict = prove_texts(cfg, {name: text})[name]
    if not verdict["ok"]:
        raise RouterError(f"LiteLLM cannot load profile '{name}': {verdict['error']}",
                          hint="fix the profile template; nothing was switched", exit_code=USAGE)
    return verdict


def start_background(cfg: RouterConfig, marker: dict[str, str]) -> int | None:
    """Prove every profile in a detached low-priority process (`llm-router profile prove --all`); its pid is kept
    in `pids/prove.json` so that `service stop` can end it. `marker` (the launch marker of process.py) is added to
    its environment. Returns the pid."""
    layout = cfg.layout
    ensure_dir(layout.logs_dir)
    argv = [sys.executable, "-m", "llm_router", "--config", str(cfg.path), "profile", "prove", "--all"]
    with open(layout.log_file("prove"), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=layout.runtime_dir, env={**os.environ, **marker},
                                preexec_fn=lambda: os.nice(10))
    return proc.pid
