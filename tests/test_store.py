"""The chroma store: exact round trips, cosine scores, filters, deletes, model guard, errors."""

from __future__ import annotations

import numpy as np
import pytest

from ragkit.errors import StoreError
from ragkit.index.store import ChromaStore, DocumentRecord
from ragkit.testing import StoreContract
from ragkit.types import Chunk


def _chunk(doc: str, i: int, text: str, **meta) -> Chunk:
    return Chunk(
        id=f"{doc}:{i:05d}",
        doc_id=doc,
        text=text,
        start=i * 100,
        end=i * 100 + len(text),
        metadata={"source": f"/data/{doc}.txt", **meta},
    )


def _unit(rows) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path) -> ChromaStore:
    return ChromaStore(tmp_path / "chroma", collection="unit", embedding_model="toy-model")


def test_chunks_round_trip_exactly(store):
    chunks = [
        _chunk("d1", 0, "  Leading spaces, 中文，emoji 🙂 and\nnewlines\t", lang="mixed", page=3),
        _chunk("d1", 1, "second", tags=["a", "b"], nested={"k": [1, 2]}, missing=None),
        _chunk("d2", 0, "third", flag=True, ratio=0.25),
    ]
    store.upsert(chunks, _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    assert store.get_chunks(ids=[c.id for c in chunks]) == chunks
    assert sorted(store.get_chunks(), key=lambda c: c.id) == chunks
    assert store.count() == 3


def test_query_scores_are_cosine_similarity_with_ranks_from_one(store):
    chunks = [_chunk("d", i, f"text {i}") for i in range(3)]
    store.upsert(chunks, _unit([[1, 0], [1, 1], [0, 1]]))
    [hits] = store.query(np.array([1.0, 0.0]), k=2)
    assert [h.chunk.id for h in hits] == ["d:00000", "d:00001"]
    assert [h.rank for h in hits] == [1, 2]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(np.sqrt(0.5), abs=1e-4)
    both = store.query(_unit([[1, 0], [0, 1]]), k=1)
    assert [[h.chunk.id for h in hits] for hits in both] == [["d:00000"], ["d:00002"]]
    with pytest.raises(ValueError, match="k must be > 0"):
        store.query(np.array([1.0, 0.0]), k=0)


class AnswersShort:
    """Chroma's collection answering every query with one hit at most: the short answers its
    approximate index gives after some deletions (chroma-core/chroma#4275), which a test cannot
    cause at will."""

    def __init__(self, collection) -> None:
        self.collection = collection

    def query(self, **kwargs):
        got = self.collection.query(**kwargs)
        fields = ("ids", "documents", "metadatas", "distances")
        return {**got, **{name: [rows[:1] for rows in got[name]] for name in fields}}

    def __getattr__(self, name):
        return getattr(self.collection, name)


def test_a_search_answered_short_is_answered_exactly(store):
    chunks = [_chunk("d", i, f"text {i}", part=i % 2) for i in range(6)]
    store.upsert(chunks, _unit([[1, 0.1 * i, 0.05 * i * i] for i in range(6)]))
    queries = _unit([[1, 0.25, 0.1], [0.2, 1, 0.3]])
    full = store.query(queries, k=4)
    assert all(len(hits) == 4 for hits in full)
    store._collection = AnswersShort(store._collection)
    completed = store.query(queries, k=4)
    assert [[h.chunk for h in hits] for hits in completed] == [
        [h.chunk for h in hits] for hits in full
    ]
    for got, want in zip(completed, full, strict=True):
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)
        assert [h.rank for h in got] == [1, 2, 3, 4]
    [odd] = store.query(queries[:1], k=4, where={"part": 1})
    assert [h.chunk.id for h in odd] == ["d:00001", "d:00003", "d:00005"]
    [everything] = store.query(queries[:1], k=10)
    assert sorted(h.chunk.id for h in everything) == [c.id for c in chunks]


class TestChromaStoreContract(StoreContract):
    """Round trip, idempotent upsert, query ranks and deletes, as every store keeps them."""

    @pytest.fixture
    def store(self, tmp_path):
        return ChromaStore(tmp_path / "contract", collection="unit", embedding_model="toy-model")


