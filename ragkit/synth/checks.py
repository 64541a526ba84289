"""Checks a synthetic question must pass, none needing a stronger model: the answer is in the
chunk, the question stands on its own, does not give its answer away, is not a chunk sentence
copied with a question mark, and does not repeat an earlier question. Each returns the name of
the check that failed, so a run can say how many candidates each one dropped."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from ragkit.eval.metrics import contains_reference
from ragkit.synth.prompts import Pair
from ragkit.text import is_cjk, sentence_spans, tokenize

CHECKS = (
    "unparsed",
    "answer_too_long",
    "not_standalone",
    "answer_not_in_chunk",
    "answer_in_question",
    "copied_sentence",
    "near_duplicate",
)
# Fuzzy thresholds (0-100 rapidfuzz scores): an answer this close to a span of the chunk is
# supported; a question this close to one of its sentences is a copy; to an earlier, a repeat.
SUPPORT_MIN = 90
COPY_MIN = 80
DUPLICATE_MIN = 90
# Share of the answer's content words that may also be in the question.
ANSWER_OVERLAP_MAX = 0.5
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "by",
        "with",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "its",
        "it",
        "this",
        "that",
    ]
)
_DEICTIC = re.compile(
    r"\b(?:the|this|that|above|given)\s+(?:passage|text|paragraph|document|article|excerpt)\b"
    r"|文中|段落|本文|上文|文章中|材料中|该文",
    re.I,
)
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class Verdict:
    failed: str | None  # the first check that failed, None when kept
    answers: tuple[str, ...] = ()  # the answer, plus the chunk span it matched when fuzzy


@dataclass
class Checker:
    """Applies the checks in order; remembers kept questions for the duplicate check."""

    kept: list[str] = field(default_factory=list)

    def check(self, pair: Pair | None, chunk: str, lang: str) -> Verdict:
        if pair is None or len(_norm(pair.question)) < (6 if lang == "zh" else 12):
            return Verdict("unparsed")
        if _too_long(pair.answer, lang):
            return Verdict("answer_too_long")
        if _DEICTIC.search(pair.question):
            return Verdict("not_standalone")
        answers = supported(pair.answer, chunk)
        if not answers:
            return Verdict("answer_not_in_chunk")
        if gives_away(pair.question, answers[0], lang):
            return Verdict("answer_in_question")
        if copied(pair.question, chunk):
            return Verdict("copied_sentence")
        if self.duplicate(pair.question, lang):
            return Verdict("near_duplicate")
        self.kept.append(pair.question)
        return Verdict(None, answers)

    def duplicate(self, question: str, lang: str) -> bool:
        scorer = fuzz.ratio if lang == "zh" else fuzz.token_set_ratio
        q = _norm(question)
        return any(scorer(q, _norm(k)) >= DUPLICATE_MIN for k in self.kept)


def supported(answer: str, chunk: str) -> tuple[str, ...]:
    """The answer strings to score with: the answer when it occurs in the chunk, else the
    chunk span it closely matches (so retrieval recall can find it verbatim); () if neither."""
    if contains_reference(chunk, answer):
        return (answer,)
    if len(_norm(answer)) < 2:
        return ()
    found = fuzz.partial_ratio_alignment(answer.lower(), chunk.lower())
    if found is None or found.score < SUPPORT_MIN:
        return ()
    start, end = found.dest_start, found.dest_end
    while start > 0 and chunk[start - 1].isalnum() and not is_cjk(chunk[start - 1]):
        start -= 1  # widen to whole words, so the span matches as words do
    while end < len(chunk) and chunk[end].isalnum() and not is_cjk(chunk[end]):
        end += 1
    span = chunk[start:end].strip()
    return (answer, span) if span and contains_reference(chunk, span) else ()


def gives_away(question: str, answer: str, lang: str) -> bool:
    """The question states its answer, or most of the answer's words."""
    if contains_reference(question, answer):
        return True
    words = set(tokenize(answer)) - _STOPWORDS
    if not words:
        return False
    asked = set(tokenize(question))
    return len(words & asked) / len(words) > ANSWER_OVERLAP_MAX


def copied(question: str, chunk: str) -> bool:
    """The question is one of the chunk's sentences with little changed."""
    q = _norm(question)
    sentences: Sequence[str] = [chunk[a:b] for a, b in sentence_spans(chunk)]
    return any(fuzz.ratio(q, _norm(s)) >= COPY_MIN for s in sentences if s.strip())


def _too_long(answer: str, lang: str) -> bool:
    return len(answer) > 24 if lang == "zh" else len(answer.split()) > 8


def _norm(text: str) -> str:
    return _PUNCT.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()
