"""Retrievers: a query in, ranked chunks out (dense, BM25, and their reciprocal rank fusion).

The concrete retrievers load lazily (`from ragkit.retrieval import DenseRetriever` imports only
that module), so the package stays cheap to import and the submodules can share the base class
defined here without import cycles.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, field_validator

from ragkit.lazy import lazy_exports
from ragkit.runnable import BatchedRunnable
from ragkit.types import Query, Retrieved

__all__ = [
    "BM25Retriever",
    "DenseRetriever",
    "HybridRetriever",
    "Retriever",
    "as_query",
    "reciprocal_rank_fusion",
]

_LAZY = {
    "ragkit.retrieval.dense": ("DenseRetriever",),
    "ragkit.retrieval.bm25": ("BM25Retriever",),
    "ragkit.retrieval.fusion": ("HybridRetriever", "reciprocal_rank_fusion"),
}


__getattr__, _ = lazy_exports(__name__, _LAZY)


def as_query(value: Query | str) -> Query:
    """Accept a bare question string wherever a Query is expected; reject empty questions."""
    query = Query(question=value) if isinstance(value, str) else value
    if not isinstance(query, Query):
        raise TypeError(f"expected a Query or str, got {type(value)!r}")
    if not query.question.strip():
        raise ValueError("query question must be a non-empty string, got an empty one")
    return query


def check_top_k(top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
        raise ValueError(f"top_k must be an integer > 0, but got {top_k!r}")
    return top_k


class Retriever(BatchedRunnable[Query | str, list[Retrieved]]):
    """Base for retrievers: one batched path (`retrieve`), with `invoke` as a batch of one.

    Subclasses implement `_retrieve(queries, top_k)` for validated Query objects; `batch`
    hands all queries to it at once so a model embeds them in one call.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    top_k: int = 5

    @field_validator("top_k")
    @classmethod
    def _valid_top_k(cls, value: int) -> int:
        return check_top_k(value)

    def retrieve(
        self, queries: Sequence[Query | str], top_k: int | None = None
    ) -> list[list[Retrieved]]:
        """Ranked chunks per query; `top_k` overrides the configured number for this call."""
        if top_k is None:
            top_k = self.top_k
        check_top_k(top_k)
        if isinstance(queries, str | Query):
            raise TypeError("retrieve expects a sequence of queries; use invoke for one")
        parsed = [as_query(q) for q in queries]
        if not parsed:
            return []
        return self._retrieve(parsed, top_k)

    def _retrieve(self, queries: list[Query], top_k: int) -> list[list[Retrieved]]:
        raise NotImplementedError

    def _run_batch(
        self, inputs: list[Query | str], config: list[RunnableConfig] | RunnableConfig | None = None
    ) -> list[list[Retrieved]]:
        return self.retrieve(inputs)
