"""LiteLLM's entry point under llm-router: `python -m llm_router.litellm.launch <litellm flags>`.

The runner (`.router/runtime/bin/litellm`) execs this module instead of LiteLLM's `litellm` script. It runs the
same `litellm.run_server` command with the same flags, and adds three things in gunicorn mode, all in the master:

1. Warm workers. Right before the master forks its first worker, it imports the modules that LiteLLM otherwise
   imports lazily inside each worker, and builds the lazy state a first request would (FastAPI's route and
   endpoint contexts for the chat, Responses and Messages paths, LiteLLM's deferred pydantic schemas; `warm_app`).
   Under gunicorn the master preloads the proxy app and forks every worker from itself, so whatever the master has
   imported, every worker has for free. LiteLLM 1.108.7 leaves about a hundred modules (the MCP server manager, the
   guardrail translations of every provider, tiktoken's default encoding, ...) to a worker's first request, which
   then takes 0.4-1.4 s instead of ~15-50 ms. Warming before the first fork makes the first worker (the one that
   serves the first request after `service start`) warm too, at the price of the warm-up (0.8-1.4 s) on the way to
   readiness, which the collector's deferral (3.) more than pays back: measured in docs/benchmarks.md against the
   bare `litellm` start. `LLM_ROUTER_WARMUP=after-fork` warms right after the first fork instead (the first worker
   then warms up on its own first request, as plain LiteLLM does; every later worker is warm), `off` not at all;
   both exist for the benchmark's A/B.

2. Warm proofs. The master becomes the prover of configs (`prove_worker.serve_requests`, on SIGWINCH, which
   gunicorn otherwise ignores when not daemonized): a proof is a fork of this already-imported master plus the
   config load, well under a second, instead of a fresh interpreter importing LiteLLM (~11-20 s). The config is
   loaded in a detached grandchild, never in the master or a worker, so a config LiteLLM cannot load never reaches
   the arbiter (see prove_worker.py).

3. No cyclic garbage collection while the master imports LiteLLM, and a frozen heap for the workers. The import
   allocates about a million long-lived objects (pydantic models, the route table, the model cost map), and
   Python's collector walks all of them again at every generation-2 collection: on 1.108.7 the import takes
   6.8-8.6 s with the collector on and 4.7-5.9 s without it (1.5-2.7 s less in 4 paired runs); a full collection
   afterwards finds only ~2 200-2 600 unreachable objects (no RSS change; tuples, functions, dicts, types: no file,
   socket or object with a finaliser among them). So in gunicorn mode the master imports with the collector off,
   and right before the first fork it moves everything into the permanent generation (`gc.freeze()`, the recipe
   of Python's gc documentation for fork servers) and turns the collector back on, in itself and in every forked
   child: a worker's collections then skip the inherited heap, which also keeps those pages shared (no
   copy-on-write from the collector's bookkeeping). The unreachable objects stay frozen (collecting them first
   would cost ~0.7 s and freed no measurable RSS). `LLM_ROUTER_IMPORT_GC=plain` leaves the collector alone (the
   benchmark's A/B).

The warm list was measured on LiteLLM 1.108.7 (sys.modules of a worker after its first streamed and non-streamed
request, minus the master's). Other versions may move modules: each import is tried on its own and a missing one
is skipped, so the worst case is the old cost on a first request, never a failed start. The master logs a line
(`llm-router: warmed ...`) saying what it warmed and how long it took, and one (`llm-router: N objects frozen for
the workers`) saying what it froze. In uvicorn mode nothing forks, so nothing is warmed, the collector is left alone
and the command is exactly `litellm`.
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import time

# Roots only: importing one pulls in its parents and dependencies (measured: these load all ~107 modules).
WARM_MODULES = (
    "litellm.litellm_core_utils.default_encoding",  # tiktoken's encoding: the largest single cost
    "litellm.experimental_mcp_client.client",
    "litellm.integrations.shadow_eval_logger",
    "litellm.llms.a2a.chat.guardrail_translation",
    "litellm.llms.anthropic.chat.guardrail_translation",
    "litellm.llms.bedrock.chat.converse_to_openai",
    "litellm.llms.bedrock.passthrough.guardrail_translation",
    "litellm.llms.bedrock.passthrough.transformation",
    "litellm.llms.cohere.rerank.guardrail_translation",
    "litellm.llms.gemini.google_genai.guardrail_translation",
    "litellm.llms.github_copilot.authenticator",
    "litellm.llms.github_copilot.per_user_auth",
    "litellm.llms.litellm_proxy.chat.transformation",
    "litellm.llms.mistral.ocr.guardrail_translation",
    "litellm.llms.openai.completion.guardrail_translation",
    "litellm.llms.openai.embeddings.guardrail_translation",
    "litellm.llms.openai.speech.guardrail_translation",
    "litellm.llms.openai.transcriptions.guardrail_translation",
    "litellm.llms.openai.videos.guardrail_translation",
    "litellm.llms.openai_like.dynamic_config",
    "litellm.llms.pass_through.guardrail_translation",
    "litellm.proxy._experimental.mcp_server.auth.user_api_key_auth_mcp",
    "litellm.proxy._experimental.mcp_server.contracts",
    "litellm.proxy._experimental.mcp_server.elicitation_handler",
    "litellm.proxy._experimental.mcp_server.exceptions",
    "litellm.proxy._experimental.mcp_server.faults.list_outcomes",
    "litellm.proxy._experimental.mcp_server.guardrail_translation",
    "litellm.proxy._experimental.mcp_server.interactions",
    "litellm.proxy._experimental.mcp_server.legacy_callbacks",
    "litellm.proxy._experimental.mcp_server.mcp_server_manager",
    "litellm.proxy._experimental.mcp_server.semantic_tool_filter",
    "litellm.proxy.admin_mcp",
    "litellm.proxy.guardrails.guardrail_helpers",
    "litellm.proxy.hooks.mcp_semantic_filter",
    "litellm.proxy.pass_through_endpoints.common_utils",
    "litellm.proxy.pass_through_endpoints.injected_stream_usage",
    "litellm.proxy.pass_through_endpoints.llm_passthrough_endpoints",
    "litellm.proxy.policy_engine.init_policies",
    "litellm.sandbox.sandbox_tools",
    "litellm.proxy.anthropic_endpoints.endpoints",  # /v1/messages, a lazy feature LiteLLM imports on first use
    "litellm_enterprise.proxy.auth.route_checks",
)


def warm(modules: tuple[str, ...] = WARM_MODULES) -> dict:
    """Import each module that is not imported yet; one that fails is skipped. Returns what happened."""
    started, before = time.perf_counter(), len(sys.modules)
    skipped = []
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure only means this module stays lazy
            skipped.append(f"{name} ({type(exc).__name__})")
    return {"imported": len(sys.modules) - before, "skipped": skipped, "seconds": time.perf_counter() - started}


# Besides imports, a worker's first request builds lazy state of four kinds, all plain in-memory state without I/O on
# a socket, so the master builds it once and every worker inherits it (measured on 1.108.7 with FastAPI 0.165,
# cProfile of first requests): FastAPI's per-route contexts, built as a path is matched against each route in turn
# (~270 ms for the chat path; /v1/messages is one of LiteLLM's lazy features, whose routes are added on the first
# matching request after its middleware matched the path against the eager routes ahead of the feature's slot (almost
# all of them), so matching it builds almost every route's context: ~0.4 s of the warm-up with the collector off, and
# a first Messages request of 45-76 ms instead of 450-700, docs/benchmarks.md); FastAPI's endpoint context (the
# endpoint's source file and line for its error messages: `inspect.getsourcelines` of proxy_server.py, ~12 ms);
# LiteLLM's route normalisation (30 regular expressions compiled on the first request, ~13 ms, lru-cached per path
# after); and the pydantic schemas LiteLLM defers (DEFER_PYDANTIC_BUILD, ~230 ms on a first chat completion). The
# paths are the three APIs our clients speak: chat completions (editors, SDKs, aider), Responses (the Codex CLI) and
# Anthropic Messages (Claude Code).
WARM_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/messages")
WARM_MODELS = (  # the deferred models first requests built (a name another version lacks is skipped)
    "litellm.types.proxy.auth.user_api_key_auth.UserAPIKeyAuth",
    "litellm.proxy.auth.network.TrustedProxyConfig",
    "litellm.proxy.auth.network.NetworkContext",
    "litellm.proxy.auth.resolvers.models.CredentialRef",
    "litellm.proxy.auth.resolvers.models.UserIdentity",
    "litellm.proxy.auth.resolvers.models.Principal",
    "litellm.types.services.ServiceLoggerPayload",
    "litellm.types.router.GenericLiteLLMParams",
    "litellm.types.llms.openai.ResponsesAPIResponse",
    "litellm.types.responses.main.OutputText",
    "litellm.types.responses.main.GenericResponseOutputItem",
    "litellm.types.llms.openai.ResponseAPIUsage",
    "litellm.types.llms.openai.InputTokensDetails",
    "litellm.types.llms.openai.OutputTokensDetails",
    "litellm.types.router.ModelGroupInfo",
    "litellm.proxy.hooks.batch_enqueued_tokens._BatchResponseView",
    # a chat completion answered through the Responses bridge (a Codex model behind CLIProxyAPIPlus)
    "litellm.types.utils.Message",
    "litellm.types.utils.Choices",
    "litellm.types.utils.ModelResponse",
    "litellm.types.utils.Usage",
    "litellm.types.utils.PromptTokensDetailsWrapper",
    "litellm.types.utils.CompletionTokensDetailsWrapper",
    "openai.types.responses.response_output_message.ResponseOutputMessage",
)


def _walk_routes(routes, prefix: str = ""):
    """(full path, route) of every route, through the included routers FastAPI 0.165 keeps unflattened
    (`original_router`, `include_context.prefix`)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walk_routes(inner.routes, prefix + (getattr(route.include_context, "prefix", "") or ""))
        else:
            yield prefix + getattr(route, "path", ""), route


