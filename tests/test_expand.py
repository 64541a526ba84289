"""Sentence-window and parent expansion: passages widened from the neighbouring chunks the index
already holds, in English and Chinese, merged when they overlap, with spans that still point
into the source document. Real chunker and tokenizer; in-memory chunks or the real chroma
index of the bundled corpus."""

from __future__ import annotations

import pytest

from ragkit import build
from ragkit.errors import ConfigError
from ragkit.index.chunking import TokenChunker
from ragkit.index.loaders import load_documents
from ragkit.spec import parse_spec
from ragkit.stages.expand import ParentChunks, SentenceWindow
from ragkit.stages.neighbours import ChunkList
from ragkit.text import sentence_spans
from ragkit.types import Chunk, Document, Retrieved

EN = " ".join(
    f"Sentence {n} tells how the {word} of Varrow Point came to be." for n, word in enumerate(
        ["harbour", "ferry", "museum", "lighthouse", "market", "school", "chapel", "quay",
         "bridge", "mill", "library", "station"], start=1)
)  # fmt: skip
PLACES = "港口渡轮博物馆灯塔集市学校"
ZH = "".join(f"第{n}句讲述了瓦罗角{w}的来历。" for n, w in enumerate(PLACES, 1))


def chunked(text: str, doc_id: str, tokens: int = 12, overlap: int = 0) -> list[Chunk]:
    doc = Document(doc_id, text, {"source": f"{doc_id}.txt"})
    return TokenChunker(chunk_tokens=tokens, overlap_tokens=overlap).invoke(doc)


def hit(chunk: Chunk, rank: int = 1) -> Retrieved:
    return Retrieved(chunk, score=1.0 / rank, rank=rank, source="bm25")


def sentences_in(text: str) -> list[str]:
    return [text[a:b].strip() for a, b in sentence_spans(text) if text[a:b].strip()]


def sentence_index(text: str, fragment: str) -> int:
    return next(i for i, s in enumerate(sentences_in(text)) if fragment in s)


@pytest.mark.parametrize("sentences", [0, 1, 3])
def test_a_window_adds_n_whole_sentences_each_side(sentences):
    chunks = chunked(EN, "en")
    middle = next(c for c in chunks if "Sentence 6 " in c.text)
    (out,) = SentenceWindow(source=ChunkList(chunks), sentences=sentences).expand([hit(middle)])
    assert out.chunk.text == EN[out.chunk.start : out.chunk.end]
    got = sentences_in(out.chunk.text)
    first = sentence_index(EN, sentences_in(middle.text)[0][:12])
    last = sentence_index(EN, sentences_in(middle.text)[-1][:12])
    assert got == sentences_in(EN)[first - sentences : last + sentences + 1]
    assert out.chunk.source == "en.txt" and out.chunk.doc_id == "en"
    assert out.chunk.metadata["chunk_ids"] == [middle.id]
    assert out.chunk.id == f"en@{out.chunk.start}-{out.chunk.end}"


def test_a_window_reads_as_far_as_it_needs_and_stops_at_the_document_edges():
    chunks = chunked(EN, "en", tokens=9)  # several chunks per sentence
    second = next(c for c in chunks if "Sentence 2 " in c.text)
    (out,) = SentenceWindow(source=ChunkList(chunks), sentences=4).expand([hit(second)])
    got = sentences_in(out.chunk.text)
    # Sentence 2 and four after it; only one sentence exists before it.
    assert got == sentences_in(EN)[0:6]
    assert out.chunk.text == EN[out.chunk.start : out.chunk.end]


def test_chinese_sentences_end_at_chinese_punctuation():
    chunks = chunked(ZH, "zh", tokens=14)  # one sentence a chunk
    third = next(c for c in chunks if "第3句" in c.text)
    (out,) = SentenceWindow(source=ChunkList(chunks), sentences=1).expand([hit(third)])
    assert out.chunk.text == ZH[out.chunk.start : out.chunk.end]
    assert [s[:3] for s in sentences_in(out.chunk.text)] == ["第2句", "第3句", "第4句"]


