"""Metrics against hand-computed values and against sacrebleu's and rouge-score's own results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from ragkit.eval.metrics import (
    answer_rank,
    answer_recall_at_k,
    contains_reference,
    corpus_bleu4,
    embedding_similarity,
    exact_match,
    mrr,
    recall_at_k,
    smoothed_bleu4,
    token_f1,
    word_rouge_l,
)
from ragkit.text import tokenize

# --- retrieval ---


def test_recall_at_k_counts_gold_ids_in_the_top_k():
    retrieved = ["d3", "d1", "d7", "d2"]
    assert recall_at_k(retrieved, ["d1", "d2"], k=1) == 0.0
    assert recall_at_k(retrieved, ["d1", "d2"], k=2) == 0.5
    assert recall_at_k(retrieved, ["d1", "d2"], k=4) == 1.0
    assert recall_at_k(retrieved, ["d1", "d2"], k=10) == 1.0
    assert recall_at_k(retrieved, ["d9"], k=4) == 0.0


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_recall_at_k_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k(["a"], ["a"], k=k)


def test_retrieval_metrics_reject_empty_gold():
    with pytest.raises(ValueError, match="gold_ids is empty"):
        recall_at_k(["a"], [], k=1)
    with pytest.raises(ValueError, match="gold_ids is empty"):
        mrr(["a"], [])


def test_mrr_is_reciprocal_rank_of_first_gold_hit():
    retrieved = ["d3", "d1", "d7", "d2"]
    assert mrr(retrieved, ["d1", "d2"]) == 0.5
    assert mrr(retrieved, ["d2"]) == 0.25
    assert mrr(retrieved, ["d2"], k=3) == 0.0
    assert mrr(retrieved, ["d3"], k=1) == 1.0
    assert mrr([], ["d3"]) == 0.0


def test_contains_reference_normalises_case_width_and_punctuation():
    assert contains_reference("Paris, the capital of FRANCE.", "france")
    assert contains_reference("共发放 500 万元的消费券。", "500万元")
    assert contains_reference("共发放５００万元", "500万元")  # full-width digits
    assert contains_reference("The answer is New York!", ["Boston", "new york"])
    assert not contains_reference("concatenate", "cat")  # English matches whole words
    assert not contains_reference("发放了300万元", "500万元")
    assert not contains_reference("anything", ["", "  "])


def test_answer_rank_and_answer_recall_at_k():
    texts = ["天气晴朗", "西安发放了500万元消费券", "另一个提到500万元的段落"]
    assert answer_rank(texts, ["500万元"]) == 2
    assert answer_rank(texts, "173家") is None
    assert answer_recall_at_k(texts, ["500万元"], k=1) == 0.0
    assert answer_recall_at_k(texts, ["500万元"], k=2) == 1.0
    assert answer_recall_at_k(texts, ["173家", "晴朗"], k=1) == 1.0


# --- BLEU / ROUGE ---

ENGLISH_PAIRS = [
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("a quick brown dog jumps over the lazy fox", "the quick brown fox jumps over the lazy dog"),
    ("there is a cat on the mat today", "the cat is on the mat"),
]


@pytest.mark.parametrize(("hyp", "ref"), ENGLISH_PAIRS)
def test_smoothed_bleu4_matches_sacrebleu_where_tokenisation_coincides(hyp, ref):
    expected = sacrebleu.sentence_bleu(hyp, [ref]).score / 100
    assert smoothed_bleu4(hyp, ref) == pytest.approx(expected, abs=1e-6)
    assert smoothed_bleu4(hyp, [ref]) == pytest.approx(expected, abs=1e-6)


def test_smoothed_bleu4_multiple_references_match_sacrebleu():
    hyp = "the cat sat on the mat"
    refs = ["a cat sat on a mat", "the cat was sitting on the mat"]
    assert smoothed_bleu4(hyp, refs) == pytest.approx(
        sacrebleu.sentence_bleu(hyp, refs).score / 100, 1e-6
    )


def test_smoothed_bleu4_lowercases_and_ignores_punctuation():
    assert smoothed_bleu4("The cat sat on the mat.", "the cat sat on the mat") == pytest.approx(1.0)


def test_smoothed_bleu4_chinese_hand_computed_from_jieba_tokens():
    hyp, ref = "北京是中国的首都", "中国的首都是北京"
    assert tokenize(hyp) == ["北京", "是", "中国", "的", "首都"]
    assert tokenize(ref) == ["中国", "的", "首都", "是", "北京"]
    # unigrams 5/5, bigrams 2/4 (中国的, 的首都), trigrams 1/3 (中国的首都), 4-grams 0/2 ->
    # sacrebleu's exp smoothing gives 1/(2*2); equal lengths so no brevity penalty.
    expected = (1.0 * 0.5 * (1 / 3) * 0.25) ** 0.25
    assert smoothed_bleu4(hyp, ref) == pytest.approx(expected, abs=1e-9)
    assert smoothed_bleu4(hyp, hyp) == pytest.approx(1.0)


def test_smoothed_bleu4_rejects_empty_references():
    with pytest.raises(ValueError, match="references is empty"):
        smoothed_bleu4("a b", [])


def test_corpus_bleu4_matches_sacrebleu_and_pools_counts():
    hyps = ["the cat sat on the mat", "a dog barks"]
    refs = [["the cat sat on a mat"], ["a dog barks loudly", "the dog barks"]]
    streams = [["the cat sat on a mat", "a dog barks loudly"], [None, "the dog barks"]]
    expected = sacrebleu.corpus_bleu(hyps, streams).score / 100
    assert corpus_bleu4(hyps, refs) == pytest.approx(expected, abs=1e-6)
    mean_sentence = (smoothed_bleu4(hyps[0], refs[0]) + smoothed_bleu4(hyps[1], refs[1])) / 2
    assert corpus_bleu4(hyps, refs) != pytest.approx(mean_sentence, abs=1e-3)
    assert corpus_bleu4(["北京是中国的首都"], ["北京是中国的首都"]) == pytest.approx(1.0)


def test_corpus_bleu4_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length: 2 != 1"):
        corpus_bleu4(["a", "b"], ["a"])


@pytest.mark.parametrize(
    ("hyp", "ref"),
    [
        *ENGLISH_PAIRS,
        ("The quick brown fox jumps over the lazy dog.", "A quick brown dog jumps over the fox!"),
    ],
)
def test_word_rouge_l_matches_rouge_score_default_on_english(hyp, ref):
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(ref, hyp)["rougeL"].fmeasure
    assert word_rouge_l(hyp, ref) == pytest.approx(expected, abs=1e-6)


def test_word_rouge_l_chinese_hand_computed_where_default_tokenizer_gives_zero():
    hyp, ref = "北京是中国的首都", "中国的首都是北京"
    # LCS over jieba tokens is 中国 的 首都 (3 of 5 on each side): P = R = F = 0.6.
    assert word_rouge_l(hyp, ref) == pytest.approx(0.6, abs=1e-9)
    default = rouge_scorer.RougeScorer(["rougeL"]).score(ref, hyp)["rougeL"].fmeasure
    assert default == 0.0


# --- token F1 / exact match ---


def test_token_f1_squad_style_english():
    # pred tokens [cat, sat] (article dropped), ref [cat, sat, down]: P=1, R=2/3 -> F1 = 0.8.
    assert token_f1("The cat sat.", "a cat sat down") == pytest.approx(0.8)
    assert token_f1("blue", "red") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "red") == 0.0
    assert token_f1("the", "a") == 1.0  # both empty after dropping articles


def test_token_f1_chinese_over_jieba_tokens():
    assert tokenize("共500万元") == ["共", "500", "万元"]
    # pred [共, 500, 万元], ref [500, 万元]: P = 2/3, R = 1 -> F1 = 0.8.
    assert token_f1("共500万元", "500万元") == pytest.approx(0.8)
    # [170, 家] vs [173, 家]: one shared token of two -> 0.5.
    assert token_f1("170家", "173家") == pytest.approx(0.5)


def test_exact_match_normalises_answers():
    assert exact_match("The Cat!", "cat") == 1.0
    assert exact_match("500 万元。", "500万元") == 1.0
    assert exact_match("cats", "cat") == 0.0


# --- embedding similarity ---


@pytest.mark.slow
def test_embedding_similarity_with_real_embedder(embedder):
    a = [
        "The cat sits on the mat.",
        "Stock markets fell sharply today.",
        "The cat sits on the mat.",
    ]
    b = ["The cat sits on the mat.", "A kitten rests on a rug.", "A kitten rests on a rug."]
    sims = embedding_similarity(a, b, embedder)
    assert len(sims) == 3
    assert all(isinstance(s, float) for s in sims)
    assert sims[0] == pytest.approx(1.0, abs=1e-4)
    assert sims[2] > sims[1] + 0.2  # related pair beats unrelated pair


def test_embedding_similarity_matches_manual_cosine(embedder):
    a, b = ["rain in spring"], ["sunny winter days"]
    vectors = np.asarray(embedder.embed_documents(a + b), dtype=np.float64)
    expected = vectors[0] @ vectors[1] / (np.linalg.norm(vectors[0]) * np.linalg.norm(vectors[1]))
    assert embedding_similarity(a, b, embedder)[0] == pytest.approx(float(expected), abs=1e-6)


def test_embedding_similarity_validates_and_handles_empty(embedder):
    assert embedding_similarity([], [], embedder) == []
    with pytest.raises(ValueError, match="differ in length: 1 != 2"):
        embedding_similarity(["a"], ["b", "c"], embedder)


def test_nan_never_leaks_from_lexical_metrics():
    for value in (smoothed_bleu4("", "a b c"), word_rouge_l("", "a b c"), token_f1("x", "")):
        assert not math.isnan(value)
        assert value == 0.0