def _attempt(skipped: list[str], label: str, action) -> object:
    """`action()`, or None with `label (ExceptionType)` added to `skipped`: a warm-up step that fails stays lazy."""
    try:
        return action()
    except Exception as exc:  # noqa: BLE001 - any failure only means this piece stays lazy
        skipped.append(f"{label} ({type(exc).__name__})")
        return None


def _match(app, path: str) -> None:
    """Match `path` (POST) against the app's routes in order, as a request does, which builds each route's context
    on the way."""
    from starlette.routing import Match

    scope = {"type": "http", "path": path, "method": "POST", "headers": [], "query_string": b"", "root_path": "",
             "app": app}
    for route in app.router.routes:
        if route.matches(scope)[0] == Match.FULL:
            return


def _endpoint_contexts(app, paths: tuple[str, ...]) -> int:
    """FastAPI's endpoint context of each path's POST endpoint; how many paths have one (/v1/messages has none
    until LiteLLM's middleware registers its lazy feature on the first matching request)."""
    from fastapi import routing as fastapi_routing

    extract = fastapi_routing._extract_endpoint_context  # private, cached by FastAPI per endpoint function
    found = set()
    for path, route in _walk_routes(app.router.routes):
        if path in paths and isinstance(route, fastapi_routing.APIRoute) and "POST" in route.methods:
            extract(route.endpoint)
            found.add(path)
    return len(found)


