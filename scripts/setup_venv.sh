#!/usr/bin/env bash
# Build a virtual environment from a lock file, exactly: every package at the locked version, every file
# checked against the locked sha256, nothing resolved at install time; then the project, editable.
#
# Usage: scripts/setup_venv.sh [--installer uv|pip] VENV_DIR LOCK_FILE
#   e.g. scripts/setup_venv.sh .venv requirements/cpu.lock   (`make setup` calls it)
#
# Where torch comes from (the locks pin the CPU build, e.g. torch==2.13.0+cpu; PyPI only has the CUDA build,
# several GB with its nvidia-* wheels, and the lock's hashes refuse it):
#   1. the PyTorch CPU index ($TORCH_INDEX, default https://download.pytorch.org/whl/cpu) when it answers;
#   2. else a local folder of wheels: $TORCH_FIND_LINKS, or pip's own find-links setting;
#   3. else it stops and says what to do. The chosen source and the wheel's size are printed.
# pip's configured find-links and extra index URLs are passed on to uv, so both installers see the same files.
#
# The installer: uv (default; a hash-pinned uv from requirements/tools.lock, kept in $TOOLS_VENV) or pip.
# Writes VENV_DIR/r2-lock.json (lock file, its sha256, installer, torch source): the run's environment.json
# records it, so every report says which lock its environment was built from.
set -euo pipefail

USAGE="usage: scripts/setup_venv.sh [--installer uv|pip] VENV_DIR LOCK_FILE   (e.g. .venv requirements/cpu.lock)"
INSTALLER=${INSTALLER:-uv}
positional=()
while (($#)); do
    case "$1" in
        -h|--help) echo "$USAGE"; exit 0 ;;
        --installer) INSTALLER=${2:-}; shift 2 || { echo "$USAGE" >&2; exit 2; } ;;
        -*) echo "unknown option $1" >&2; echo "$USAGE" >&2; exit 2 ;;
        *) positional+=("$1"); shift ;;
    esac
done
if ((${#positional[@]} != 2)); then echo "$USAGE" >&2; exit 2; fi
case "$INSTALLER" in uv|pip) ;; *) echo "--installer must be uv or pip, got '$INSTALLER'" >&2; exit 2 ;; esac
VENV_DIR=${positional[0]}
LOCK=${positional[1]}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH_INDEX=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}
TOOLS_VENV=${TOOLS_VENV:-$ROOT/.venv-tools}
name=$(basename "$VENV_DIR")

say() { printf '[setup %s] %s\n' "$name" "$*"; }
die() { printf '[setup %s] error: %s\n' "$name" "$*" >&2; exit 1; }

[[ -f "$LOCK" ]] || die "lock file $LOCK not found (run \`make lock\` to create it)"
lock_python=$(sed -n 's/^# python-version: *//p' "$LOCK" | head -n 1)
have_python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
    || die "cannot run PYTHON=$PYTHON"
if [[ -n "$lock_python" && "$have_python" != "$lock_python" ]]; then
    die "$LOCK was made for CPython $lock_python and $PYTHON is $have_python: its wheels and hashes would not fit. \
Give PYTHON=python$lock_python (e.g. make setup PYTHON=python$lock_python)."
fi

pip_config() { "$PYTHON" -m pip config get "global.$1" 2>/dev/null || true; }
read -r -a find_links <<< "${TORCH_FIND_LINKS:-} ${PIP_FIND_LINKS:-$(pip_config find-links)}"
read -r -a extra_indexes <<< "${PIP_EXTRA_INDEX_URL:-$(pip_config extra-index-url)}"

# --- where the CPU torch comes from --------------------------------------------------------------
torch_version=$(sed -n 's/^torch==\([^ ]*\).*/\1/p' "$LOCK" | head -n 1)
torch_source="none (the lock has no torch)"
if [[ -n "$torch_version" ]]; then
    wheel=""
    for folder in "${find_links[@]}"; do
        folder=${folder#file://}
        for candidate in "$folder"/torch-"$torch_version"-cp"${have_python/./}"-*.whl; do
            [[ -f "$candidate" ]] && wheel=$candidate && break 2
        done
    done
    index_ok=0
    if [[ -n "$TORCH_INDEX" ]] && "$PYTHON" - "$TORCH_INDEX/torch/" <<'PY' 2>/dev/null; then index_ok=1; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=10).close()
