#!/usr/bin/env bash
# Secrets hygiene of this checkout; a thin shell over `llm-router check security`.
#   scripts/security_check.sh [--fix] [--json]
# Exit 0 when there is no finding, 1 otherwise.
#
# As a git pre-push hook (git passes the remote's name and URL, which are ignored here):
#   ln -s ../../scripts/security_check.sh .git/hooks/pre-push
set -euo pipefail
root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
flags=()
for arg in "$@"; do
  case "$arg" in
    --fix|--json|--debug) flags+=("$arg") ;;
    *) ;;  # a pre-push hook's <remote> <url>
  esac
done
cd "$root"
exec uv run --project "$root" llm-router check security ${flags[@]+"${flags[@]}"}
