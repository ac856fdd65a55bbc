#!/usr/bin/env bash
# Install the project on top of an image's own torch / vLLM / transformers without replacing them.
#
# Every package already installed is pinned to its installed version through a constraints file, so
# pip can only add what is missing (the few pure-Python dependencies of the project); a dependency that
# would need a different torch, vLLM or transformers makes pip fail instead of silently swapping the
# image's validated builds. Afterwards the versions of the protected packages are compared, to be sure.
set -euo pipefail

PROTECTED_DEFAULT="torch vllm transformers triton pytorch-triton-rocm tokenizers numpy"

usage() {
    cat <<EOF
usage: $(basename "$0") [--project DIR] [--python PYTHON] [--constraints-only FILE]

Installs the project in DIR (default: the repository holding this script) in editable mode into
PYTHON's environment (default: \$PYTHON or python3), pinning every installed package.

  --project DIR            project folder with pyproject.toml
  --python PYTHON          interpreter whose environment is used
  --constraints-only FILE  write the constraints file and stop (for checks)
  -h, --help               this message

Environment: PROTECTED_PACKAGES (default: "$PROTECTED_DEFAULT") are verified unchanged after install.
EOF
}

# stdin: `pip list --format=freeze`; stdout: name==version constraints, one a line.
# Lines pip rejects in a constraints file (editables, URLs, comments) are dropped, and so is the
# project itself so that it can be (re)installed.
constraints_from_freeze() {
    local project_name="${1:-}"
    local normalised_project
    normalised_project="$(normalise_name "$project_name")"
    local line name
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ "$line" =~ ^([A-Za-z0-9][A-Za-z0-9._-]*)==([^[:space:]@]+)$ ]] || continue
        name="${BASH_REMATCH[1]}"
        if [[ "$(normalise_name "$name")" != "$normalised_project" ]]; then
            printf '%s\n' "$line"
        fi
    done
}

# PEP 503 normalisation: case-insensitive, runs of - _ . are equal.
normalise_name() {
    local name="${1,,}"
    printf '%s' "$name" | sed -E 's/[-_.]+/-/g'
}

# stdin: `pip list --format=freeze`; stdout: name==version of the protected packages present.
protected_versions() {
    local protected
    protected=" $(normalise_name "${PROTECTED_PACKAGES:-$PROTECTED_DEFAULT}") "
    local line
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ "$line" =~ ^([A-Za-z0-9][A-Za-z0-9._-]*)== ]] || continue
        if [[ "$protected" == *" $(normalise_name "${BASH_REMATCH[1]}") "* ]]; then
            printf '%s\n' "$line"
        fi
    done | sort
}

project_name_of() {
    local pyproject="$1/pyproject.toml"
    [[ -f "$pyproject" ]] || { echo "install_in_image: no pyproject.toml in $1" >&2; return 1; }
    sed -nE 's/^name[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "$pyproject" | head -n 1
}

main() {
    local project python constraints_only=""
    project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    python="${PYTHON:-python3}"
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --project) project="${2:?--project needs a folder}"; shift 2 ;;
            --python) python="${2:?--python needs an interpreter}"; shift 2 ;;
            --constraints-only) constraints_only="${2:?--constraints-only needs a file}"; shift 2 ;;
            -h|--help) usage; return 0 ;;
            *) echo "install_in_image: unknown argument '$1'" >&2; usage >&2; return 2 ;;
        esac
    done
    command -v "$python" >/dev/null || { echo "install_in_image: interpreter '$python' not found" >&2; return 1; }

    local name freeze_before constraints
    name="$(project_name_of "$project")"
    freeze_before="$("$python" -m pip list --format=freeze --disable-pip-version-check)"
    constraints="${constraints_only:-$(mktemp --suffix=.txt)}"
    constraints_from_freeze "$name" <<<"$freeze_before" >"$constraints"
    echo "install_in_image: pinned $(wc -l <"$constraints") installed packages in $constraints"
    [[ -n "$constraints_only" ]] && return 0

    "$python" -m pip install --no-cache-dir --disable-pip-version-check -c "$constraints" -e "$project"
    rm -f "$constraints"

    local before after changed
    before="$(protected_versions <<<"$freeze_before")"
    after="$("$python" -m pip list --format=freeze --disable-pip-version-check | protected_versions)"
    changed="$(changed_pins "$before" "$after")"
    if [[ -n "$changed" ]]; then
        echo "install_in_image: the install replaced or removed protected packages (before -> now missing):" >&2
        echo "$changed" >&2
        return 1
    fi
    echo "install_in_image: installed $name; protected packages unchanged: $(tr '\n' ' ' <<<"$before")"
}

# Lines of BEFORE (name==version) that are not in AFTER: a package replaced or removed.
# Packages that AFTER adds are fine: that is pip filling in what the image lacked.
changed_pins() {
    local before="$1" after="$2" line
    while IFS= read -r line; do
        if [[ -n "$line" ]] && ! grep -qxF -- "$line" <<<"$after"; then
            printf '%s\n' "$line"
        fi
    done <<<"$before"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
