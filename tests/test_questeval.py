"""RAGQuestEval: the pure scoring by hand, question parsing, and the real generator path."""

from __future__ import annotations

import json
import math

import pytest

from ragkit.eval.questeval import (
    QuestEvalResult,
    RAGQuestEval,
    is_unanswerable,
    judged_answer,
    parse_questions,
    questeval_scores,
)
from ragkit.text import tokenize

SHORT_ANSWERS = {"max_new_tokens": 16, "stop": ["\n"]}


def test_questeval_scores_hand_computed():
    assert tokenize("170家") == ["170", "家"]
    pred = ["陕西西安市", "无法推断", "170家"]
    ref = ["陕西西安市", "500万元", "173家"]
    scores = questeval_scores(pred, ref)
    # Two of three answered; F1 over all three = (1.0 + 0 + 0.5) / 3.
    assert scores["quest_f1_incl_unanswered"] == pytest.approx(0.5)
    assert scores["n_questions"] == 3


def test_questeval_scores_drop_questions_the_reference_cannot_answer():
    pred = ["Paris", "1889", "blue"]
    ref = ["Paris", "Cannot infer.", "red"]
    scores = questeval_scores(pred, ref)
    assert scores["n_questions"] == 2
    assert scores["quest_f1_incl_unanswered"] == pytest.approx(0.5)


def test_questeval_scores_unanswered_output_scores_zero():
    scores = questeval_scores(["", "无法推断。"], ["陕西西安市", "500万元"])
    assert scores == {"quest_f1_incl_unanswered": 0.0, "n_questions": 2.0}


def test_questeval_scores_nan_when_nothing_to_ask():
    scores = questeval_scores([], [])
    assert math.isnan(scores["quest_f1_incl_unanswered"])
    scores = questeval_scores(["x"], ["无法推断"])
    assert scores["n_questions"] == 0 and math.isnan(scores["quest_f1_incl_unanswered"])


@pytest.mark.parametrize(
    ("answer", "judged"),
    [
        ("无法推断。", "无法推断"),
        ("答案：无法推断", "无法推断"),
        ("", "无法推断"),
        (" 42人 ", "42人"),
    ],
)
def test_judged_answer_gives_crud_rag_its_exact_unanswerable_string(answer, judged):
    assert judged_answer(answer) == judged


def test_questeval_scores_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length: 1 != 2"):
        questeval_scores(["a"], ["a", "b"])


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("", True),
        ("  ", True),
        ("无法推断", True),
        ("答案：无法推断。", True),
        ("Cannot infer", True),
        ("cannot infer from the text", True),
        ("500万元", False),
        ("Paris", False),
    ],
)
def test_is_unanswerable(answer, expected):
    assert is_unanswerable(answer) is expected


def test_parse_questions_strips_numbering_and_limits():
    text = (
        "Here are the questions\n1. Who founded the company?\n2) When was it founded?\n"
        "- Where is its head office?\n1. Who founded the company?\n\nQ4: How many staff?"
    )
    assert parse_questions(text, limit=3) == [
        "Who founded the company?",
        "When was it founded?",
        "Where is its head office?",
    ]
    zh = "1、哪个城市发放了消费券？\n2．金额是多少？\n问题3：可以在哪里使用？"
    assert parse_questions(zh, limit=5) == [
        "哪个城市发放了消费券？",
        "金额是多少？",
        "可以在哪里使用？",
    ]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_rag_quest_eval_validates_max_questions(bad):
    with pytest.raises(ValueError, match="max_questions"):
        RAGQuestEval(generator=None, max_questions=bad)  # type: ignore[arg-type]


def test_rag_quest_eval_rejects_a_non_runnable():
    with pytest.raises(ValueError, match="Runnable with invoke and batch, got str"):
        RAGQuestEval("not a generator")


def test_rag_quest_eval_answers_without_questions_is_an_error(local_generator):
    with pytest.raises(ValueError, match="answers were given without questions"):
        RAGQuestEval(local_generator).score("x", "y", answers=["a"])


@pytest.mark.slow
def test_rag_quest_eval_with_precomputed_crud_rag_questions(local_generator, crud_rag_dir):
    items = json.loads((crud_rag_dir / "qa" / "questanswer_1doc_factoids.json").read_text("utf-8"))
    item = items["64fa9b27b82641eb8ecbe14d"]
    evaluator = RAGQuestEval(local_generator, answer_kwargs=SHORT_ANSWERS)
    good = evaluator.score(
        "陕西西安市发放了500万元体育类电子消费券，市民可以在全市173家体育场馆使用。",
        "".join(item["key_info"]),
        questions=item["question"],
        answers=item["answers"],
    )
    bad = evaluator.score(
        "今天北京天气晴朗，气温二十五度，适合户外散步。",
        "".join(item["key_info"]),
        questions=item["question"],
        answers=item["answers"],
    )
    for result in (good, bad):
        assert isinstance(result, QuestEvalResult)
        assert result.n_questions == 3
        assert len(result.pred_answers) == 3
        assert result.ref_answers == tuple(item["answers"])
        assert 0.0 <= result.crud_recall <= 1.0 and 0.0 <= result.crud_f1 <= 1.0
    assert good.f1_incl_unanswered > bad.f1_incl_unanswered
    assert good.crud_recall > bad.crud_recall
    assert good.crud_f1 >= 0.5, good.pred_answers


@pytest.mark.slow
def test_rag_quest_eval_generates_questions_in_english(local_generator):
    reference = (
        "The Eiffel Tower was completed in 1889 in Paris. It was designed by the company of "
        "Gustave Eiffel and is 330 metres tall."
    )
    evaluator = RAGQuestEval(local_generator, max_questions=2, answer_kwargs=SHORT_ANSWERS)
    result = evaluator.score("The Eiffel Tower in Paris was completed in 1889.", reference)
    assert 1 <= len(result.questions) <= 2, result.questions
    assert len(result.pred_answers) == len(result.ref_answers) == len(result.questions)
    assert result.n_questions <= len(result.questions)
    if result.n_questions:
        assert 0.0 <= result.crud_recall <= 1.0 and 0.0 <= result.crud_f1 <= 1.0
    else:
        assert math.isnan(result.f1_incl_unanswered)
        assert result.crud_f1 == result.crud_recall == 0.0
