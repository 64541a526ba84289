"""Reciprocal rank fusion: merge ranked lists from several retrievers into one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator

from ragkit.retrieval import Retriever, check_top_k
from ragkit.types import Query, Retrieved


def reciprocal_rank_fusion(
    lists: Sequence[Sequence[Retrieved]], k: float = 60, top_k: int | None = None
) -> list[Retrieved]:
    """Score each chunk by the sum of 1 / (k + rank) over the lists it appears in.

    Ranks are positions in each list (1-based), not the lists' own scores, which is why RRF
    can merge BM25 scores and cosine similarities that live on different scales. Ties keep
    the order in which chunks were first met, so the result is deterministic.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, but got {k}")
    if top_k is not None:
        check_top_k(top_k)
    scores: dict[str, float] = {}
    first: dict[str, Retrieved] = {}
    for hits in lists:
        seen: set[str] = set()
        for position, hit in enumerate(hits, start=1):
            cid = hit.chunk.id
            if cid in seen:  # a list that repeats a chunk counts it once, at its best rank
                continue
            seen.add(cid)
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (k + position)
            first.setdefault(cid, hit)
    order = sorted(scores, key=lambda cid: -scores[cid])  # stable: first-met order breaks ties
    if top_k is not None:
        order = order[:top_k]
    return [
        Retrieved(chunk=first[cid].chunk, score=scores[cid], rank=rank, source="rrf")
        for rank, cid in enumerate(order, start=1)
    ]


class HybridRetriever(Retriever):
    """Runs several retrievers (typically dense + BM25) and fuses their lists with RRF.

    Each child returns `candidate_k` hits so a chunk ranked modestly by both can still win.
    """

    retrievers: list[Any]
    k_rrf: float = Field(60, ge=0)
    candidate_k: int = Field(20, gt=0)

    def __init__(
        self,
        retrievers: Sequence[Any] = (),
        top_k: int = 5,
        k_rrf: float = 60,
        candidate_k: int = 20,
        **kwargs: Any,
    ):
        super().__init__(
            retrievers=list(retrievers), top_k=top_k, k_rrf=k_rrf, candidate_k=candidate_k, **kwargs
        )

    @field_validator("retrievers")
    @classmethod
    def _non_empty(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("HybridRetriever needs at least one retriever, got none")
        return value

    def _retrieve(self, queries: list[Query], top_k: int) -> list[list[Retrieved]]:
        depth = max(self.candidate_k, top_k)
        per_retriever = [self._run(r, queries, depth) for r in self.retrievers]
        return [
            reciprocal_rank_fusion([lists[i] for lists in per_retriever], k=self.k_rrf, top_k=top_k)
            for i in range(len(queries))
        ]

    @staticmethod
    def _run(retriever: Any, queries: list[Query], depth: int) -> list[list[Retrieved]]:
        """Ask a ragkit retriever for `depth` hits; any other Runnable answers with its own k."""
        if isinstance(retriever, Retriever):
            return retriever.retrieve(queries, top_k=depth)
        return retriever.batch(queries)
