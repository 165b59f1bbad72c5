"""`llm-router`: the argparse front end. It parses arguments and hands the command to `frontend.run_command`,
which renders its result or its failure.

No logic lives here: see `commands/` for the mapping onto the library.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .commands import Ctx
from .errors import USAGE, RouterError
from .frontend import emit_result, fail, run_command  # noqa: F401  (emit_result, fail: importable from here too)
from .output import Result

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


class Invocation:
    """One `llm-router` run: parse `argv`, then call its command. `name` is what a failure is reported under:
    "llm-router" until the arguments are parsed, then the command and its action ("service start")."""

    def __init__(self, argv: list[str], ctx: Ctx):
        self.argv = argv
        self.ctx = ctx
        self.name = "llm-router"

    def __call__(self) -> Result:
        args = build_parser(_command_word(self.argv)).parse_args(self.argv)
        self.name = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
        self.ctx.config_path = getattr(args, "config", None)
        return args.run(self.ctx, args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own = argv[:argv.index("--")] if "--" in argv else argv  # after `--`: a client's own arguments (`run`)
    as_json = "--json" in own
    debug = "--debug" in own
    ctx = Ctx(json=as_json, debug=debug)
    invocation = Invocation(argv, ctx)
    return run_command(lambda: invocation.name, invocation, ctx, as_json, debug=debug)


if __name__ == "__main__":
    raise SystemExit(main())
