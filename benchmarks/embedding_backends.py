"""Embedding backends compared on speed, agreement with torch fp32, and retrieval quality.

For each backend (torch fp32, onnx, onnx-int8) it encodes the same chunks: the first `--docs`
CRUD-RAG news articles and the bundled English corpus, cut by ragkit's token chunker. Slices
of chunks go to the backends in turn, rotating who goes first, so load from other processes
on a shared machine falls evenly on all of them; throughput ratios are against torch in the
same run. Agreement is the cosine of each vector to the torch fp32 vector of the same chunk;
retrieval is dense answer recall on the bundled questions at two chunk sizes.

    python benchmarks/embedding_backends.py --docs 300
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from ragkit.embedding import Embedder  # noqa: E402
from ragkit.eval.crud_rag import default_crud_dir  # noqa: E402
from ragkit.eval.datasets import load_qa_jsonl  # noqa: E402
from ragkit.eval.metrics import answer_rank  # noqa: E402
from ragkit.index.chunking import TokenChunker  # noqa: E402
from ragkit.index.loaders import load_documents  # noqa: E402
from ragkit.types import Document  # noqa: E402

NEWS = default_crud_dir(REPO) / "news"
BUNDLED = REPO / "evals" / "bundled"
BASELINE = "torch"


def news_documents(n: int) -> list[Document]:
    """The first n articles of the news files (one per non-empty line), as ingest sees them."""
    docs: list[Document] = []
    for path in sorted(NEWS.iterdir()):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                docs.append(Document(id=f"a{len(docs):05d}", text=line))
                if len(docs) == n:
                    return docs
    return docs


def chunk_texts(docs: Sequence[Document], tokenizer: Any, tokens: int, overlap: int) -> list[str]:
    chunker = TokenChunker(tokenizer=tokenizer, chunk_tokens=tokens, overlap_tokens=overlap)
    return [c.text for chunks in chunker.batch(list(docs)) for c in chunks]


def timed_encode(
    embedders: dict[str, Embedder], texts: list[str], slice_size: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Vectors and total seconds per backend, encoding slice by slice in rotating order."""
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in embedders}
    seconds = dict.fromkeys(embedders, 0.0)
    names = list(embedders)
    for turn, start in enumerate(range(0, len(texts), slice_size)):
        part = texts[start : start + slice_size]
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            began = time.perf_counter()
            vectors[name].append(embedders[name].embed_documents(part))
            seconds[name] += time.perf_counter() - began
    return {name: np.concatenate(parts) for name, parts in vectors.items()}, seconds


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.sum(vectors * reference, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
    )


def recall(embedder: Embedder, passages: list[str], items: Sequence[Any], k: int) -> float:
    """Share of questions with an answer string in the top-k passages by cosine."""
    matrix = embedder.embed_documents(passages)
    queries = embedder.embed_queries([item.query for item in items])
    hits = 0
    for query, item in zip(queries, items, strict=True):
        top = np.argsort(-(matrix @ query), kind="stable")[:k]
        rank = answer_rank([passages[i] for i in top], item.references)
        hits += rank is not None
    return hits / len(items)


def load_line(label: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {label}: {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--chunk-tokens", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--slice", type=int, default=64, help="chunks per timed turn")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    args = parser.parse_args(argv)
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    if BASELINE not in names:
        names.insert(0, BASELINE)

    print(load_line("at start"), flush=True)
    embedders = {name: Embedder(backend=name, precision="float32") for name in names}
    for name, embedder in embedders.items():  # exports (first run only) and warm-up
        embedder.embed_documents(["warm-up"] * 8)
        assert embedder.resolved_backend == name, (name, embedder.resolved_backend)
    tokenizer = embedders[BASELINE].tokenizer
    english_docs = list(load_documents([BUNDLED / "corpus"]))
    corpora = {
        "zh": chunk_texts(news_documents(args.docs), tokenizer, args.chunk_tokens, args.overlap),
        "en": chunk_texts(english_docs, tokenizer, args.chunk_tokens, args.overlap),
    }
    results: dict[str, dict[str, Any]] = {name: {} for name in names}
    for corpus, texts in corpora.items():
        vectors, seconds = timed_encode(embedders, texts, args.slice)
        for name in names:
            cos = cosines(vectors[name], vectors[BASELINE])
            results[name][corpus] = {
                "rate": len(texts) / seconds[name],
                "mean": float(cos.mean()),
                "min": float(cos.min()),
            }
    items = load_qa_jsonl(BUNDLED / "questions.jsonl")
    small = chunk_texts(english_docs, tokenizer, 64, 8)
    for name, embedder in embedders.items():
        results[name]["R@5"] = recall(embedder, corpora["en"], items, 5)
        results[name]["R@1 64"] = recall(embedder, small, items, 1)
        results[name]["R@5 64"] = recall(embedder, small, items, 5)
    print(
        f"\n{args.docs} CRUD-RAG articles -> {len(corpora['zh'])} zh chunks, bundled corpus -> "
        f"{len(corpora['en'])} en chunks ({args.chunk_tokens} tokens, overlap {args.overlap}); "
        f"{len(items)} bundled questions, {len(small)} chunks of 64 tokens for the R@k 64 columns"
    )
    print(table(names, results))
    print(load_line("at end"))


def table(names: Sequence[str], results: dict[str, dict[str, Any]]) -> str:
    base = results[BASELINE]
    header = (
        "| backend | zh passages/s | x torch | en passages/s | x torch | cos zh mean / min "
        "| cos en mean / min | R@5 | R@1 (64 tok) | R@5 (64 tok) |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name in names:
        r = results[name]
        zh, en = r["zh"], r["en"]
        lines.append(
            f"| {name} | {zh['rate']:.1f} | {zh['rate'] / base['zh']['rate']:.2f} "
            f"| {en['rate']:.1f} | {en['rate'] / base['en']['rate']:.2f} "
            f"| {zh['mean']:.4f} / {zh['min']:.4f} | {en['mean']:.4f} / {en['min']:.4f} "
            f"| {r['R@5']:.3f} | {r['R@1 64']:.3f} | {r['R@5 64']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
