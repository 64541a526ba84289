"""Iter-RetGen and chat workloads on the real local model and index: the append layout keeps
each prompt's token prefix, so the prefix cache serves it; the prepend layout cannot."""

from __future__ import annotations

import pytest

from benchmarks.workloads import CHAT, ITER_RETGEN, CallRecord, chat, iter_retgen, summarize
from ragkit.eval.datasets import load_qa_jsonl
from ragkit.generation.kv_cache import common_prefix_length
from ragkit.generation.local import LocalGenerator
from ragkit.prompting import PromptAssembler

ROUNDS = 3
TOP_K = 2
QUESTION_IDS = ("q15",)  # two-hop: later rounds find the second passage
CHAT_IDS = ("q09", "q15", "q16")


@pytest.fixture(scope="module")
def short_generator(local_generator) -> LocalGenerator:
    """Shares the test run's loaded weights; short answers keep the runs quick."""
    return LocalGenerator(max_new_tokens=8, stop=["\n\n"])


@pytest.fixture(scope="module")
def retriever(bundled_spec):
    from ragkit import build
    from ragkit.retrieval import DenseRetriever

    store, embedder = build.store(bundled_spec), build.embedder(bundled_spec)
    return DenseRetriever(store=store, embedder=embedder, top_k=TOP_K)


@pytest.fixture(scope="module")
def items(repo_root):
    by_id = {i.id: i for i in load_qa_jsonl(repo_root / "evals/bundled/questions.jsonl")}
    return by_id


@pytest.fixture(scope="module")
def retgen_runs(items, retriever, short_generator) -> dict[str, list[CallRecord]]:
    """Both layouts over the same questions, each starting from an empty cache."""
    questions = [items[i] for i in QUESTION_IDS]
    runs = {}
    for layout in ("prepend", "append"):
        short_generator.prefix_cache.clear()
        runs[layout] = iter_retgen(
            questions, retriever, short_generator, layout=layout, rounds=ROUNDS
        )
    return runs


@pytest.fixture(scope="module")
def chat_runs(items, retriever, short_generator) -> dict[str, list[CallRecord]]:
    turns = [items[i] for i in CHAT_IDS]
    runs = {}
    for layout in ("prepend", "append"):
        short_generator.prefix_cache.clear()
        runs[layout] = chat([turns], retriever, short_generator, layout=layout)
    return runs


def reused_share(records: list[CallRecord], rounds: set[int]) -> float:
    chosen = [r for r in records if r.round in rounds]
    return sum(r.cached_prompt_tokens for r in chosen) / sum(r.prompt_tokens for r in chosen)


def by_item(records: list[CallRecord]) -> dict[str, list[CallRecord]]:
    out: dict[str, list[CallRecord]] = {}
    for r in sorted(records, key=lambda r: r.round):
        out.setdefault(r.item_id, []).append(r)
    return out


@pytest.mark.slow
def test_iter_retgen_records_are_complete(retgen_runs):
    for layout, records in retgen_runs.items():
        assert len(records) == len(QUESTION_IDS) * ROUNDS
        assert {(r.item_id, r.round) for r in records} == {
            (q, n) for q in QUESTION_IDS for n in range(1, ROUNDS + 1)
        }
        for r in records:
            assert r.workload == ITER_RETGEN and r.layout == layout == r.prompt.layout
            assert r.prompt_tokens > 250 and 0 <= r.cached_prompt_tokens < r.prompt_tokens
            assert r.computed_prompt_tokens == r.prompt_tokens - r.cached_prompt_tokens
            assert 0 < r.ttft_s <= r.total_s
            assert 1 <= r.completion_tokens <= 8
            assert isinstance(r.answer, str)
            assert isinstance(r.correct, bool)
            assert r.passages == len(r.prompt.segments) >= TOP_K
        assert any(r.answer for r in records)
        for rounds in by_item(records).values():
            assert rounds[0].new_passages == rounds[0].passages == TOP_K
            for before, after in zip(rounds, rounds[1:], strict=False):
                assert after.passages == before.passages + after.new_passages


@pytest.mark.slow
def test_both_layouts_see_the_same_passages(retgen_runs):
    """Only the order differs, so a difference in cost is the layout's doing."""
    for pre, app in zip(
        sorted(retgen_runs["prepend"], key=lambda r: (r.item_id, r.round)),
        sorted(retgen_runs["append"], key=lambda r: (r.item_id, r.round)),
        strict=True,
    ):
        if pre.round == 1:
            assert [s.chunk_id for s in pre.prompt.segments] == [
                s.chunk_id for s in app.prompt.segments
            ]
        assert abs(pre.prompt_tokens - app.prompt_tokens) <= 0.05 * app.prompt_tokens or (
            {s.chunk_id for s in pre.prompt.segments} != {s.chunk_id for s in app.prompt.segments}
        )


