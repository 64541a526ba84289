"""Cloze questions on a reference's key facts: what is blanked, the answers, and RAGQuestEval
scoring with them when the judge only answers."""

from __future__ import annotations

import pytest

from ragkit.eval.cloze import BLANK, cloze_questions
from ragkit.eval.metrics import UNANSWERABLE
from ragkit.eval.questeval import RAGQuestEval, judged_answer
from ragkit.generation.scripted import ScriptedGenerator

ZH = (
    "2023年7月27日，42位华裔青年在云南腾冲参观学习。活动由云南省人民政府侨务办公室主办。"
    "陕西西安市发放500万元体育类电子消费券。"
)
EN = "The Eiffel Tower was completed in 1889 in Paris. It is 330 metres tall."


def test_chinese_cloze_blanks_numbers_dates_names_and_organisations():
    pairs = cloze_questions(ZH, 5)
    answers = [a for _, a in pairs]
    # one per sentence first, then the second fact of each sentence
    assert answers == ["2023年7月27日", "云南省人民政府", "陕西西安市", "42", "500万元"]
    for question, answer in pairs:
        assert question.count(BLANK) == 1 and question.endswith("横线处应填什么？")
        assert question.replace(BLANK, answer).split("\n")[0] in ZH


def test_english_cloze_and_limits():
    pairs = cloze_questions(EN, 3)
    assert [a for _, a in pairs] == ["The Eiffel Tower", "330 metres", "1889"]
    assert pairs[0][0] == f"{BLANK} was completed in 1889 in Paris.\nWhat goes in the blank?"
    assert cloze_questions(EN, 1) == pairs[:1]
    assert cloze_questions("no facts here at all.", 5) == []


def test_cloze_questeval_answers_from_the_output_only():
    judge = ScriptedGenerator(replies={"SILENT": "cannot infer", "completed in": "1889"})
    quest = RAGQuestEval(judge, max_questions=2, questions_by="cloze")
    result = quest.score("The tower was finished in 1889. SILENT", EN)
    assert result.ref_answers == ("The Eiffel Tower", "330 metres")  # the blanked spans
    assert len(judge.prompts) == 2  # only the output was asked
    assert result.crud_recall == 0.0  # the SILENT output answered nothing
    assert RAGQuestEval(judge, questions_by="cloze").setup() != RAGQuestEval(judge).setup()
    with pytest.raises(ValueError, match="questions_by"):
        RAGQuestEval(judge, questions_by="model")  # type: ignore[arg-type]


def test_extractive_answers_must_be_spans_of_the_text_read():
    assert judged_answer("1889", read="It was finished in 1889.") == "1889"
    assert judged_answer("500 万元", read="发放了500万元。") == "500 万元"  # spaces ignored
    assert judged_answer("Paris", read="It was finished in 1889.") == UNANSWERABLE
    assert judged_answer("Paris") == "Paris"  # without the text read, any answer stands
    judge = ScriptedGenerator(replies={"completed in": "1889", "metres": "330 metres"})
    quest = RAGQuestEval(judge, max_questions=2, questions_by="cloze", extractive=True)
    result = quest.score("The tower was finished in 1889.", EN)
    assert result.ref_answers == ("The Eiffel Tower", "330 metres")
    # the first blank is filled with a span of the output (wrong, but an answer); the second
    # with words the output does not hold, which counts as no answer
    assert result.pred_answers == ("1889", UNANSWERABLE)
    assert quest.setup() != RAGQuestEval(judge, max_questions=2, questions_by="cloze").setup()
