# Two entry points for a fresh machine: `make demo` (install + end-to-end RAG run on the bundled
# corpus with the offline default model) and `make test` (install + the whole test suite + a
# smoke test of the built wheel outside the checkout).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: install install-dev llama-server browser demo test test-fast wheel-smoke lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
# The demo ends with `ragkit eval`, so the core install carries the eval extra (metrics, ragas).
# --no-compile: Python compiles a module when it is first imported, so only what runs is
# compiled, not every file of torch, transformers and ray up front (most of a fresh install).
$(VENV)/.core: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --no-compile torch==2.13.0
	$(BIN)/pip install --quiet --no-compile -e '.[eval]'
	touch $@

# Every extra the tests use. llama-cpp-python (the `llamacpp` extra) is left out: the tests'
# model server is llama.cpp's own llama-server, built from source once (`make llama-server`).
$(VENV)/.dev: $(VENV)/.core
	$(BIN)/pip install --quiet --no-compile -e '.[eval,serve,bench,ray,dev]'
	touch $@

install: $(VENV)/.core
install-dev: $(VENV)/.dev

# The tests' batching OpenAI-compatible server (cached in the venv; a rebuild is a no-op).
llama-server:
	scripts/build_llama_server.sh $(VENV)

# Debian's Chromium drives the chat page test; without it (no root, no apt) that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium unavailable: the browser test will skip"

demo: install
	$(BIN)/ragkit ingest evals/bundled/corpus --store .ragkit/demo
	$(BIN)/ragkit query --store .ragkit/demo --questions evals/bundled/questions.jsonl --limit 3
	$(BIN)/ragkit eval --suite bundled --pipeline naive --limit 2

# Install, the whole suite on both cores while llama-server builds, then the built wheel on its
# own (fresh venv, temporary folder; see .ci/); scripts/test.sh prints each phase's wall time.
test:
	VENV=$(VENV) scripts/test.sh

# Logic only, on a scripted generator: no real-model tests.
test-fast: install-dev
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -m "not slow and not llama_server"

wheel-smoke: install-dev
	.ci/wheel-smoke.sh $(BIN)/python

# ruff, then mypy over ragkit/ (settings in pyproject's [tool.mypy]).
lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/python -m mypy
