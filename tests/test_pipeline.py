"""The assembled pipeline on real parts: bundled corpus, real chromadb, MiniLM, the local model."""

import asyncio

import pytest
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

from ragkit import build
from ragkit.types import Answer, AnswerChunk, Query

pytestmark = pytest.mark.slow

QUESTION = "What is the capacity of the desalination plant?"


@pytest.fixture(scope="module")
def rag(bundled_spec):
    return build.pipeline(bundled_spec)


def test_invoke_returns_cited_answer_from_the_right_document(rag):
    answer = rag.invoke(QUESTION)
    assert isinstance(answer, Answer)
    assert answer.text.strip()
    assert answer.question == QUESTION
    sources = [r.chunk.source for r in answer.retrieved]
    assert any("desalination" in s for s in sources[:2]), sources
    for c in answer.citations:
        assert c.source in sources
    u = answer.usage
    assert u.prompt_tokens > 50 and u.completion_tokens > 0 and u.time_to_first_token_s > 0


def test_batch_matches_invoke(rag, float32_generator):
    rag = rag.with_generator(float32_generator)  # exact batching is promised in float32
    questions = [QUESTION, "Who runs the ferry company?"]
    batched = rag.batch(questions)
    assert [a.question for a in batched] == questions
    assert batched[0].text == rag.invoke(QUESTION).text  # greedy decoding is deterministic


def test_stream_yields_deltas_then_the_answer(rag):
    pieces = list(rag.stream(Query(QUESTION)))
    assert all(isinstance(p, AnswerChunk) for p in pieces)
    final = pieces[-1].answer
    assert final is not None and all(p.answer is None for p in pieces[:-1])
    assert "".join(p.text for p in pieces[:-1]).strip() == final.text.strip()
    assert final.retrieved


def test_ainvoke(rag):
    answer = asyncio.run(rag.ainvoke({"question": QUESTION}))
    assert answer.text.strip()


def test_filters_restrict_retrieval(rag, bundled_corpus):
    only = str(next(p for p in sorted(bundled_corpus.iterdir()) if "ferry" in p.name).resolve())
    hits = rag.retrieve([Query(QUESTION, filters={"source": only})])[0]
    assert hits and all(h.chunk.source == only for h in hits)


def test_components_compose_with_pipe(rag):
    chain = (
        {"retrieved": rag.retriever, "question": RunnablePassthrough()}
        | rag.assembler
        | rag.generator
        | RunnableLambda(lambda a: a.text.upper())
    )
    out = chain.invoke(QUESTION)
    assert out and out == out.upper()


def test_empty_question_is_rejected(rag):
    with pytest.raises(ValueError, match="empty"):
        rag.invoke("   ")
