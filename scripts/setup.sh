#!/usr/bin/env bash
# Set up the gateway's Python environment (.venv) and the system services its tests use.
# Idempotent: a second run reuses what exists. Progress goes to stderr: every long step prints a heartbeat
# line at least every 8 s (elapsed time and the step's latest output line), never a silent stretch.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
source scripts/lib/progress.sh

apt_install() { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; }

# System packages the tests use: a real Redis server and Chromium for the live-view browser test.
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} (apt)"
  step apt apt_install "${need[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # The CPU build of torch lies on local disk; installing it first stops pip from pulling a CUDA build.
  say "installing torch 2.13.0 (CPU build)"
  step pip-upgrade .venv/bin/python -m pip install --upgrade pip
  step pip-torch .venv/bin/pip install torch==2.13.0
fi
say "installing router-gateway with extras [all,test,litellm]"
step pip-install .venv/bin/pip install -e ".[all,test,litellm]"
say "python environment ready: $(.venv/bin/python --version)"
