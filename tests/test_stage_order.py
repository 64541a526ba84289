"""One owner of the stage order: the pipeline builds search queries, retrieves, reranks and
assembles the prompt, and Iter-RetGen reuses those steps. Real index and embedder; the
scripted generator stands in for the model, so these run in seconds."""

from __future__ import annotations

import pytest

from ragkit import build
from ragkit.eval import tasks
from ragkit.eval.datasets import load_suite
from ragkit.eval.runner import pipeline_input
from ragkit.generation.scripted import ScriptedGenerator
from ragkit.pipeline import RAGPipeline, to_query
from ragkit.stages.iterate import IterRetGen
from ragkit.types import Query

QUESTION = "Who has been the harbour master of Varrow Point since 2017?"


@pytest.fixture()
def rag(scripted_spec) -> RAGPipeline:
    # A fresh generator per test, so its record of prompts is this test's alone.
    return build.pipeline(scripted_spec).model_copy(update={"generator": ScriptedGenerator()})


@pytest.fixture(scope="module")
def create_item():
    return next(i for i in load_suite("bundled").items if i.task == "create")


def test_the_generator_sees_exactly_the_pipelines_prompt(rag):
    answer = rag.invoke(QUESTION)
    (seen,) = rag.generator.prompts
    assert seen == rag.prompt_for(Query(QUESTION), answer.retrieved)
    assert "harbour-report" in answer.retrieved[0].chunk.source
    assert answer.text.endswith("[1]") and answer.citations[0].number == 1
    assert answer.question == QUESTION and len(answer.retrieved) == 2


def test_batch_invoke_and_stream_agree(rag):
    questions = [QUESTION, "What does the desalination plant produce?"]
    batched = rag.batch(questions)
    assert [a.text for a in batched] == [rag.invoke(q).text for q in questions]
    pieces = list(rag.stream(QUESTION))
    assert pieces[-1].answer is not None
    assert "".join(p.text for p in pieces[:-1]).strip() == pieces[-1].answer.text
    assert len(pieces) > 3  # word by word, then the answer


def test_search_queries_come_from_the_rewriter(scripted_spec):
    spec = scripted_spec.override(rewrite={"mode": "multi-query", "n": 2})
    scripted = ScriptedGenerator(replies={"search-engine query": "ferry timetable to Aubry"})
    rag = build.pipeline(spec).model_copy(update={"generator": scripted})
    rag = rag.model_copy(
        update={"rewriter": rag.rewriter.model_copy(update={"generator": scripted})}
    )
    (search,) = rag.search_queries([Query(QUESTION)])
    assert [q.question for q in search][0] == QUESTION
    assert "ferry timetable to Aubry" in [q.question for q in search]
    # Given search queries replace the rewriter's; the shortlist still answers the question.
    given = rag.retrieve([Query(QUESTION)], search=[[Query("ferry timetable")]])[0]
    assert any("ferry" in h.chunk.source for h in given)


def test_a_create_item_keeps_its_task_prompt_under_iter_retgen(scripted_spec, create_item):
    spec = scripted_spec.override(iterate={"rounds": 2, "stop_when_stable": False})
    loop = build.pipeline(spec)
    assert isinstance(loop, IterRetGen)
    scripted = ScriptedGenerator(replies={"": "The festival continued on the harbour."})
    loop = loop.model_copy(
        update={"pipeline": loop.pipeline.model_copy(update={"generator": scripted})}
    )
    answer = loop.invoke(pipeline_input(create_item))
    first, second = scripted.prompts
    instruction, cue = tasks.instruction(create_item), tasks.cue(create_item)
    for prompt in (first, second):
        assert instruction.strip()[:60] in prompt.user_text
        assert cue.strip() in prompt.user_text
    # Round 1 is the pipeline's own prompt; round 2 appends passages and keeps the rest.
    query = to_query(pipeline_input(create_item))
    hits = [h for h in answer.retrieved if h.chunk.id in {s.chunk_id for s in first.segments}]
    assert first == loop.pipeline.prompt_for(query, hits)
    assert second.segments[: len(first.segments)] == first.segments
    assert (second.prefix, second.suffix) == (first.prefix, first.suffix)
    assert [t["round"] for t in answer.trace] == [1, 2]


def test_iter_retgen_matches_in_batch_and_stream(scripted_spec):
    spec = scripted_spec.override(iterate={"rounds": 2})
    loop = build.pipeline(spec)
    questions = [QUESTION, "When did Storm Halvard reach the coast?"]
    batched = loop.batch(questions)
    assert [a.text for a in batched] == [loop.invoke(q).text for q in questions]
    streamed = list(loop.stream(QUESTION))[-1].answer
    assert streamed.text == batched[0].text
    # The scripted answer repeats itself, so the loop stops after round 2 found it stable.
    assert len(batched[0].trace) == 2


@pytest.mark.slow
def test_expansion_then_compression_follow_reranking(scripted_spec):
    spec = scripted_spec.override(
        rerank={"kind": "rrf"}, expand={"sentences": 1}, compress={"max_tokens": 80}
    )
    rag = build.pipeline(spec).model_copy(update={"generator": ScriptedGenerator()})
    query = Query(QUESTION)
    ranked = rag.rerank([query], rag.retriever.batch([query]))
    expanded = rag.expand([query], ranked)
    assert rag.retrieve([query]) == rag.compress([query], expanded)
    assert expanded != ranked and rag.compress([query], expanded) != expanded
    answer = rag.invoke(QUESTION)
    (seen,) = rag.generator.prompts
    assert seen == rag.prompt_for(query, answer.retrieved)


def test_iter_retgen_rounds_get_expanded_passages(scripted_spec):
    spec = scripted_spec.override(
        expand={"sentences": 1}, iterate={"rounds": 2, "stop_when_stable": False}
    )
    answer = build.pipeline(spec).invoke(QUESTION)
    assert [t["round"] for t in answer.trace] == [1, 2]
    assert answer.retrieved
    assert all(h.chunk.metadata.get("expanded") == "window" for h in answer.retrieved)
    assert len({h.chunk.id for h in answer.retrieved}) == len(answer.retrieved)
