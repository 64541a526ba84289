# Two entry points for a fresh machine: `make demo` (install + end-to-end RAG run on the bundled
# corpus with the offline default model) and `make test` (install + the whole test suite + a
# smoke test of the built wheel outside the checkout).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama.cpp's default build enables AMX and crashed on this CPU family; this portable build works.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: install install-dev browser demo test test-fast wheel-smoke lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
# The demo ends with `ragkit eval`, so the core install carries the eval extra (metrics, ragas).
$(VENV)/.core: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[eval]'
	touch $@

# The tests' batching OpenAI-compatible server: llama.cpp's llama-server, built from the sources
# of the installed llama-cpp-python (cached in the venv; a rebuild is a no-op).
$(VENV)/.dev: $(VENV)/.core
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet -e '.[all]'
	LLAMA_CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" scripts/build_llama_server.sh $(VENV)
	touch $@

install: $(VENV)/.core
install-dev: $(VENV)/.dev

# Debian's Chromium drives the chat page test; without it (no root, no apt) that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium unavailable: the browser test will skip"

demo: install
	$(BIN)/ragkit ingest ragkit/eval/bundled/corpus --store .ragkit/demo
	$(BIN)/ragkit query --store .ragkit/demo --questions ragkit/eval/bundled/questions.jsonl --limit 3
	$(BIN)/ragkit eval --suite bundled --pipeline naive --limit 2

# The whole suite, then the built wheel on its own (fresh venv, temporary folder; see .ci/).
test: install-dev browser
	$(BIN)/python -m pytest -q -rs
	.ci/wheel-smoke.sh $(BIN)/python

# Logic only, on a scripted generator: no real-model tests.
test-fast: install-dev
	$(BIN)/python -m pytest -q -m "not slow"

wheel-smoke: install-dev
	.ci/wheel-smoke.sh $(BIN)/python

lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
