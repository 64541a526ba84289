"""Scores for one pipeline's outputs on a batch of evaluation items: retrieval against gold
sources or answer strings, text metrics against the reference, QuestEval where questions exist,
and ragas. Pure apart from the model calls it is handed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragkit.eval import metrics
from ragkit.eval.tasks import EvalItem
from ragkit.types import Answer

RECALL_KS = (1, 5)


def source_matches(source: str, gold: str) -> bool:
    """A retrieved chunk's source matches a gold source given as a full source, a file name,
    or a `file#record` id (CRUD-RAG articles)."""
    if source == gold or source.endswith("/" + gold):
        return True
    return Path(source.split("#")[0]).name == gold


def retrieved_gold_ids(answer: Answer, gold_sources: Sequence[str]) -> list[str]:
    """Map each retrieved chunk to the gold source it belongs to (or its own source), so rank
    metrics count documents, not chunks."""
    out = []
    for hit in answer.retrieved:
        match = next((g for g in gold_sources if source_matches(hit.chunk.source, g)), None)
        out.append(match if match is not None else hit.chunk.source)
    return out


def item_scores(item: EvalItem, answer: Answer) -> dict[str, float]:
    """Cheap per-item metrics: no model calls."""
    scores: dict[str, float] = {}
    if item.gold_sources:
        ids = retrieved_gold_ids(answer, item.gold_sources)
        for k in RECALL_KS:
            scores[f"recall@{k}"] = metrics.recall_at_k(ids, list(item.gold_sources), k)
        scores["mrr@10"] = metrics.mrr(ids, list(item.gold_sources), k=10)
    if item.task == "read":
        texts = [hit.chunk.text for hit in answer.retrieved]
        refs = list(item.references or (item.reference,))
        scores["answer_recall@5"] = metrics.answer_recall_at_k(texts, refs, 5)
        scores["contains_reference"] = float(metrics.contains_reference(answer.text, refs))
        scores["token_f1"] = max(metrics.token_f1(answer.text, r) for r in refs)
    scores.update(text_scores(answer.text, item.reference))
    return scores


def text_scores(output: str, reference: str) -> dict[str, float]:
    """Overlap of the output with the reference: CRUD-RAG's BLEU and ROUGE-L and ragkit's.

    CRUD-RAG's evaluator drops an item whose output is blank, so its metrics are left out for
    one; ragkit's score a blank output 0.
    """
    scores: dict[str, float] = {}
    if output.strip():
        details = metrics.crud_bleu_details(output, reference)
        if details is not None:
            scores.update(details.scores())
        scores["crud_rouge_l"] = metrics.crud_rouge_l(output, reference)
        scores["smoothed_bleu4"] = metrics.smoothed_bleu4(output, reference)
        scores["word_rouge_l"] = metrics.word_rouge_l(output, reference)
    else:
        scores["smoothed_bleu4"] = scores["word_rouge_l"] = 0.0
    return scores


def batch_scores(
    items: Sequence[EvalItem],
    answers: Sequence[Answer],
    *,
    embedder: Any = None,
    questeval_generator: Any = None,
    use_ragas: bool = True,
    judge_url: str | None = None,
) -> list[dict[str, float]]:
    """Every metric for a batch; model-backed ones make one batched call each."""
    scores = [item_scores(i, a) for i, a in zip(items, answers, strict=True)]
    if embedder is not None:
        sims = metrics.embedding_similarity(
            [a.text or " " for a in answers], [i.reference for i in items], embedder
        )
        for s, sim in zip(scores, sims, strict=True):
            s["embedding_similarity"] = sim
    if questeval_generator is not None:
        from ragkit.eval.questeval import RAGQuestEval

        quest = RAGQuestEval(questeval_generator)
        for s, item, answer in zip(scores, items, answers, strict=True):
            if item.questions:
                result = quest.score(answer.text, item.reference, item.questions, item.answers)
                s.update(result.scores())
    if use_ragas:
        scores = _with_ragas(scores, items, answers, judge_url, embedder if judge_url else None)
    return scores


def _with_ragas(
    scores: list[dict[str, float]],
    items: Sequence[EvalItem],
    answers: Sequence[Answer],
    judge_url: str | None,
    embedder: Any,
) -> list[dict[str, float]]:
    from ragkit.eval.ragas_bridge import RagasSample, ragas_scores

    samples = [
        RagasSample(
            question=item.query,
            answer=answer.text,
            contexts=[hit.chunk.text for hit in answer.retrieved],
            reference=item.reference,
            reference_contexts=list(item.contexts),
        )
        for item, answer in zip(items, answers, strict=True)
    ]
    for s, extra in zip(
        scores, ragas_scores(samples, judge_url=judge_url, embedder=embedder), strict=True
    ):
        s.update({f"ragas_{k}": v for k, v in extra.items() if not _is_nan(v)})
    return scores


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
