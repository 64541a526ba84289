from ragkit.prompting import PromptAssembler, cite
from ragkit.types import Chunk, Retrieved


def hit(i: int, text: str = "", source: str = "/docs/a.md") -> Retrieved:
    chunk = Chunk(f"d{i}:00000", f"d{i}", text or f"passage {i}", 0, 9, {"source": source})
    return Retrieved(chunk, 1.0 / (i + 1), i)


def test_append_layout_puts_question_before_passages():
    prompt = PromptAssembler(layout="append").assemble("Who?", [hit(0), hit(1)])
    text = prompt.user_text
    assert text.index("Question: Who?") < text.index("[1] (a.md)") < text.index("[2] (a.md)")
    assert text.rstrip().endswith("Answer:")
    assert [s.number for s in prompt.segments] == [1, 2]


def test_prepend_layout_puts_passages_before_question():
    text = PromptAssembler(layout="prepend").assemble("Who?", [hit(0)]).user_text
    assert text.index("[1] (a.md)") < text.index("Question: Who?")


def test_rendering_is_deterministic_and_deduplicated():
    assembler = PromptAssembler()
    a = assembler.assemble("q", [hit(0), hit(1), hit(0)])
    b = assembler.assemble("q", [hit(0), hit(1)])
    assert a == b
    assert len(a.segments) == 2


def test_extend_keeps_earlier_prompt_as_prefix():
    assembler = PromptAssembler(layout="append")
    first = assembler.assemble("q", [hit(0), hit(1)])
    second = assembler.extend(first, [hit(1), hit(2)])
    before_suffix = first.user_text[: -len(first.suffix)]
    assert second.user_text.startswith(before_suffix)
    assert [s.chunk_id for s in second.segments] == ["d0:00000", "d1:00000", "d2:00000"]
    assert second.segments[2].number == 3


def test_chinese_question_gets_chinese_instructions():
    prompt = PromptAssembler().assemble(
        "体育类电子消费券的总金额是多少？", [hit(0, "西安发放500万元")]
    )
    assert "问题" in prompt.prefix and "资料" in prompt.prefix
    assert prompt.system.startswith("你")


def test_history_lands_in_the_stable_prefix():
    prompt = PromptAssembler().assemble(
        "And then?", [hit(0)], history=[("user", "Hi"), ("assistant", "Hello")]
    )
    assert "user: Hi\nassistant: Hello" in prompt.prefix


def test_cite_maps_numbers_to_segments_and_drops_unknown():
    prompt = PromptAssembler().assemble(
        "q", [hit(0, source="/x/one.md"), hit(1, source="/x/two.md")]
    )
    citations = cite("It is A [2], see also [1, 2] and [7].", prompt.segments)
    assert [(c.number, c.source) for c in citations] == [(2, "/x/two.md"), (1, "/x/one.md")]
    assert cite("no markers", prompt.segments) == ()


def test_bad_layout_and_template_are_rejected():
    import pytest

    with pytest.raises(ValueError, match="layout"):
        PromptAssembler(layout="sideways")
    with pytest.raises(ValueError, match="passage_template"):
        PromptAssembler(passage_template="{nope}")


def test_assembler_is_a_runnable_taking_a_mapping():
    prompt = PromptAssembler().invoke({"question": "q", "retrieved": [hit(0)]})
    assert prompt.segments[0].chunk_id == "d0:00000"
