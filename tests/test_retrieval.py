"""Dense, BM25 and hybrid retrieval over a real store, plus rank fusion on hand-computed ranks."""

from __future__ import annotations

import pytest

from ragkit.index.store import ChromaStore
from ragkit.retrieval import BM25Retriever, DenseRetriever, HybridRetriever
from ragkit.retrieval.fusion import reciprocal_rank_fusion
from ragkit.testing import RetrieverContract
from ragkit.types import Chunk, Query, Retrieved

TEXTS = {
    "en-cats": ("Cats sleep up to sixteen hours a day, often on warm windowsills.", "en"),
    "en-rates": ("The central bank raised interest rates by a quarter point.", "en"),
    "en-tower": ("The Eiffel Tower in Paris was finished in 1889 for the World's Fair.", "en"),
    "zh-coupon": ("西安市发放了500万元体育类电子消费券，市民可在全市173家体育场馆使用。", "zh"),
    "zh-rail": ("新建的高速铁路全长三百公里，连接两座省会城市，预计年底通车。", "zh"),
    "zh-tea": ("福建的茶农今年春茶产量增加，白茶价格稳中有升。", "zh"),
}


def _chunks() -> list[Chunk]:
    return [
        Chunk(
            id=f"{key}:00000",
            doc_id=key,
            text=text,
            start=0,
            end=len(text),
            metadata={"source": f"/corpus/{key}.txt", "lang": lang},
        )
        for key, (text, lang) in TEXTS.items()
    ]


@pytest.fixture(scope="module")
def store(tmp_path_factory, embedder) -> ChromaStore:
    store = ChromaStore(tmp_path_factory.mktemp("retrieval"), embedding_model=embedder.model_name)
    chunks = _chunks()
    store.upsert(chunks, embedder.embed_documents([c.text for c in chunks]))
    return store


def _r(cid: str) -> Retrieved:
    return Retrieved(Chunk(cid, cid, cid, 0, len(cid)), score=0.0, rank=0)


