#!/usr/bin/env bash
# Preflight checks of an llm-router setup; a thin shell over `llm-router doctor`.
#   scripts/doctor.sh [CONFIG] [--json]
# CONFIG defaults to $LLM_ROUTER_CONFIG, else config/routertool.yaml. Exit 0 when nothing fails (warnings
# allowed), 1 when a check fails, 2 on a usage error.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="${LLM_ROUTER_CONFIG:-config/routertool.yaml}"
if [[ $# -gt 0 && "$1" != -* ]]; then config="$1"; shift; fi
exec uv run --project "$root" llm-router --config "$config" doctor "$@"
