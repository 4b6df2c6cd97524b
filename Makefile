# renda-sections pipeline: each step reads its inputs from the variables below, writes under
# ignored folders (build/, models/, reports/) and is skipped when its outputs are up to date.
#
#   make serve            start the service (trains first only when MODEL_DIR holds no model)
#   make test             the whole test suite
#   make data baseline train eval      the pipeline, step by step
#   make crossval         the recipes compared by k-fold cross-validation over whole reports
#   make search           the encoder's settings tried by cross-validation (SEARCH), one table
#
# Variables (override on the command line or in the environment):
CORPUS       ?= data/starter
TEST_FROM    ?=
# Reviewed labels from the page (POST /v1/corrections); when CORPUS names the folder, its reports always train.
CORRECTIONS_DIR ?= data/corrections
TRAIN_FROM   ?= $(filter $(CORRECTIONS_DIR) $(CORRECTIONS_DIR)/,$(CORPUS))
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
CV_MODELS    ?= baseline bert fused
# Settings of training/config.toml overridden for this run (train, crossval), e.g. SET="freeze_layers=8 epochs=6"
SET          ?=
# The recipe search (make search): each item a set of settings tried together, commas between them
# (round 2 of docs/encoder-recipe.md; round 1 is written there)
SEARCH       ?= freeze_layers=10,epochs=6,context_dropout=0.5 freeze_layers=10,epochs=6,context_dropout=0.7 \
                freeze_layers=10,epochs=6,context_dropout=0.5,starter_weight=0.5 freeze_layers=10,epochs=8,context_dropout=0.5 \
                freeze_layers=10,epochs=6,context_dropout=0.5,learning_rate=3e-4
SEARCH_OUT   ?= reports/search
CV_OUT       ?= reports/crossval
BENCH_CORPUS ?= ../shared/corpus
# Paragraphs the ONNX export checks parity on: real ones where they are here (int8 that passes on the
# starter-heavy dev split can fail on real paragraphs); empty: the model's dev split.
PARITY_DATA  ?= $(wildcard ../shared/corpus)
CLIENTS      ?= 32
LOAD_SECONDS ?= 60
HOST         ?= 127.0.0.1
PORT         ?= 8000
THREADS      ?= 0
# label-archive: every report under ARCHIVE labelled into Parquet tables under OUT; plot: their trends by BY
ARCHIVE      ?=
OUT          ?= build/archive
ENGINE       ?= local
ADDRESS      ?=
BY           ?= year

PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
BIN     := $(VENV)/bin
RENDA   := $(BIN)/renda
# One dataset folder per corpus / test-from / seed, so switching corpora never mixes them up.
TAG     := $(shell printf '%s|%s|%s' "$(CORPUS)" "$(TEST_FROM)" "$(SEED)$(if $(TRAIN_FROM),|train-from:$(TRAIN_FROM))" | md5sum | cut -c1-8)
DATASET := build/dataset-$(TAG)
CORPUS_FILES := $(shell find $(CORPUS) $(TEST_FROM) \( -name '*.txt' -o -name '*.jsonl' \) 2>/dev/null)
# The corpus's file list, rewritten only when it changes: a report taken out leaves no newer file
# behind, and without the list the dataset (and the model) would go on holding it.
CORPUS_LIST := build/corpus-$(TAG).list
$(shell mkdir -p build && printf '%s\n' $(sort $(CORPUS_FILES)) > $(CORPUS_LIST).new && \
  { cmp -s $(CORPUS_LIST).new $(CORPUS_LIST) && rm -f $(CORPUS_LIST).new || mv $(CORPUS_LIST).new $(CORPUS_LIST); })
