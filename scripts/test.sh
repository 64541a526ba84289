#!/usr/bin/env bash
# `make test`: install, type-check ragkit/ (mypy), run the whole suite, test the built wheel on
# its own; prints each phase's wall time. The slowest step of a fresh machine, building
# llama.cpp's `llama-server` (the tests' batching model server), runs in the background from the
# start; the tests that need it are marked `llama_server` and run last, once it is built.
# Independent tests share both cores (pytest-xdist). Exits non-zero if any phase fails.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
BIN=$VENV/bin
WORKERS=${RAGKIT_TEST_WORKERS:-2}
# Torch keeps its default threads here, unlike `make test-fast`: many of these tests wait on a
# subprocess or server (`ragkit serve`, Ray workers, llama-server) that inherits the setting and
# would then run on one core while its caller idles.
logs=$(mktemp -d)
begun=$(date +%s)
last=$begun
timings=()
failed=()

phase() {  # phase NAME: record the time since the previous phase
	local now
	now=$(date +%s)
	timings+=("$(printf '%-34s %4d s' "$1" $((now - last)))")
	last=$now
}

summary() {
	printf '\n== make test: phase wall times\n'
	printf '  %s\n' "${timings[@]}"
	printf '  %-34s %4d s\n' "total" $(($(date +%s) - begun))
	if [ ${#failed[@]} -gt 0 ]; then
		printf '== failed: %s\n' "${failed[*]}"
		exit 1
	fi
}

mkdir -p "$VENV"
scripts/build_llama_server.sh "$VENV" >"$logs/llama-server.log" 2>&1 &
llama_build=$!
make --no-print-directory browser >"$logs/browser.log" 2>&1 &
browser=$!

make --no-print-directory install-dev || { failed+=(install); phase install; summary; }
phase "install (venv, torch, extras)"
wait "$browser" || cat "$logs/browser.log"
phase "chromium (overlapped)"

"$BIN/python" -m mypy || failed+=("mypy")
phase "mypy (ragkit/)"

RAGKIT_LLAMA_SERVER_PENDING=1 \
	"$BIN/python" -m pytest -q -rs -n "$WORKERS" --dist loadgroup -m "not llama_server" --durations=25 ||
	failed+=("tests")
phase "tests not needing llama-server"

if wait "$llama_build"; then
	phase "llama-server build (rest of it)"
	"$BIN/python" -m pytest -q -rs -n "$WORKERS" --dist loadgroup \
		-m "llama_server" --durations=10 || failed+=("llama-server tests")
	phase "tests on llama-server"
else
	cat "$logs/llama-server.log"
	failed+=("llama-server build")
	phase "llama-server build"
fi

.ci/wheel-smoke.sh "$BIN/python" || failed+=("wheel smoke")
phase "wheel smoke"
rm -rf "$logs"
summary
