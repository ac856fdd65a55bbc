#!/usr/bin/env bash
# Build the R-2 image (ROCm by default, or the CUDA variant) with a pinned, versioned tag.
#
# The base image (tag@digest) comes from stack.toml through scripts/stack_versions.py, the same file the CI
# install and the parity test read. Lite (default): the synthetic-weights config, configs and tokenizers only
# (megabytes). --full: the real-weights config too (~40 GB of weights).
#
# The Hub token reaches the build only as the BuildKit secret `hf_token` (from a file or from the
# HF_TOKEN variable); it is never a build argument, never printed and never stored in a layer.
set -euo pipefail

IMAGE_NAME_DEFAULT="r2-swallow-artifact"
LITE_CONFIGS="r2-swallow-7b-synthetic"
FULL_CONFIGS="r2-swallow-7b-synthetic,r2-swallow-7b"

usage() {
    cat <<EOF
usage: $(basename "$0") [rocm|cuda] [--full] [--tag REF] [--token-file FILE] [--configs LIST] [--dry-run] [-- DOCKER_BUILD_ARGS...]

Builds the image from the repository's Dockerfile on the base image stack.toml pins (tag@digest).

  rocm|cuda          variant (default: rocm, the MI300X image)
  --full             bake in real weights too (configs $FULL_CONFIGS; ~40 GB); tag suffix -full
                     (default: lite, $LITE_CONFIGS: model configs and tokenizers only, megabytes)
  --tag REF          image reference (default: \$R2_IMAGE or $IMAGE_NAME_DEFAULT:<version>-<variant>[-full])
  --token-file FILE  Hub token file for gated models (default: \$HF_TOKEN_FILE, else
                     ~/.cache/huggingface/token when it exists; \$HF_TOKEN is used when no file is found)
  --configs LIST     comma-separated configs whose models are baked in (overrides --full's list)
  --dry-run          print the docker command instead of running it
EOF
}

repo_root() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd
}

# The package version, read from artifact/__init__.py so the tag follows releases.
project_version() {
    local root="$1"
    sed -nE 's/^__version__[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "$root/artifact/__init__.py" | head -n 1
}

# Default image reference for a variant: name:<version>-<variant>[-full] (never `latest`).
image_ref() {
    local variant="$1" full="${2:-0}" root suffix=""
    root="$(repo_root)"
    [[ "$full" == 1 ]] && suffix="-full"
    printf '%s:%s-%s%s\n' "${IMAGE_NAME:-$IMAGE_NAME_DEFAULT}" "$(project_version "$root")" "$variant" "$suffix"
}

# The base image of a variant, repo:tag@digest, from stack.toml (the one place that pins it).
base_image() {
    local variant="$1" root
    root="$(repo_root)"
    "${PYTHON:-python3}" "$root/scripts/stack_versions.py" image "$variant"
}

# The BuildKit secret option; empty when there is no token (public models need none).
secret_option() {
    local token_file="$1"
    if [[ -n "$token_file" ]]; then
        [[ -r "$token_file" ]] || { echo "docker_build: token file '$token_file' is not readable" >&2; return 1; }
        printf -- '--secret=id=hf_token,src=%s\n' "$token_file"
    elif [[ -n "${HF_TOKEN:-}" ]]; then
        printf -- '--secret=id=hf_token,env=HF_TOKEN\n'
    fi
}

default_token_file() {
    if [[ -n "${HF_TOKEN_FILE:-}" ]]; then
        printf '%s\n' "$HF_TOKEN_FILE"
    elif [[ -z "${HF_TOKEN:-}" && -r "$HOME/.cache/huggingface/token" ]]; then
        printf '%s\n' "$HOME/.cache/huggingface/token"
    fi
}

main() {
    local variant="rocm" tag="${R2_IMAGE:-}" token_file configs="" full=0 dry_run=0
    token_file="$(default_token_file)"
    local extra=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            rocm|cuda) variant="$1"; shift ;;
            --full) full=1; shift ;;
            --tag) tag="${2:?--tag needs an image reference}"; shift 2 ;;
            --token-file) token_file="${2:?--token-file needs a file}"; shift 2 ;;
            --configs) configs="${2:?--configs needs a comma-separated list}"; shift 2 ;;
            --dry-run) dry_run=1; shift ;;
            -h|--help) usage; return 0 ;;
            --) shift; extra=("$@"); break ;;
            *) echo "docker_build: unknown argument '$1' (expected rocm, cuda or an option)" >&2; usage >&2; return 2 ;;
        esac
    done
    local root
    root="$(repo_root)"
    tag="${tag:-$(image_ref "$variant" "$full")}"
    if [[ -z "$configs" ]]; then
        configs="$LITE_CONFIGS"
        [[ "$full" == 1 ]] && configs="$FULL_CONFIGS"
    fi
    local base
    base="$(base_image "$variant")" || { echo "docker_build: cannot read the base image from stack.toml" >&2; return 1; }
    if [[ "$tag" != *:* || "$tag" == *:latest ]]; then
        echo "docker_build: tag '$tag' must carry an explicit version, not 'latest'" >&2
        return 2
    fi

    local commit="" dirty=""
    if git -C "$root" rev-parse HEAD >/dev/null 2>&1; then
        commit="$(git -C "$root" rev-parse HEAD)"
        dirty="$([[ -n "$(git -C "$root" status --porcelain)" ]] && echo 1 || echo 0)"
    fi
    local secret
    secret="$(secret_option "$token_file")"
    [[ -n "$secret" ]] || echo "docker_build: no Hub token given; gated models (Llama 2) will fail to pre-fetch" >&2

    local cmd=(docker build --file "$root/Dockerfile" --tag "$tag"
        --build-arg "VARIANT=$variant" --build-arg "${variant^^}_BASE_IMAGE=$base"
        --build-arg "R2_CONFIGS=$configs" --build-arg "R2_IMAGE_REF=$tag"
        --build-arg "R2_GIT_COMMIT=$commit" --build-arg "R2_GIT_DIRTY=$dirty")
    if [[ -n "$secret" ]]; then cmd+=("$secret"); fi
    cmd+=("${extra[@]}" "$root")

    if [[ "$dry_run" == 1 ]]; then
        printf '%q ' env DOCKER_BUILDKIT=1 "${cmd[@]}"
        printf '\n'
        return 0
    fi
    command -v docker >/dev/null || { echo "docker_build: docker is not installed" >&2; return 1; }
    DOCKER_BUILDKIT=1 "${cmd[@]}"
    echo "docker_build: built $tag"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
