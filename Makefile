# Thin and strict: every target calls the Python CLI. User values reach the recipes as
# environment variables (export below) and are passed quoted, never spliced into shell text.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python

RUN ?= runs/$(notdir $(basename $(CORPUS)))
CORPUS ?=
MODEL ?=
SHARDS ?=
PROFILE ?=
WAIT ?=
REDO ?=
SKIP_BAD_ROWS ?=
TEXT_FIELDS ?= text
DEVICE ?=
COMPUTE_DTYPE ?=
PROMPT_NAME ?=
PROMPT ?=
NORMALIZE ?=
MAX_TOKENS_PER_BATCH ?=
REMOTE ?=
DEST ?= $(RUN)
SSH_CONFIG ?=
FLOAT16 ?=
MAP ?=
QUESTIONS ?=
SEED ?=
PCA_DIMS ?=
DEMO_ROWS ?= 2000
DEMO_RUN ?= runs/demo
export RUN CORPUS MODEL SHARDS PROFILE WAIT REDO SKIP_BAD_ROWS TEXT_FIELDS DEMO_ROWS DEMO_RUN TORCH \
  DEVICE COMPUTE_DTYPE PROMPT_NAME PROMPT NORMALIZE MAX_TOKENS_PER_BATCH REMOTE DEST SSH_CONFIG FLOAT16 \
  MAP QUESTIONS SEED PCA_DIMS

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "$$TORCH"
	$(VENV)/bin/pip install -q -e '.[demo,dev]'
	touch $@

setup: $(VENV)/.done ## Create or refresh .venv (TORCH=torch==2.13.0; see README for CUDA/MPS)

demo: setup ## Embed Wikipedia Vital Articles end to end into runs/demo (DEMO_ROWS=all for 10,033)
	$(PY) -m jobs demo --run "$$DEMO_RUN" --rows "$$DEMO_ROWS"

test: setup test-services ## Run the tests (real model, HDF5, submitit, one-node Slurm cluster, sshd)
	HF_HUB_OFFLINE=1 $(PY) -m pytest

test-services: ## Install and start what the tests use for real: openssh-server, rsync, the Slurm test cluster
	bash tests/services/install.sh
	bash slurm/testcluster/setup.sh

submit: setup ## Plan and submit: CORPUS=... MODEL=... SHARDS=... RUN=... PROFILE=site|local [WAIT=1] [MAP=1]
	$(PY) -m jobs submit --run "$$RUN" --corpus "$$CORPUS" --model "$$MODEL" --shards "$$SHARDS" \
	  --profile "$$PROFILE" --text-fields "$$TEXT_FIELDS" --redo "$$REDO" --device "$$DEVICE" \
	  --compute-dtype "$$COMPUTE_DTYPE" --prompt-name "$$PROMPT_NAME" --prompt "$$PROMPT" \
	  --max-tokens-per-batch "$$MAX_TOKENS_PER_BATCH" \
	  --questions "$$QUESTIONS" --seed "$$SEED" --pca-dims "$$PCA_DIMS" $${MAP:+--map} \
	  $${WAIT:+--wait} $${SKIP_BAD_ROWS:+--skip-bad-rows} $${NORMALIZE:+--normalize-embeddings}

resubmit: setup ## Submit only the missing or failed shards of RUN=... and a new merge [WAIT=1]
	$(PY) -m jobs resubmit --run "$$RUN" --profile "$$PROFILE" --redo "$$REDO" $${WAIT:+--wait}

stage-model: setup ## On the login node: download MODEL=... into the profile's model_cache [PROFILE=...]
	$(PY) -m jobs stage-model --model "$$MODEL" --profile "$$PROFILE"

status: setup ## Shards done / running / missing and the repair command: RUN=...
	$(PY) -m jobs status --run "$$RUN"

merge: setup ## Verify the shards of RUN=... and write embeddings.h5 now
	$(PY) -m jobs merge --run "$$RUN"

fetch: setup ## On the laptop: REMOTE=host:/path/to/run DEST=runs/wiki [FLOAT16=1] [SSH_CONFIG=file]
	$(PY) -m jobs fetch --remote "$$REMOTE" --dest "$$DEST" --ssh-config "$$SSH_CONFIG" $${FLOAT16:+--float16}

export-float16: setup ## On the cluster: write RUN/embeddings.float16.h5 (half the bytes) for FLOAT16=1 fetches
	$(PY) -m jobs export-float16 --run "$$RUN"

map: setup ## Knowledge map of RUN=...: map.h5, map.html, map.png [QUESTIONS=file.json] [SEED=42] [PCA_DIMS=32|0]
	$(PY) -m jobs map --run "$$RUN" --questions "$$QUESTIONS" --seed "$$SEED" --pca-dims "$$PCA_DIMS"

export-pkl: setup ## Write RUN/wikipedia_merged.pkl (the seeds' dictionary) from embeddings.h5
	$(PY) -m jobs export-pkl --run "$$RUN"

bench: setup ## Run the benchmarks (results go in BENCHMARKS.md)
	$(PY) bench/merge_throughput.py
	$(PY) bench/embed_throughput.py
	$(PY) bench/fetch_bytes.py
	$(PY) bench/submit_1000.py

.PHONY: help setup demo test test-services submit resubmit stage-model status merge fetch export-float16 map export-pkl bench
