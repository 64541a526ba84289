"""Retrieval for a sweep: which variants can share one search, the search itself, and the
retrieval-only scores that rank variants before any answer is generated."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ragkit.errors import ConfigError
from ragkit.eval import metrics
from ragkit.eval.scoring import retrieved_gold_ids
from ragkit.eval.tasks import EvalItem
from ragkit.protocols import Pipeline
from ragkit.registry import REGISTRIES, RETRIEVERS, Parts
from ragkit.spec import PipelineSpec, section_kind
from ragkit.types import Answer, Chunk, Retrieved

# Scores computed from the ranked chunks alone, no generation; `answer_*` count a hit when a
# reference answer string occurs in the chunk, the others when the chunk's document is gold.
RETRIEVAL_METRICS = (
    "recall@1",
    "recall@5",
    "mrr@10",
    "answer_recall@1",
    "answer_recall@5",
    "answer_mrr@10",
)


def chunking_key(spec: PipelineSpec) -> str:
    """Variants with equal keys read one index."""
    return json.dumps([spec.embedder.model_dump(), spec.chunker.model_dump()], sort_keys=True)


def retrieval_key(spec: PipelineSpec) -> str:
    """Variants with equal keys rank chunks identically up to their own `top_k`, so one search
    at the largest `top_k` serves them all. Expansion and compression work on the final list as
    a whole (merging hits, sharing a token budget), so with either `top_k` stays in the key."""
    body = spec.model_dump(
        mode="json", exclude={"name", "description", "store", "prompt", "generator"}
    )
    if spec.expand is None and spec.compress is None:
        body["retriever"].pop("top_k")
    if uses_generator(spec):
        body["generator"] = spec.generator.model_dump(mode="json")
    return json.dumps(body, sort_keys=True)


def uses(spec: PipelineSpec, what: str, sections: tuple[str, ...] = tuple(REGISTRIES)) -> bool:
    """Whether any of the spec's `sections` is of a kind that uses `what` (see
    `ragkit.registry.USES`), as its registry entry (or a user's class) says."""
    for name in sections:
        section = getattr(spec, name)
        if section is not None and REGISTRIES[name].uses(section_kind(section), what):
            return True
    return False


def uses_generator(spec: PipelineSpec) -> bool:
    """Whether retrieving calls the generator; only then do generator settings matter here.
    Iter-RetGen's later rounds search with the generator's draft."""
    stages = tuple(name for name in REGISTRIES if name != "generator")
    return uses(spec, "generator", stages) or spec.iterate is not None


def needs_embeddings(spec: PipelineSpec) -> bool:
    """Whether the variant searches stored vectors (a lexical-only variant does not)."""
    return uses(spec, "embedder", ("retriever", "rewrite"))


def in_memory(rag: Pipeline, chunks: Sequence[Chunk], spec: PipelineSpec | None = None) -> Pipeline:
    """The pipeline with its retriever over `chunks` instead of a store, so variants that
    search no vectors need no embedding pass: BM25 over the chunks, or any other kind `spec`
    names remade with the chunks as its store. A retriever wrapping it (conversational search)
    keeps its wrapper, and an expander reads its neighbours from the same chunks."""
    from ragkit.pipeline import RAGPipeline
    from ragkit.retrieval.bm25 import BM25Retriever
    from ragkit.stages.history import HistorySearch
    from ragkit.stages.neighbours import ChunkList

    outer = rag.retriever
    inner = outer.retriever if isinstance(outer, HistorySearch) else outer
    lexical: Any
    if isinstance(inner, BM25Retriever):
        lexical = BM25Retriever.from_chunks(chunks, top_k=inner.top_k, terms=inner.terms)
    elif spec is not None and not needs_embeddings(spec):
        section = spec.retriever.model_copy(
            update={"top_k": getattr(inner, "top_k", spec.retriever.top_k)}
        )
        listed = ChunkList(chunks)
        lexical = RETRIEVERS.build(section_kind(section), section, Parts(store=lambda: listed))
    else:
        raise ConfigError(
            f"pipeline {rag.pipeline_name!r}: an in-memory index needs a retriever that"
            f" searches no vectors, got {type(inner).__name__}"
        )
    if isinstance(outer, HistorySearch):
        rag = rag.with_retriever(outer.model_copy(update={"retriever": lexical}))
    else:
        rag = rag.with_retriever(lexical)
    expander: Any = getattr(rag, "expander", None)
    if isinstance(rag, RAGPipeline) and getattr(expander, "source", None) is not None:
        reader = expander.model_copy(update={"source": ChunkList(chunks)})
        rag = rag.model_copy(update={"expander": reader})
    return rag


def item_retrieval_scores(item: EvalItem, hits: Sequence[Retrieved]) -> dict[str, float]:
    scores: dict[str, float] = {}
    if item.gold_sources:
        ids = retrieved_gold_ids(Answer(text="", retrieved=tuple(hits)), item.gold_sources)
        gold = list(item.gold_sources)
        scores["recall@1"] = metrics.recall_at_k(ids, gold, 1)
        scores["recall@5"] = metrics.recall_at_k(ids, gold, 5)
        scores["mrr@10"] = metrics.mrr(ids, gold, k=10)
    refs = list(item.references or (item.reference,))
    rank = metrics.answer_rank([h.chunk.text for h in hits[:10]], refs)
    scores["answer_recall@1"] = float(rank is not None and rank <= 1)
    scores["answer_recall@5"] = float(rank is not None and rank <= 5)
    scores["answer_mrr@10"] = 0.0 if rank is None else 1.0 / rank
    return scores
