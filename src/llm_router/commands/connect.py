"""`connect CLIENT` (print, or `--write`, a client's configuration for this stack) and `run CLIENT -- ARGS`
(run the client with it set for one command). See `llm_router.connect` and docs/clients.md."""
from __future__ import annotations

import argparse
import sys

from .. import connect as lib
from ..output import Result
from . import Ctx

CLIENT_HELP = f"one of: {', '.join(lib.CLIENTS)}"


def _stopped_warning(setup: lib.ClientSetup, ctx: Ctx) -> str | None:
    if setup.endpoint.running:
        return None
    return (f"the stack is not running (LiteLLM {setup.endpoint.state}); this configuration works once it is: "
            f"llm-router{' --config ' + str(ctx.config.path) if ctx.config_path else ''} service start all")


def render(setup: lib.ClientSetup) -> str:
    ep = setup.endpoint
    out = [f"# {setup.title} -> llm-router at {ep.openai_base_url} (model {setup.model}; served: "
           f"{', '.join(ep.models)})"]
    if setup.env:
        out += ["", "# environment (eval \"$(llm-router connect " + setup.client + " --env)\")", setup.exports]
    for snippet in setup.files:
        out += ["", f"# {snippet.target}" + (f" (llm-router connect {setup.client} --write adds it)"
                                              if setup.writable else ""), snippet.text]
    if setup.command:
        out += ["", f"# then: {setup.command}"]
    if setup.notes:
        out += [""] + [f"# note: {n}" for n in setup.notes]
    return "\n".join(out)


def connect(ctx: Ctx, client: str, model: str | None = None, write: bool = False, env_only: bool = False) -> Result:
    client = lib.check_client(client)  # before the config: an unknown client is told apart from a missing config
    setup = lib.setup(ctx.config, client, model)
    warnings = []
    stopped = _stopped_warning(setup, ctx)
    if stopped:
        warnings.append(stopped)
    if setup.endpoint.key.source == "missing":
        warnings.append(f"{setup.endpoint.key.file} does not exist yet: `service start` generates it")
    data = setup.to_dict()
    if write:
        written = lib.write(ctx.config, setup)
        data["written"] = written.to_dict()
        if written.changed:
            text = (f"{'created' if written.created else 'updated'} {written.path}"
                    + (f" (backup {written.backup})" if written.backup else "")
                    + f": {', '.join(written.keys)}")
        else:
            text = f"{written.path} already has this configuration; nothing changed"
        if setup.env:
            text += "\nstill needed in the shell that runs it:\n" + setup.exports
        return Result("connect", data=data, text=text, warnings=warnings)
    text = setup.exports if env_only else render(setup)
    return Result("connect", data=data, text=text, warnings=warnings)


def run(ctx: Ctx, client: str, args: list[str], model: str | None = None) -> Result:
    client = lib.check_client(client)
    setup = lib.setup(ctx.config, client, model)
    stopped = _stopped_warning(setup, ctx)
    if stopped and not ctx.json:
        sys.stderr.write(f"warning: {stopped}\n")
        sys.stderr.flush()
    outcome = lib.run(ctx.config, setup, args)
    return Result("run", data=outcome.to_dict(), text="", ok=outcome.returncode == 0,
                  exit_code=outcome.returncode,
                  warnings=[stopped] if stopped and ctx.json else [])  # text: printed before the client ran


def add_parsers(sub, common) -> None:
    p = sub.add_parser("connect", help="print a client's configuration for this stack (codex, claude, openai, llm, "
                                       "aider); --write puts it into the client's config file", parents=[common])
    p.add_argument("client", metavar="CLIENT", help=CLIENT_HELP)
    p.add_argument("--model", metavar="NAME", help="a model name of models[] (default: the first)")
    p.add_argument("--write", action="store_true", help="edit the client's config file (codex: config.toml, "
                                                        "claude: settings.json, llm: extra-openai-models.yaml) "
                                                        "with a backup")
    p.add_argument("--env", action="store_true", dest="env_only",
                   help="print only the export lines, for eval \"$(llm-router connect CLIENT --env)\"")
    p.set_defaults(run=lambda ctx, a: connect(ctx, a.client, model=a.model, write=a.write, env_only=a.env_only))
    r = sub.add_parser("run", help="run a client with this stack's configuration set for that one command "
                                   "(llm-router run codex -- exec \"...\"); exits with the client's code",
                       parents=[common])
    r.add_argument("client", metavar="CLIENT", help=CLIENT_HELP)
    r.add_argument("--model", metavar="NAME", help="a model name of models[] (default: the first)")
    r.add_argument("args", nargs=argparse.REMAINDER, metavar="-- ARGS", help="the client's own arguments")
    r.set_defaults(run=lambda ctx, a: run(ctx, a.client, *_client_args(a.args, a.model)))


def _client_args(args: list[str], model: str | None) -> tuple[list[str], str | None]:
    """The client's arguments and the model: argparse's REMAINDER also swallows our own `--model NAME` given
    after CLIENT, so it is taken from the words before `--`."""
    args = list(args)
    while args and args[0] != "--":
        if args[0] == "--model" and len(args) > 1:
            model, args = args[1], args[2:]
        elif args[0].startswith("--model="):
            model, args = args[0].partition("=")[2], args[1:]
        else:
            break
    return (args[1:] if args[:1] == ["--"] else args), model