def test_rrf_matches_hand_computed_scores():
    a = [_r("x"), _r("y"), _r("z")]
    b = [_r("y"), _r("w"), _r("x")]
    fused = reciprocal_rank_fusion([a, b], k=60)
    scores = {r.chunk.id: r.score for r in fused}
    assert scores["x"] == pytest.approx(1 / 61 + 1 / 63)
    assert scores["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["w"] == pytest.approx(1 / 62)
    assert scores["z"] == pytest.approx(1 / 63)
    assert [r.chunk.id for r in fused] == ["y", "x", "w", "z"]
    assert [r.rank for r in fused] == [1, 2, 3, 4]
    assert {r.source for r in fused} == {"rrf"}
    top = reciprocal_rank_fusion([a, b], k=0, top_k=2)
    assert [(r.chunk.id, r.score) for r in top] == [("y", 1.5), ("x", pytest.approx(4 / 3))]
    assert reciprocal_rank_fusion([[], []]) == []
    with pytest.raises(ValueError, match="top_k"):
        reciprocal_rank_fusion([a], top_k=0)


def test_dense_finds_the_english_passage(store, embedder):
    dense = DenseRetriever(store, embedder, top_k=2)
    hits = dense.invoke("When was the Eiffel Tower built?")
    assert hits[0].chunk.doc_id == "en-tower"
    assert len(hits) == 2 and hits[0].score > hits[1].score and hits[0].source == "dense"


def test_dense_applies_filters(store, embedder):
    dense = DenseRetriever(store, embedder, top_k=3)
    queries = [
        "How long do cats sleep?",
        Query("How long do cats sleep?", filters={"lang": "zh"}),
        "interest rates",
    ]
    batched = dense.batch(queries)
    assert batched[0][0].chunk.doc_id == "en-cats"
    assert {h.chunk.metadata["lang"] for h in batched[1]} == {"zh"}


def test_bm25_finds_chinese_answer_by_jieba_tokens(store):
    bm25 = BM25Retriever(store, top_k=3)
    hits = bm25.invoke("哪个城市发放了体育类电子消费券？")
    assert hits[0].chunk.doc_id == "zh-coupon"
    assert hits[0].source == "bm25" and hits[0].rank == 1
    assert all(h.score > 0 for h in hits)
    assert bm25.invoke(Query("体育场馆", filters={"lang": "en"})) == []
    assert bm25.invoke("高速铁路")[0].chunk.doc_id == "zh-rail"


def test_bm25_rebuilds_when_the_store_changes(tmp_path, embedder):
    store = ChromaStore(tmp_path / "grow", embedding_model=embedder.model_name)
    first = _chunks()[:3]
    store.upsert(first, embedder.embed_documents([c.text for c in first]))
    bm25 = BM25Retriever(store)
    assert bm25.invoke("白茶价格") == []
    rest = _chunks()[3:]
    store.upsert(rest, embedder.embed_documents([c.text for c in rest]))
    assert bm25.invoke("白茶价格")[0].chunk.doc_id == "zh-tea"


def test_bm25_over_plain_chunks():
    bm25 = BM25Retriever(_chunks(), top_k=1)
    assert [h.chunk.doc_id for h in bm25.invoke("interest rates bank")] == ["en-rates"]
    assert bm25.invoke("zzzz qqqq") == []
    with pytest.raises(ValueError, match="Chunks"):
        BM25Retriever(["not a chunk"])


def test_chinese_bigrams_match_across_jieba_segmentations():
    # jieba cuts the passage as 新能源 / 汽车销量 but the query as 能源 / 汽车: no word in common.
    passage = Chunk("c1", "d1", "今年新能源汽车销量大增。", 0, 12)
    other = Chunk("c2", "d2", "白茶价格今年上涨。", 0, 9)
    query = "能源汽车卖了多少"
    assert BM25Retriever([passage, other]).invoke(query) == []
    found = BM25Retriever([passage, other], terms="words+bigrams").invoke(query)
    assert [h.chunk.id for h in found] == ["c1"]


def test_lexical_terms_validates_its_mode():
    from ragkit.text import cjk_bigrams, lexical_terms

    assert cjk_bigrams("Tesla 新能源 Model3") == ["新能", "能源"]
    with pytest.raises(ValueError, match="unknown lexical terms 'chars'"):
        lexical_terms("text", "chars")  # type: ignore[arg-type]


def test_hybrid_fuses_children_in_rrf_order(store, embedder):
    dense = DenseRetriever(store, embedder)
    bm25 = BM25Retriever(store)
    hybrid = HybridRetriever([dense, bm25], top_k=3, k_rrf=60, candidate_k=4)
    question = "体育类电子消费券在多少家场馆使用？"
    expected = reciprocal_rank_fusion(
        [dense.retrieve([question], top_k=4)[0], bm25.retrieve([question], top_k=4)[0]],
        k=60,
        top_k=3,
    )
    got = hybrid.invoke(question)
    assert [(h.chunk.id, h.score) for h in got] == [(h.chunk.id, h.score) for h in expected]
    assert got[0].chunk.doc_id == "zh-coupon"
    assert len(hybrid.batch([question, "Eiffel Tower"])) == 2


@pytest.mark.parametrize("bad", ["", "   ", Query("")])
def test_every_retriever_rejects_empty_queries(store, embedder, bad):
    for retriever in (
        DenseRetriever(store, embedder),
        BM25Retriever(store),
        HybridRetriever([BM25Retriever(store)]),
    ):
        with pytest.raises(ValueError, match="non-empty"):
            retriever.invoke(bad)


def test_parameters_are_validated(store, embedder):
    with pytest.raises(ValueError, match="top_k"):
        DenseRetriever(store, embedder, top_k=0)
    with pytest.raises(ValueError, match="top_k"):
        BM25Retriever(store, top_k=-1)
    with pytest.raises(ValueError, match="candidate_k"):
        HybridRetriever([BM25Retriever(store)], candidate_k=0)
    with pytest.raises(ValueError, match="k_rrf"):
        HybridRetriever([BM25Retriever(store)], k_rrf=-1)
    with pytest.raises(ValueError, match="at least one"):
        HybridRetriever([])


# The retriever contract (ranks, well-formed hits, top_k, batch == invoke) for each built-in.
QUERIES = ("When was the Eiffel Tower built?", "哪个城市发放了体育类电子消费券？", "interest rates")


class TestDenseContract(RetrieverContract):
    queries = QUERIES

    @pytest.fixture
    def retriever(self, store, embedder):
        return DenseRetriever(store, embedder, top_k=3)


class TestBM25Contract(RetrieverContract):
    queries = QUERIES

    @pytest.fixture
    def retriever(self, store):
        return BM25Retriever(store, top_k=3, terms="words+bigrams")


class TestHybridContract(RetrieverContract):
    queries = QUERIES

    @pytest.fixture
    def retriever(self, store, embedder):
        children = [DenseRetriever(store, embedder), BM25Retriever(store)]
        return HybridRetriever(children, top_k=3, candidate_k=4)
