"""Language-aware text primitives shared by chunking, BM25 and metrics: CJK detection, word
tokens (jieba for Chinese) and sentence spans that know Chinese punctuation."""

from __future__ import annotations

import re
from functools import cache

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
