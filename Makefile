# renda-sections pipeline: each step reads its inputs from the variables below, writes under
# ignored folders (build/, models/, reports/) and is skipped when its outputs are up to date.
#
#   make serve            start the service (trains first only when MODEL_DIR holds no model)
#   make test             the whole test suite
#   make data baseline train eval      the pipeline, step by step
#   make crossval         both recipes compared by k-fold cross-validation over whole reports
#
# Variables (override on the command line or in the environment):
CORPUS       ?= data/starter
TEST_FROM    ?=
SEED         ?= 13
MODEL_DIR    ?= models/bert
BASELINE_DIR ?= models/baseline
BASE_MODEL   ?= models/base/multilingual-e5-small
EVAL_DATA    ?=
EVAL_MODELS  ?= $(BASELINE_DIR) $(MODEL_DIR)
EVAL_OUT     ?= reports/eval
LORO         ?=
CONTEXT_DROPOUT ?=
CV_EPOCHS    ?=
STARTER_WEIGHT ?=
CV_CORPUS    ?= ../shared/corpus
CV_EXTRA     ?=
FOLDS        ?= 5
CV_MODELS    ?= baseline bert
CV_OUT       ?= reports/crossval
HOST         ?= 127.0.0.1
PORT         ?= 8000
THREADS      ?= 0

PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
RENDA   := $(BIN)/renda
# One dataset folder per corpus / test-from / seed, so switching corpora never mixes them up.
TAG     := $(shell printf '%s|%s|%s' "$(CORPUS)" "$(TEST_FROM)" "$(SEED)" | md5sum | cut -c1-8)
DATASET := build/dataset-$(TAG)
CORPUS_FILES := $(shell find $(CORPUS) $(TEST_FROM) \( -name '*.txt' -o -name '*.jsonl' \) 2>/dev/null)
SOURCES := $(wildcard renda/*.py training/*.py model/*.py) data/labels.toml
DEFAULT_BASE := models/base/multilingual-e5-small

export SEED THREADS

.PHONY: install data baseline base-model train eval serve test crossval check-labeller stats stats-compare bench-serve bench-prune lock clean help
.DEFAULT_GOAL := help

help:
	@sed -n '1,10p' Makefile | sed -n 's/^# \{0,1\}//p'
	@grep -E '^[A-Z_]+ +\?=' Makefile | sed 's/^/  /'

install: $(VENV)/.installed

# torch first, pinned exactly: it takes the local CPU wheel (anything looser pulls CUDA builds).
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $@

lock: $(VENV)/.installed
	(sed -n '/^#/p' requirements.lock; $(BIN)/pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/') > requirements.lock.new
	mv requirements.lock.new requirements.lock

data: $(DATASET)/summary.json

$(DATASET)/summary.json: $(VENV)/.installed $(CORPUS_FILES) $(SOURCES)
	$(RENDA) data --corpus $(CORPUS) --out $(DATASET) --seed $(SEED) $(if $(TEST_FROM),--test-from $(TEST_FROM))

baseline: data
	$(RENDA) baseline --data $(DATASET) --out $(BASELINE_DIR) --seed $(SEED) --if-stale

# The packaged multilingual-e5-small, as a Hugging Face folder; skipped for any other BASE_MODEL.
base-model: $(if $(filter $(DEFAULT_BASE),$(BASE_MODEL)),$(DEFAULT_BASE)/model.safetensors)

$(DEFAULT_BASE)/model.safetensors: $(VENV)/.installed model/convert_e5.py
	$(RENDA) base-model --out $(DEFAULT_BASE)

train: data base-model
	$(RENDA) train --data $(DATASET) --out $(MODEL_DIR) --base-model $(BASE_MODEL) --threads $(THREADS) --if-stale

# Scores every trained model side by side on the same held-out reports (default: the test split).
eval: data
	$(RENDA) eval --models $(wildcard $(EVAL_MODELS)) --data $(or $(EVAL_DATA),$(DATASET)) \
	  --out $(EVAL_OUT) --seed $(SEED) $(if $(LORO),--loro $(LORO))

# Both recipes trained k times on the same report folds of CV_CORPUS; every paragraph scored once
# by a model that never saw its report (CV_EXTRA, e.g. data/starter, only adds training data).
crossval: base-model
	$(RENDA) crossval --corpus $(CV_CORPUS) $(if $(CV_EXTRA),--extra-train $(CV_EXTRA)) --folds $(FOLDS) \
	  --models $(CV_MODELS) --out $(CV_OUT) --base-model $(BASE_MODEL) --threads $(THREADS) --seed $(SEED) \
	  $(if $(CONTEXT_DROPOUT),--context-dropout $(CONTEXT_DROPOUT)) $(if $(CV_EPOCHS),--epochs $(CV_EPOCHS)) \
	  $(if $(STARTER_WEIGHT),--starter-weight $(STARTER_WEIGHT))

check-labeller: $(VENV)/.installed
	$(RENDA) check-labeller $(wildcard ../shared/corpus/*.jsonl) --out reports/labeller_agreement.json

# Benchmarks: figures written to reports/bench/ (the README quotes them).
bench-serve: train
	$(BIN)/python -m serving.bench --model $(MODEL_DIR) --out reports/bench/serving.json

bench-prune: $(VENV)/.installed
	$(BIN)/python -m model.bench_prune --corpus $(CORPUS) --out reports/bench/prune.json

stats: $(VENV)/.installed
	$(RENDA) stats --corpus $(CORPUS)

# How the starter corpus differs from real reports, label by label (style shortcuts a model could learn).
stats-compare: $(VENV)/.installed
	$(RENDA) stats --compare data/starter ../shared/corpus --out reports/stats-compare.md

# Trains only when MODEL_DIR holds no model: an existing one is served as it is, never retrained or
# replaced (even when it was trained on another corpus or is out of date; `make train` updates it).
serve: $(VENV)/.installed
	@test -f "$(MODEL_DIR)/renda_model.json" || $(MAKE) --no-print-directory train
	MODEL_DIR=$(MODEL_DIR) $(RENDA) serve --model $(MODEL_DIR) --host $(HOST) --port $(PORT)

test: $(VENV)/.installed
	$(BIN)/python -m pytest

clean:
	rm -rf build reports
