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
from ragkit.eval.crud_rag import default_crud_dir  # noqa: E402
from ragkit.eval.metrics import answer_rank, contains_reference  # noqa: E402
from ragkit.models import cache_dir  # noqa: E402
from ragkit.spec import PipelineSpec, load_spec  # noqa: E402
from ragkit.tune.retrieval import needs_embeddings, uses_generator  # noqa: E402
from ragkit.types import Query  # noqa: E402

CRUD = default_crud_dir(REPO)
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


_LEXICAL_CACHE: dict[tuple[int, str], Any] = {}


def lexical(rag: Any, chunks: list[Any] | None) -> Any:
    """With `--lexical-only`, a BM25 pipeline searches an in-memory index of the same chunks
    instead of the chroma store, so no chunk has to be embedded first. A follow-up stage that
    searches to decide (the `history` stage) gets the same in-memory index."""
    if chunks is None:
        return rag
    from ragkit.retrieval.bm25 import BM25Retriever

    inner = getattr(rag, "pipeline", rag)
    outer = inner.retriever
    base = getattr(outer, "retriever", outer)  # the `history` stage wraps the retriever
    key = (id(chunks), base.terms)
    if key not in _LEXICAL_CACHE:
        if len(_LEXICAL_CACHE) > 4:
            _LEXICAL_CACHE.clear()
        _LEXICAL_CACHE[key] = BM25Retriever.from_chunks(chunks, top_k=DEPTH, terms=base.terms)
    index = _LEXICAL_CACHE[key].model_copy(update={"top_k": base.top_k})
    if outer is not base:
        index = outer.model_copy(update={"retriever": index})
    swapped = inner.model_copy(update={"retriever": index})
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
        spec = spec_for(name, location, collection)
        if chunks is not None and needs_embeddings(spec):
            print(f"skipped {name}: needs embeddings (run without --lexical-only)", flush=True)
            continue
        # Pipelines whose search calls the generator run on the first `llm_questions` only.
        llm = uses_generator(spec)
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


def _slice_label(parts: Sequence[int]) -> str:
    return "parts " + "+".join(map(str, parts))


def _kind_rows(
    names: Sequence[str],
    pairs: Sequence[tuple[Any, Query]],
    build_rag: Any,
) -> list[dict[str, Any]]:
    """One row per pipeline over the same (item, query) list, scored by answer recall."""
    rows = []
    items = [item for item, _ in pairs]
    queries = [query for _, query in pairs]
    for name in names:
        rag = build_rag(name)
        started = time.perf_counter()
        ranked = rankings(rag, queries)
        latency = (time.perf_counter() - started) / max(len(queries), 1)
        row: dict[str, Any] = {"pipeline": name, "questions": len(queries)}
        row.update(score(ranked, [i.references for i in items]))
        row["latency_s"] = latency
        rows.append(row)
        print(_markdown([row]).splitlines()[-1], flush=True)
    return rows


def slice_sections(args: Any) -> list[str]:
    """Every pipeline on every slice, for each conversation kind (lexical rows in memory)."""
    from benchmarks.crud_slices import (
        answer_in_history,
        conversations,
        item_questions,
        slice_dir,
    )
    from ragkit.eval.crud_rag import answerable_factoids, load_crud_news

    factoids = CRUD / "qa" / "questanswer_1doc_factoids.json"
    questions = item_questions(factoids)
    sections = []
    for parts in args.slices:
        folder = slice_dir(CRUD / "news", parts)
        items = answerable_factoids(folder, factoids)
        docs = list(load_crud_news(folder))
        chunker = build.chunker(load_spec("best"))
        chunks = [c for d in docs for c in chunker.invoke(d)]
        head = (
            f"## {_slice_label(parts)}: {len(docs)} articles, {len(chunks)} chunks, "
            f"{len(items)} answerable questions from "
            f"{len({i.metadata['factoid_id'] for i in items})} items\n"
        )
        print(head, flush=True)
        sections.append(head)
        for kind in [] if args.reduced_only else args.kinds:
            pairs = [
                (i, q)
                for i, q in conversations(items, questions, kind)
                if not answer_in_history(i, q)
            ]
            print(f"### {kind} ({len(pairs)} questions)", flush=True)

            def build_rag(name: str, chunks: list[Any] = chunks) -> Any:
                return lexical(build.pipeline(spec_for(name, args.store, "unused")), chunks)

            rows = _kind_rows(args.pipelines, pairs, build_rag)
            sections += [f"\n### {kind} ({len(pairs)} questions)\n", _markdown(rows), ""]
        if args.dense_articles:
            sections += dense_sections(args, parts, folder, items, questions)
    return sections


# Dense multilingual-e5 fused with `best`'s lexical retriever: measured here, not shipped as a
# named pipeline (it did not beat `best` on every slice).
HYBRID_ZH = {
    "name": "hybrid-e5",
    "embedder": {"model": "intfloat/multilingual-e5-small"},
    "retriever": {"kind": "hybrid", "top_k": 5, "candidate_k": 20, "lexical": "words+bigrams"},
}


