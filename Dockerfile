# syntax=docker/dockerfile:1.7
# The R-2 reproduction image: the project installed on top of a validated vLLM image, with the models
# (at their pinned revisions) and the data manifest baked in, so a run needs no network.
#
# Base images, pinned to exact tags (never `latest`):
# - ROCm (default): rocm/vllm:rocm6.4.1_vllm_0.10.1_20250909 = ROCm 6.4.1, vLLM 0.10.1, PyTorch 2.7.0.
#   Listed in AMD's "vLLM inference performance testing version history"
#   (https://rocm.docs.amd.com/en/docs-7.1.0/how-to/rocm-for-ai/inference/benchmark-docker/previous-versions/vllm-history.html)
#   and among the Docker Hub tags quoted in https://github.com/ROCm/amdgpu-docs/issues/88.
#   vLLM >= 0.10 runs the V1 engine and honours min_tokens, which the forced output length relies on.
# - CUDA (VARIANT=cuda): vllm/vllm-openai:v0.10.1.1, the same vLLM release line.
#
# Build with scripts/docker_build.sh rocm|cuda: it passes the Hub token as the BuildKit secret
# `hf_token` (needed only for gated models such as Llama 2); the token never enters a layer.
ARG ROCM_BASE_IMAGE=rocm/vllm:rocm6.4.1_vllm_0.10.1_20250909
ARG CUDA_BASE_IMAGE=vllm/vllm-openai:v0.10.1.1
ARG VARIANT=rocm

FROM ${ROCM_BASE_IMAGE} AS base-rocm
ARG ROCM_BASE_IMAGE
ENV R2_BASE_IMAGE=${ROCM_BASE_IMAGE}

FROM ${CUDA_BASE_IMAGE} AS base-cuda
ARG CUDA_BASE_IMAGE
ENV R2_BASE_IMAGE=${CUDA_BASE_IMAGE}

# base-${VARIANT} names one of the two stages above, not an image: the tag rule does not apply.
# hadolint ignore=DL3006
FROM base-${VARIANT} AS final
ARG VARIANT
# Comma-separated experiment configs whose models are baked in.
ARG R2_CONFIGS="r2-swallow-7b"
ARG R2_IMAGE_REF=""
ARG R2_GIT_COMMIT=""
ARG R2_GIT_DIRTY=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Paths are fixed and world-readable so the container can run as the caller's uid (results owned by
# them); USER/LOGNAME keep getpass working for a uid that has no /etc/passwd entry (torch, Triton).
ENV R2_VARIANT=${VARIANT} \
    R2_IMAGE_REF=${R2_IMAGE_REF} \
    R2_GIT_COMMIT=${R2_GIT_COMMIT} \
    R2_GIT_DIRTY=${R2_GIT_DIRTY} \
    HF_HOME=/opt/r2/hf \
    R2_CACHE_DIR=/opt/r2/cache \
    HOME=/home/r2 \
    USER=r2 \
    LOGNAME=r2 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# uid 10001 is repeated in the secret mount below: --mount options do not expand build arguments.
RUN groupadd -g 10001 r2 \
    && useradd --no-log-init -l -m -u 10001 -g 10001 -s /bin/bash r2 \
    && mkdir -p /opt/r2/src /opt/r2/hf /opt/r2/cache /results \
    && chown r2:r2 /opt/r2/hf /opt/r2/cache \
    && chmod 1777 /results /home/r2

WORKDIR /opt/r2/src
COPY pyproject.toml README.md ./
COPY artifact/ artifact/
COPY scripts/ scripts/
COPY dataset/ dataset/
COPY report_templates/ report_templates/
RUN bash scripts/install_in_image.sh --project /opt/r2/src --python python3 \
    && artifact --help > /dev/null

USER 10001:10001

# Models at the revisions pinned in the configs; real weights whole, synthetic ones config + tokenizer.
RUN --mount=type=secret,id=hf_token,uid=10001,required=false \
    python3 scripts/prefetch_models.py --config "${R2_CONFIGS}" --token-file /run/secrets/hf_token \
    && chmod -R a+rwX "${HF_HOME}"

# The data manifest (corpora, tokenizer files), downloaded and sha256-checked into R2_CACHE_DIR.
RUN artifact fetch \
    && chmod -R a+rwX "${R2_CACHE_DIR}" /home/r2

# From here on nothing may reach the Hub: a missing file is an error, not a silent download.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1

WORKDIR /results
ENTRYPOINT ["artifact"]
CMD ["--help"]
