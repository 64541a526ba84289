"""The contract of a vector store: chunks written come back exactly, counted once however often
they are written, are found by their vectors in rank order, and go when their document is
deleted."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pytest

from ragkit.types import Chunk


def _unit(rows: list[list[float]]) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


class StoreContract:
    """Subclass and provide a `store` fixture returning a fresh, empty store that takes
    vectors of `dimension` floats."""

    dimension: ClassVar[int] = 3

    @pytest.fixture
    def store(self) -> Any:
        raise NotImplementedError("provide a `store` fixture returning an empty store")

    def chunks(self, doc: str, n: int) -> list[Chunk]:
        return [
            Chunk(
                id=f"{doc}:{i:05d}",
                doc_id=doc,
                text=f"passage {i} of {doc}",
                start=i * 100,
                end=i * 100 + 20,
                metadata={"source": f"/data/{doc}.txt"},
            )
            for i in range(n)
        ]

    def vectors(self, n: int, offset: int = 0) -> np.ndarray:
        rows = [
            [1.0 if j == (i + offset) % self.dimension else 0.1 for j in range(self.dimension)]
            for i in range(n)
        ]
        return _unit(rows)

    def test_upsert_get_count_round_trip(self, store: Any) -> None:
        assert store.count() == 0
        chunks = self.chunks("a", 2) + self.chunks("b", 1)
        store.upsert(chunks, self.vectors(3))
        assert store.count() == 3
        assert store.get_chunks(ids=[c.id for c in chunks]) == chunks
        assert sorted(store.get_chunks(), key=lambda c: c.id) == chunks

    def test_upsert_is_idempotent(self, store: Any) -> None:
        chunks = self.chunks("a", 2)
        store.upsert(chunks, self.vectors(2))
        store.upsert(chunks, self.vectors(2))
        assert store.count() == 2
        changed = [dataclasses.replace(chunks[0], text="a new version")]
        store.upsert(changed, self.vectors(1, offset=1))
        assert store.count() == 2
        assert store.get_chunks(ids=[chunks[0].id]) == changed

    def test_query_ranks_by_vector(self, store: Any) -> None:
        chunks = self.chunks("a", self.dimension)
        store.upsert(chunks, self.vectors(self.dimension))
        [hits] = store.query(self.vectors(1, offset=1), k=2)
        assert [h.rank for h in hits] == [1, 2]
        assert hits[0].chunk == chunks[1]
        assert hits[0].score >= hits[1].score

    def test_delete_removes_a_documents_chunks(self, store: Any) -> None:
        store.upsert(self.chunks("a", 2) + self.chunks("b", 1), self.vectors(3))
        assert store.delete_documents(["a"]) == 2
        assert store.count() == 1
        assert [c.doc_id for c in store.get_chunks()] == ["b"]
        assert store.delete_documents(["a"]) == 0