def hybrid_zh_spec() -> PipelineSpec:
    from ragkit.spec import parse_spec

    return parse_spec(dict(HYBRID_ZH), origin="crud_retrieval.HYBRID_ZH")


def dense_corpus(docs: list[Any], items: Sequence[Any], size: int) -> tuple[list[Any], list[Any]]:
    """A reduced corpus and its questions: whole factoid items are taken in id order until their
    gold articles fill half of `size`, then random other articles (fixed seed) fill the rest."""
    import random

    from benchmarks.crud_slices import SEED

    by_factoid: dict[str, list[Any]] = {}
    for item in items:
        by_factoid.setdefault(item.metadata["factoid_id"], []).append(item)
    gold: set[str] = set()
    kept: list[Any] = []
    for factoid in sorted(by_factoid):
        sources = {s for i in by_factoid[factoid] for s in i.gold_sources}
        if gold and len(gold | sources) > size // 2:
            break
        gold |= sources
        kept += by_factoid[factoid]
    corpus = [d for d in docs if d.id in gold]
    rest = [d for d in docs if d.id not in gold]
    random.Random(SEED).shuffle(rest)
    corpus += rest[: max(size - len(corpus), 0)]
    return sorted(corpus, key=lambda d: d.id), kept


def dense_sections(
    args: Any, parts: Sequence[int], folder: Path, items: Sequence[Any], questions: Any
) -> list[str]:
    """Dense e5 and hybrid (e5 + `best`'s lexical retriever) on a reduced corpus of the slice;
    the lexical rows search the same stored chunks, so every row sees the same passages."""
    from benchmarks.crud_slices import answer_in_history, conversations
    from ragkit.eval.crud_rag import load_crud_news

    docs, items = dense_corpus(list(load_crud_news(folder)), items, args.dense_articles)
    collection = f"e5-p{''.join(map(str, parts))}-{args.dense_articles}"
    spec = hybrid_zh_spec().with_store(args.store, collection)
    started = time.perf_counter()
    report = build.ingestor(spec).ingest_documents(docs, progress=False)
    print(f"indexed into {collection}: {report} in {time.perf_counter() - started:.0f} s")
    chunks = build.store(spec).get_chunks()
    sections = [
        f"\n### {_slice_label(parts)}, reduced corpus for dense rows: {len(docs)} articles "
        f"(the gold articles of {len(items)} questions plus random others), {len(chunks)} chunks\n"
    ]
    names = {
        "bm25-zh": "bm25-zh",
        "best": "best",
        "chat": "chat",
        "dense e5": "dense-e5",
        "hybrid e5 + best's lexical": "hybrid-e5",
        "hybrid e5 + history": "hybrid-e5+history",
    }

    def build_rag(label: str) -> Any:
        name = names[label]
        if name in ("bm25-zh", "best", "chat"):
            return lexical(build.pipeline(spec_for(name, args.store, "unused")), chunks)
        base = hybrid_zh_spec()
        if name == "dense-e5":
            base = base.model_copy(
                update={"retriever": base.retriever.model_copy(update={"kind": "dense"})}
            )
        if name == "hybrid-e5+history":
            base = base.model_copy(update={"rewrite": load_spec("chat").rewrite})
        base = base.with_store(args.store, collection)
        retriever = base.retriever.model_copy(update={"top_k": DEPTH})
        rag = build.pipeline(base.model_copy(update={"retriever": retriever}))
        return rag

    for kind in args.kinds:
        pairs = [
            (i, q) for i, q in conversations(items, questions, kind) if not answer_in_history(i, q)
        ]
        rows = _kind_rows(list(names), pairs, build_rag)
        sections += [f"\n#### {kind}, reduced corpus ({len(pairs)} questions)\n", _markdown(rows)]
    return sections


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
    parser.add_argument(
        "--slices",
        nargs="*",
        type=lambda v: [int(p) for p in v.split(",")],
        default=None,
        help="corpus slices by part number, e.g. `1 2 3 4` or `1,2 3,4`: every pipeline on "
        "each slice, for each conversation kind (implies lexical rows from in-memory chunks)",
    )
    parser.add_argument("--kinds", nargs="*", default=["standalone", "single", "switching"])
    parser.add_argument(
        "--dense-articles",
        type=int,
        default=0,
        help="with --slices: also index N articles of each slice (its gold articles plus random "
        "others) with multilingual-e5 and measure dense and hybrid rows there",
    )
    parser.add_argument(
        "--reduced-only",
        action="store_true",
        help="with --dense-articles: only the rows on the reduced corpus, not the whole slice",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "crud_retrieval.md"))
    args = parser.parse_args(argv)
    if args.slices:
        text = "\n".join(slice_sections(args)) + "\n"
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        return

    from ragkit.eval.crud_rag import answerable_factoids, load_crud_news
    from ragkit.eval.datasets import load_qa_jsonl

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
        from ragkit.index.loaders import load_documents

        english = load_qa_jsonl(REPO / "evals" / "bundled" / "questions.jsonl")
        index(
            "best",
            load_documents([REPO / "evals" / "bundled" / "corpus"]),
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
