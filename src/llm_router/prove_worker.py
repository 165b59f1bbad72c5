"""Runs inside the LiteLLM runtime interpreter: load each config file the way `litellm --validate_config` does,
importing LiteLLM once for all of them, and print one JSON line per file: {"file", "ok", "models", "error"}.

`python -m llm_router.prove_worker FILE [FILE ...]` (started by `prove.py`, never imported by llm-router itself).
"""
from __future__ import annotations

import asyncio
import json
import sys


def main(files: list[str]) -> int:
    from litellm.proxy.proxy_server import ProxyConfig

    for file in files:
        try:
            _, model_list, _ = asyncio.run(ProxyConfig().load_config(router=None, config_file_path=file))
            verdict = {"file": file, "ok": True, "models": len(model_list), "error": None}
        except Exception as exc:  # any failure to load is the verdict we report
            verdict = {"file": file, "ok": False, "models": 0, "error": f"{type(exc).__name__}: {exc}"[:2000]}
        print("LLM_ROUTER_PROVE " + json.dumps(verdict), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
