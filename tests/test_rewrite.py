"""Query rewriting with the real local model: the original question survives every mode."""

from __future__ import annotations

import pytest

from ragkit.pipeline import RAGPipeline
from ragkit.retrieval.bm25 import BM25Retriever
from ragkit.retrieval.fusion import reciprocal_rank_fusion
from ragkit.stages.rewrite import QueryRewriter, StandaloneQuestion
from ragkit.types import Chunk, Query

QUESTION = "Who was elected mayor of Varrow Point in 2021?"
PASSAGES = [
    "The mayor, Odile Fenwick, was elected in 2021 after two terms as planning chair.",
    "The Brinewell Desalination Plant opened in 2016 and supplies drinking water.",
    "Kelpie Robotics builds underwater machines in the former Marrick Cannery.",
    "The ferry to Holm Island leaves the harbour twice a day in summer.",
]


@pytest.fixture(scope="module")
def generator(local_generator):
    return local_generator.model_copy(update={"max_new_tokens": 32})


@pytest.fixture(scope="module")
def retriever():
    chunks = [Chunk(f"c{i}", f"d{i}", t, 0, len(t)) for i, t in enumerate(PASSAGES)]
    return BM25Retriever.from_chunks(chunks, top_k=3)


def test_parse_strips_labels_numbering_and_quotes(local_generator):
    rewriter = QueryRewriter(generator=local_generator, mode="multi-query", n=2)
    text = '1. "mayor Varrow Point 2021"\n2) Query: Odile Fenwick\n3. extra'
    assert rewriter.parse(text, several=False) == ["mayor Varrow Point 2021"]
    assert rewriter.parse(text) == [
        "mayor Varrow Point 2021",
        "Odile Fenwick",
    ]
    assert QueryRewriter(generator=local_generator, mode="rewrite").parse(
        "\n查询：西安 消费券\n"
    ) == ["西安 消费券"]


@pytest.mark.parametrize(
    ("template", "fragment"),
    [("no placeholder", "{question}"), ("{question} {unknown}", "unknown")],
)
def test_bad_templates_fail_at_construction(local_generator, template, fragment):
    with pytest.raises(ValueError, match=fragment):
        QueryRewriter(generator=local_generator, template=template)


def test_chinese_question_gets_the_chinese_template(local_generator):
    rewriter = QueryRewriter(generator=local_generator, mode="hyde")
    assert "问题：哪个城市" in rewriter.prompt_texts("哪个城市发放了消费券？")[0]
    assert "Question: Who" in rewriter.prompt_texts("Who won?")[0]
    custom = QueryRewriter(generator=local_generator, template="Q={question} n={n}", n=2)
    assert custom.prompt_texts("x") == ["Q=x n=2"]


def test_multi_query_asks_one_prompt_per_angle(local_generator):
    rewriter = QueryRewriter(generator=local_generator, mode="multi-query", n=3)
    prompts = rewriter.prompt_texts("Who won?")
    assert len(prompts) == 3 and len(set(prompts)) == 3
    assert all("Who won?" in p for p in prompts)
    with pytest.raises(ValueError, match="n must be <= 5"):
        QueryRewriter(generator=local_generator, mode="multi-query", n=6)


@pytest.mark.slow
def test_rewrite_keeps_the_original_question_first(generator):
    rewriter = QueryRewriter(generator=generator, mode="rewrite", max_new_tokens=24)
    out = rewriter.batch([QUESTION, "哪个城市发放了体育类电子消费券？"])
    assert [q[0] for q in out] == [QUESTION, "哪个城市发放了体育类电子消费券？"]
    assert all(1 <= len(q) <= 2 for q in out)
    assert all(s.strip() for q in out for s in q)


@pytest.mark.slow
def test_multi_query_fuses_every_search(generator, retriever):
    rewriter = QueryRewriter(generator=generator, mode="multi-query", n=3, max_new_tokens=48)
    queries = rewriter.invoke(QUESTION)
    assert queries[0] == QUESTION and 2 <= len(queries) <= 4
    pipeline = RAGPipeline(retriever=retriever, generator=generator, rewriter=rewriter, top_k=3)
    fused = pipeline.retrieve([Query(QUESTION)])[0]
    expected = reciprocal_rank_fusion([retriever.invoke(q) for q in queries], top_k=3)
    assert [h.chunk.id for h in fused] == [h.chunk.id for h in expected]
    assert {h.source for h in fused} == {"rrf"}
    assert fused[0].chunk.id == "c0"


@pytest.mark.slow
def test_hyde_searches_with_the_generated_passage(generator, retriever):
    rewriter = QueryRewriter(generator=generator, mode="hyde", max_new_tokens=48)
    queries = rewriter.invoke(QUESTION)
    assert queries[0] == QUESTION and len(queries) == 2
    passage = queries[1]
    assert len(passage) > 20 and passage != QUESTION
    pipeline = RAGPipeline(retriever=retriever, generator=generator, rewriter=rewriter, top_k=3)
    found = pipeline.retrieve([Query(QUESTION)])[0]
    by_passage = retriever.invoke(passage)
    expected = reciprocal_rank_fusion([retriever.invoke(QUESTION), by_passage], top_k=3)
    assert [h.chunk.id for h in found] == [h.chunk.id for h in expected]


@pytest.mark.slow
def test_follow_up_is_made_standalone_and_keeps_the_original(generator):
    query = Query(
        "When was it founded?",
        history=(
            ("user", "Tell me about Varrow Point."),
            ("assistant", "Varrow Point is a small harbour town on Saltreach Bay."),
        ),
    )
    out = StandaloneQuestion(generator=generator).invoke(query)
    assert out[0] == "When was it founded?"
    assert len(out) == 2 and "varrow" in out[1].lower()
    assert StandaloneQuestion(generator=generator).invoke("No history here?") == [
        "No history here?"
    ]
