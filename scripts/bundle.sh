#!/usr/bin/env bash
# Make the artifact-evaluation tarball: the committed source, configs, dataset, templates and README
# (git archive, so run directories, caches and untracked files never get in), plus IMAGE.txt, which
# records the image references, their base images and the commit they were built from.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/docker_build.sh
source "$SCRIPT_DIR/docker_build.sh"

bundle_usage() {
    cat <<EOF
usage: $(basename "$0") [--output FILE] [--allow-dirty]

Writes FILE (default: dist/r2-artifact-<version>-<commit>.tar.gz) from the committed tree (HEAD).

  --output FILE   where to write the .tar.gz
  --allow-dirty   bundle HEAD even when the checkout has uncommitted changes (they are left out)
EOF
}

# The base image references pinned in the Dockerfile's ARG lines.
dockerfile_bases() {
    sed -nE 's/^ARG (ROCM_BASE_IMAGE|CUDA_BASE_IMAGE)=(.+)$/\1=\2/p' "$1"
}

# Local image id for REF when docker and the image are here; "not built on this machine" otherwise.
local_image_id() {
    local ref="$1" id=""
    if command -v docker >/dev/null; then
        id="$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)"
    fi
    printf '%s\n' "${id:-not built on this machine}"
}

write_image_record() {
    local root="$1" commit="$2" variant ref
    echo "# Images for this artifact (build: scripts/docker_build.sh rocm|cuda; run: scripts/docker_reproduce.sh)"
    echo "commit=$commit"
    for variant in rocm cuda; do
        ref="$(image_ref "$variant")"
        echo "image_${variant}=$ref"
        echo "image_${variant}_id=$(local_image_id "$ref")"
    done
    dockerfile_bases "$root/Dockerfile"
}

bundle_main() {
    local output="" allow_dirty=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --output) output="${2:?--output needs a file}"; shift 2 ;;
            --allow-dirty) allow_dirty=1; shift ;;
            -h|--help) bundle_usage; return 0 ;;
            *) echo "bundle: unknown argument '$1'" >&2; bundle_usage >&2; return 2 ;;
        esac
    done
    local root
    root="$(repo_root)"
    git -C "$root" rev-parse HEAD >/dev/null 2>&1 \
        || { echo "bundle: $root is not a git checkout with a commit; the bundle is made from HEAD" >&2; return 1; }
    if [[ -n "$(git -C "$root" status --porcelain)" ]]; then
        if [[ "$allow_dirty" == 0 ]]; then
            echo "bundle: uncommitted changes in $root; commit them, or pass --allow-dirty to bundle HEAD without them" >&2
            return 1
        fi
        echo "bundle: warning: uncommitted changes are not in the bundle" >&2
    fi

    local commit short version prefix
    commit="$(git -C "$root" rev-parse HEAD)"
    short="$(git -C "$root" rev-parse --short=12 HEAD)"
    version="$(project_version "$root")"
    prefix="r2-artifact-${version}-${short}"
    output="${output:-$root/dist/$prefix.tar.gz}"
    mkdir -p "$(dirname "$output")"

    local staging
    staging="$(mktemp -d)"
    trap 'rm -rf "$staging"' RETURN
    git -C "$root" archive --format=tar --prefix="$prefix/" --output="$staging/bundle.tar" HEAD -- . \
        ':(exclude)runs' ':(exclude).cache' ':(exclude)dist' ':(exclude)build'
    mkdir -p "$staging/$prefix"
    write_image_record "$root" "$commit" >"$staging/$prefix/IMAGE.txt"
    tar --append --file="$staging/bundle.tar" --directory="$staging" --owner=0 --group=0 "$prefix/IMAGE.txt"
    gzip -9 -n --stdout "$staging/bundle.tar" >"$output"
    echo "bundle: wrote $output"
    if command -v sha256sum >/dev/null; then
        sha256sum "$output"
    fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    bundle_main "$@"
fi
