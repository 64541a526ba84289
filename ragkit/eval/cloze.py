"""Fill-in-the-blank questions about a reference's key facts, written by rule instead of by a
model: numbers, dates, names, places and organisations are blanked out of its sentences.

RAGQuestEval asks a judge to write questions about the reference; the packaged 0.5B model
cannot (it restates the text or repeats an example), so with it the questions are these
cloze questions and their reference answers are the blanked spans themselves. The judge then
only answers, which a small model does well enough on text that holds the answer.
"""

from __future__ import annotations

import re

from ragkit.text import is_cjk, sentence_spans

BLANK = "____"
# jieba part-of-speech flags of key facts: numerals and measure words, time words, person,
# place and organisation names, other proper nouns
_FACT_FLAGS = {"m": "number", "q": "number", "t": "number", "nr": "nr", "ns": "ns", "nt": "nt"}
_FACT_FLAGS["nz"] = "nz"
_UNITS: tuple[str, ...]
_UNITS = ("percent", "million", "billion", "thousand", "km", "kg", "metres", "meters", "miles")
_UNITS += ("tonnes", "tons", "people", "years", "days", "hours")
_EN_FACT = re.compile(
    r"\b(?:\d[\d,.]*(?:\s?(?:%|(?:" + "|".join(_UNITS) + r")\b))?"
    r"|(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December)(?:\s\d{1,2})?(?:,?\s\d{4})?"
    r"|[A-Z][a-z]+(?:\s(?:of\s)?[A-Z][a-z]+)+)"
)
_QUESTION = {"zh": "{sentence}\n横线处应填什么？", "en": "{sentence}\nWhat goes in the blank?"}
MIN_SPAN_CHARS = 2


def _zh_spans(sentence: str) -> list[tuple[int, int]]:
    """Character spans of key facts: runs of tokens of the same fact class; a number or date
    must hold a digit (jieba also tags "第一" or "今年" so, which test nothing)."""
    import jieba.posseg

    spans: list[tuple[int, int, str]] = []
    at = 0
    for token in jieba.posseg.cut(sentence):
        end = at + len(token.word)
        kind = _FACT_FLAGS.get(token.flag)
        if kind is not None and spans and spans[-1][1] == at and spans[-1][2] == kind:
            spans[-1] = (spans[-1][0], end, kind)
        elif kind is not None:
            spans.append((at, end, kind))
        at = end
    return [
        (s, e)
        for s, e, kind in spans
        if kind != "number" or any(c.isdigit() for c in sentence[s:e])
    ]


def _en_spans(sentence: str) -> list[tuple[int, int]]:
    return [m.span() for m in _EN_FACT.finditer(sentence)]


def cloze_questions(reference: str, max_questions: int) -> list[tuple[str, str]]:
    """Up to `max_questions` (question, answer) pairs, one blank each, taken from different
    sentences first so the questions cover the whole reference."""
    lang = "zh" if is_cjk(reference) else "en"
    find = _zh_spans if lang == "zh" else _en_spans
    per_sentence: list[list[tuple[str, str]]] = []
    for start, end in sentence_spans(reference):
        sentence = reference[start:end].strip()
        pairs = []
        for s, e in find(sentence):
            answer = sentence[s:e].strip()
            if len(answer) >= MIN_SPAN_CHARS:
                blanked = sentence[:s] + BLANK + sentence[e:]
                pairs.append((_QUESTION[lang].format(sentence=blanked), answer))
        if pairs:
            per_sentence.append(pairs)
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    depth = 0
    while len(out) < max_questions and any(depth < len(p) for p in per_sentence):
        for pairs in per_sentence:
            if depth < len(pairs) and pairs[depth][1] not in seen and len(out) < max_questions:
                out.append(pairs[depth])
                seen.add(pairs[depth][1])
        depth += 1
    return out
