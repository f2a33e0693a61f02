# Thin and strict: every target calls the Python CLI. Make hands the variables given on its command
# line (SHARDS=16, RUN=...) to each recipe's environment, and `python -m jobs --make VERB` reads the
# ones VERB takes from there (jobs/variables.py): no user value is spliced into shell text, and a
# variable no verb knows (a typo) is refused with the nearest known name.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory
# Recipes are not echoed; V=1 shows the command each target runs.
V ?=
Q := $(if $(V),,@)

PYTHON ?= python3
TORCH ?= torch==2.13.0
export TORCH
VENV := .venv
PY := $(VENV)/bin/python
KIT := $(PY) -m jobs --make

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# PYTHONWARNINGS: setuptools' "Editable installation" box is advice for package authors, not users.
$(VENV)/.done: pyproject.toml
	@echo "Setting up $(VENV) with $$TORCH (once: a few minutes). Another PyTorch build (CUDA, CPU-only): docs/CLUSTER.md#installing-pytorch"
	$(Q)$(PYTHON) -m venv $(VENV)
	$(Q)$(VENV)/bin/pip install -q --upgrade pip
	$(Q)$(VENV)/bin/pip install -q "$$TORCH"
	$(Q)PYTHONWARNINGS="ignore::UserWarning:setuptools.command.editable_wheel" $(VENV)/bin/pip install -q -e '.[demo,dev]'
	$(Q)touch $@

setup: $(VENV)/.done ## Create or refresh .venv (TORCH=torch==2.13.0; see docs/CLUSTER.md for CUDA/MPS)

sample: setup ## Write examples/wiki-sample.jsonl: 40 Vital Articles leads to try the kit on (README's first example)
	$(Q)$(KIT) sample

demo: setup ## Embed Wikipedia Vital Articles end to end into runs/demo (DEMO_ROWS=all for 10,033; RUN=... elsewhere)
	$(Q)$(KIT) demo

test: setup test-services ## Run the tests (real model, HDF5, submitit, sshd, Chromium; Slurm 22.05 and, beside it, 26.05)
	$(Q)bash tests/run-all.sh

test-services: ## Install and start what the tests use for real: sshd, rsync, Chromium, the Slurm 22.05 and 26.05 clusters
	$(Q)bash tests/services/install.sh

submit: setup ## Plan and submit: CORPUS=... MODEL=... SHARDS=... RUN=... PROFILE=site|local [WAIT=1] [MAP=1] [EXPORT=parquet|npy] [REUSE=last run]
	$(Q)$(KIT) submit

plan: setup ## Dry run: prepare and check everything, print what make submit would submit (same variables)
	$(Q)$(KIT) plan

resubmit: setup ## Submit only the missing or failed shards of RUN=... and a new merge [WAIT=1] [REDO='3 5']
	$(Q)$(KIT) resubmit

stage-model: setup ## On the login node: download MODEL=... into the profile's model_cache [PROFILE=...]
	$(Q)$(KIT) stage-model

status: setup ## Shards done / running / missing and the repair command: RUN=...
	$(Q)$(KIT) status

merge: setup ## Verify the shards of RUN=... and write embeddings.h5 now
	$(Q)$(KIT) merge

fetch: setup ## On the laptop: REMOTE=host:/path/to/run [DEST=runs/<run name>] [COPY=float16|int8|binary] [SSH_CONFIG=file]
	$(Q)$(KIT) fetch

export-float16: setup ## On the cluster: write RUN/embeddings.float16.h5 (half the bytes) for COPY=float16 fetches
	$(Q)$(KIT) export-float16

map: setup ## Knowledge map of RUN=...: map.h5, map.html, map.png [QUESTIONS=file.json] [SEED=n: reproducible, one thread] [PCA_DIMS=32|0] [MODEL=...]
	$(Q)$(KIT) map

export-pkl: setup ## Write RUN/wikipedia_merged.pkl (the dictionary older scripts read) from embeddings.h5
	$(Q)$(KIT) export-pkl

search: setup ## Ask a merged or fetched run: RUN=... QUERY='...' [K=10] or QUERIES=file (results in RUN/search-<file>.json) [MODEL=...]
	$(Q)$(KIT) search

index: setup ## Build the search index of RUN=... beside embeddings.h5 (make search uses it when present)
	$(Q)$(KIT) index

export: setup ## Export RUN=...'s embeddings.h5 to FORMAT=parquet|npy|int8|binary [FLOAT16=1] for DuckDB, LanceDB, FAISS (docs/EXPORT.md)
	$(Q)$(KIT) export

bench: setup ## Run the benchmarks (results go in BENCHMARKS.md)
	$(Q)$(PY) bench/merge_throughput.py
	$(Q)$(PY) bench/embed_throughput.py
	$(Q)$(PY) bench/fetch_bytes.py
	$(Q)$(PY) bench/submit_1000.py

.PHONY: help setup sample demo test test-services submit plan resubmit stage-model status merge fetch export-float16 map export-pkl export search index bench
