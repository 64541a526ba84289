"""Iter-RetGen with the real local model and a real BM25 index over the bundled corpus."""

from __future__ import annotations

import pytest

from ragkit.pipeline import RAGPipeline
from ragkit.retrieval.bm25 import BM25Retriever
from ragkit.stages.iterate import IterRetGen
from ragkit.types import Chunk

pytestmark = pytest.mark.slow

QUESTION = "Who founded Varrow Point, and in which year?"


@pytest.fixture(scope="module")
def generator(local_generator):
    return local_generator.model_copy(update={"max_new_tokens": 12})


@pytest.fixture(scope="module")
def bundled_retriever(bundled_corpus):
    from ragkit.index.chunking import TokenChunker
    from ragkit.index.loaders import load_documents

    chunker = TokenChunker(chunk_tokens=64, overlap_tokens=8)
    chunks = [c for doc in load_documents([bundled_corpus]) for c in chunker.invoke(doc)]
    return BM25Retriever.from_chunks(chunks, top_k=2)


def test_two_rounds_keep_the_trace_and_extend_the_prompt(generator, bundled_retriever):
    rag = RAGPipeline(retriever=bundled_retriever, generator=generator, top_k=2)
    loop = IterRetGen(pipeline=rag, rounds=2, stop_when_stable=False)
    answer = loop.invoke(QUESTION)

    assert [t["round"] for t in answer.trace] == [1, 2]
    first, second = answer.trace
    assert first["queries"] == [QUESTION]
    assert second["queries"] == [f"{QUESTION}\n{first['draft']}"]
    assert answer.text == second["draft"]
    # Round 2's prompt keeps round 1's passages first, in the same order (a shared prefix).
    assert second["prompt_chunk_ids"][: len(first["prompt_chunk_ids"])] == first["prompt_chunk_ids"]
    assert set(second["prompt_chunk_ids"]) == set(first["chunk_ids"]) | set(second["chunk_ids"])
    assert [h.chunk.id for h in answer.retrieved] == second["prompt_chunk_ids"]
    assert answer.usage.prompt_tokens == sum(t["usage"]["prompt_tokens"] for t in answer.trace)
    assert answer.usage.completion_tokens > 0

    round1 = rag.assembler.assemble(QUESTION, bundled_retriever.invoke(QUESTION))
    round2 = rag.assembler.extend(round1, bundled_retriever.invoke(second["queries"][0]))
    body1 = round1.user_text[: -len(round1.suffix)]
    assert round2.user_text.startswith(body1)
    assert [s.chunk_id for s in round2.segments] == second["prompt_chunk_ids"]


def test_stops_early_when_the_answer_is_stable(generator):
    texts = [
        "Varrow Point was founded in 1847 by the shipwright Elias Marrick.",
        "The town council has 13 elected members.",
    ]
    chunks = [Chunk(f"c{i}", f"d{i}", t, 0, len(t)) for i, t in enumerate(texts)]
    # Every round finds the same two passages, so the prompt and the greedy answer repeat.
    retriever = BM25Retriever.from_chunks(chunks, top_k=5)
    rag = RAGPipeline(retriever=retriever, generator=generator, top_k=5)
    stable = IterRetGen(pipeline=rag, rounds=4, stop_when_stable=True).invoke(
        "When was Varrow Point founded, and how many council members does it have?"
    )
    assert len(stable.trace) == 2
    assert stable.trace[0]["draft"] == stable.trace[1]["draft"] == stable.text

    streamed = list(
        IterRetGen(pipeline=rag, rounds=2, stop_when_stable=True).stream(
            "When was Varrow Point founded?"
        )
    )
    final = streamed[-1].answer
    assert final is not None and len(final.trace) == 2
    assert "".join(c.text for c in streamed) == final.text


def test_batch_matches_invoke_and_validates_rounds(float32_generator, bundled_retriever):
    generator = float32_generator.model_copy(update={"max_new_tokens": 12})
    rag = RAGPipeline(retriever=bundled_retriever, generator=generator, top_k=2)
    with pytest.raises(ValueError, match="rounds"):
        IterRetGen(pipeline=rag, rounds=0)
    loop = IterRetGen(pipeline=rag, rounds=2)
    one = loop.invoke(QUESTION)
    both = loop.batch([QUESTION, "What does Kelpie Robotics build?"])

    def steps(answer):  # usage holds timings, which differ between runs
        return [{k: v for k, v in t.items() if k != "usage"} for t in answer.trace]

    assert both[0].text == one.text and steps(both[0]) == steps(one)
    assert both[1].question == "What does Kelpie Robotics build?" and both[1].trace
