#!/usr/bin/env bash
# GPU smoke test for vLLM serving a sparse-MoE model, with no model download:
# a tiny Mixtral config (random weights via --load-format dummy) and the SmolLM2 tokenizer.
#
#   deploy/gpu/smoke.sh
#
# Steps: venv with the CUDA build of vLLM (skipped when RG_GPU_PYTHON names a python that already has
# vllm) -> tiny MoE checkpoint dir (config.json + tokenizer, no weights) -> vLLM server on loopback ->
# wait for GET /v1/models -> one chat completion -> tokens/s. Outputs are random tokens (random weights):
# this checks the serving path (MoE kernels, expert parallel flags, OpenAI API), not quality.
#
# Environment:
#   RG_GPU_PYTHON   python with vllm installed (default: build deploy/gpu/venv with `pip install vllm`)
#   RG_GPU_VLLM     pip spec for vllm (default: vllm)
#   RG_GPU_PORT     server port (default 8200)
#   RG_GPU_TP       --tensor-parallel-size (default 1); RG_GPU_EP=1 adds --enable-expert-parallel
#   RG_TOKENIZER    a directory with tokenizer files (default deploy/cpu/models/smollm2-dense, which
#                   deploy/cpu/experts.sh setup writes; else the tokenizer of the vllm package's own test
#                   assets is not used: set this)
#   RG_GPU_DTYPE    --dtype (default bfloat16); RG_GPU_EXTRA_ARGS: more server flags (word-split)
#                   e.g. "--gpu-memory-utilization 0.5"; a CPU dry run of this script:
#                   RG_GPU_PYTHON=deploy/cpu/venv/bin/python RG_GPU_DTYPE=float32 RG_GPU_EXTRA_ARGS=--enforce-eager
#   RG_GPU_EXPERTS / RG_GPU_TOPK / RG_GPU_LAYERS / RG_GPU_HIDDEN   tiny-model shape (8 / 2 / 4 / 512)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WORK="${RG_GPU_WORK:-$HERE/.state}"
PORT="${RG_GPU_PORT:-8200}"
TP="${RG_GPU_TP:-1}"
TOKENIZER="${RG_TOKENIZER:-$REPO/deploy/cpu/models/smollm2-dense}"
MODEL_DIR="$WORK/tiny-mixtral"
LOG="$WORK/vllm-smoke.log"
mkdir -p "$WORK"

