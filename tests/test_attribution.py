"""Inferred citations for answers written without `[n]` markers."""

from ragkit.attribution import attribute
from ragkit.prompting import cite
from ragkit.types import Segment

SEGMENTS = (
    Segment(1, "c1", "d1", "ferries.md", "[1] The MV Tidewright sails to the Isle of Aubry daily."),
    Segment(2, "c2", "d2", "storm.md", "[2] Storm Halvard brought gusts of 148 km/h in November."),
    Segment(3, "c3", "d3", "plant.md", "[3] 台风过后，淡水厂停运了三十六个小时。"),
)


def test_sentence_is_attributed_to_the_passage_holding_its_words():
    found = attribute(
        "Gusts reached 148 km/h during Storm Halvard.", SEGMENTS, "How strong was the storm?"
    )
    assert [(c.number, c.source, c.inferred) for c in found] == [(2, "storm.md", True)]


def test_each_sentence_cites_its_own_passage_in_order():
    text = "The MV Tidewright sails daily. Halvard brought gusts of 148 km/h."
    assert [c.number for c in attribute(text, SEGMENTS)] == [1, 2]


def test_chinese_answer_is_attributed():
    found = attribute("淡水厂停运了三十六个小时。", SEGMENTS, "台风过后发生了什么？")
    assert [c.number for c in found] == [3]


def test_unsupported_or_declining_answers_get_no_citation():
    assert attribute("The museum opened a new wing for whales.", SEGMENTS) == ()
    assert attribute("I do not know; the passages say nothing about 148 km/h.", SEGMENTS) == ()
    assert attribute("Anything at all.", ()) == ()


def test_answer_made_only_of_question_words_falls_back_to_all_its_words():
    found = attribute("Storm Halvard.", SEGMENTS, "What was Storm Halvard?")
    assert [c.number for c in found] == [2]


def test_model_markers_win_over_inferred_ones():
    marked = cite("Gusts reached 148 km/h [1].", SEGMENTS)
    assert [(c.number, c.inferred) for c in marked] == [(1, False)]
