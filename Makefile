# Thin and strict: every target calls the Python CLI. User values reach the recipes as
# environment variables (export below) and are passed quoted, never spliced into shell text.
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
VENV := .venv
PY := $(VENV)/bin/python

# RUN defaults to runs/<corpus name>: data/wiki.parquet, data/wiki/ and 'data/wiki/*.parquet' all give runs/wiki.
CORPUS_PATH = $(patsubst %/,%,$(CORPUS))
CORPUS_NAME = $(if $(findstring *,$(notdir $(CORPUS_PATH))),$(notdir $(patsubst %/,%,$(dir $(CORPUS_PATH)))),$(basename $(notdir $(CORPUS_PATH))))
# make demo RUN=...: a demo in that folder (the RUN given, before the default below fills an empty one);
# without RUN, runs/demo (runs/demo-all for DEMO_ROWS=all).
DEMO_RUN := $(if $(filter command line environment,$(origin RUN)),$(RUN),)
# (not ?=: make test exports RUN empty to the tests' own make calls, and an empty RUN means "not given")
override RUN := $(if $(RUN),$(RUN),$(if $(CORPUS),runs/$(CORPUS_NAME),))
CORPUS ?=
MODEL ?=
REVISION ?=
SHARDS ?=
PROFILE ?=
WAIT ?=
REDO ?=
SKIP_BAD_ROWS ?=
TEXT_FIELDS ?=
ID_FIELD ?=
TITLE_FIELD ?=
URL_FIELD ?=
DEVICE ?=
COMPUTE_DTYPE ?=
ATTENTION ?=
PIN_MEMORY ?=
PROMPT_NAME ?=
PROMPT ?=
NORMALIZE ?=
MAX_SEQ_LENGTH ?=
MAX_TOKENS_PER_BATCH ?=
FLUSH_ROWS ?=
CACHE_DIR ?=
REMOTE ?=
DEST ?=
SSH_CONFIG ?=
FLOAT16 ?=
FORMAT ?=
MAP ?=
QUESTIONS ?=
SEED ?=
PCA_DIMS ?=
EXPORT ?=
REUSE ?=
DEMO_ROWS ?= 2000
export RUN CORPUS MODEL REVISION SHARDS PROFILE WAIT REDO SKIP_BAD_ROWS TEXT_FIELDS ID_FIELD TITLE_FIELD URL_FIELD \
  DEVICE COMPUTE_DTYPE ATTENTION PIN_MEMORY PROMPT_NAME PROMPT NORMALIZE MAX_SEQ_LENGTH MAX_TOKENS_PER_BATCH FLUSH_ROWS \
  CACHE_DIR REMOTE DEST SSH_CONFIG FLOAT16 FORMAT MAP QUESTIONS SEED PCA_DIMS EXPORT DEMO_ROWS DEMO_RUN TORCH REUSE

# Every option of submit and plan, passed quoted; an empty value means "not given".
SUBMIT_ARGS = --run "$$RUN" --corpus "$$CORPUS" --model "$$MODEL" --revision "$$REVISION" --shards "$$SHARDS" \
  --profile "$$PROFILE" --text-fields "$$TEXT_FIELDS" --id-field "$$ID_FIELD" --title-field "$$TITLE_FIELD" \
  --url-field "$$URL_FIELD" --skip-bad-rows "$$SKIP_BAD_ROWS" --redo "$$REDO" --device "$$DEVICE" \
  --compute-dtype "$$COMPUTE_DTYPE" --attention "$$ATTENTION" --pin-memory "$$PIN_MEMORY" --prompt-name "$$PROMPT_NAME" --prompt "$$PROMPT" \
  --normalize-embeddings "$$NORMALIZE" --max-seq-length "$$MAX_SEQ_LENGTH" \
  --max-tokens-per-batch "$$MAX_TOKENS_PER_BATCH" --flush-rows "$$FLUSH_ROWS" --cache-dir "$$CACHE_DIR" \
  --map "$$MAP" --questions "$$QUESTIONS" --seed "$$SEED" --pca-dims "$$PCA_DIMS" --export "$$EXPORT" \
  --wait "$$WAIT" --reuse "$$REUSE"

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(VENV)/.done: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "$$TORCH"
	$(VENV)/bin/pip install -q -e '.[demo,dev]'
	touch $@

