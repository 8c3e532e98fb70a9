#!/usr/bin/env bash
# The capacity bench against two real vLLM-CPU experts that do not share cores (issue 18's vLLM figure).
#
#   eval/capacity/vllm_pinned.sh [eval.capacity.bench args]   e.g. --rate 0.5 --seconds 120 --outside 48
#
# smollm2-dense (the better expert, the one outside clients load) runs on core RG_DENSE_CPU (0) together
# with the bench, its outside clients and the gateway; smollm2-moe runs alone on core RG_MOE_CPU (1)
# (taskset; the servers' own OpenMP binding stays off). Outside load then queues at dense without
# taking the other model's core, as it would with each model on its own machine. Unrelated processes of
# the host still share both cores: the bench records the load average of each run.
# Ports RG_DENSE_PORT (8301) and RG_MOE_PORT (8302) must be free; both servers are stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export RG_DENSE_PORT="${RG_DENSE_PORT:-8301}" RG_MOE_PORT="${RG_MOE_PORT:-8302}" RG_WITH_GEMMA=0
DENSE_CPU="${RG_DENSE_CPU:-0}"
MOE_CPU="${RG_MOE_CPU:-1}"
PY="${PYTHON:-python}"
for port in "$RG_DENSE_PORT" "$RG_MOE_PORT"; do
  if curl -fsS --max-time 2 "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; then
    echo "port $port already serves a model: stop it first (its cores are not pinned)" >&2
    exit 1
  fi
done
trap 'deploy/cpu/experts.sh stop smollm2-dense smollm2-moe' EXIT
taskset -c "$DENSE_CPU" deploy/cpu/experts.sh start smollm2-dense
taskset -c "$MOE_CPU" deploy/cpu/experts.sh start smollm2-moe
taskset -c "$DENSE_CPU" "$PY" -m eval.capacity.bench \
  --vllm "http://127.0.0.1:$RG_DENSE_PORT/v1,http://127.0.0.1:$RG_MOE_PORT/v1" "$@"
