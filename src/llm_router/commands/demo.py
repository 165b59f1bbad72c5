"""`demo`: the zero-setup look at the whole stack (see `llm_router.demo`)."""
from __future__ import annotations

import sys

from ..output import Result, table
from . import Ctx
from .status import status_line
from .usage import text as usage_text


def _progress(line: str) -> None:
    sys.stderr.write(f"demo: {line}\n")
    sys.stderr.flush()


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def _added(value: float) -> str:
    return f"{value:+.0f} ms"


def render(report) -> str:
    from .. import stack

    out = [f"llm-router demo: a throwaway stack in {report.root}",
           f"CLIProxyAPIPlus is the stand-in (a Codex-like and a Copilot-like account), LiteLLM is real, profile "
           f"{report.profile}; model group {report.group}: {' -> '.join(report.deployments)}", ""]
    if report.status:
        out += ["== status", table([status_line(stack.ServiceStatus(**s)) for s in report.status]), ""]
    if report.chat:
        c = report.chat
        out += [f"== chat completion: POST {report.base_url}/chat/completions, model {c['model']}",
                f"answered by {c['deployment']} in {_ms(c['ms'])}: {c['content']!r}", ""]
    if report.stream:
        s = report.stream
        out += [f"== streamed completion: model {s['model']}, stream: true",
                f"{s['chunks']} chunks in {_ms(s['ms'])}: {s['content']!r}", ""]
    for title, path, call in (("streamed Responses API call (Codex CLI)", "/responses", report.responses),
                              ("streamed Anthropic Messages call (Claude Code)", "/messages", report.messages)):
        if call:
            out += [f"== {title}: POST {report.base_url}{path}, model {call['model']}, stream: true",
                    f"answered by {call['deployment']} in {_ms(call['ms'])}: {call['events']} events "
                    f"({call['first_event']} ... {call['last_event']}): {call['content']!r}", ""]
    if report.failover:
        f = report.failover
        out += [f"== quota exhaustion: {f['fault']} (injected with POST /_standin/fault)",
                table([["healthy", f"median of {f['healthy_samples']}", _ms(f["healthy_ms"]), "",
                        report.deployments[0]],
                       ["during the 429", "1 request", _ms(f["ms"]), _added(f["added_ms"]), f["answered_by"]],
                       ["next request", "1 request", _ms(f["next_ms"]), _added(f["next_added_ms"]),
                        f["next_answered_by"]]],
                      ["REQUEST", "", "LATENCY", "ADDED", "ANSWERED BY"]),
                f"the first deployment got {f['first_tried']} request(s) and answered 429; LiteLLM moved on to the "
                "next one at once and now skips the first for its 60 s cooldown", ""]
    if report.events:
        rows = [[e.get("timestamp", "")[11:23], e.get("event"), e.get("service") or "-", e.get("result") or "-",
                 _detail(e.get("detail"))] for e in report.events]
        out += [f"== event log ({report.root}/.router/runtime/events.log)",
                table(rows, ["TIME", "EVENT", "SERVICE", "RESULT", "DETAIL"]), ""]
    if report.usage:
        u = report.usage
        waited = "" if u["complete"] else f" (incomplete: {u['expected_ok']} answered requests expected)"
        out += [f"== usage: what LiteLLM's callback wrote to the sandbox's store (`llm-router usage --by deployment`)"
                f"{waited}", usage_text({**u, "per_hour": []}), ""]
    if report.kept:
        out += ["== still running (--keep); try it with any OpenAI client:", *report.keep_hints]
    elif report.stopped:
        out += ["== stop", "; ".join(f"{o['service']} {o['result']}" for o in report.stopped)
                + f"; removed {report.root}"]
    if report.problems:
        out += ["", "demo FAILED: " + "; ".join(report.problems)]
    else:
        out += ["", "demo passed"]
    return "\n".join(out)


def _detail(detail) -> str:
    if not isinstance(detail, dict):
        return "" if detail is None else str(detail)
    return ", ".join(f"{k}={v}" for k, v in detail.items() if k not in ("notes",) and v not in (None, "", []))[:90]


def demo(ctx: Ctx, keep: bool = False, port: int | None = None, timeout: float | None = None) -> Result:
    from .. import demo as demo_mod

    report = demo_mod.run(keep=keep, litellm_port=port or demo_mod.DEFAULT_LITELLM_PORT, timeout=timeout,
                          notify=_quiet if ctx.json else _progress)
    data = report.to_dict()
    if not keep:
        data.pop("api_key", None)
    return Result("demo", data=data, text=render(report), ok=report.ok)


def _quiet(_: str) -> None:
    return None


def add_parsers(sub, common) -> None:
    p = sub.add_parser("demo", help="the whole stack offline with no accounts, in a temporary folder: status, a chat "
                                    "and a streamed completion, a 429 answered through the fallback, the event log, "
                                    "the usage per deployment",
                       parents=[common])
    p.add_argument("--keep", action="store_true", help="leave it running and print OPENAI_BASE_URL/OPENAI_API_KEY")
    p.add_argument("--port", type=int, metavar="N", help="preferred LiteLLM port (default 4000; a free port is used "
                                                         "when it is taken)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="readiness timeout per service")
    p.set_defaults(run=lambda ctx, a: demo(ctx, keep=a.keep, port=a.port, timeout=a.timeout))
