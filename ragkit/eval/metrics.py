"""Evaluation metrics as pure functions: retrieval ranks, lexical overlap and embedding similarity.

Two families of text-overlap metrics live here under distinct names. The `crud_*` functions
(defined in `ragkit.eval.crud_metrics`) are CRUD-RAG's own definitions, comparable with its
paper. ragkit's variants (`smoothed_bleu4`, `word_rouge_l`, `token_f1`) work on
`ragkit.text.tokenize` tokens (lowercased words, punctuation dropped, jieba for Chinese) and keep
BLEU's brevity penalty with smoothing, so a short exact answer scores well; sacrebleu and
rouge-score do the counting, this module only decides what a token is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Protocol

from ragkit.eval.crud_metrics import (
    UNANSWERABLE,
    crud_answer_f1,
    crud_bleu,
    crud_bleu_details,
    crud_bleu_precisions,
    crud_questeval,
    crud_questeval_overall,
    crud_rouge_l,
    overlap_f1,
)
from ragkit.text import is_cjk, tokenize

__all__ = [
    "UNANSWERABLE",
    "TextEmbedder",
    "answer_rank",
    "answer_recall_at_k",
    "contains_reference",
    "corpus_bleu4",
    "crud_answer_f1",
    "crud_bleu",
    "crud_bleu_details",
    "crud_bleu_precisions",
    "crud_questeval",
    "crud_questeval_overall",
    "crud_rouge_l",
    "embedding_similarity",
    "exact_match",
    "mrr",
    "recall_at_k",
    "smoothed_bleu4",
    "token_f1",
    "word_rouge_l",
]

_ARTICLES = frozenset({"a", "an", "the"})
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


class TextEmbedder(Protocol):
    """Anything that embeds a batch of texts in one call, such as `ragkit.embedding.Embedder`."""

    def embed_documents(self, texts: list[str]) -> Any: ...


# --- retrieval ---


def _check_k(k: int | None) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"k must be a positive integer, but got {k!r}")


def recall_at_k(retrieved_ids: Sequence[str], gold_ids: Sequence[str], k: int) -> float:
    """Share of the gold ids that appear among the first `k` retrieved ids."""
    _check_k(k)
    gold = set(gold_ids)
    if not gold:
        raise ValueError("gold_ids is empty: recall is undefined without a relevant id")
    return len(gold.intersection(retrieved_ids[:k])) / len(gold)


def mrr(retrieved_ids: Sequence[str], gold_ids: Sequence[str], k: int | None = None) -> float:
    """Reciprocal rank of the first gold id within the top `k` (all if None), 0 when absent.

    This is one query's term; the mean over queries is the MRR a report shows.
    """
    _check_k(k)
    gold = set(gold_ids)
    if not gold:
        raise ValueError("gold_ids is empty: reciprocal rank is undefined without a relevant id")
    ranked = retrieved_ids if k is None else retrieved_ids[:k]
    for rank, doc_id in enumerate(ranked, start=1):
        if doc_id in gold:
            return 1.0 / rank
    return 0.0


def _normalise(text: str) -> str:
    """Case-, width- and punctuation-insensitive form: words separated by single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _NON_WORD.sub(" ", text).strip()


def _as_list(references: str | Sequence[str]) -> list[str]:
    return [references] if isinstance(references, str) else list(references)


def contains_reference(output: str, references: str | Sequence[str]) -> bool:
    """Whether any reference occurs in the output after normalisation.

    English references must match whole words ("cat" is not found in "concatenate"); Chinese
    has no spaces to anchor on, so a CJK reference matches as a character substring with
    spaces and punctuation removed on both sides ("500 万元" contains "500万元").
    """
    norm_output = _normalise(output)
    for reference in _as_list(references):
        norm_ref = _normalise(reference)
        if not norm_ref:
            continue
        if is_cjk(norm_ref):
            if norm_ref.replace(" ", "") in norm_output.replace(" ", ""):
                return True
        elif f" {norm_ref} " in f" {norm_output} ":
            return True
    return False


def answer_rank(retrieved_texts: Sequence[str], answers: str | Sequence[str]) -> int | None:
    """1-based rank of the first retrieved text that contains an answer, None if none does.

    Used when a data set gives answer strings rather than gold passage ids.
    """
    for rank, text in enumerate(retrieved_texts, start=1):
        if contains_reference(text, answers):
            return rank
    return None


