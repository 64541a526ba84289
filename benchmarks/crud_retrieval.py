"""Retrieval quality of every named pipeline on CRUD-RAG factoids and the bundled English set.

For each pipeline (plus BM25-only and dense-only baselines over the same index) it measures
answer recall@1/5/10 (an answer string occurs in a top-k chunk), MRR@10 and mean retrieval
latency per question; pipelines that call the model to retrieve (rewriting, Iter-RetGen) run on
the first `--llm-questions` questions, and the BM25 baseline is re-scored on that same subset so
every row has a comparison. With `--answers N`, the first N questions are also answered and the
share of answers containing the reference is reported.

    python benchmarks/crud_retrieval.py --articles 3000 --llm-questions 30 --answers 10
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

from ragkit import build  # noqa: E402
from ragkit.eval.metrics import answer_rank, contains_reference  # noqa: E402
from ragkit.models import cache_dir  # noqa: E402
from ragkit.spec import PipelineSpec, load_spec  # noqa: E402
from ragkit.types import Query  # noqa: E402

CRUD = REPO.parent / "shared" / "data" / "crud-rag"
NAMED = [
    "hybrid",
    "rerank",
    "rewrite-retrieve-read",
    "multi-query",
    "hyde",
    "iter-retgen",
    "best",
    "chat",
]
NEEDS_LLM = {"rewrite-retrieve-read", "multi-query", "hyde", "iter-retgen", "chat"}
DEPTH = 10
# "NAME+bm25": the named pipeline with `best`'s retriever (BM25 over words + character bigrams)
# in place of its own, so a stage's effect on Chinese is measured against the retriever it adds to.
ON_BEST_RETRIEVER = "+bm25"
SUBSET_BASELINES = ("bm25-only", "best")


def spec_for(name: str, location: str, collection: str) -> PipelineSpec:
    """The named spec (or a baseline) against the benchmark index, returning `DEPTH` hits."""
    if name in ("bm25-only", "dense-only"):
        kind = name.split("-")[0]
        spec = load_spec("best").model_copy(update={"name": name, "rewrite": None, "rerank": None})
        spec = spec.model_copy(update={"iterate": None})
        spec = spec.model_copy(
            update={
                "retriever": spec.retriever.model_copy(update={"kind": kind, "lexical": "words"})
            }
        )
    elif name.endswith(ON_BEST_RETRIEVER):
        spec = load_spec(name.removesuffix(ON_BEST_RETRIEVER))
        spec = spec.model_copy(update={"name": name, "retriever": load_spec("best").retriever})
    else:
        spec = load_spec(name)
    spec = spec.with_store(location, collection)
    retriever = spec.retriever.model_copy(
        update={"top_k": DEPTH, "candidate_k": max(spec.retriever.candidate_k, 2 * DEPTH)}
    )
    generator = spec.generator.model_copy(update={"max_new_tokens": 48})
    return spec.model_copy(update={"retriever": retriever, "generator": generator})


def lexical(rag: Any, chunks: list[Any] | None) -> Any:
    """With `--lexical-only`, a BM25 pipeline searches an in-memory index of the same chunks
    instead of the chroma store, so no chunk has to be embedded first."""
    if chunks is None:
        return rag
    from ragkit.retrieval.bm25 import BM25Retriever

    inner = getattr(rag, "pipeline", rag)
    swapped = inner.model_copy(
        update={
            "retriever": BM25Retriever.from_chunks(
                chunks, top_k=inner.retriever.top_k, terms=inner.retriever.terms
            )
        }
    )
    return rag.model_copy(update={"pipeline": swapped}) if inner is not rag else swapped


def conversational(item: Any) -> Query:
    """The item's question with the questions asked before it about the same article as history
    (questions only: the reference answers are never shown)."""
    earlier = item.metadata.get("earlier_questions", ())
    return Query(item.query, tuple(("user", q) for q in earlier))


def answer_in_history(item: Any) -> bool:
    earlier = item.metadata.get("earlier_questions", ())
    return any(ref in question for ref in item.references for question in earlier)


def rankings(rag: Any, queries: Sequence[Query]) -> list[list[str]]:
    """Chunk texts in ranked order per question; Iter-RetGen is ranked by its last search."""
    if hasattr(rag, "retrieve"):
        found = rag.retrieve(list(queries))
        return [[h.chunk.text for h in hits] for hits in found]
    answers = rag.batch([q.question for q in queries])
    texts = {h.chunk.id: h.chunk.text for a in answers for h in a.retrieved}
    out = []
    for answer in answers:
        last = answer.trace[-1]
        ids = last["chunk_ids"]
        out.append([texts[i] for i in ids if i in texts])
    return out


def score(ranked: list[list[str]], references: list[Sequence[str]]) -> dict[str, float]:
    ranks = [
        answer_rank(texts[:DEPTH], refs) for texts, refs in zip(ranked, references, strict=True)
    ]
    n = len(ranks) or 1
    return {
        "R@1": sum(r is not None and r <= 1 for r in ranks) / n,
        "R@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "R@10": sum(r is not None for r in ranks) / n,
        "MRR@10": sum(1 / r for r in ranks if r) / n,
    }


def measure(
    names: Sequence[str],
    items: Sequence[Any],
    location: str,
    collection: str,
    llm_questions: int,
    answers: int,
    chunks: list[Any] | None = None,
    conversation: bool = False,
) -> list[dict[str, Any]]:
    rows = []
    subset_baseline_done = False
    for name in names:
        if chunks is not None and spec_for(name, location, collection).retriever.kind != "bm25":
            print(f"skipped {name}: needs embeddings (run without --lexical-only)", flush=True)
            continue
        llm = name.removesuffix(ON_BEST_RETRIEVER) in NEEDS_LLM
        subset = list(items[:llm_questions]) if llm else list(items)
        if llm and not subset_baseline_done and len(subset) < len(items):
            for baseline in SUBSET_BASELINES:
                rows.append(_row(baseline, subset, location, collection, 0, chunks, conversation))
                rows[-1]["pipeline"] = f"{baseline} (first {len(subset)})"
                print(_markdown([rows[-1]]).splitlines()[-1], flush=True)
            subset_baseline_done = True
        rows.append(_row(name, subset, location, collection, answers, chunks, conversation))
        print(_markdown([rows[-1]]).splitlines()[-1], flush=True)
    return rows


def _row(
    name: str,
    items: Sequence[Any],
    location: str,
    collection: str,
    answers: int,
    chunks: list[Any] | None = None,
    conversation: bool = False,
) -> dict[str, Any]:
    rag = lexical(build.pipeline(spec_for(name, location, collection)), chunks)
    queries = [conversational(i) if conversation else Query(i.query) for i in items]
    if hasattr(rag, "retrieve"):
        rag.retrieve([Query(items[0].query)])  # builds a lazy index outside the timing
    started = time.perf_counter()
    ranked = rankings(rag, queries)
    latency = (time.perf_counter() - started) / max(len(items), 1)
    label = f"{name} (conversation)" if conversation else name
    row: dict[str, Any] = {"pipeline": label, "questions": len(items)}
    row.update(score(ranked, [i.references for i in items]))
    row["latency_s"] = latency
    if answers > 0 and name != "dense-only":
        asked = list(items[:answers])
        replies = rag.batch(queries[:answers])
        hits = [
            contains_reference(a.text, i.references) for a, i in zip(replies, asked, strict=True)
        ]
        row["answer_contains"] = f"{sum(hits) / len(hits):.2f} (n={len(hits)})"
    return row


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = "| pipeline | questions | R@1 | R@5 | R@10 | MRR@10 | latency s/q | answer has ref |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['pipeline']} | {r['questions']} | {r['R@1']:.3f} | {r['R@5']:.3f} | "
            f"{r['R@10']:.3f} | {r['MRR@10']:.3f} | {r['latency_s']:.2f} | "
            f"{r.get('answer_contains', '-')} |"
        )
    return "\n".join(lines)


def index(spec_name: str, docs: Any, location: str, collection: str) -> None:
    spec = load_spec(spec_name).with_store(location, collection)
    started = time.perf_counter()
    report = build.ingestor(spec).ingest_documents(docs, progress=False)
    print(f"indexed into {collection}: {report} in {time.perf_counter() - started:.0f} s")
    print(f"chunks: {build.store(spec).count()}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=3000)
    parser.add_argument("--llm-questions", type=int, default=30)
    parser.add_argument("--answers", type=int, default=0)
    parser.add_argument("--pipelines", nargs="*", default=["bm25-only", "dense-only", *NAMED])
    parser.add_argument("--store", default=str(cache_dir() / "bench-crud-retrieval"))
    parser.add_argument("--skip-english", action="store_true")
    parser.add_argument(
        "--lexical-only",
        action="store_true",
        help="CRUD rows for BM25 pipelines only, from in-memory chunks (no embedding pass)",
    )
    parser.add_argument(
        "--conversation",
        action="store_true",
        help="ask each factoid item's questions as one conversation (earlier questions as history)",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "crud_retrieval.md"))
    args = parser.parse_args(argv)

    from ragkit.eval.datasets import answerable_factoids, load_crud_news, load_qa_jsonl

    factoids = CRUD / "qa" / "questanswer_1doc_factoids.json"
    items = answerable_factoids(CRUD, factoids, args.articles)
    print(f"{len(items)} answerable factoid questions over {args.articles} articles", flush=True)
    collection = f"crud-{args.articles}"
    chunks = None
    if args.lexical_only:
        chunker = build.chunker(load_spec("best"))
        chunks = [c for d in load_crud_news(CRUD, args.articles) for c in chunker.invoke(d)]
        print(f"{len(chunks)} chunks (lexical only, not stored)", flush=True)
    else:
        index("best", load_crud_news(CRUD, args.articles), args.store, collection)
    crud_rows = measure(
        args.pipelines,
        items,
        args.store,
        collection,
        args.llm_questions,
        args.answers,
        chunks,
        args.conversation,
    )
    asked = " asked as conversations" if args.conversation else ""
    sections = [
        f"## CRUD-RAG factoids ({len(items)} questions{asked}, first {args.articles} articles)\n",
        _markdown(crud_rows),
    ]
    if args.conversation:
        # An earlier question sometimes states a later one's answer ("哪项办法将于2023年12月1日起
        # 正式实施？" before "…将于哪一天正式实施？"); scored without those, so a gain from the
        # history is not just the answer copied into the query.
        clean = [i for i in items if not answer_in_history(i)]
        clean_rows = measure(
            args.pipelines,
            clean,
            args.store,
            collection,
            args.llm_questions,
            0,
            chunks,
            True,
        )
        sections += [
            f"\n### Without the {len(items) - len(clean)} questions whose answer an earlier "
            f"question states ({len(clean)} questions)\n",
            _markdown(clean_rows),
        ]
    if not args.skip_english:
        from ragkit.loaders import load_documents

        english = load_qa_jsonl(REPO / "ragkit" / "eval" / "bundled" / "questions.jsonl")
        index(
            "best",
            load_documents([REPO / "ragkit" / "eval" / "bundled" / "corpus"]),
            args.store,
            "bundled",
        )
        names = [n for n in args.pipelines if n in ("bm25-only", "dense-only", "hybrid", "best")]
        en_rows = measure(names, english, args.store, "bundled", args.llm_questions, 0)
        sections += [f"\n## Bundled English ({len(english)} questions)\n", _markdown(en_rows)]
    text = "\n".join(sections) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
