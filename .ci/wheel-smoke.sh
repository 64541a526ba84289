#!/usr/bin/env bash
# Builds the wheel and proves it works on its own: installed into a fresh venv (which borrows the
# dependencies already installed in the development venv instead of installing them again) and
# run from a temporary folder outside the checkout, so nothing can come from the source tree.
#   usage: .ci/wheel-smoke.sh [PYTHON]   (PYTHON: the development venv's python, default .venv/bin/python)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
arg=${1:-.venv/bin/python}
py=$(cd "$repo" && cd "$(dirname "$arg")" && pwd)/$(basename "$arg")  # the venv's, unresolved
tmp=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
unset PYTHONPATH
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False

step() { printf '\n== wheel smoke: %s\n' "$*"; }

step "build"
"$py" -m pip wheel --quiet --no-deps --no-build-isolation -w "$tmp/dist" "$repo"
wheel=$(ls "$tmp"/dist/ragkit-*.whl)

step "install $(basename "$wheel") into a fresh venv"
"$py" -m venv --without-pip "$tmp/venv"
deps=$("$py" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
site=$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
# A plain path line: the dependencies become importable, but the development venv's own .pth
# files (its editable ragkit among them) are not run, so `ragkit` can only come from the wheel.
echo "$deps" >"$site/_ragkit_smoke_deps.pth"
"$py" -m pip --python "$tmp/venv/bin/python" install --quiet --no-deps --no-index "$wheel"
bin="$tmp/venv/bin"

mkdir "$tmp/work" && cd "$tmp/work"
"$bin/python" - "$site" <<'PY'
import sys
from pathlib import Path

import ragkit
from ragkit.eval.datasets import load_suite
from ragkit.spec import pipeline_names

site = Path(sys.argv[1]).resolve()
assert Path(ragkit.__file__).resolve().is_relative_to(site), f"ragkit came from {ragkit.__file__}"
stages = ["naive", "hybrid", "rerank", "rewrite-retrieve-read", "multi-query", "hyde", "iter-retgen"]
assert set(stages) <= set(pipeline_names()), pipeline_names()
for name in stages:  # every named stage pipeline builds by name from the installed package
    ragkit.load_pipeline(name, store_location="index")
suite = load_suite("bundled")
assert suite.corpus is not None and suite.corpus.is_relative_to(site), suite.corpus
assert len(suite.items) > 20, len(suite.items)
print(f"ragkit from {ragkit.__file__}; pipelines {', '.join(pipeline_names())}; "
      f"bundled suite: {len(suite.items)} items")
PY
corpus=$("$bin/python" -c 'from ragkit.eval.datasets import load_suite; print(load_suite("bundled").corpus)')

step "ingest"
"$bin/ragkit" ingest "$corpus" --store index
step "query"
"$bin/ragkit" query --store index --json \
  "Who has been the harbour master of Varrow Point since 2017?" | tee answer.jsonl
grep -q '"citations"' answer.jsonl
step "eval"
# The packaged `naive` pipeline from a YAML file of the user's, with short answers to keep it quick.
printf 'name: smoke\ngenerator:\n  max_new_tokens: 12\n' >smoke.yaml
"$bin/ragkit" eval --suite bundled --pipeline smoke.yaml --task read --limit 1 --no-ragas \
  --no-questeval --store evalindex --runs runs | tail -n 15
ls runs/*/summary.json >/dev/null

step "serve"
port=$("$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/ragkit" serve --store index --port "$port" >serve.log 2>&1 &
server=$!
"$bin/python" - "$port" <<'PY'
import sys
import time

import httpx

base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 300
while True:
    try:
        page = httpx.get(base + "/", timeout=5)
        break
    except httpx.TransportError:
        if time.monotonic() > deadline:
            sys.exit("the server did not start; see serve.log")
        time.sleep(1)
assert page.status_code == 200 and "<html" in page.text.lower(), (page.status_code, page.text[:200])
script = httpx.get(base + "/static/chat.js", timeout=5)
assert script.status_code == 200 and script.text.strip(), script.status_code
print(f"GET / -> {page.status_code} ({len(page.text)} bytes); /static/chat.js -> {script.status_code}")
PY
printf '\nwheel smoke: passed\n'