def answer_recall_at_k(
    retrieved_texts: Sequence[str], answers: str | Sequence[str], k: int
) -> float:
    """1.0 when an answer string occurs in one of the top-`k` texts, else 0.0."""
    _check_k(k)
    rank = answer_rank(retrieved_texts[:k], answers)
    return 0.0 if rank is None else 1.0


# --- text overlap ---


class _RagkitTokenizer:
    """The `.tokenize` object rouge-score accepts, so ROUGE uses jieba words for Chinese."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


def _joined(text: str) -> str:
    return " ".join(tokenize(text))


def smoothed_bleu4(hypothesis: str, references: str | Sequence[str]) -> float:
    """Sentence BLEU-4 in [0, 1] over lowercased words without punctuation (sacrebleu,
    exponential smoothing, effective order, brevity penalty kept). Unlike `crud_bleu` a short
    output that matches is not scored 0 for a missing 4-gram, and length is penalised."""
    import sacrebleu

    refs = _as_list(references)
    if not refs:
        raise ValueError("references is empty: BLEU needs at least one reference")
    result = sacrebleu.sentence_bleu(
        _joined(hypothesis), [_joined(r) for r in refs], tokenize="none"
    )
    return result.score / 100.0


def corpus_bleu4(hypotheses: Sequence[str], references: Sequence[str | Sequence[str]]) -> float:
    """Corpus BLEU-4 in [0, 1]: n-gram counts pooled over all items before the geometric mean.

    Items may have different numbers of references: sacrebleu skips the `None` padding.
    """
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(
            f"hypotheses and references differ in length: {len(hypotheses)} != {len(references)}"
        )
    if not hypotheses:
        raise ValueError("hypotheses is empty: corpus BLEU needs at least one item")
    per_item = [[_joined(r) for r in _as_list(refs)] for refs in references]
    for i, refs in enumerate(per_item):
        if not refs:
            raise ValueError(f"references[{i}] is empty: every item needs a reference")
    width = max(len(refs) for refs in per_item)
    streams = [[refs[j] if j < len(refs) else None for refs in per_item] for j in range(width)]
    # sacrebleu skips a None reference (items with fewer references); its annotation omits None.
    result = BLEU(tokenize="none").corpus_score(
        [_joined(h) for h in hypotheses],
        streams,  # type: ignore[arg-type]
    )
    return result.score / 100.0


def word_rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence) over lowercased words without
    punctuation; `crud_rouge_l` counts spaces and punctuation as tokens too."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_RagkitTokenizer())
    return scorer.score(reference, hypothesis)["rougeL"].fmeasure


def _answer_tokens(text: str) -> list[str]:
    """SQuAD's answer normalisation on ragkit tokens: lowercase, no punctuation, no articles."""
    return [t for t in tokenize(unicodedata.normalize("NFKC", text)) if t not in _ARTICLES]


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1; two empty answers agree (1.0), one empty answer scores 0.0."""
    return overlap_f1(_answer_tokens(prediction), _answer_tokens(reference))


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised answers are equal token for token, else 0.0."""
    return float(_answer_tokens(prediction) == _answer_tokens(reference))


# --- embeddings ---


def embedding_similarity(
    a_texts: Sequence[str], b_texts: Sequence[str], embedder: TextEmbedder
) -> list[float]:
    """Cosine similarity of each pair (a_texts[i], b_texts[i]), embedded in one batched call.

    CRUD-RAG reports this as "bertScore"; it measures meaning overlap that lexical metrics miss.
    """
    import numpy as np

    if len(a_texts) != len(b_texts):
        raise ValueError(f"a_texts and b_texts differ in length: {len(a_texts)} != {len(b_texts)}")
    if not a_texts:
        return []
    vectors = np.asarray(embedder.embed_documents([*a_texts, *b_texts]), dtype=np.float64)
    if vectors.shape[0] != 2 * len(a_texts):
        raise ValueError(
            f"embedder returned {vectors.shape[0]} vectors for {2 * len(a_texts)} texts"
        )
    a, b = vectors[: len(a_texts)], vectors[len(a_texts) :]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return [float(c) for c in cosines]
