"""`llm-router`: the argparse front end. It parses arguments, calls a command function and renders its result.

No logic lives here: see `commands/` for the mapping onto the library.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from typing import Iterable

from . import __version__, events
from .commands import Ctx
from .errors import USAGE, RouterError, from_os_error
from .output import Result, emit, emit_error

# Which module under commands/ provides each top-level command. A run imports only the module of its command,
# so `llm-router status` does not pay for Jinja2 or requests; `--help` and unknown commands import them all.
COMMANDS = {
    "config": "config", "events": "events", "service": "service", "status": "status", "health": "status",
    "check": "check", "doctor": "check", "smoke": "check", "bootstrap": "bootstrap", "auth": "auth",
    "profile": "profile", "up": "stack", "down": "stack", "demo": "demo", "connect": "connect", "run": "connect",
    "usage": "usage", "models": "usage", "cooldown": "usage",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: one line and exit code 2
        self.print_usage(sys.stderr)
        raise RouterError(message, hint=f"see `{self.prog} --help`", exit_code=USAGE)


def _command_word(argv: list[str]) -> str | None:
    """The top-level command in `argv` (skipping global options and the value of --config)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token == "--config":
            skip = True
        elif not token.startswith("-"):
            return token
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    # Global flags are accepted before or after the subcommand (`llm-router --json status` or `status --json`).
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the versioned JSON envelope instead of text")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks for unexpected errors")
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="routertool.yaml (default: $LLM_ROUTER_CONFIG, else config/routertool.yaml)")
    parser = _Parser(prog="llm-router", parents=[common],
                     description="Local control toolkit for CLIProxyAPIPlus + LiteLLM stacks.")
    parser.add_argument("--version", action="version", version=f"llm-router {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(f".commands.{name}", __package__).add_parsers(sub, common)
    return parser


def emit_result(result: Result, as_json: bool) -> int:
    """Print a command's result with the warnings of event appends that failed during it (both front ends)."""
    result.warnings = [*result.warnings, *events.take_warnings()]
    return emit(result, as_json)


def fail(command: str, exc: BaseException, as_json: bool, warnings: Iterable[str] = (),
         debug_hint: str = "re-run with --debug for the traceback and report it") -> int:
    """The one error path of both front ends; it never raises. A RouterError prints as it is, an OSError that
    escaped a command (EROFS, ENOSPC, EACCES, a closed pipe, ...) as one line with a stable code
    (`errors.from_os_error`), anything else as a one-line "unexpected ..." bug report, exit 1."""
    if isinstance(exc, RouterError):
        error = exc
    elif isinstance(exc, OSError):
        error = from_os_error(exc)
    else:
        text = " ".join(str(exc).split())[:400]
        error = RouterError(f"unexpected {type(exc).__name__}: {text}", hint=debug_hint, exit_code=1)
    try:
        return emit_error(command, error, as_json, [*warnings, *events.take_warnings()])
    except Exception:  # stdout or stderr is closed or full: the exit code still tells
        with contextlib.suppress(Exception):
            sys.stderr.write(f"error: {error.message}\n")
        return error.exit_code if isinstance(error.exit_code, int) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own = argv[:argv.index("--")] if "--" in argv else argv  # after `--`: a client's own arguments (`run`)
    as_json = "--json" in own
    debug = "--debug" in own
    command = "llm-router"
    ctx = Ctx(json=as_json, debug=debug)
    try:
        args = build_parser(_command_word(argv)).parse_args(argv)
        command = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
        ctx.config_path = getattr(args, "config", None)
        return emit_result(args.run(ctx, args), as_json)
    except RouterError as exc:
        return fail(command, exc, as_json, ctx.warnings)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as exc:  # an OSError, or a bug: one line unless --debug
        if debug:
            import traceback

            with contextlib.suppress(Exception):
                traceback.print_exc()
        return fail(command, exc, as_json, ctx.warnings)


if __name__ == "__main__":
    raise SystemExit(main())