def test_filters_accept_simple_dicts_lists_and_doc_id(store):
    chunks = [
        _chunk("a", 0, "one", lang="en", year=2023),
        _chunk("a", 1, "two", lang="zh", year=2023),
        _chunk("b", 0, "three", lang="en", year=2024),
    ]
    store.upsert(chunks, _unit([[1, 0], [1, 0.1], [1, 0.2]]))

    def ids(where):
        return sorted(h.chunk.id for h in store.query(np.array([1.0, 0.0]), k=5, where=where)[0])

    assert ids({"lang": "en"}) == ["a:00000", "b:00000"]
    assert ids({"lang": "en", "year": 2023}) == ["a:00000"]
    assert ids({"year": [2024, 1999]}) == ["b:00000"]
    assert ids({"doc_id": "a"}) == ["a:00000", "a:00001"]
    assert ids({"year": {"$gt": 2023}}) == ["b:00000"]
    assert [c.id for c in store.get_chunks(where={"lang": "zh"})] == ["a:00001"]


def test_deletes_by_document_and_by_source(store):
    store.upsert(
        [_chunk("a", 0, "x"), _chunk("a", 1, "y"), _chunk("b", 0, "z")], _unit([[1, 0]] * 3)
    )
    store.mark_documents(
        [
            DocumentRecord("a", "/data/a.txt", "h1", 2, True),
            DocumentRecord("b", "/data/b.txt", "h2", 1, False),
        ]
    )
    assert store.sources() == {"/data/a.txt": {"a"}}  # only complete documents count
    assert set(store.documents()) == {"a", "b"}
    assert store.delete_documents(["a"]) == 2
    assert [c.id for c in store.get_chunks()] == ["b:00000"]
    assert set(store.documents()) == {"b"}
    assert store.delete_source("/data/b.txt") == 1
    assert store.count() == 0 and store.documents() == {}


@pytest.mark.slow
def test_batches_beyond_the_client_limit(store):
    n = store.max_batch_size + 7
    chunks = [_chunk("big", i, f"t{i}") for i in range(n)]
    vectors = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    store.upsert(chunks, vectors)
    assert store.count() == n
    assert len(store.get_chunks()) == n
    assert store.delete_documents(["big"]) == n


def test_model_and_dimension_guard(tmp_path, store):
    store.upsert([_chunk("d", 0, "x")], _unit([[1, 0, 0]]))
    with pytest.raises(StoreError, match="'toy-model'.*'other-model'"):
        ChromaStore(tmp_path / "chroma", collection="unit", embedding_model="other-model")
    with pytest.raises(StoreError, match="3-dimensional.*got 2"):
        store.upsert([_chunk("d", 1, "y")], _unit([[1, 0]]))
    reopened = ChromaStore(tmp_path / "chroma", collection="unit")
    assert reopened.embedding_model == "toy-model"
    assert reopened.count() == 1
    other = ChromaStore(tmp_path / "chroma", collection="second", embedding_model="other-model")
    other.upsert([_chunk("e", 0, "z")], _unit([[0, 1]]))
    listed = store.collections()
    assert [(c.name, c.count) for c in listed] == [("second", 1), ("unit", 1)]
    assert listed[1].metadata["ragkit:embedding_model"] == "toy-model"
    assert listed[1].metadata["ragkit:dimension"] == 3


def test_mismatched_vectors_and_bad_names_are_refused(tmp_path, store):
    with pytest.raises(StoreError, match="2 chunks but vectors of shape"):
        store.upsert([_chunk("d", 0, "x"), _chunk("d", 1, "y")], _unit([[1, 0]]))
    with pytest.raises(StoreError, match="reserved"):
        store.upsert([_chunk("d", 0, "x", _doc_id="spoof")], _unit([[1, 0]]))
    with pytest.raises(StoreError, match="__docs"):
        ChromaStore(tmp_path / "c2", collection="ragkit__docs")


def test_unreachable_server_names_the_url():
    with pytest.raises(StoreError, match="http://127.0.0.1:9"):
        ChromaStore("http://127.0.0.1:9")