def test_overlapping_windows_merge_into_one_passage_at_the_best_rank():
    chunks = chunked(EN, "en", tokens=12, overlap=4)
    other = chunked("The ferry runs twice a day. It is slow. It is cheap.", "other")
    a, b = chunks[3], chunks[4]
    hits = [hit(a, 1), hit(other[0], 2), hit(b, 3)]
    out = SentenceWindow(source=ChunkList(chunks + other), sentences=1).expand(hits)
    assert [r.rank for r in out] == [1, 2]
    merged = out[0]
    assert merged.chunk.metadata["chunk_ids"] == [a.id, b.id]
    assert merged.chunk.start <= a.start and merged.chunk.end >= b.end
    assert merged.chunk.text == EN[merged.chunk.start : merged.chunk.end]
    assert merged.score == 1.0
    assert out[1].chunk.doc_id == "other"


def test_parent_replaces_children_only_when_enough_of_them_hit():
    chunks = chunked(EN, "en", tokens=12)
    assert len(chunks) >= 8
    expander = ParentChunks(source=ChunkList(chunks), parent_chunks=4, min_hits=2)
    out = expander.expand([hit(chunks[1], 1), hit(chunks[6], 2), hit(chunks[2], 3)])
    assert len(out) == 2
    parent, lone = out
    assert (parent.chunk.start, parent.chunk.end) == (chunks[0].start, chunks[3].end)
    assert parent.chunk.text == EN[chunks[0].start : chunks[3].end]
    assert parent.chunk.metadata["expanded"] == "parent"
    assert parent.chunk.metadata["chunk_ids"] == [chunks[1].id, chunks[2].id]
    assert lone.chunk == chunks[6] and lone.rank == 2  # one child of its parent: kept as it was


def test_chunks_not_made_by_the_chunker_pass_through():
    foreign = Chunk("x", "d", "A passage from elsewhere.", 0, 25, {"source": "x.txt"})
    chunks = chunked(EN, "en")
    out = SentenceWindow(source=ChunkList(chunks), sentences=2).expand(
        [hit(foreign, 1), hit(chunks[2], 2)]
    )
    assert out[0].chunk == foreign
    assert out[1].chunk.metadata["chunk_ids"] == [chunks[2].id]
    assert SentenceWindow(source=ChunkList(chunks)).batch([{"query": "q", "retrieved": []}]) == [[]]


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_expansion_over_the_real_index_points_at_the_source_text(scripted_spec, kind):
    spec = scripted_spec.override(retriever={"kind": kind}, expand={"sentences": 2})
    rag = build.pipeline(spec)
    answer = rag.invoke("Who has been the harbour master of Varrow Point since 2017?")
    assert answer.retrieved
    texts = {d.id: d.text for d in load_documents([spec_corpus()])}
    for passage in answer.retrieved:
        chunk = passage.chunk
        source = texts[chunk.doc_id]
        assert " ".join(chunk.text.split()) == " ".join(source[chunk.start : chunk.end].split())
    plain = build.pipeline(scripted_spec.override(retriever={"kind": kind}))
    before = plain.invoke("Who has been the harbour master of Varrow Point since 2017?")
    assert sum(len(p.chunk.text) for p in answer.retrieved) > sum(
        len(p.chunk.text) for p in before.retrieved
    )
    (cited,) = answer.citations
    by_id = {p.chunk.id: p for p in answer.retrieved}
    assert by_id[cited.chunk_id].chunk.source == cited.source
    assert "harbour-report" in cited.source


def spec_corpus():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "evals" / "bundled" / "corpus"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"mode": "windw"}, "expand.mode: unknown expand mode 'windw'"),
        ({"sentences": -1}, "expand.sentences: Input should be greater than or equal to 0"),
        ({"mode": "parent", "min_hits": 5}, "min_hits (5) cannot exceed parent_chunks (4)"),
        ({"size": 3}, "expand.size: unknown key"),
    ],
)
def test_bad_expand_settings_fail_in_one_line(section, message):
    with pytest.raises(ConfigError) as info:
        parse_spec({"expand": section}, origin="p.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("p.yaml: ")
