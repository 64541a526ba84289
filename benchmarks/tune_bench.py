"""`ragkit tune` and `ragkit synth` measured: does a sweep over lexical and chunking choices on
CRUD-RAG factoids find a config at least as good as the hand-built `best` on held-back questions,
and do synthetic questions rank pipeline variants the way real questions do (Kendall tau)?

    python benchmarks/tune_bench.py synth --n 20 --max-candidates 24    # resumable
    flock /tmp/ragkit-bench.lock python benchmarks/tune_bench.py measure

`synth` writes two suites with the packaged local generator: from the bundled English corpus
and from the CRUD-RAG news slice. `measure` tunes on the real CRUD-RAG factoids, then scores the
same variants on real and on synthetic questions over the same corpus, for both corpora, and
writes benchmarks/results/tune.md (the synthetic pairs are listed there to be read).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ragkit.eval.datasets import load_crud_news, load_suite  # noqa: E402
from ragkit.models import cache_dir  # noqa: E402
from ragkit.spec import load_spec  # noqa: E402

CRUD = REPO.parent / "shared" / "data" / "crud-rag"
WORK = cache_dir() / "bench-tune"
OUT = REPO / "benchmarks" / "results" / "tune.md"
ARTICLES = 3000
# The CRUD-RAG space: lexical terms and chunking around the hand-built `best` (BM25 top 5).
CRUD_SPACE = {
    "retriever.lexical": ["words", "words+bigrams"],
    "chunker.chunk_tokens": [128, 192, 256],
    "chunker.overlap_tokens": [0, 32],
}
# The English space: retriever kind against chunk size, over the bundled corpus.
ENGLISH_SPACE = {
    "retriever.kind": ["bm25", "dense", "hybrid"],
    "chunker.chunk_tokens": [64, 128, 256],
}


def crud_documents() -> Any:
    return load_crud_news(CRUD, limit=ARTICLES)


def synth(n: int, max_candidates: int, only: str | None) -> None:
    from ragkit import build
    from ragkit.synth.run import synthesize
    from ragkit.synth.sampling import chunk_documents, source_chunks

    spec = load_spec("naive")
    generator = build.generator(spec)
    english = load_suite("bundled").corpus
    assert english is not None
    for name, chunks, corpus in (
        ("synth-en", source_chunks(str(english), spec), english),
        ("synth-crud", chunk_documents(crud_documents(), load_spec("best")), None),
    ):
        if only is not None and name != only:
            continue
        started = time.perf_counter()
        result = synthesize(
            chunks, generator, WORK / name, n=n, corpus=corpus, max_candidates=max_candidates
        )
        print(
            f"{name}: kept {result.kept} of {result.candidates} candidates "
            f"({result.generated} generated in {time.perf_counter() - started:.0f} s); "
            f"dropped {result.dropped}",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    s = sub.add_parser("synth")
    s.add_argument("--n", type=int, default=20)
    s.add_argument("--max-candidates", type=int, default=24)
    s.add_argument("--only", choices=["synth-en", "synth-crud"])
    sub.add_parser("measure")
    args = parser.parse_args(argv)
    if args.stage == "synth":
        synth(args.n, args.max_candidates, args.only)
    else:
        measure()


def measure() -> None:
    raise NotImplementedError


if __name__ == "__main__":
    main()
