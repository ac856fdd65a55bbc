#!/usr/bin/env bash
# Run the R-2 image on this host's GPUs, writing results to a mounted folder owned by the caller.
#
# Works with Docker and Podman ($R2_CONTAINER_ENGINE, else whichever is installed, Docker first).
# AMD (MI300X): the device flags AMD documents for vLLM containers (/dev/kfd, /dev/dri, video group,
# --ipc=host, SYS_PTRACE, seccomp=unconfined); NVIDIA: --gpus all (Docker) or the CDI device (Podman).
# Shared memory comes from --ipc=host alone: Podman refuses --ipc=host together with --shm-size.
# GPU_DEVICES=0,1 selects GPUs (HIP_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES in the container). The results
# volume carries :Z so that SELinux hosts (Fedora, RHEL) let the container write it.
# Lite (default): the fixed-text verdict on synthetic weights, real tokenizers and model configs. --full /
# FULL=1: the full image's real-weights run too, then tokens/s of real vs synthetic weights side by side.
# The container runs as the caller's uid:gid, so every file it writes belongs to the caller.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/docker_build.sh
source "$SCRIPT_DIR/docker_build.sh"

LITE_COMMAND=(run r2-swallow-7b-synthetic)
FULL_COMMAND=(run r2-swallow-7b)