setup: $(VENV)/.done ## Create or refresh .venv (TORCH=torch==2.13.0; see docs/CLUSTER.md for CUDA/MPS)

sample: setup ## Write examples/wiki-sample.jsonl: 40 Vital Articles leads to try the kit on (README's first example)
	$(Q)$(PY) -m jobs sample

demo: setup ## Embed Wikipedia Vital Articles end to end into runs/demo (DEMO_ROWS=all for 10,033; RUN=... elsewhere)
	$(Q)$(PY) -m jobs demo --run "$$DEMO_RUN" --rows "$$DEMO_ROWS" --shards "$$SHARDS" --map "$$MAP"

test: setup test-services ## Run the tests (real model, HDF5, submitit, sshd, Chromium; Slurm 22.05 and, beside it, 26.05)
	$(Q)bash tests/run-all.sh

test-services: ## Install and start what the tests use for real: sshd, rsync, Chromium, the Slurm 22.05 and 26.05 clusters
	$(Q)bash tests/services/install.sh

submit: setup ## Plan and submit: CORPUS=... MODEL=... SHARDS=... RUN=... PROFILE=site|local [WAIT=1] [MAP=1] [EXPORT=parquet|npy] [REUSE=last run]
	$(Q)$(PY) -m jobs submit $(SUBMIT_ARGS)

plan: setup ## Dry run: prepare and check everything, print what make submit would submit (same variables)
	$(Q)$(PY) -m jobs plan $(SUBMIT_ARGS)

resubmit: setup ## Submit only the missing or failed shards of RUN=... and a new merge [WAIT=1] [REDO='3 5']
	$(Q)$(PY) -m jobs resubmit --run "$$RUN" --profile "$$PROFILE" --redo "$$REDO" --wait "$$WAIT" --reuse "$$REUSE"

stage-model: setup ## On the login node: download MODEL=... into the profile's model_cache [PROFILE=...]
	$(Q)$(PY) -m jobs stage-model --model "$$MODEL" --profile "$$PROFILE" --revision "$$REVISION" --attention "$$ATTENTION"

status: setup ## Shards done / running / missing and the repair command: RUN=...
	$(Q)$(PY) -m jobs status --run "$$RUN"

merge: setup ## Verify the shards of RUN=... and write embeddings.h5 now
	$(Q)$(PY) -m jobs merge --run "$$RUN"

fetch: setup ## On the laptop: REMOTE=host:/path/to/run [DEST=runs/<run name>] [FLOAT16=1] [SSH_CONFIG=file]
	$(Q)$(PY) -m jobs fetch --remote "$$REMOTE" --dest "$$DEST" --ssh-config "$$SSH_CONFIG" --float16 "$$FLOAT16"

export-float16: setup ## On the cluster: write RUN/embeddings.float16.h5 (half the bytes) for FLOAT16=1 fetches
	$(Q)$(PY) -m jobs export-float16 --run "$$RUN"

map: setup ## Knowledge map of RUN=...: map.h5, map.html, map.png [QUESTIONS=file.json] [SEED=42] [PCA_DIMS=32|0] [MODEL=...]
	$(Q)$(PY) -m jobs map --run "$$RUN" --questions "$$QUESTIONS" --seed "$$SEED" --pca-dims "$$PCA_DIMS" --model "$$MODEL"

export-pkl: setup ## Write RUN/wikipedia_merged.pkl (the seeds' dictionary) from embeddings.h5
	$(Q)$(PY) -m jobs export-pkl --run "$$RUN"

export: setup ## Export RUN=...'s embeddings.h5 to FORMAT=parquet|npy [FLOAT16=1] for DuckDB, LanceDB, FAISS (docs/EXPORT.md)
	$(Q)$(PY) -m jobs export --run "$$RUN" --format "$$FORMAT" --float16 "$$FLOAT16"

bench: setup ## Run the benchmarks (results go in BENCHMARKS.md)
	$(Q)$(PY) bench/merge_throughput.py
	$(Q)$(PY) bench/embed_throughput.py
	$(Q)$(PY) bench/fetch_bytes.py
	$(Q)$(PY) bench/submit_1000.py

.PHONY: help setup sample demo test test-services submit plan resubmit stage-model status merge fetch export-float16 map export-pkl export bench