def warm_app(paths: tuple[str, ...] = WARM_PATHS, models: tuple[str, ...] = WARM_MODELS) -> dict:
    """Build the lazy state of each path (see above) and complete each deferred model's schema; each step is tried
    on its own, and one that fails is skipped (named in the result). Returns what happened."""
    started, skipped, built = time.perf_counter(), [], 0

    def proxy_app():
        from litellm.proxy.proxy_server import app

        return app

    def normalizer():
        from litellm.proxy.auth.auth_utils import normalize_request_route

        return normalize_request_route

    app = _attempt(skipped, "routes", proxy_app)
    normalize = _attempt(skipped, "route normalisation", normalizer)
    for path in paths:
        if app is not None:
            _attempt(skipped, path, lambda: _match(app, path))
        if normalize is not None:
            _attempt(skipped, f"normalise {path}", lambda: normalize(path))
    routes = 0 if app is None else _attempt(skipped, "endpoint contexts", lambda: _endpoint_contexts(app, paths)) or 0
    def rebuild(name: str) -> bool:
        module, _, attr = name.rpartition(".")
        getattr(importlib.import_module(module), attr).model_rebuild()
        return True

    for name in models:
        built += bool(_attempt(skipped, name, lambda: rebuild(name)))
    return {"paths": len(paths), "routes": routes, "models": built, "skipped": skipped,
            "seconds": time.perf_counter() - started}


