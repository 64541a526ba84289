"""Language-aware text primitives shared by chunking, BM25 and metrics: CJK detection, word
tokens (jieba for Chinese) and sentence spans that know Chinese punctuation."""

from __future__ import annotations

import re
from functools import cache
from typing import Literal

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"\w+", re.UNICODE)
# A sentence ends at . ! ? followed by space, at Chinese 。！？； (optionally closed by quotes or
# brackets), or at a blank line.
_SENTENCE_END = re.compile(r"(?:[.!?](?=\s)|[。！？；!?;](?:[”’」』）)\"']*)|\n\s*\n)")


def cjk_ratio(text: str) -> float:
    """Share of non-space characters that are CJK; used to pick a tokenizer per text."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if _CJK.match(c)) / len(chars)


def is_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


@cache
def _jieba():
    import jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    return jieba


def tokenize(text: str, *, lowercase: bool = True) -> list[str]:
    """Word tokens for lexical matching: jieba words for CJK runs, \\w+ runs elsewhere.

    Mixed text (Chinese with English names or numbers) is common in news, so jieba handles any
    text containing CJK and its non-word pieces (spaces, punctuation) are dropped.
    """
    if lowercase:
        text = text.lower()
    if is_cjk(text):
        return [t for t in _jieba().lcut(text) if _WORD.search(t)]
    return _WORD.findall(text)


def jieba_cut(text: str) -> list[str]:
    """jieba's default segmentation with every piece kept: spaces, punctuation and case stay,
    as CRUD-RAG's metrics cut text (its scores are only comparable over the same tokens)."""
    return list(_jieba().cut(text))


_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,}")
LexicalTerms = Literal["words", "words+bigrams"]


def cjk_bigrams(text: str) -> list[str]:
    """Overlapping character pairs inside each run of Chinese characters."""
    return [run[i : i + 2] for run in _CJK_RUN.findall(text) for i in range(len(run) - 1)]


def lexical_terms(text: str, terms: LexicalTerms = "words") -> list[str]:
    """Index terms for BM25. `words+bigrams` adds Chinese character pairs to the jieba words,
    so a query still matches when jieba segments it differently from the passage (e.g. a name
    cut as one word in one and as two in the other); on CRUD-RAG news it lifts answer
    recall@5 (benchmarks/results/crud_retrieval.md)."""
    words = tokenize(text)
    if terms == "words":
        return words
    if terms == "words+bigrams":
        return words + cjk_bigrams(text.lower())
    raise ValueError(f"unknown lexical terms {terms!r}; use 'words' or 'words+bigrams'")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences, covering `text` end to end with no gaps."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if end > start:
            spans.append((start, end))
            start = end
    if start < len(text):
        spans.append((start, len(text)))
    return spans
