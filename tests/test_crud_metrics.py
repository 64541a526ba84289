"""CRUD-RAG's metric definitions against independent computations of the same formulas: NLTK's
unsmoothed BLEU and n-gram precisions, a longest-common-subsequence by hand, and QuestEval
worked through by hand."""

from __future__ import annotations

import math
import random
import warnings

import pytest
from nltk.translate.bleu_score import brevity_penalty, modified_precision, sentence_bleu

from ragkit.eval.metrics import (
    UNANSWERABLE,
    crud_answer_f1,
    crud_bleu,
    crud_bleu_details,
    crud_bleu_precisions,
    crud_questeval,
    crud_questeval_overall,
    crud_rouge_l,
    smoothed_bleu4,
    word_rouge_l,
)
from ragkit.text import jieba_cut

PAIRS = [
    # Chinese, with punctuation (kept as tokens)
    ("北京是中国的首都，也是一座历史名城。", "北京是中国的首都。"),
    (
        "西安市发放了500万元体育类电子消费券，市民可在173家场馆使用。",
        "陕西西安市发放500万元体育消费券。",
    ),
    # English: jieba keeps the spaces as tokens and does not lowercase
    ("The cat sat on the mat today.", "the cat sat on the mat"),
    ("a quick brown dog jumps over the lazy fox", "the quick brown fox jumps over the lazy dog"),
    # mixed, longer than the reference (no brevity penalty)
    ("2023年7月，Apple 在上海发布了新产品，并宣布降价。", "2023年7月Apple在上海发布新产品"),
]


def nltk_crud_bleu(output: str, reference: str) -> float:
    """CRUD-RAG's bleu-avg from NLTK: unsmoothed sentence BLEU divided by its brevity penalty."""
    hyp, ref = jieba_cut(output), jieba_cut(reference)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLTK warns when an n-gram order has no match
        bleu = sentence_bleu([ref], hyp)
    return bleu / brevity_penalty(len(ref), len(hyp))