@pytest.mark.slow
def test_append_round_prompt_starts_with_the_previous_prompt(retgen_runs, short_generator):
    tokenizer = short_generator.loaded().tokenizer
    for rounds in by_item(retgen_runs["append"]).values():
        for before, after in zip(rounds, rounds[1:], strict=False):
            old_text = short_generator.render(before.prompt)
            head = old_text[: old_text.rindex(before.prompt.suffix)]  # up to the answer cue
            assert short_generator.render(after.prompt).startswith(head)
            head_ids = tokenizer(head, add_special_tokens=False).input_ids
            new_ids = short_generator.token_ids(after.prompt)
            assert new_ids[: len(head_ids)] == head_ids
            # The cache served that shared prefix, up to its last whole block.
            block = short_generator.prefill_block_tokens
            assert after.cached_prompt_tokens >= len(head_ids) // block * block


@pytest.mark.slow
def test_append_reuses_most_of_the_prompt_and_prepend_no_more(retgen_runs):
    """A round that finds nothing new leaves both prompts unchanged (both reuse them); a round
    with new passages costs prepend its reuse from the first reordered passage on."""
    later = set(range(2, ROUNDS + 1))
    assert reused_share(retgen_runs["append"], later) >= 0.5
    summary = {(s.layout, s.round): s for s in summarize(retgen_runs["append"])}
    assert summary[("append", 1)].cached_prompt_tokens < summary[("append", 2)].cached_prompt_tokens
    for rounds in by_item(retgen_runs["prepend"]).values():
        for before, after in zip(rounds, rounds[1:], strict=False):
            if after.new_passages == 0:
                assert after.prompt_tokens == before.prompt_tokens
    assert reused_share(retgen_runs["prepend"], later) <= reused_share(retgen_runs["append"], later)


@pytest.mark.slow
def test_chat_append_keeps_each_turn_in_place(chat_runs, short_generator):
    records = chat_runs["append"]
    assert [r.round for r in records] == [1, 2, 3]
    assert [r.item_id for r in records] == list(CHAT_IDS)
    assert all(r.workload == CHAT for r in records)
    for before, after in zip(records, records[1:], strict=False):
        old_ids = short_generator.token_ids(before.prompt)
        new_ids = short_generator.token_ids(after.prompt)
        # Only the chat template's end of turn after the old cue differs.
        assert common_prefix_length(old_ids, new_ids) >= len(old_ids) - 5
        assert before.answer in after.prompt.prefix and before.question in after.prompt.prefix
        assert after.prompt_tokens > before.prompt_tokens
    assert reused_share(records, {2, 3}) >= 0.5
    assert reused_share(chat_runs["prepend"], {2, 3}) < reused_share(records, {2, 3}) / 2


@pytest.mark.slow
def test_chat_prepend_rebuilds_each_turn(chat_runs):
    records = chat_runs["prepend"]
    assert [r.round for r in records] == [1, 2, 3]
    last = records[-1]
    assert last.passages == len(last.prompt.segments) == TOP_K  # only this turn's passages
    assert records[0].answer in last.prompt.prefix  # earlier turns as conversation text
    assert last.prompt.suffix.startswith(f"Question: {last.question}")


def test_invalid_settings_name_the_value(retriever):
    with pytest.raises(ValueError, match="sideways"):
        iter_retgen([], retriever, None, layout="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rounds must be > 0, got 0"):
        iter_retgen([], retriever, None, rounds=0)
    with pytest.raises(ValueError, match="batch_size must be > 0, got 0"):
        chat([], retriever, None, batch_size=0)
    assert iter_retgen([], retriever, None) == []
    assert chat([], retriever, None, assembler=PromptAssembler(layout="prepend")) == []


def test_prepend_ranks_passages_for_the_current_round():
    """Prepend leads with this round's ranking (scores of other queries are not comparable) and
    still shows every passage found so far, so both layouts hold the same set."""
    from benchmarks.workloads import _Draft
    from ragkit.eval.tasks import EvalItem
    from ragkit.types import Chunk, Retrieved

    def hit(i: int, score: float) -> Retrieved:
        return Retrieved(Chunk(f"d{i}:0", f"d{i}", f"passage {i}", 0, 9, {}), score, i)

    draft = _Draft(EvalItem(id="x", task="read", query="q", inputs={}, reference="a"))
    first = [hit(0, 9.0), hit(1, 8.0)]
    draft.add(first)
    assert [h.chunk.id for h in draft.ranked_for(first)] == ["d0:0", "d1:0"]
    second = [hit(2, 3.0), hit(1, 2.0)]
    draft.add(second)
    assert [h.chunk.id for h in draft.ranked_for(second)] == ["d2:0", "d1:0", "d0:0"]
