"""Scores for one pipeline's outputs on a batch of evaluation items: retrieval against gold
sources or answer strings, text metrics against the reference, QuestEval where questions exist,
and ragas. Pure apart from the model calls it is handed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


NO_REFERENCE = "no reference: only retrieval is scored"
EMPTY_OUTPUT = (
    "empty output: CRUD-RAG's scores, similarity and QuestEval left out (CRUD-RAG drops such "
    "items); ragkit's variants score it 0"
)


def record_notes(record: Mapping[str, Any]) -> list[str]:
    """What a report must say about an item whose scores are incomplete for a plain reason."""
    if not str(record.get("reference") or "").strip():
        return [NO_REFERENCE]
    if not str(record.get("output") or "").strip():
        return [EMPTY_OUTPUT]
    return []


def has_reference(item: EvalItem) -> bool:
    return bool(item.reference.strip())


def item_scores(item: EvalItem, answer: Answer) -> dict[str, float]:
    """Cheap per-item metrics: no model calls. Without a reference only retrieval is scored."""
    scores: dict[str, float] = {}
    if item.gold_sources:
        ids = retrieved_gold_ids(answer, item.gold_sources)
        for k in RECALL_KS:
            scores[f"recall@{k}"] = metrics.recall_at_k(ids, list(item.gold_sources), k)
        scores["mrr@10"] = metrics.mrr(ids, list(item.gold_sources), k=10)
    if not has_reference(item):
        return scores
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
    use_ragas: bool = True,
    judge_url: str | None = None,
    judge_model: str | None = None,
) -> list[dict[str, float]]:
    """Every metric that needs no judge, for a batch; model-backed ones make one batched call
    each. RAGQuestEval runs after generation (`ragkit.eval.quest_pass`)."""
    scores = [item_scores(i, a) for i, a in zip(items, answers, strict=True)]
    scored = [j for j, item in enumerate(items) if has_reference(item)]
    said = [j for j in scored if answers[j].text.strip()]  # a blank output has no meaning
    if embedder is not None and said:
        sims = metrics.embedding_similarity(
            [answers[j].text for j in said], [items[j].reference for j in said], embedder
        )
        for j, sim in zip(said, sims, strict=True):
            scores[j]["embedding_similarity"] = sim
    if use_ragas and scored:
        extra = _ragas(
            [items[j] for j in scored],
            [answers[j] for j in scored],
            judge_url,
            judge_model,
            embedder if judge_url else None,
        )
        for j, more in zip(scored, extra, strict=True):
            scores[j].update(more)
    return scores


def _ragas(
    items: Sequence[EvalItem],
    answers: Sequence[Answer],
    judge_url: str | None,
    judge_model: str | None,
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
    found = ragas_scores(samples, judge_url=judge_url, judge_model=judge_model, embedder=embedder)
    return [{f"ragas_{k}": v for k, v in extra.items() if not _is_nan(v)} for extra in found]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
