"""Token windows over real documents, measured with the embedder's real tokenizer."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from ragkit.index.chunking import TokenChunker
from ragkit.models import DEFAULT_EMBEDDING_MODEL, resolve_embedding_model
from ragkit.types import Chunk, Document

ENGLISH = (
    "Retrieval-augmented generation combines a search step with a language model. "
    "The retriever finds passages that are likely to contain the answer! "
    "Then the generator reads them and writes a reply that cites its sources. "
    "Why does this help? Small models know few facts, but they read well. "
    "Chunking decides what a passage is; windows that are too long dilute the match, "
    "and windows that are too short lose the context around a fact.\n\n"
    "A second paragraph talks about evaluation. Exact match is strict. "
    "Token F1 forgives small differences in wording, and recall at k measures retrieval alone."
)
CHINESE = (
    "北京是中华人民共和国的首都。它有三千多年的建城史！上海是中国的经济中心；"
    "广州位于珠江三角洲？深圳是一座年轻的城市，四十多年前还是一个小渔村。"
    "杭州以西湖闻名；苏州园林甲江南。成都是一座来了就不想走的城市！"
    "重庆的火锅很有名？西安有兵马俑和古城墙。南京曾经是六朝古都；武汉被称为江城。"
)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer

    path = Path(resolve_embedding_model(DEFAULT_EMBEDDING_MODEL)) / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()  # the packaged file pads and truncates to 128 for the embedder
    tokenizer.no_padding()
    return tokenizer


def _doc(text: str, doc_id: str = "doc-1") -> Document:
    return Document(id=doc_id, text=text, metadata={"source": f"/data/{doc_id}.txt"})


def _token_len(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def _check_spans(doc: Document, chunks: list[Chunk]) -> None:
    """Every chunk is a real, stripped, non-empty slice and all non-space text is covered."""
    covered = [False] * len(doc.text)
    for chunk in chunks:
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert chunk.text and chunk.text == chunk.text.strip()
        for i in range(chunk.start, chunk.end):
            covered[i] = True
    missing = [i for i, c in enumerate(doc.text) if not c.isspace() and not covered[i]]
    assert missing == []
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)


@pytest.mark.parametrize("respect", [True, False])
@pytest.mark.parametrize(("size", "overlap"), [(16, 4), (32, 0), (64, 16), (256, 32)])
@pytest.mark.parametrize("text", [ENGLISH, CHINESE, ENGLISH + "\n\n" + CHINESE])
def test_spans_sizes_and_coverage(tokenizer, text, size, overlap, respect):
    chunker = TokenChunker(
        tokenizer=tokenizer, chunk_tokens=size, overlap_tokens=overlap, respect_sentences=respect
    )
    doc = _doc(text)
    chunks = chunker.invoke(doc)

    _check_spans(doc, chunks)
    total = _token_len(tokenizer, text)
    assert len(chunks) >= -(-total // size)
    for chunk in chunks:
        assert 0 < chunk.metadata["token_count"] <= size
        assert _token_len(tokenizer, chunk.text) <= size


def test_ids_and_metadata(tokenizer):
    doc = Document(id="abc-123", text=ENGLISH, metadata={"source": "/x.txt", "format": "text"})
    chunks = TokenChunker(tokenizer=tokenizer, chunk_tokens=32, overlap_tokens=8).invoke(doc)
    assert len(chunks) > 3
    for i, chunk in enumerate(chunks):
        assert chunk.id == f"abc-123:{i:05d}"
        assert chunk.doc_id == "abc-123"
        assert chunk.metadata["chunk_index"] == i
        assert chunk.metadata["source"] == "/x.txt" and chunk.metadata["format"] == "text"
        assert chunk.source == "/x.txt"
    assert "chunk_index" not in doc.metadata


def test_overlap_present_and_absent(tokenizer):
    doc = _doc(ENGLISH * 3)
    with_overlap = TokenChunker(tokenizer=tokenizer, chunk_tokens=40, overlap_tokens=10)
    chunks = with_overlap.invoke(doc)
    assert len(chunks) > 5
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert nxt.start < prev.end, "consecutive windows must share text"
        shared = _token_len(tokenizer, doc.text[nxt.start : prev.end])
        assert 0 < shared <= 10 + 2

    without = TokenChunker(tokenizer=tokenizer, chunk_tokens=40, overlap_tokens=0).invoke(doc)
    for prev, nxt in zip(without, without[1:], strict=False):
        assert nxt.start >= prev.end


def test_english_windows_end_on_sentences(tokenizer):
    doc = _doc(ENGLISH)
    chunks = TokenChunker(tokenizer=tokenizer, chunk_tokens=48, overlap_tokens=0).invoke(doc)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text[-1] in ".!?", chunk.text


def test_chinese_splits_at_chinese_punctuation(tokenizer):
    doc = _doc(CHINESE)
    chunker = TokenChunker(tokenizer=tokenizer, chunk_tokens=30, overlap_tokens=0)
    chunks = chunker.invoke(doc)
    assert len(chunks) >= 5
    for chunk in chunks:
        assert chunk.text[-1] in "。！？；", chunk.text
    ends = {c.text[-1] for c in chunks}
    assert len(ends) >= 3, f"expected cuts at several kinds of punctuation, got {ends}"
    starts = {0} | {c.end for c in chunks}
    assert all(c.start in starts for c in chunks), "without overlap a window starts a sentence"


def test_overlap_snaps_to_sentence_start_when_sentences_fit(tokenizer):
    text = "一二三。四五六。七八九。十一二。三四五。六七八。九十一。二三四。五六七。八九十。"
    doc = _doc(text)
    chunks = TokenChunker(tokenizer=tokenizer, chunk_tokens=12, overlap_tokens=5).invoke(doc)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text[-1] == "。"
        assert chunk.start == 0 or doc.text[chunk.start - 1] == "。", chunk.text


def test_text_without_punctuation_still_chunks(tokenizer):
    chinese = _doc("中华人民共和国" * 100)
    english = _doc(" ".join(f"word{i} alpha beta" for i in range(200)))
    chunker = TokenChunker(tokenizer=tokenizer, chunk_tokens=50, overlap_tokens=10)
    for doc in (chinese, english):
        chunks = chunker.invoke(doc)
        _check_spans(doc, chunks)
        assert len(chunks) >= _token_len(tokenizer, doc.text) // 50
        assert all(_token_len(tokenizer, c.text) <= 50 for c in chunks)
    for chunk in chunker.invoke(english):  # cuts inside a sentence still land between words
        text = english.text
        assert chunk.start == 0 or not text[chunk.start - 1].isalnum()
        assert chunk.end == len(text) or not text[chunk.end].isalnum()


def test_giant_sentence_is_cut_then_sentences_resume(tokenizer):
    giant = "This sentence goes on " + "and on " * 80 + "until it finally stops."
    doc = _doc(giant + " Short one. Another short one.")
    chunks = TokenChunker(tokenizer=tokenizer, chunk_tokens=32, overlap_tokens=4).invoke(doc)
    _check_spans(doc, chunks)
    assert all(c.metadata["token_count"] <= 32 for c in chunks)
    assert chunks[-1].text.endswith("Another short one.")


@pytest.mark.parametrize(
    ("size", "overlap", "message"),
    [
        (0, 0, "chunk_tokens must be > 0, but got 0"),
        (-8, 0, "chunk_tokens must be > 0, but got -8"),
        (10, 10, r"overlap_tokens must be >= 0 and < chunk_tokens \(10\), but got 10"),
        (10, 12, r"overlap_tokens must be >= 0 and < chunk_tokens \(10\), but got 12"),
        (10, -1, r"overlap_tokens must be >= 0 and < chunk_tokens \(10\), but got -1"),
    ],
)
def test_invalid_sizes_raise(size, overlap, message):
    with pytest.raises(ValueError, match=message):
        TokenChunker(chunk_tokens=size, overlap_tokens=overlap)


def test_empty_documents_give_no_chunks(tokenizer):
    chunker = TokenChunker(tokenizer=tokenizer)
    assert chunker.invoke(_doc("")) == []
    assert chunker.invoke(_doc(" \n\t  \n")) == []
    assert chunker.batch([]) == []


def test_batch_equals_invoke_each(tokenizer):
    docs = [
        _doc(ENGLISH, "en"),
        _doc("", "empty"),
        _doc(CHINESE, "zh"),
        _doc("One short sentence.", "short"),
        _doc(ENGLISH + CHINESE, "mixed"),
    ]
    chunker = TokenChunker(tokenizer=tokenizer, chunk_tokens=40, overlap_tokens=8)
    batched = chunker.batch(docs)
    assert batched == [chunker.invoke(d) for d in docs]
    assert batched[1] == [] and len(batched[3]) == 1

    streamed = list(chunker.split_documents(iter(docs), batch_size=2))
    assert streamed == [c for chunks in batched for c in chunks]
    with pytest.raises(ValueError, match="batch_size must be > 0, but got 0"):
        list(chunker.split_documents(docs, batch_size=0))


def test_rejects_non_documents(tokenizer):
    with pytest.raises(TypeError, match="expects ragkit.types.Document"):
        TokenChunker(tokenizer=tokenizer).invoke("plain string")


def test_default_tokenizer_and_hf_fast_tokenizer_agree_without_length_warning(caplog):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(resolve_embedding_model(DEFAULT_EMBEDDING_MODEL))
    doc = _doc((ENGLISH + "\n\n" + CHINESE) * 8)
    assert len(hf(doc.text, add_special_tokens=False)["input_ids"]) > hf.model_max_length
    default = TokenChunker(chunk_tokens=128, overlap_tokens=16)
    with_hf = TokenChunker(tokenizer=hf, chunk_tokens=128, overlap_tokens=16)

    caplog.clear()  # the length check above warns itself (when transformers' logs propagate)
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")
        from_hf = with_hf.invoke(doc)
    assert not [r for r in caplog.records if "sequence length" in r.getMessage()]
    assert from_hf == default.invoke(doc)
    assert all(len(hf(c.text, add_special_tokens=False)["input_ids"]) <= 128 for c in from_hf)


def test_tokenizer_with_truncation_is_not_truncated_or_mutated(tokenizer):
    from tokenizers import Tokenizer

    truncating = Tokenizer.from_str(tokenizer.to_str())
    truncating.enable_truncation(max_length=16)
    doc = _doc(ENGLISH)
    chunks = TokenChunker(tokenizer=truncating, chunk_tokens=64, overlap_tokens=0).invoke(doc)
    _check_spans(doc, chunks)
    assert truncating.truncation is not None


def test_crud_rag_news_articles(tokenizer, crud_rag_dir):
    news = sorted((crud_rag_dir / "news").iterdir())[0]
    with news.open(encoding="utf-8") as lines:
        texts = [next(lines) for _ in range(40)]
    docs = [_doc(t, f"news-{i}") for i, t in enumerate(texts)]
    chunker = TokenChunker(tokenizer=tokenizer, chunk_tokens=128, overlap_tokens=16)
    for doc, chunks in zip(docs, chunker.batch(docs), strict=True):
        _check_spans(doc, chunks)
        for chunk in chunks:
            assert _token_len(tokenizer, chunk.text) <= 128
    all_chunks = [c for chunks in chunker.batch(docs) for c in chunks]
    on_sentence = sum(c.text[-1] in "。！？；”" for c in all_chunks) / len(all_chunks)
    assert on_sentence > 0.8
