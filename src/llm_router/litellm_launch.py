"""LiteLLM's entry point under llm-router: `python -m llm_router.litellm_launch <litellm flags>`.

The runner (`.router/runtime/bin/litellm`) execs this module instead of LiteLLM's `litellm` script. It runs the
same `litellm.run_server` command with the same flags, and adds one thing in gunicorn mode: right after the master
forks its first worker, it imports the modules that LiteLLM otherwise imports lazily inside each worker.

Why: under gunicorn the master preloads the proxy app and forks every worker from itself, so whatever the master
has imported, every later worker has for free. LiteLLM 1.108.7 leaves about a hundred modules (the MCP server
manager, the guardrail translations of every provider, tiktoken's default encoding, ...) to a worker's first
request, which then takes 0.4-1.4 s instead of ~50 ms. A live profile switch serves traffic from a freshly forked
worker, so without this every switch stalls the first requests the new worker takes.

Why after the first fork and not before: warming takes 0.4-0.8 s, and before the fork it would delay the first
worker, so `service start`, by as much. After the fork it runs beside the first worker's boot on another core. That first worker warms up on its own first request, exactly as plain LiteLLM
does; the workers a switch, a memory recycle or a hung-boot replacement adds are forked warm.

The list was measured on LiteLLM 1.108.7 (sys.modules of a worker after its first streamed and non-streamed
request, minus the master's). Other versions may move modules: each import is tried on its own and a missing one
is skipped, so the worst case is the old cost on a first request, never a failed start. The master logs one line
(`llm-router: warmed ...`) saying how many imported and how long it took. In uvicorn mode nothing forks, so
nothing is warmed and the command is exactly `litellm`.
"""
from __future__ import annotations

import importlib
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


def install_warmup() -> bool:
    """Warm the gunicorn master once, right after it forked its first worker (the app is preloaded by then).

    Returns False when gunicorn is not importable (uvicorn mode on a machine without it): nothing to do."""
    try:
        from gunicorn.arbiter import Arbiter
    except ImportError:
        return False
    original = Arbiter.spawn_worker

    def spawn_worker(arbiter):
        pid = original(arbiter)  # returns in the master only: the forked worker leaves it through SystemExit
        Arbiter.spawn_worker = original  # once per process
        result = warm()
        skipped = f"; skipped {len(result['skipped'])}: {', '.join(result['skipped'])}" if result["skipped"] else ""
        print(f"llm-router: warmed {result['imported']} modules for the next workers in {result['seconds']:.2f} s"
              f"{skipped}", file=sys.stderr, flush=True)
        return pid

    Arbiter.spawn_worker = spawn_worker
    return True


def main() -> None:
    install_warmup()
    from litellm import run_server  # LiteLLM's own console entry point (click), with our argv

    sys.argv[0] = "litellm"
    sys.exit(run_server())


if __name__ == "__main__":
    main()