def warm_all() -> dict:
    """Imports, then the app's lazy state: one summary for the log line. (Measured: leaving tiktoken's encoding, the
    largest import at ~120 ms, to after the first fork makes the first request 180 ms instead of ~50: it is on a
    chat completion's path.)"""
    result = warm()
    app = warm_app()
    return {"imported": result["imported"], "paths": app["paths"], "routes": app["routes"], "models": app["models"],
            "skipped": result["skipped"] + app["skipped"], "seconds": result["seconds"] + app["seconds"]}


WARMUP_ENV = "LLM_ROUTER_WARMUP"  # before-fork (default), after-fork, off
IMPORT_GC_ENV = "LLM_ROUTER_IMPORT_GC"  # frozen (default), plain


def defer_gc() -> bool:
    """Collector off until the first fork (see the module's doc; `spawn_worker` freezes the heap right before it),
    and on again after every fork, in the child and in the parent (so a master whose first fork somehow bypasses
    `spawn_worker` still gets it back, unfrozen). False when LLM_ROUTER_IMPORT_GC=plain."""
    if os.environ.get(IMPORT_GC_ENV, "frozen") == "plain":
        return False
    gc.disable()
    os.register_at_fork(after_in_child=gc.enable, after_in_parent=gc.enable)
    return True


def _log_warm(result: dict, when: str) -> None:
    skipped = f"; skipped {len(result['skipped'])}: {', '.join(result['skipped'])}" if result["skipped"] else ""
    app = (f", {result['paths']} paths ({result['routes']} routed before the first request), {result['models']} models"
           if "routes" in result else "")
    print(f"llm-router: warmed {result['imported']} modules{app} {when} in {result['seconds']:.2f} s{skipped}",
          file=sys.stderr, flush=True)


def config_arg(argv: list[str]) -> str | None:
    """The value of LiteLLM's `--config`/`-c` flag in `argv`."""
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def install_warmup(config_path: str | None = None, defer_collector: bool = False) -> bool:
    """In the gunicorn master (the app is preloaded by then): warm the imports once around the first fork (see the
    module's doc), and, with `config_path`, serve warm proofs on SIGWINCH from the folder beside it. With
    `defer_collector` (gunicorn mode), the collector is off from now until the first fork, right before which the
    heap is frozen (`defer_gc`).

    Returns False when gunicorn is not importable (uvicorn mode on a machine without it): nothing to do."""
    try:
        from gunicorn.arbiter import Arbiter
    except ImportError:
        return False
    from . import prove_worker

    gc_deferred = defer_collector and defer_gc()
    when = os.environ.get(WARMUP_ENV, "before-fork")
    original = Arbiter.spawn_worker
    folder = prove_worker.folder_for(config_path) if config_path else None

    def spawn_worker(arbiter):
        Arbiter.spawn_worker = original  # once per process (a forked worker never comes back here)
        if folder is not None:
            try:
                prove_worker.write_hello(folder)
            except OSError as exc:
                print(f"llm-router: warm proofs are off ({exc})", file=sys.stderr, flush=True)
        if when == "before-fork":
            _log_warm(warm_all(), "before the first worker")
        if gc_deferred:
            gc.freeze()  # the collector comes back on after the fork (defer_gc), in the master also right below
            with contextlib.suppress(OSError):
                print(f"llm-router: {gc.get_freeze_count()} objects frozen for the workers", file=sys.stderr,
                      flush=True)
        try:
            pid = original(arbiter)  # returns in the master only: the forked worker leaves it through SystemExit
        finally:
            if gc_deferred:
                gc.enable()
        if when == "after-fork":
            _log_warm(warm_all(), "for the next workers")
        return pid

    Arbiter.spawn_worker = spawn_worker
    if folder is not None:
        plain_winch = Arbiter.handle_winch

        def handle_winch(arbiter):
            fds = [*getattr(arbiter, "PIPE", ())]
            with contextlib.suppress(Exception):
                fds += [listener.fileno() for listener in getattr(arbiter, "LISTENERS", ())]
            prove_worker.serve_requests(folder, tuple(fds))
            plain_winch(arbiter)

        Arbiter.handle_winch = handle_winch
    return True


def main() -> None:
    argv = sys.argv[1:]
    # gunicorn mode only: in uvicorn mode nothing forks, so nothing would turn the collector back on
    install_warmup(config_arg(argv), defer_collector="--run_gunicorn" in argv)
    from litellm import run_server  # LiteLLM's own console entry point (click), with our argv

    sys.argv[0] = "litellm"
    sys.exit(run_server())


if __name__ == "__main__":
    main()
