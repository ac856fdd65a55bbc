#!/usr/bin/env bash
# Run the R-2 image on this host's GPUs, writing results to a mounted folder owned by the caller.
#
# AMD (MI300X): the ROCm device flags AMD documents for vLLM containers. NVIDIA: --gpus all.
# The container runs as the caller's uid:gid, so every file it writes belongs to the caller.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/docker_build.sh
source "$SCRIPT_DIR/docker_build.sh"

DEFAULT_COMMAND=(run r2-swallow-7b)

reproduce_usage() {
    cat <<EOF
usage: $(basename "$0") [--gpu auto|amd|nvidia] [--image REF] [--results DIR] [--dry-run] [-- ARTIFACT_ARGS...]

Runs \`artifact ARTIFACT_ARGS\` (default: ${DEFAULT_COMMAND[*]}) in the image's working folder /results,
with DIR mounted as /results/runs: run directories land in DIR exactly as a run outside Docker puts them
in runs/.

  --gpu KIND     accelerator: auto (default; /dev/kfd means AMD, a working nvidia-smi means NVIDIA),
                 amd or nvidia; \$R2_GPU sets the default
  --image REF    image (default: \$R2_IMAGE or the tag scripts/docker_build.sh gives the variant)
  --results DIR  host folder for run directories (default: ./runs)
  --dry-run      print the docker command instead of running it
EOF
}

# "amd", "nvidia", or nothing when this host has no accelerator a container can use.
detect_gpu() {
    local kfd="${R2_KFD_DEVICE:-/dev/kfd}"
    if [[ -e "$kfd" ]]; then
        echo amd
    elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        echo nvidia
    fi
}

# Numeric groups of the AMD device nodes: the host's render group rarely exists by name in the image.
device_groups() {
    local node
    for node in "${R2_KFD_DEVICE:-/dev/kfd}" "${R2_DRI_DIR:-/dev/dri}"/renderD*; do
        if [[ -e "$node" ]]; then stat -c '%g' "$node"; fi
    done | sort -u
}

gpu_flags() {
    local gpu="$1" gid
    case "$gpu" in
        amd)
            printf '%s\n' --device=/dev/kfd --device=/dev/dri --group-add video --ipc=host \
                --security-opt seccomp=unconfined --shm-size 16g
            for gid in $(device_groups); do printf '%s\n' --group-add "$gid"; done
            ;;
        nvidia)
            printf '%s\n' --gpus all --ipc=host --shm-size 16g
            ;;
        *)
            echo "docker_reproduce: unknown accelerator '$gpu' (expected amd or nvidia)" >&2
            return 2
            ;;
    esac
}

reproduce_main() {
    local gpu="${R2_GPU:-auto}" image="${R2_IMAGE:-}" results="runs" dry_run=0
    local args=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --gpu) gpu="${2:?--gpu needs auto, amd or nvidia}"; shift 2 ;;
            --image) image="${2:?--image needs an image reference}"; shift 2 ;;
            --results) results="${2:?--results needs a folder}"; shift 2 ;;
            --dry-run) dry_run=1; shift ;;
            -h|--help) reproduce_usage; return 0 ;;
            --) shift; args=("$@"); break ;;
            *) echo "docker_reproduce: unknown argument '$1'" >&2; reproduce_usage >&2; return 2 ;;
        esac
    done
    [[ ${#args[@]} -gt 0 ]] || args=("${DEFAULT_COMMAND[@]}")
    if [[ "$gpu" == auto ]]; then
        gpu="$(detect_gpu)"
        if [[ -z "$gpu" ]]; then
            echo "docker_reproduce: no GPU found (no /dev/kfd, no working nvidia-smi)." >&2
            echo "  On a machine without an accelerator, run 'make smoke' instead; or force --gpu amd|nvidia." >&2
            return 1
        fi
    fi
    local variant="rocm"
    [[ "$gpu" == nvidia ]] && variant="cuda"
    image="${image:-$(image_ref "$variant")}"

    local flags
    mapfile -t flags < <(gpu_flags "$gpu")
    [[ ${#flags[@]} -gt 0 ]] || return 2
    local digest=""
    if [[ "$dry_run" == 1 ]]; then
        results="$(realpath -m "$results")"
    else
        command -v docker >/dev/null || { echo "docker_reproduce: docker is not installed" >&2; return 1; }
        digest="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null)" \
            || { echo "docker_reproduce: image '$image' not found; build it with scripts/docker_build.sh $variant" >&2; return 1; }
        # Created here, not by docker, which would make it root's.
        mkdir -p "$results"
        results="$(cd "$results" && pwd)"
    fi

    local cmd=(docker run --rm "${flags[@]}" --user "$(id -u):$(id -g)"
        --volume "$results:/results/runs" --workdir /results
        --env "R2_IMAGE_REF=$image" --env "R2_IMAGE_DIGEST=$digest"
        "$image" "${args[@]}")
    if [[ "$dry_run" == 1 ]]; then
        printf '%q ' "${cmd[@]}"
        printf '\n'
        return 0
    fi
    echo "docker_reproduce: $gpu GPU, image $image, results in $results"
    "${cmd[@]}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    reproduce_main "$@"
fi