def lcs_f1(a: list[str], b: list[str]) -> float:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
            )
    lcs = table[-1][-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(b), lcs / len(a)
    return 2 * precision * recall / (precision + recall)


def test_tokens_are_jiebas_with_spaces_punctuation_and_case_kept():
    assert jieba_cut("北京是中国的首都。") == ["北京", "是", "中国", "的", "首都", "。"]
    assert jieba_cut("The cat.") == ["The", " ", "cat", "."]
    assert jieba_cut("") == []


@pytest.mark.parametrize(("output", "reference"), PAIRS)
def test_crud_bleu_equals_nltk_unsmoothed_bleu_without_brevity_penalty(output, reference):
    assert crud_bleu(output, reference) == pytest.approx(
        nltk_crud_bleu(output, reference), abs=1e-9
    )


@pytest.mark.parametrize(("output", "reference"), PAIRS)
def test_crud_bleu_precisions_equal_nltk_modified_precisions(output, reference):
    hyp, ref = jieba_cut(output), jieba_cut(reference)
    expected = [float(modified_precision([ref], hyp, n)) for n in range(1, 5)]
    assert crud_bleu_precisions(output, reference) == pytest.approx(expected, abs=1e-12)


def test_crud_bleu_divides_the_brevity_penalty_out():
    output, reference = "北京是中国的首都", "北京是中国的首都，也是一座历史名城。"
    details = crud_bleu_details(output, reference)
    assert details is not None and details.brevity_penalty < 1.0
    # a prefix of the reference: every n-gram matches, so only the penalty could lower it
    assert details.bleu == pytest.approx(1.0)
    assert smoothed_bleu4(output, reference) < 0.5  # ragkit's keeps the penalty


def test_crud_bleu_hand_computed_chinese_reordering():
    # tokens 北京/是/中国/的/首都 against 中国/的/首都/是/北京: precisions 5/5, 2/4, 1/3, 0/2
    assert crud_bleu_precisions("北京是中国的首都", "中国的首都是北京") == pytest.approx(
        (1.0, 0.5, 1 / 3, 0.0)
    )
    assert crud_bleu("北京是中国的首都", "中国的首都是北京") == 0.0  # no 4-gram, no smoothing


def test_crud_bleu_one_word_output_scores_zero_even_when_exact():
    # CRUD-RAG's formula: an output with fewer than four tokens has no 4-gram to match
    assert crud_bleu_precisions("北京", "北京") == (1.0, 0.0, 0.0, 0.0)
    assert crud_bleu("北京", "北京") == 0.0
    assert nltk_crud_bleu("北京", "北京") == pytest.approx(0.0, abs=1e-9)
    assert smoothed_bleu4("北京", "北京") == pytest.approx(1.0)  # ragkit's variant


def test_crud_bleu_is_nan_where_crud_rags_evaluator_drops_the_pair():
    assert math.isnan(crud_bleu("", "北京是中国的首都"))
    assert math.isnan(crud_bleu("北京", ""))
    assert crud_bleu_details("", "x") is None
    assert all(math.isnan(p) for p in crud_bleu_precisions("", "x"))


def test_crud_bleu_keeps_case_and_punctuation_where_smoothed_bleu_does_not():
    output, reference = "The cat sat on the mat.", "the cat sat on the mat"
    assert crud_bleu(output, reference) < 1.0
    assert smoothed_bleu4(output, reference) == pytest.approx(1.0)


@pytest.mark.parametrize(("output", "reference"), [*PAIRS, ("北京", "北京"), ("北京", "上海")])
def test_crud_rouge_l_is_the_lcs_f_measure_over_jieba_tokens(output, reference):
    expected = lcs_f1(jieba_cut(reference), jieba_cut(output))
    assert crud_rouge_l(output, reference) == pytest.approx(expected, abs=1e-12)


def test_crud_rouge_l_empty_and_case():
    assert crud_rouge_l("", "北京") == 0.0
    assert crud_rouge_l("北京", "") == 0.0
    assert crud_rouge_l("Paris", "paris") == 0.0  # case kept
    assert word_rouge_l("Paris", "paris") == 1.0  # ragkit's variant lowercases


def test_crud_rouge_l_chinese_hand_computed():
    # LCS of 北京/是/中国/的/首都 and 中国/的/首都/是/北京 is 中国/的/首都: P = R = F = 3/5
    assert crud_rouge_l("北京是中国的首都", "中国的首都是北京") == pytest.approx(0.6)


def test_crud_answer_f1_hand_computed():
    assert crud_answer_f1("500万元", "500万元") == 1.0
    # 云南省人民政府/侨务办公室 against 侨务办公室: P = 1, R = 1/2
    assert jieba_cut("云南省人民政府侨务办公室") == ["云南省人民政府", "侨务办公室"]
    assert crud_answer_f1("云南省人民政府侨务办公室", "侨务办公室") == pytest.approx(2 / 3)
    assert crud_answer_f1("", "") == 1.0
    assert crud_answer_f1("北京", "") == 0.0
    assert crud_answer_f1("Apple", "apple") == 0.0  # no normalisation


def test_crud_questeval_f1_over_answered_questions_only():
    reference = ["42人", "9个", "云南省人民政府侨务办公室"]
    output = ["42人", UNANSWERABLE, "侨务办公室"]
    f1, recall = crud_questeval(reference, output)
    assert recall == pytest.approx(2 / 3)
    assert f1 == pytest.approx((1.0 + 2 / 3) / 2)  # the unanswered question is not averaged in


def test_crud_questeval_drops_questions_the_reference_cannot_answer():
    f1, recall = crud_questeval(["42人", UNANSWERABLE], ["42人", "9个"])
    assert (f1, recall) == (1.0, 1.0)
    # only the exact string counts as unanswered, as in CRUD-RAG
    f1, recall = crud_questeval(["42人"], ["无法推断。"])
    assert recall == 1.0 and f1 == 0.0


def test_crud_questeval_zero_when_nothing_is_left():
    assert crud_questeval([UNANSWERABLE, UNANSWERABLE], ["a", "b"]) == (0.0, 0.0)
    assert crud_questeval(["42人", "9个"], [UNANSWERABLE, UNANSWERABLE]) == (0.0, 0.0)
    assert crud_questeval([], []) == (0.0, 0.0)


def test_crud_questeval_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length: 2 != 1"):
        crud_questeval(["a", "b"], ["a"])


def test_crud_questeval_overall_counts_only_items_with_questions():
    items = [
        (["42人", "9个"], ["42人", UNANSWERABLE]),  # f1 1.0, recall 0.5
        ([UNANSWERABLE], ["x"]),  # questions exist but none answerable: (0, 0), counted
        ([], []),  # the reference yielded no question: left out of the average
    ]
    f1, recall = crud_questeval_overall(items)
    assert f1 == pytest.approx(1.0 / 2)
    assert recall == pytest.approx(0.5 / 2)
    assert all(math.isnan(v) for v in crud_questeval_overall([([], [])]))


def test_crud_bleu_and_rouge_on_real_news_pairs_match_the_independent_formulas(crud_rag_dir):
    news = sorted((crud_rag_dir / "news").iterdir())[0]
    bodies = []
    with news.open(encoding="utf-8") as handle:
        for line in handle:
            body = line.partition("，正文：")[2].strip()
            if len(body) > 300:
                bodies.append(body[:600])
            if len(bodies) == 20:
                break
    rng = random.Random(3)
    for body in bodies:
        cut = rng.randint(100, 250)
        reference = body[cut : cut + 200]
        for output in (reference[: rng.randint(20, 150)], body[cut - 80 : cut + 120], bodies[0]):
            assert crud_bleu(output, reference) == pytest.approx(
                nltk_crud_bleu(output, reference), abs=1e-9
            )
            assert crud_rouge_l(output, reference) == pytest.approx(
                lcs_f1(jieba_cut(reference), jieba_cut(output)), abs=1e-12
            )