reproduce_usage() {
    cat <<USAGE
usage: $(basename "$0") [--gpu auto|amd|nvidia] [--full] [--image REF] [--results DIR] [--dry-run] [-- ARTIFACT_ARGS...]

Runs \`artifact ARTIFACT_ARGS\` (default: ${LITE_COMMAND[*]}) in the image's working folder /results,
with DIR mounted as /results/runs: run directories land in DIR exactly as a run outside Docker puts them
in runs/.

  --gpu KIND     accelerator: auto (default; /dev/kfd means AMD, a working nvidia-smi means NVIDIA),
                 amd or nvidia; \$R2_GPU sets the default
  --full         (or FULL=1) the full image: after the lite run, \`${FULL_COMMAND[*]}\` on real weights,
                 then tokens/s of real vs synthetic weights (scripts/compare_weights.py)
  --image REF    image (default: \$R2_IMAGE or the tag scripts/docker_build.sh gives the variant)
  --results DIR  host folder for run directories (default: ./runs)
  --dry-run      print the container commands instead of running them

Environment: GPU_DEVICES=0,1 (GPUs to use; default all), R2_CONTAINER_ENGINE=docker|podman.
USAGE
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

# docker or podman: $R2_CONTAINER_ENGINE, else the first one installed (docker when neither is: dry runs).
container_engine() {
    if [[ -n "${R2_CONTAINER_ENGINE:-}" ]]; then
        case "$R2_CONTAINER_ENGINE" in
            docker|podman) echo "$R2_CONTAINER_ENGINE" ;;
            *) echo "docker_reproduce: R2_CONTAINER_ENGINE must be docker or podman, got '$R2_CONTAINER_ENGINE'" >&2
               return 2 ;;
        esac
    elif command -v docker >/dev/null; then
        echo docker
    elif command -v podman >/dev/null; then
        echo podman
    else
        echo docker
    fi
}

# Numeric groups of the AMD device nodes: the host's render group rarely exists by name in the image.
device_groups() {
    local node
    for node in "${R2_KFD_DEVICE:-/dev/kfd}" "${R2_DRI_DIR:-/dev/dri}"/renderD*; do
        if [[ -e "$node" ]]; then stat -c '%g' "$node"; fi
    done | sort -u
}

# GPU_DEVICES must be GPU indices separated by commas (or empty: all GPUs).
check_gpu_devices() {
    local devices="$1"
    if [[ -z "$devices" || "$devices" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
        return 0
    fi
    echo "docker_reproduce: GPU_DEVICES='$devices' must be GPU indices separated by commas, e.g. 0 or 0,1" >&2
    return 2
}

gpu_flags() {
    local gpu="$1" engine="${2:-docker}" devices="${3:-}" gid
    case "$gpu" in
        amd)
            # AMD's documented flags for vLLM on MI300X; --ipc=host gives vLLM the host's shared memory.
            printf '%s\n' --device=/dev/kfd --device=/dev/dri --group-add video --ipc=host \
                --cap-add=SYS_PTRACE --security-opt seccomp=unconfined
            for gid in $(device_groups); do printf '%s\n' --group-add "$gid"; done
            if [[ -n "$devices" ]]; then printf '%s\n' --env "HIP_VISIBLE_DEVICES=$devices"; fi
            ;;
        nvidia)
            if [[ "$engine" == podman ]]; then
                printf '%s\n' --device nvidia.com/gpu=all --ipc=host
            else
                printf '%s\n' --gpus all --ipc=host
            fi
            # PCI bus order, so that CUDA's indices are nvidia-smi's (the noise guards read nvidia-smi).
            if [[ -n "$devices" ]]; then
                printf '%s\n' --env CUDA_DEVICE_ORDER=PCI_BUS_ID --env "CUDA_VISIBLE_DEVICES=$devices"
            fi
            ;;
        *)
            echo "docker_reproduce: unknown accelerator '$gpu' (expected amd or nvidia)" >&2
            return 2
            ;;
    esac
}

reproduce_main() {
    local gpu="${R2_GPU:-auto}" image="${R2_IMAGE:-}" results="runs" dry_run=0 full="${FULL:-0}"
    local args=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --gpu) gpu="${2:?--gpu needs auto, amd or nvidia}"; shift 2 ;;
            --full) full=1; shift ;;
            --image) image="${2:?--image needs an image reference}"; shift 2 ;;
            --results) results="${2:?--results needs a folder}"; shift 2 ;;
            --dry-run) dry_run=1; shift ;;
            -h|--help) reproduce_usage; return 0 ;;
            --) shift; args=("$@"); break ;;
            *) echo "docker_reproduce: unknown argument '$1'" >&2; reproduce_usage >&2; return 2 ;;
        esac
    done
    if [[ "$full" != 0 && "$full" != 1 ]]; then
        echo "docker_reproduce: FULL must be 0 or 1, got '$full'" >&2
        return 2
    fi
    local devices="${GPU_DEVICES:-}"
    check_gpu_devices "$devices" || return 2
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
    image="${image:-$(image_ref "$variant" "$full")}"
    local engine
    engine="$(container_engine)" || return 2

    local flags
    mapfile -t flags < <(gpu_flags "$gpu" "$engine" "$devices")
    [[ ${#flags[@]} -gt 0 ]] || return 2
    local digest=""
    if [[ "$dry_run" == 1 ]]; then
        results="$(realpath -m "$results")"
    else
        command -v "$engine" >/dev/null || { echo "docker_reproduce: $engine is not installed" >&2; return 1; }
        if ! digest="$("$engine" image inspect --format '{{.Id}}' "$image" 2>/dev/null)"; then
            local how="scripts/docker_build.sh $variant"
            [[ "$full" == 1 ]] && how+=" --full"
            echo "docker_reproduce: image '$image' not found; build it with $how" >&2
            return 1
        fi
        # Created here, not by the container engine, which would make it root's.
        mkdir -p "$results"
        results="$(cd "$results" && pwd)"
    fi

    # Rootless Podman maps container uids to sub-uids: keep-id makes the caller's uid the container's.
    if [[ "$engine" == podman && "$(id -u)" != 0 ]]; then flags+=(--userns=keep-id); fi
    local base=("$engine" run --rm "${flags[@]}" --user "$(id -u):$(id -g)"
        --volume "$results:/results/runs:Z" --workdir /results
        --env "R2_IMAGE_REF=$image" --env "R2_IMAGE_DIGEST=$digest" --env "GPU_DEVICES=$devices")
    local commands=()
    if [[ ${#args[@]} -gt 0 ]]; then
        commands=("$(printf '%q ' "${base[@]}" "$image" "${args[@]}")")
    else
        commands=("$(printf '%q ' "${base[@]}" "$image" "${LITE_COMMAND[@]}")")
        if [[ "$full" == 1 ]]; then
            commands+=("$(printf '%q ' "${base[@]}" "$image" "${FULL_COMMAND[@]}")")
            commands+=("$(printf '%q ' "${base[@]}" --entrypoint python3 "$image" \
                /opt/r2/src/scripts/compare_weights.py /results/runs)")
        fi
    fi
    if [[ "$dry_run" == 1 ]]; then
        printf '%s\n' "${commands[@]}"
        return 0
    fi
    echo "docker_reproduce: $gpu GPU${devices:+ $devices}, $engine, image $image, results in $results"
    local command
    for command in "${commands[@]}"; do
        eval "$command"
    done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    reproduce_main "$@"
fi
