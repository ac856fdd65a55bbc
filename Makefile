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
.PHONY: help setup smoke test plan reproduce fetch clean

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

test: setup ## The test suite (offline; data from DATA_MIRROR)
	HF_HUB_OFFLINE=1 R2_TEST_DATA_MIRROR=$(DATA_MIRROR) $(PY) -m pytest -q

plan: setup ## What `make reproduce` would run, with its time and cost estimate
	$(ARTIFACT) plan $(CONFIG)

fetch: setup ## Download and verify the data files of dataset/manifest.toml into the cache
	$(ARTIFACT) fetch

reproduce: setup ## The real experiment on this host's GPU (CONFIG=r2-swallow-7b)
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { \
	  echo "make reproduce needs a GPU (ROCm or CUDA) visible to torch, and none is. On this machine run 'make smoke'" \
	       "(the pipeline on the tiny model pair, CPU only); on a GPU host use 'make docker-reproduce'."; exit 2; }
	$(ARTIFACT) run $(CONFIG) --output $(RUNS)

clean: ## Remove the virtual environments and caches (run directories are kept)
	rm -rf $(VENV) .pytest_cache
