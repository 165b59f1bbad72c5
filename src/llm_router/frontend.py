"""The one runner both front ends (`cli.py` and `tasks/`) call: run a command, attach its warnings, render, and map
every failure onto one line and an exit code.

Warnings are attached here and only here: the config's migration warnings (`ctx.warnings`), the command's own
(`Result.warnings`) and those of event appends that failed (`events.take_warnings`), in that order, each shown once.
A RouterError prints as it is; an OSError that escaped a command (EROFS, ENOSPC, EACCES, a closed pipe, ...) as one
line with a stable code (`errors.from_os_error`); anything else as a one-line "unexpected ..." bug report, exit 1,
with the traceback first when `debug` is set; Ctrl-C as "error: interrupted", exit 130.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterable

from . import events
from .commands import Ctx
from .errors import RouterError, from_os_error
from .output import Result, emit, emit_error

INTERRUPTED = 130
DEBUG_HINT = "re-run with --debug for the traceback and report it"


def run_command(command: str | Callable[[], str], fn: Callable[[], Result], ctx: Ctx, as_json: bool, *,
                debug: bool = False, debug_hint: str = DEBUG_HINT) -> int:
    """Call `fn()`, print its result (or its failure) and return the exit code; it never raises.

    `command` names the command in an error envelope; a callable is asked only when a failure is reported (the
    argparse front end knows the name only once `fn` has parsed the arguments)."""
    try:
        return emit_result(fn(), as_json, ctx)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            sys.stderr.write("error: interrupted\n")
        return INTERRUPTED
    except Exception as exc:  # a RouterError, an OSError, or a bug: one line (the traceback first with `debug`)
        if debug and not isinstance(exc, RouterError):
            import traceback

            with contextlib.suppress(Exception):
                traceback.print_exc()
        name = command() if callable(command) else command
        return fail(name, exc, as_json, ctx.warnings, debug_hint=debug_hint)


def collect_warnings(*sources: Iterable[str]) -> list[str]:
    """The warnings of all `sources` in order, each distinct text once."""
    return list(dict.fromkeys(w for source in sources for w in source))


def emit_result(result: Result, as_json: bool, ctx: Ctx | None = None) -> int:
    """Print a command's result with the warnings of the config (`ctx`), of the command and of event appends that
    failed during it."""
    result.warnings = collect_warnings(ctx.warnings if ctx else (), result.warnings, events.take_warnings())
    return emit(result, as_json)


def fail(command: str, exc: BaseException, as_json: bool, warnings: Iterable[str] = (),
         debug_hint: str = DEBUG_HINT) -> int:
    """The one error path of both front ends; it never raises. See the module docstring for the mapping."""
    if isinstance(exc, RouterError):
        error = exc
    elif isinstance(exc, OSError):
        error = from_os_error(exc)
    else:
        text = " ".join(str(exc).split())[:400]
        error = RouterError(f"unexpected {type(exc).__name__}: {text}", hint=debug_hint, exit_code=1)
    try:
        return emit_error(command, error, as_json, collect_warnings(warnings, events.take_warnings()))
    except Exception:  # stdout or stderr is closed or full: the exit code still tells
        with contextlib.suppress(Exception):
            sys.stderr.write(f"error: {error.message}\n")
        return error.exit_code if isinstance(error.exit_code, int) else 1
