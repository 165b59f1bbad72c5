"""What every invoke task shares: build a Ctx, hand the command to `frontend.run_command`, turn a non-zero exit
code into `invoke.Exit`."""
from __future__ import annotations

import os
from typing import Callable

from invoke.exceptions import Exit

from ..commands import Ctx
from ..frontend import run_command
from ..output import Result

JSON_HELP = "print the versioned JSON envelope instead of text"
DEBUG_HINT = "set LLM_ROUTER_DEBUG=1 for the traceback and report it"


def run(command: str, fn: Callable[..., Result], *, json: bool = False, **kwargs) -> None:
    """Run `fn(ctx, **kwargs)` and print its result; a non-zero exit code becomes `invoke.Exit`.

    The config comes from $LLM_ROUTER_CONFIG, else config/routertool.yaml (as for `llm-router`); the traceback of
    an unexpected error is printed with LLM_ROUTER_DEBUG=1."""
    ctx = Ctx(config_path=os.environ.get("LLM_ROUTER_CONFIG") or None, json=json)
    code = run_command(command, lambda: fn(ctx, **kwargs), ctx, json,
                       debug=bool(os.environ.get("LLM_ROUTER_DEBUG")), debug_hint=DEBUG_HINT)
    if code:
        raise Exit(code=code)
