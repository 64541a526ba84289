"""CRUD-RAG's own metric definitions, so ragkit's scores can be set beside the paper's.

CRUD-RAG's evaluator cuts text with `jieba.cut` and keeps every piece (spaces, punctuation,
case), scores BLEU with the unsmoothed NMT formula and then divides by the brevity penalty
(its "bleu-avg" is the geometric mean of the 1-4-gram precisions), reports the n-gram
precisions themselves as "bleu-1".."bleu-4", and takes ROUGE-L's F-measure from rouge-score
over the same tokens. Its RAGQuestEval drops questions the reference itself cannot answer,
takes recall over the rest and F1 over only the ones the output answered, and averages an
item's scores over the items whose reference yielded questions.

ragkit's own variants in `ragkit.eval.metrics` (smoothed BLEU, word ROUGE-L, QuestEval F1 over
every question) answer a different question; both sets are reported under distinct names.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ragkit.text import jieba_cut

UNANSWERABLE = "无法推断"  # the exact answer CRUD-RAG's judge gives when a text cannot answer
MAX_ORDER = 4


@dataclass(frozen=True, slots=True)
class CrudBleu:
    """CRUD-RAG's BLEU for one pair: `bleu` is its "bleu-avg", `precisions` its "bleu-1".."4"."""

    bleu: float
    precisions: tuple[float, float, float, float]
    brevity_penalty: float

    def scores(self) -> dict[str, float]:
        out = {"crud_bleu": self.bleu}
        out.update({f"crud_bleu{n}": p for n, p in enumerate(self.precisions, start=1)})
        return out


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def crud_bleu_details(output: str, reference: str) -> CrudBleu | None:
    """BLEU and its parts as CRUD-RAG computes them; None where its evaluator fails on the
    pair (either text cuts to no token: the brevity penalty divides by zero) and drops it."""
    hyp, ref = jieba_cut(output), jieba_cut(reference)
    if not hyp or not ref:
        return None
    precisions = []
    for n in range(1, MAX_ORDER + 1):
        possible = len(hyp) - n + 1
        matches = sum((_ngrams(hyp, n) & _ngrams(ref, n)).values())
        precisions.append(matches / possible if possible > 0 else 0.0)
    if min(precisions) > 0:
        geo_mean = math.exp(sum((1.0 / MAX_ORDER) * math.log(p) for p in precisions))
    else:
        geo_mean = 0.0
    ratio = len(hyp) / len(ref)
    penalty = 1.0 if ratio > 1.0 else math.exp(1 - 1.0 / ratio)
    bleu = geo_mean * penalty
    # CRUD-RAG reports BLEU without the brevity penalty, by dividing it back out
    without_penalty = 0.0 if penalty == 0 else bleu / penalty
    p1, p2, p3, p4 = precisions
    return CrudBleu(without_penalty, (p1, p2, p3, p4), penalty)


def crud_bleu(output: str, reference: str) -> float:
    """CRUD-RAG's "bleu-avg": unsmoothed BLEU-4 over `jieba.cut` tokens divided by the brevity
    penalty. NaN where its evaluator drops the pair (an empty text)."""
    details = crud_bleu_details(output, reference)
    return math.nan if details is None else details.bleu


def crud_bleu_precisions(output: str, reference: str) -> tuple[float, float, float, float]:
    """CRUD-RAG's "bleu-1".."bleu-4": the clipped 1- to 4-gram precisions (not cumulative
    BLEU scores). NaNs where its evaluator drops the pair."""
    details = crud_bleu_details(output, reference)
    if details is None:
        return (math.nan, math.nan, math.nan, math.nan)
    return details.precisions


class _JiebaCut:
    """The `.tokenize` object rouge-score takes: every jieba piece, case and punctuation kept."""

    def tokenize(self, text: str) -> list[str]:
        return jieba_cut(text)


def crud_rouge_l(output: str, reference: str) -> float:
    """CRUD-RAG's ROUGE-L: rouge-score's LCS F-measure over `jieba.cut` tokens, no stemming."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_JiebaCut())
    return scorer.score(reference, output)["rougeL"].fmeasure


def crud_answer_f1(reference_answer: str, output_answer: str) -> float:
    """CRUD-RAG's QuestEval answer F1: token overlap over `jieba.cut` tokens, no normalisation;
    two empty answers agree."""
    return overlap_f1(jieba_cut(output_answer), jieba_cut(reference_answer))


def overlap_f1(predicted: list[str], gold: list[str]) -> float:
    """F1 of the tokens two answers share, counted with multiplicity (SQuAD's and CRUD-RAG's
    answer F1 alike; they differ only in how they tokenise); two empty answers agree."""
    if not gold or not predicted:
        return float(gold == predicted)
    same = sum((Counter(gold) & Counter(predicted)).values())
    if same == 0:
        return 0.0
    precision = same / len(predicted)
    recall = same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def crud_questeval(
    reference_answers: Sequence[str], output_answers: Sequence[str]
) -> tuple[float, float]:
    """One item's RAGQuestEval `(f1, recall)` as CRUD-RAG scores it.

    `reference_answers[i]` and `output_answers[i]` answer question i from the reference and
    from the output. Questions the reference answers "无法推断" are dropped; recall is the
    share of the rest the output answered (anything but exactly "无法推断"); F1 is the mean
    answer F1 over the answered ones only. (0, 0) when nothing is left, as there.
    """
    if len(reference_answers) != len(output_answers):
        raise ValueError(
            f"reference_answers and output_answers differ in length: "
            f"{len(reference_answers)} != {len(output_answers)}"
        )
    kept = [
        (ref, out)
        for ref, out in zip(reference_answers, output_answers, strict=True)
        if ref != UNANSWERABLE
    ]
    if not kept:
        return 0.0, 0.0
    outputs = [out for _, out in kept]
    recall = 1 - outputs.count(UNANSWERABLE) / len(outputs)
    answered = [(ref, out) for ref, out in kept if out != UNANSWERABLE]
    if not answered:
        return 0.0, 0.0
    f1s = [crud_answer_f1(ref, out) for ref, out in answered]
    return float(np.mean(f1s)), recall


def crud_questeval_overall(
    items: Iterable[tuple[Sequence[str], Sequence[str]]],
) -> tuple[float, float]:
    """Overall `(f1, recall)` over `(reference_answers, output_answers)` items, as CRUD-RAG's
    `compute_overall`: item scores summed, divided by the number of items whose reference
    yielded questions (a non-empty answer list). NaN when no item did."""
    f1_sum = recall_sum = 0.0
    counted = 0
    for reference_answers, output_answers in items:
        if not reference_answers:
            continue
        f1, recall = crud_questeval(reference_answers, output_answers)
        f1_sum += f1
        recall_sum += recall
        counted += 1
    if counted == 0:
        return math.nan, math.nan
    return f1_sum / counted, recall_sum / counted
