"""Passage extraction: passages cut to the sentences that bear on the question, within a token
budget, in their original order and under their original numbers. BM25 and embedder scoring,
and the generator's own picks (scripted here; the real model is in test_context_e2e.py)."""

from __future__ import annotations

import pytest

from ragkit import build
from ragkit.errors import ConfigError
from ragkit.generation.scripted import ScriptedGenerator
from ragkit.spec import parse_spec
from ragkit.stages.compress import KEPT_KEY, ExtractiveCompressor
from ragkit.stages.compress_model import ModelCompressor, copied_sentences
from ragkit.types import Chunk, Retrieved

QUESTION = "Who is the harbour master of Varrow Point?"
HARBOUR = (
    "The harbour handles ferries and fishing boats. It was dredged in 2019. "
    "The harbour master of Varrow Point is Callum Rosseter. He reports to the board. "
    "The quay was repaved last spring."
)
MUSEUM = (
    "The museum opened in 1994. Its curator is Ines Thorvald. It shows the town's herring trade."
)
ZH_QUESTION = "西安市发放了多少体育类电子消费券？"
ZH_TEXT = (
    "今年夏季降雨偏多。陕西西安市发放500万元体育类电子消费券。市民可在173家场馆使用。天气转晴。"
)


def passages(*texts: str) -> list[Retrieved]:
    out = []
    for i, text in enumerate(texts):
        start = 100 * i
        chunk = Chunk(f"c{i}", f"d{i}", text, start, start + len(text), {"source": f"f{i}.txt"})
        out.append(Retrieved(chunk, score=1.0 - i / 10, rank=i + 1))
    return out


def test_extraction_keeps_relevant_sentences_in_order_within_the_budget():
    compressor = ExtractiveCompressor(max_tokens=30)
    hits = passages(HARBOUR, MUSEUM)
    out = compressor.invoke({"query": QUESTION, "retrieved": hits})
    assert [h.chunk.id for h in out] == ["c0", "c1"]  # same passages, same order
    harbour = out[0].chunk
    assert "The harbour master of Varrow Point is Callum Rosseter." in harbour.text
    assert "quay was repaved" not in harbour.text
    # Kept sentences are in their original order, runs joined by an ellipsis.
    assert harbour.text.index("harbour handles") < harbour.text.index("Callum Rosseter")
    assert " … " in harbour.text
    assert sum(compressor.count_tokens([h.chunk.text.replace(" … ", " ") for h in out])) <= 32
    # Spans of the kept sentences point into the source passage.
    for start, end in harbour.metadata[KEPT_KEY]:
        assert HARBOUR[start - hits[0].chunk.start : end - hits[0].chunk.start] in harbour.text
    assert (harbour.start, harbour.end, harbour.source) == (0, len(HARBOUR), "f0.txt")
    # Every passage keeps at least its best sentence, so numbering never shifts.
    assert out[1].chunk.text.strip()


def test_a_large_budget_leaves_matching_passages_whole_and_empty_gives_empty():
    compressor = ExtractiveCompressor(max_tokens=10_000)
    hits = passages("Callum Rosseter is the harbour master. Varrow Point harbour is busy.")
    assert compressor.invoke({"query": QUESTION, "retrieved": hits}) == hits
    assert compressor.invoke({"query": QUESTION, "retrieved": []}) == []


def test_chinese_sentences_are_scored_with_words_and_bigrams():
    out = ExtractiveCompressor(max_tokens=25).invoke(
        {"query": ZH_QUESTION, "retrieved": passages(ZH_TEXT)}
    )
    text = out[0].chunk.text
    assert "陕西西安市发放500万元体育类电子消费券。" in text
    assert "天气转晴" not in text and "降雨" not in text


@pytest.mark.slow
def test_embedder_scoring_picks_the_sentence_closest_in_meaning(embedder):
    out = ExtractiveCompressor(max_tokens=12, embedder=embedder).invoke(
        {"query": "Who looks after the museum collection?", "retrieved": passages(MUSEUM)}
    )
    assert out[0].chunk.text == "Its curator is Ines Thorvald."


def test_the_generator_picks_sentences_and_a_useless_reply_keeps_the_best_one():
    picker = ScriptedGenerator(
        replies={"The museum opened": "Its curator is Ines Thorvald.", "The harbour": "none"}
    )
    compressor = ModelCompressor(generator=picker, max_tokens=200)
    out = compressor.invoke({"query": QUESTION, "retrieved": passages(HARBOUR, MUSEUM)})
    assert out[1].chunk.text == "Its curator is Ines Thorvald."
    assert out[0].chunk.text == "The harbour master of Varrow Point is Callum Rosseter."
    asked = picker.prompts
    assert len(asked) == 2 and "Copy the sentences from the passage" in asked[0].user_text
    assert HARBOUR in asked[0].user_text and QUESTION in asked[0].user_text


def test_copied_words_pick_the_sentences_that_hold_them():
    sentences = ["今年夏季降雨偏多。", "陕西西安市发放500万元体育类电子消费券。"]
    sentences.append("活动持续到年底。")
    assert copied_sentences("陕西西安市", sentences) == {1}
    assert copied_sentences("无。", sentences) == set()
    english = ["The museum opened in 1994.", "Its curator is Ines Thorvald."]
    assert copied_sentences("Ines Thorvald", english) == {1}
    assert copied_sentences("None.", english) == set()
    assert copied_sentences("The answer is Paris", english) == set()


def test_compression_runs_in_the_pipeline_after_expansion(scripted_spec):
    question = "Who has been the harbour master of Varrow Point since 2017?"
    plain = build.pipeline(scripted_spec).model_copy(update={"generator": ScriptedGenerator()})
    spec = scripted_spec.override(
        expand={"mode": "window", "sentences": 2}, compress={"mode": "extract", "max_tokens": 60}
    )
    rag = build.pipeline(spec).model_copy(update={"generator": ScriptedGenerator()})
    answer = rag.invoke(question)
    (prompt,) = rag.generator.prompts
    assert [s.chunk_id for s in prompt.segments] == [p.chunk.id for p in answer.retrieved]
    for passage in answer.retrieved:  # expanded first, then cut inside the expanded span
        chunk = passage.chunk
        assert chunk.metadata["expanded"] == "window" and KEPT_KEY in chunk.metadata
        assert all(chunk.start <= a < b <= chunk.end for a, b in chunk.metadata[KEPT_KEY])
    before = plain.invoke(question)
    assert len(prompt.user_text) < len(plain.generator.prompts[0].user_text)
    assert len(answer.retrieved) == len(before.retrieved)
    assert "Callum Rosseter" in answer.retrieved[0].chunk.text
    assert answer.citations[0].chunk_id == answer.retrieved[0].chunk.id


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"mode": "summarise"}, "compress.mode: unknown compress mode 'summarise'"),
        ({"max_tokens": 0}, "compress.max_tokens: Input should be greater than 0"),
        ({"scorer": "tfidf"}, "compress.scorer: Input should be 'bm25' or 'embedder'"),
    ],
)
def test_bad_compress_settings_fail_in_one_line(section, message):
    with pytest.raises(ConfigError) as info:
        parse_spec({"compress": section}, origin="p.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)
