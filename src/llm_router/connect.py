"""Client configurations for the running stack: what `llm-router connect CLIENT` prints or writes, and what
`llm-router run CLIENT -- ARGS` sets for one command.

`setup(cfg, client, model)` returns a `ClientSetup`: the shell environment (each value a literal or a shell
expression that reads the key, never the key itself), the config-file snippets, an example command and notes.
`write(setup)` edits the client's own config file (a backup first, atomically, the rest of the file kept).
`run(cfg, client, args)` runs the client with the configuration set for that one process, forwards Ctrl-C and
SIGTERM to it and returns its exit code.

This module holds the stack's side (which client, which model, the endpoint and where the key comes from) and is
the one name to import: the per-client configuration is in `client_setup`, the config-file edits of `--write` in
`client_files`, and `run` in `client_run`; their public names are re-exported here.

Facts about each client (measured on Codex CLI 0.171.0 and Claude Code 2.1.197) are in docs/clients.md.
"""
from __future__ import annotations

import os
from pathlib import Path

from .client_files import WriteResult, claude_settings, codex_toml, llm_yaml, write
from .client_run import EXECUTABLES, STOP_WAIT, RunResult, run, run_argv, run_env
from .client_setup import (
    BUILDERS,
    CLAUDE_MODEL_VARS,
    CLAUDE_OFFLINE,
    CLIENT_TITLES,
    CLIENTS,
    CODEX_OFFLINE,
    PROVIDER_ID,
    WRITABLE,
    ClientSetup,
    Endpoint,
    EnvVar,
    KeyRef,
    Snippet,
    claude_config_dir,
    claude_env,
    codex_home,
    codex_settings,
    llm_entry,
    llm_user_dir,
)
from .config import MASTER_KEY_ENV, RouterConfig
from .errors import USAGE, RouterError

__all__ = [
    "CLAUDE_MODEL_VARS", "CLAUDE_OFFLINE", "CLIENTS", "CLIENT_TITLES", "CODEX_OFFLINE", "EXECUTABLES", "PROVIDER_ID",
    "STOP_WAIT", "WRITABLE", "ClientSetup", "Endpoint", "EnvVar", "KeyRef", "RunResult", "Snippet", "WriteResult",
    "check_client", "claude_config_dir", "claude_env", "claude_settings", "codex_home", "codex_settings",
    "codex_toml", "endpoint", "llm_entry", "llm_user_dir", "llm_yaml", "pick_model", "run", "run_argv", "run_env",
    "setup", "write",
]


# --------------------------------------------------------------------------- the stack's side

def check_client(client: str) -> str:
    name = (client or "").strip().lower()
    aliases = {"claude-code": "claude", "codex-cli": "codex", "env": "openai"}
    name = aliases.get(name, name)
    if name not in CLIENTS:
        raise RouterError(f"unknown client {client!r}; known clients: {', '.join(CLIENTS)}",
                          hint="e.g. `llm-router connect codex`", exit_code=USAGE)
    return name


def endpoint(cfg: RouterConfig, environ: dict | None = None) -> Endpoint:
    from . import stack

    svc = cfg.services["litellm"]
    source = cfg.secret_source(MASTER_KEY_ENV, environ)
    if source == "file":
        key_file = cfg.secret_files[MASTER_KEY_ENV]
    elif source == "env":
        key_file = None
    else:  # generated, or not yet generated: `service start` writes it there
        key_file = cfg.layout.secret_file(MASTER_KEY_ENV)
    try:
        state = stack.status(cfg, ["litellm"])[0].state
    except RouterError:
        state = "UNKNOWN"
    return Endpoint(base_url=svc.base_url, openai_base_url=f"{svc.base_url}/v1", state=state,
                    key=KeyRef(MASTER_KEY_ENV, source, key_file), models=tuple(g.name for g in cfg.models))


def pick_model(cfg: RouterConfig, model: str | None) -> str:
    names = [g.name for g in cfg.models]
    if not names:
        raise RouterError(f"{cfg.path} has no models[]", hint="add a model group to models[]", exit_code=USAGE)
    if model is None:
        return names[0]
    if model not in names:
        raise RouterError(f"unknown model {model!r}; the router serves: {', '.join(names)}",
                          hint="pass one of the names of models[] in routertool.yaml", exit_code=USAGE)
    return model


def setup(cfg: RouterConfig, client: str, model: str | None = None, environ: dict | None = None,
          home: Path | None = None) -> ClientSetup:
    """The configuration of `client` for this stack. `environ` and `home` (default: the process's) decide
    where each client's config file lives."""
    client = check_client(client)
    model = pick_model(cfg, model)
    ep = endpoint(cfg, environ)
    env = os.environ if environ is None else environ
    home = Path(home) if home is not None else Path.home()
    return BUILDERS[client](ep, model, env, home)
