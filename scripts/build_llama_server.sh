#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` from the sources carried by a pinned llama-cpp-python sdist,
# so tests and benchmarks have a real batching OpenAI-compatible server. It needs only cmake, a C++
# compiler and pip, not the project's venv, so `make test` runs it while the venv installs.
# Idempotent: the binary is cached per version and the script exits at once when it is present.
# Usage: scripts/build_llama_server.sh [VENV]   (prints the binary's path on its last line)
set -euo pipefail
VENV=${1:-${VENV:-.venv}}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
CACHE="$VENV/llama-server/$VERSION"
BINARY="$CACHE/llama-server"
if [ -x "$BINARY" ]; then
	echo "$BINARY"
	exit 0
fi
PYTHON=${PYTHON:-python3}
# llama.cpp's default build enables CPU features (AMX) that crash some CPU families; portable flags.
CMAKE_FLAGS=${LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"}
JOBS=${LLAMA_BUILD_JOBS:-2}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --quiet --no-binary llama-cpp-python --no-deps --dest "$WORK" "llama-cpp-python==$VERSION"
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
SRC=$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)
# shellcheck disable=SC2086
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
	-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
	$CMAKE_FLAGS >"$WORK/cmake.log" 2>&1 || { tail -30 "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target llama-server -j "$JOBS" >"$WORK/build.log" 2>&1 ||
	{ tail -30 "$WORK/build.log" >&2; exit 1; }
mkdir -p "$CACHE"
cp "$WORK/build/bin/llama-server" "$BINARY.partial"
mv "$BINARY.partial" "$BINARY"
echo "$BINARY"
