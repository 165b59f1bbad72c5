"""What every invoke task shares: build a Ctx, call a command function, render, turn failures into `Exit`."""
from __future__ import annotations

import os
import traceback
from typing import Callable

from invoke.exceptions import Exit

from ..cli import emit_result, fail
from ..commands import Ctx
from ..errors import RouterError
from ..output import Result

JSON_HELP = "print the versioned JSON envelope instead of text"


def run(command: str, fn: Callable[..., Result], *, json: bool = False, **kwargs) -> None:
    """Run `fn(ctx, **kwargs)` and print its result; a non-zero exit code becomes `invoke.Exit`.

    The config comes from $LLM_ROUTER_CONFIG, else config/routertool.yaml (as for `llm-router`)."""
    ctx = Ctx(config_path=os.environ.get("LLM_ROUTER_CONFIG") or None, json=json)
    try:
        code = emit_result(fn(ctx, **kwargs), json)
    except RouterError as exc:
        code = fail(command, exc, json, ctx.warnings)
    except KeyboardInterrupt:
        raise Exit("error: interrupted", code=130) from None
    except Exception as exc:  # an OSError (one line, stable code) or a bug (the traceback with LLM_ROUTER_DEBUG=1)
        if os.environ.get("LLM_ROUTER_DEBUG"):
            traceback.print_exc()
        code = fail(command, exc, json, ctx.warnings,
                    debug_hint="set LLM_ROUTER_DEBUG=1 for the traceback and report it")
    if code:
        raise Exit(code=code)
