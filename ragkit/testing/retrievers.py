"""The contracts of retrievers and rerankers: `top_k` bounds the list, ranks run 1, 2, ... with
scores that never rise, every hit is a well-formed chunk, and `batch` ranks each query as
`invoke` does; a reranker returns its shortlist reordered, nothing added or lost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from ragkit.types import Chunk, Retrieved


def check_ranked(hits: Sequence[Any], top_k: int | None = None) -> None:
    """Assertions every ranked list meets: Retrieved hits, ranks 1..n, scores not rising,
    distinct well-formed chunks, at most `top_k`."""
    assert isinstance(hits, list), f"a ranked list is a list, got {type(hits).__name__}"
    assert all(isinstance(h, Retrieved) for h in hits)
    if top_k is not None:
        assert len(hits) <= top_k, f"{len(hits)} hits for top_k={top_k}"
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True), f"scores rise: {scores}"
    ids = [h.chunk.id for h in hits]
    assert len(set(ids)) == len(ids), f"a chunk appears twice: {ids}"
    for hit in hits:
        chunk = hit.chunk
        assert isinstance(chunk, Chunk)
        assert chunk.id and chunk.doc_id and chunk.text.strip()
        assert 0 <= chunk.start <= chunk.end
        assert isinstance(hit.source, str)


class RetrieverContract:
    """Subclass and provide a `retriever` fixture; `queries` should each find passages in
    the retriever's index. A retriever with a `top_k` setting is held to it; one built on
    `ragkit.retrieval.Retriever` must also honour a per-call `top_k`."""

    queries: ClassVar[tuple[str, ...]] = ("Who is the harbour master?", "When was it founded?")

    @pytest.fixture
    def retriever(self) -> Any:
        raise NotImplementedError("provide a `retriever` fixture building the component")

    def test_hits_are_ranked_and_well_formed(self, retriever: Any) -> None:
        top_k = getattr(retriever, "top_k", None)
        found = False
        for query in self.queries:
            hits = retriever.invoke(query)
            check_ranked(hits, top_k)
            found = found or bool(hits)
        assert found, "no query found anything: give `queries` that match the index"

    def test_top_k_bounds_the_list(self, retriever: Any) -> None:
        if not callable(getattr(retriever, "retrieve", None)):
            pytest.skip("no per-call top_k (`retrieve(queries, top_k=...)`)")
        for k in (1, 2):
            for hits in retriever.retrieve(list(self.queries), top_k=k):
                check_ranked(hits, k)
        with pytest.raises(ValueError, match="top_k"):
            retriever.retrieve(list(self.queries), top_k=0)

    def test_batch_ranks_each_query_as_invoke_does(self, retriever: Any) -> None:
        queries = list(self.queries)
        batched = retriever.batch(queries)
        alone = [retriever.invoke(q) for q in queries]
        assert [[h.chunk.id for h in hits] for hits in batched] == [
            [h.chunk.id for h in hits] for hits in alone
        ]
        assert [[h.rank for h in hits] for hits in batched] == [
            [h.rank for h in hits] for hits in alone
        ]


class RerankerContract:
    """Subclass and provide a `reranker` fixture; it takes `{"query": ..., "retrieved": [...]}`
    and returns the same hits in its order. `query` and `texts` make the shortlist."""

    query: ClassVar[str] = "Who is the mayor of Varrow Point?"
    texts: ClassVar[tuple[str, ...]] = (
        "Herring curing was a common trade on the north shore in the nineteenth century.",
        "The ferry to Holm Island leaves the harbour twice a day in summer.",
        "The mayor of Varrow Point, Odile Fenwick, was elected in 2021.",
    )

    @pytest.fixture
    def reranker(self) -> Any:
        raise NotImplementedError("provide a `reranker` fixture building the component")

    def shortlist(self) -> list[Retrieved]:
        return [
            Retrieved(Chunk(f"c{i}", f"d{i}", t, 0, len(t)), score=1.0 - i / 10, rank=i + 1)
            for i, t in enumerate(self.texts)
        ]

    def test_the_shortlist_comes_back_reordered(self, reranker: Any) -> None:
        shortlist = self.shortlist()
        out = reranker.invoke({"query": self.query, "retrieved": shortlist})
        check_ranked(out)
        assert sorted(h.chunk.id for h in out) == sorted(h.chunk.id for h in shortlist)
        assert {h.chunk.id: h.chunk for h in out} == {h.chunk.id: h.chunk for h in shortlist}

    def test_an_empty_shortlist_stays_empty(self, reranker: Any) -> None:
        assert reranker.invoke({"query": self.query, "retrieved": []}) == []
        assert reranker.batch([]) == []

    def test_batch_reranks_each_shortlist_as_invoke_does(self, reranker: Any) -> None:
        inputs = [
            {"query": self.query, "retrieved": self.shortlist()},
            {"query": self.texts[0], "retrieved": self.shortlist()[::-1]},
        ]
        batched = reranker.batch(inputs)
        alone = [reranker.invoke(x) for x in inputs]
        assert [[h.chunk.id for h in hits] for hits in batched] == [
            [h.chunk.id for h in hits] for hits in alone
        ]