PY
    if ((index_ok)); then
        torch_source="PyTorch CPU index $TORCH_INDEX"
        extra_indexes=("$TORCH_INDEX" "${extra_indexes[@]}")
        say "torch==$torch_version: from $torch_source (the CPU wheel, about 180-200 MB for Linux x86_64)"
    elif [[ -n "$wheel" ]]; then
        torch_source="local wheel $wheel"
        say "torch==$torch_version: ${TORCH_INDEX:-the PyTorch CPU index} does not answer; using $wheel ($(du -m "$wheel" | cut -f1) MB)"
    else
        die "torch==$torch_version is the CPU build: it is on the PyTorch CPU index (${TORCH_INDEX:-not set}), which \
does not answer from this machine, and in no local wheel folder (${find_links[*]:-none}). PyPI has only the CUDA \
build (several GB with its nvidia-* wheels), which the lock's hashes refuse. Either let this machine reach \
$TORCH_INDEX, or copy torch-$torch_version-cp${have_python/./}-*.whl from a machine that can into a folder \
and run again with TORCH_FIND_LINKS=that-folder."
    fi
fi

# --- install ---------------------------------------------------------------------------------------
started=$(date +%s)
source_args=()
for folder in "${find_links[@]}"; do source_args+=(--find-links "$folder"); done
for index in "${extra_indexes[@]}"; do source_args+=(--extra-index-url "$index"); done

if [[ "$INSTALLER" == uv ]]; then
    if [[ ! -x "$TOOLS_VENV/bin/uv" ]]; then
        say "installing uv (hash-pinned, requirements/tools.lock) into $TOOLS_VENV"
        "$PYTHON" -m venv "$TOOLS_VENV"
        "$TOOLS_VENV/bin/python" -m pip install --quiet --require-hashes --no-deps -r "$ROOT/requirements/tools.lock"
    fi
    UV=("$TOOLS_VENV/bin/uv" --quiet)
    say "creating $VENV_DIR with $("$PYTHON" --version 2>&1) (uv venv, replaces any old one)"
    "${UV[@]}" venv --clear --seed --python "$PYTHON" "$VENV_DIR"
    say "installing $LOCK with uv ($(grep -c '^[a-z0-9]' "$LOCK") packages, hashes required)"
    # unsafe-best-match: the extra indexes hold only some versions of a package; pick across all of them.
    # No --compile-bytecode: modules are compiled on first import, only those used (pip compiles all of them).
    "${UV[@]}" pip install --python "$VENV_DIR/bin/python" --require-hashes --no-deps \
        --index-strategy unsafe-best-match "${source_args[@]}" -r "$LOCK"
    "${UV[@]}" pip install --python "$VENV_DIR/bin/python" --no-deps -e "$ROOT"
else
    say "creating $VENV_DIR with $("$PYTHON" --version 2>&1) (python -m venv --clear)"
    "$PYTHON" -m venv --clear "$VENV_DIR"
    PIP=("$VENV_DIR/bin/python" -m pip --quiet)
    say "installing $LOCK with pip ($(grep -c '^[a-z0-9]' "$LOCK") packages, hashes required)"
    "${PIP[@]}" install --require-hashes --no-deps "${source_args[@]}" -r "$LOCK"
    "${PIP[@]}" install --no-deps -e "$ROOT"
fi

lock_sha=$(sha256sum "$LOCK" | cut -d' ' -f1)
lock_rel=$(realpath --relative-to="$ROOT" "$LOCK" 2>/dev/null || echo "$LOCK")
"$VENV_DIR/bin/python" - "$VENV_DIR/r2-lock.json" "$lock_rel" "$lock_sha" "$INSTALLER" "$torch_source" <<'PY'
import json, sys, time
path, lock, sha, installer, torch_source = sys.argv[1:]
record = {"lock": lock, "sha256": sha, "installer": installer, "torch_source": torch_source,
          "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
with open(path, "w", encoding="utf-8") as handle:
    json.dump(record, handle, indent=2)
    handle.write("\n")
PY
say "done in $(( $(date +%s) - started )) s: $lock_rel (sha256 ${lock_sha:0:12}) in $VENV_DIR"