SOURCES := $(wildcard renda/*.py training/*.py model/*.py) renda/labels.toml
DEFAULT_BASE := models/base/multilingual-e5-small

export SEED THREADS

.PHONY: install data baseline base-model train eval serve test crossval search check-labeller stats stats-compare bench-serve bench-prune export bench bench-load lock clean help
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

lock: $(VENV)/.scale  # the scale extra installed too, so the lock pins Ray and what it pulls in
	(sed -n '/^#/p' requirements.lock; $(BIN)/pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/') > requirements.lock.new
	mv requirements.lock.new requirements.lock

data: $(DATASET)/summary.json

$(DATASET)/summary.json: $(VENV)/.installed $(CORPUS_FILES) $(CORPUS_LIST) $(SOURCES)
	$(RENDA) data --corpus $(CORPUS) --out $(DATASET) --seed $(SEED) $(if $(TEST_FROM),--test-from $(TEST_FROM)) \
	  $(if $(TRAIN_FROM),--train-from $(TRAIN_FROM))

baseline: data
	$(RENDA) baseline --data $(DATASET) --out $(BASELINE_DIR) --seed $(SEED) --if-stale

# The packaged multilingual-e5-small, as a Hugging Face folder; skipped for any other BASE_MODEL.
base-model: $(if $(filter $(DEFAULT_BASE),$(BASE_MODEL)),$(DEFAULT_BASE)/model.safetensors)

$(DEFAULT_BASE)/model.safetensors: $(VENV)/.installed model/convert_e5.py
	$(RENDA) base-model --out $(DEFAULT_BASE)

# Trains, then makes and checks the ONNX export in staging, and publishes both at once (a server started
# meanwhile never meets the new model without its export); the export line covers a skipped training.
train: data base-model
	$(RENDA) train --data $(DATASET) --out $(MODEL_DIR) --base-model $(BASE_MODEL) --threads $(THREADS) --if-stale $(foreach s,$(SET),--set $(s)) \
	  --export $(if $(PARITY_DATA),--export-data $(PARITY_DATA))
	$(RENDA) export --model $(MODEL_DIR) --threads $(THREADS) $(if $(PARITY_DATA),--data $(PARITY_DATA)) --if-stale

# ONNX copies of MODEL_DIR (fp32, int8) checked against torch on PARITY_DATA (else the dev split): onnx_parity.json
# records the result, and BACKEND=auto serves the fastest backend that passed. Always reruns.
export: $(VENV)/.installed
	$(RENDA) export --model $(MODEL_DIR) --threads $(THREADS) $(if $(PARITY_DATA),--data $(PARITY_DATA))

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
	  $(if $(STARTER_WEIGHT),--starter-weight $(STARTER_WEIGHT)) $(foreach s,$(SET),--set $(s))

# The encoder's recipe searched by cross-validation (docs/encoder-recipe.md): every SEARCH item trained on
# the same folds in one run, the baseline fitted once, the frozen layers' outputs computed once and shared.
search: base-model
	$(RENDA) crossval --corpus $(CV_CORPUS) --extra-train $(or $(CV_EXTRA),data/starter) --folds $(FOLDS) --models $(CV_MODELS) \
	  --out $(SEARCH_OUT) --base-model $(BASE_MODEL) --threads $(THREADS) --seed $(SEED) $(foreach t,$(SEARCH),--try $(t))

# Would averaging the search's encoders pay? Their out-of-fold probabilities averaged and scored
# (e.g. after make search SEARCH="seed=13 seed=1 seed=2"): reports/…/cv-ensemble/cv_ensemble.md
.PHONY: cv-ensemble cv-ceiling cv-judge learning-curve
cv-ensemble: $(VENV)/.installed
	$(BIN)/python -m bench.cv_scores average $(wildcard $(SEARCH_OUT)/bert-*-cv-scores.jsonl) --out $(SEARCH_OUT)/cv-ensemble
# How far the paragraph alone could go if plans-or-not were judged perfectly (then self_building/leadership)
CV_SCORES ?= $(SEARCH_OUT)/bert-seed=13-cv-scores.jsonl
cv-ceiling: $(VENV)/.installed
	$(BIN)/python -m bench.cv_scores ceiling $(CV_SCORES) --solve plans --solve self_building/leadership --out $(dir $(CV_SCORES))cv-ceiling
# The plans judge refitted on the search's folds and applied to its encoders' scores alone, in a minute:
# e.g. make cv-judge SEARCH_OUT=reports/search-8 JUDGE="--units chars" → reports/search-8/cv-judge/cv_judge.md
CV_JUDGE_SCORES ?= $(wildcard $(SEARCH_OUT)/bert-*-cv-scores.jsonl)
JUDGE ?=
cv-judge: $(VENV)/.installed
	$(BIN)/python -m bench.cv_scores judge $(CV_JUDGE_SCORES) --corpus $(CV_CORPUS) --extra-train $(or $(CV_EXTRA),data/starter) \
	  --folds $(FOLDS) --seed $(SEED) $(JUDGE) --out $(SEARCH_OUT)/cv-judge
# Would more labelled reports lift the figures? The recipe as configured, cross-validated on the same folds
# with each fold trained on a share of its training reports (the starter corpus whole): about 8 minutes a
# share → $(CURVE_OUT)/curve.md (docs/encoder-recipe.md, round 12)
CURVE_SHARES ?= 0.25 0.5 0.75 1
CURVE_OUT    ?= reports/curve
learning-curve: base-model
	set -e; for share in $(CURVE_SHARES); do \
	  $(RENDA) crossval --corpus $(CV_CORPUS) --extra-train $(or $(CV_EXTRA),data/starter) --folds $(FOLDS) --models baseline bert \
	    --train-share $$share --out $(CURVE_OUT)/share-$$share --base-model $(BASE_MODEL) --threads $(THREADS) --seed $(SEED); \
	done
	$(BIN)/python -m bench.cv_scores curve $(foreach share,$(CURVE_SHARES),$(CURVE_OUT)/share-$(share)) --out $(CURVE_OUT)

check-labeller: $(VENV)/.installed
	$(RENDA) check-labeller $(wildcard ../shared/corpus/*.jsonl) --out reports/labeller_agreement.json

# Benchmarks: figures written to reports/bench/ (the README quotes them).
bench-serve: train
	$(BIN)/python -m bench.serve --model $(MODEL_DIR) --out reports/bench/serving.json

bench-prune: $(VENV)/.installed
	$(BIN)/python -m bench.prune --corpus $(CORPUS) --out reports/bench/prune.json

# The model card's plain transformers code and every backend, at batch 1, 8, 32 (threads = cores).
bench: $(VENV)/.installed
	$(RENDA) export --model $(MODEL_DIR) --threads $(THREADS) $(if $(PARITY_DATA),--data $(PARITY_DATA)) --if-stale
	$(BIN)/python -m bench.predict --model $(MODEL_DIR) --corpus $(BENCH_CORPUS) --out reports/bench

# Which parts of a layer move the labels when quantised to int8, one part at a time, against fp32
# on PARITY_DATA (reports/bench/int8_roles.{json,md}); about 4 minutes on the real paragraphs.
.PHONY: bench-int8
bench-int8: $(VENV)/.installed
	$(RENDA) export --model $(MODEL_DIR) --threads $(THREADS) $(if $(PARITY_DATA),--data $(PARITY_DATA)) --if-stale
	$(BIN)/python -m bench.int8_roles --model $(MODEL_DIR) --threads $(THREADS) $(if $(PARITY_DATA),--data $(PARITY_DATA)) --out reports/bench

# The same on the fused graph, its activations smoothed with each alpha of SMOOTH, every part int8 but
# some parts in some layers (reports/bench/int8_roles_fused.{json,md}); about 5 minutes per alpha.
SMOOTH ?= 0.75
.PHONY: bench-int8-fused
bench-int8-fused: $(VENV)/.installed
	$(RENDA) export --model $(MODEL_DIR) --threads $(THREADS) $(if $(PARITY_DATA),--data $(PARITY_DATA)) --if-stale
	$(BIN)/python -m bench.int8_roles --model $(MODEL_DIR) --threads $(THREADS) $(if $(PARITY_DATA),--data $(PARITY_DATA)) --smooth $(SMOOTH) --out reports/bench

# The reviewer's loop through the service: /v1/explain times, and one retrain from the service on a copy
# of MODEL_DIR with reports of our own corrected (reports/bench/review.{json,md}); about 5 minutes.
.PHONY: bench-review
bench-review: $(VENV)/.installed
	$(BIN)/python -m bench.review --model $(MODEL_DIR) --corpus $(BENCH_CORPUS) --out reports/bench

# CLIENTS concurrent clients for LOAD_SECONDS against `renda serve` started on a free loopback port.
bench-load: $(VENV)/.installed
	$(BIN)/python -m bench.load --model $(MODEL_DIR) --clients $(CLIENTS) --seconds $(LOAD_SECONDS) \
	  --corpus $(BENCH_CORPUS) --out reports/bench/load.json

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

# The optional Ray extra (label-archive ENGINE=ray), pinned by requirements.lock like the rest.
# Every starter report rendered as GB18030 text, a web page, a PDF and a .docx, read back and compared
# with its .txt (texts, and section labels with MODEL_DIR): reports/formats/formats.{json,md}.
.PHONY: check-formats
check-formats: $(VENV)/.installed
	$(RENDA) check-formats --corpus $(CORPUS) --out reports/formats $(if $(wildcard $(MODEL_DIR)/renda_model.json),--model $(MODEL_DIR))

.PHONY: install-scale label-archive plot bench-archive
install-scale: $(VENV)/.scale

$(VENV)/.scale: $(VENV)/.installed
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,scale]'
	touch $@

# Resumable: a rerun skips the reports OUT already holds. ENGINE=ray (ADDRESS=… joins a cluster).
label-archive: $(VENV)/.installed $(if $(filter ray,$(ENGINE)),$(VENV)/.scale)
	@test -n "$(ARCHIVE)" || { echo "usage: make label-archive ARCHIVE=<folder of reports> [OUT=$(OUT)] [ENGINE=local|ray]" >&2; exit 2; }
	$(RENDA) label-archive $(ARCHIVE) --out $(OUT) --model $(MODEL_DIR) --engine $(ENGINE) --threads $(THREADS) \
	  $(if $(ADDRESS),--address $(ADDRESS))

plot: $(VENV)/.installed
	$(RENDA) plot $(OUT) --by $(BY)

# The archive pipeline against the model alone, paragraphs/s (ARCHIVE, default the starter corpus).
bench-archive: $(VENV)/.installed
	$(BIN)/python -m bench.archive --archive $(or $(ARCHIVE),data/starter) --model $(MODEL_DIR) --threads $(THREADS) \
	  --out reports/bench/archive.json

test: $(VENV)/.installed
	$(BIN)/python -m pytest

clean:
	rm -rf build reports
