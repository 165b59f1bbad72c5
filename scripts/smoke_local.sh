#!/usr/bin/env bash
# The operator flow on this machine's runtime; a thin shell over `llm-router smoke`:
# doctor -> profile set $PROFILE -> service start all -> health -> a chat and a streamed completion -> stop
# (only what it started).
#   scripts/smoke_local.sh [CONFIG] [--live] [--standin] [--model GROUP] [--json]
# CONFIG defaults to $LLM_ROUTER_CONFIG, else config/routertool.yaml.
# PROFILE          profile to test (default: the active one, else default_profile)
# STARTUP_TIMEOUT  readiness timeout per service in seconds (default: each service's startup_timeout)
# Exit 0 only if every step passed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="${LLM_ROUTER_CONFIG:-config/routertool.yaml}"
if [[ $# -gt 0 && "$1" != -* ]]; then config="$1"; shift; fi
args=()
if [[ -n "${PROFILE:-}" ]]; then args+=(--profile "$PROFILE"); fi
if [[ -n "${STARTUP_TIMEOUT:-}" ]]; then args+=(--timeout "$STARTUP_TIMEOUT"); fi
exec uv run --project "$root" llm-router --config "$config" smoke ${args[@]+"${args[@]}"} "$@"