log() { printf '[gpu-smoke %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# 1. vLLM (CUDA build)
if [[ -n "${RG_GPU_PYTHON:-}" ]]; then
  PY="$RG_GPU_PYTHON"
else
  PY="$HERE/venv/bin/python"
  if [[ ! -f "$HERE/venv/.vllm-installed" ]]; then
    log "venv: creating $HERE/venv and installing ${RG_GPU_VLLM:-vllm} (CUDA wheels, several GB)"
    python3 -m venv "$HERE/venv"
    "$PY" -m pip install --disable-pip-version-check "${RG_GPU_VLLM:-vllm}" >"$WORK/pip.log" 2>&1 &
    pip_pid=$!
    while kill -0 "$pip_pid" 2>/dev/null; do
      sleep 15; log "  ... pip: $(tail -n 1 "$WORK/pip.log" | cut -c1-100)"
    done
    wait "$pip_pid" || { tail -n 30 "$WORK/pip.log" >&2; die "pip install failed"; }
    touch "$HERE/venv/.vllm-installed"
  fi
fi
"$PY" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" >&2 \
  || die "$PY cannot import vllm"

# 2. tiny Mixtral checkpoint: config + tokenizer, no weights (--load-format dummy fills them randomly)
[[ -f "$TOKENIZER/tokenizer.json" ]] || die "no tokenizer.json in $TOKENIZER (run deploy/cpu/experts.sh setup or set RG_TOKENIZER)"
mkdir -p "$MODEL_DIR"
for f in tokenizer.json tokenizer_config.json special_tokens_map.json chat_template.jinja; do
  if [[ -f "$TOKENIZER/$f" ]]; then cp "$TOKENIZER/$f" "$MODEL_DIR/"; fi
done
RG_GPU_EXPERTS="${RG_GPU_EXPERTS:-8}" RG_GPU_TOPK="${RG_GPU_TOPK:-2}" RG_GPU_LAYERS="${RG_GPU_LAYERS:-4}" \
RG_GPU_HIDDEN="${RG_GPU_HIDDEN:-512}" "$PY" - "$MODEL_DIR" "$TOKENIZER" <<'EOF'
import json, os, sys
out, tok = sys.argv[1], sys.argv[2]
vocab = len(json.load(open(os.path.join(tok, "tokenizer.json")))["model"]["vocab"])
hidden = int(os.environ["RG_GPU_HIDDEN"])
cfg = {
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
    "vocab_size": max(vocab, 49152), "hidden_size": hidden, "intermediate_size": hidden * 2,
    "num_hidden_layers": int(os.environ["RG_GPU_LAYERS"]), "num_attention_heads": 8, "num_key_value_heads": 4,
    "head_dim": hidden // 8, "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": False, "sliding_window": None,
    "num_local_experts": int(os.environ["RG_GPU_EXPERTS"]), "num_experts_per_tok": int(os.environ["RG_GPU_TOPK"]),
    "router_aux_loss_coef": 0.0, "output_router_logits": False, "bos_token_id": 1, "eos_token_id": 2,
    "torch_dtype": "bfloat16",
}
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
print(f"tiny Mixtral: {cfg['num_hidden_layers']} layers, {cfg['num_local_experts']} experts top-{cfg['num_experts_per_tok']}, hidden {hidden}", file=sys.stderr)
EOF

# 3. server
extra=()
[[ "${RG_GPU_EP:-0}" == "1" ]] && extra+=(--enable-expert-parallel)
log "starting vLLM on 127.0.0.1:$PORT (TP=$TP ${extra[*]:-}) log: $LOG"
t0=$SECONDS
VLLM_NO_USAGE_STATS=1 HF_HUB_OFFLINE=1 "$PY" -m vllm.entrypoints.openai.api_server \
  --host 127.0.0.1 --port "$PORT" --model "$MODEL_DIR" --served-model-name tiny-moe \
  --load-format dummy --dtype "${RG_GPU_DTYPE:-bfloat16}" --max-model-len 2048 \
  --tensor-parallel-size "$TP" "${extra[@]}" ${RG_GPU_EXTRA_ARGS:-} >"$LOG" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
until curl -fsS --max-time 2 "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1; do
  kill -0 "$server" 2>/dev/null || { tail -n 40 "$LOG" >&2; die "vLLM exited during startup"; }
  (( SECONDS - t0 < ${RG_GPU_START_TIMEOUT:-480} )) || { tail -n 40 "$LOG" >&2; die "vLLM not up in time"; }
  log "  ... waiting for vLLM ($((SECONDS - t0))s): $(tail -n 1 "$LOG" | cut -c1-100)"
  sleep 5
done
log "vLLM up after $((SECONDS - t0))s"

# 4. one chat completion (ignore_eos so random weights still produce the full length) + tokens/s
"$PY" - "$PORT" <<'EOF'
import json, sys, time, urllib.request
port = sys.argv[1]
def chat(max_tokens):
    body = json.dumps({"model": "tiny-moe", "messages": [{"role": "user", "content": "Hello, who are you?"}],
                       "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        out = json.load(r)
    return out, time.perf_counter() - t
chat(8)  # warm-up
out, dt = chat(256)
n = out["usage"]["completion_tokens"]
print(f"chat completion: {n} tokens in {dt:.2f}s = {n / dt:.1f} tokens/s (single request, greedy)")
print("sample:", repr(out["choices"][0]["message"]["content"][:80]))
EOF
log "smoke OK"
