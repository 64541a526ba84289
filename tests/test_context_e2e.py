"""Context stages end to end with the real local model over the real index of the bundled corpus:
expanded and compressed passages reach the model, its answer still holds the fact, and its
citations point at the file and characters the fact came from."""

from __future__ import annotations

import pytest

from ragkit import build
from ragkit.index.loaders import load_documents
from ragkit.report import answer_record

pytestmark = pytest.mark.slow

QUESTION = "Who has been the harbour master of Varrow Point since 2017?"


@pytest.fixture(scope="module")
def source_texts(bundled_corpus):
    return {d.id: d.text for d in load_documents([bundled_corpus])}


def check_citations(answer, source_texts):
    """Every citation names a passage whose span in its file holds the passage's text."""
    record = answer_record(answer)
    assert record["citations"]
    by_id = {p.chunk.id: p.chunk for p in answer.retrieved}
    for cited in record["citations"]:
        chunk = by_id[cited["chunk_id"]]
        start, end = cited["span"]
        assert (start, end) == (chunk.start, chunk.end)
        assert cited["source"] == chunk.source
        original = source_texts[chunk.doc_id][start:end]
        for a, b in chunk.metadata.get("kept_spans", [[start, end]]):
            assert " ".join(source_texts[chunk.doc_id][a:b].split()) in " ".join(original.split())


@pytest.mark.parametrize(
    "expand",
    [{"mode": "window", "sentences": 2}, {"mode": "parent", "parent_chunks": 2, "min_hits": 1}],
)
def test_expanded_passages_answer_with_citations_into_the_source(
    bundled_spec, source_texts, expand
):
    plain = build.pipeline(bundled_spec).invoke(QUESTION)
    rag = build.pipeline(bundled_spec.override(expand=expand))
    answer = rag.invoke(QUESTION)
    assert all(p.chunk.metadata.get("expanded") == expand["mode"] for p in answer.retrieved)
    assert answer.usage.prompt_tokens > plain.usage.prompt_tokens  # the model read the wider text
    assert answer.text.strip()
    check_citations(answer, source_texts)


@pytest.mark.parametrize("mode", ["extract", "model"])
def test_compressed_passages_cut_the_prompt_and_keep_the_answer(bundled_spec, source_texts, mode):
    plain = build.pipeline(bundled_spec).invoke(QUESTION)
    rag = build.pipeline(bundled_spec.override(compress={"mode": mode, "max_tokens": 120}))
    answer = rag.invoke(QUESTION)
    assert "Rosseter" in answer.text
    assert answer.usage.prompt_tokens < plain.usage.prompt_tokens
    assert [p.chunk.id for p in answer.retrieved] == [p.chunk.id for p in plain.retrieved]
    check_citations(answer, source_texts)
