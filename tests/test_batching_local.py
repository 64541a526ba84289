"""Continuous batching in the local generator with the real packaged model: batched greedy
output is the output of each prompt alone, streams keep their own tokens, and cancellation
frees the model between prefill blocks and decode steps."""

from __future__ import annotations

import threading
import time

import pytest

from ragkit.generation.base import GenerationParams
from ragkit.generation.cancel import cancellable
from ragkit.generation.local import LocalGenerator
from ragkit.generation.scheduler import GenerationCancelled, Sequence, fits
from ragkit.types import Prompt

PROMPTS = [
    Prompt.plain("What is the capital of France? Answer in one sentence."),
    Prompt.plain("哈威克镇的图书馆建于1902年，藏书约八万册。图书馆建于哪一年？请用一句话回答。"),
    Prompt.plain(
        "The Larkspur ferry leaves Harbour Quay at 7:40 every weekday and takes 25 minutes to "
        "reach Ostrey Island. On weekends it runs hourly from 9:00, and in winter the last "
        "crossing is at 17:00. How long is the crossing, and when is the last winter ferry?",
        system="Answer from the passage in a few words.",
    ),
    Prompt.plain("用三句话介绍长江。"),
    Prompt.plain("List three colours."),
]


def token_ids(gen: LocalGenerator, text: str) -> list[int]:
    return gen.loaded().tokenizer(text).input_ids


@pytest.fixture(scope="module")
def float32() -> LocalGenerator:
    return LocalGenerator(dtype="float32", max_new_tokens=16, prefix_cache_bytes=0)


@pytest.fixture(scope="module")
def alone(float32) -> list[str]:
    """Each prompt generated with nothing else running."""
    return [float32.invoke(p).text for p in PROMPTS]


@pytest.mark.slow
def test_float32_batch_is_exactly_each_prompt_alone(float32, alone):
    batched = float32.batch(PROMPTS)
    for i, (one, together) in enumerate(zip(alone, batched, strict=True)):
        assert token_ids(float32, together.text) == token_ids(float32, one), f"prompt {i}"
    assert all(a.usage.completion_tokens > 0 for a in batched)


@pytest.mark.slow
def test_float32_concurrent_streams_join_and_keep_their_own_tokens(float32, alone):
    """Callers arriving while others decode join the batch; each stream is its own answer."""
    results: dict[int, str] = {}
    final: dict[int, str] = {}

    def consume(i: int) -> None:
        time.sleep(0.3 * i)  # staggered: later ones join a batch already decoding
        pieces = []
        for chunk in float32.stream(PROMPTS[i]):
            if chunk.answer is not None:
                final[i] = chunk.answer.text
            else:
                pieces.append(chunk.text)
        results[i] = "".join(pieces).strip()

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, one in enumerate(alone):
        assert results[i] == final[i], f"stream {i} is not its own answer"
        assert token_ids(float32, final[i]) == token_ids(float32, one), f"prompt {i}"


@pytest.mark.slow
def test_max_concurrency_follows_the_batch_size():
    assert LocalGenerator().max_concurrency == LocalGenerator().max_batch_size == 8
    assert LocalGenerator(max_batch_size=3).max_concurrency == 3
    assert LocalGenerator(max_batch_size=3, max_concurrency=2).max_concurrency == 2
    with pytest.raises(ValueError, match=r"max_batch_size\n.*greater than 0"):
        LocalGenerator(max_batch_size=0)
    with pytest.raises(ValueError, match=r"max_batch_tokens\n.*greater than 0"):
        LocalGenerator(max_batch_tokens=-5)


def sequence(prompt_tokens: int, new_tokens: int, batch: int) -> Sequence:
    params = GenerationParams(new_tokens, 0.0, (), 0)
    return Sequence([1] * prompt_tokens, params, None, 64, batch)


def test_admission_respects_batch_size_and_token_budget():
    big = sequence(3000, 200, 8)
    assert fits(big, [], max_batch_tokens=1000)  # alone it always runs
    members = [sequence(100, 50, 8) for _ in range(3)]
    assert fits(sequence(100, 50, 8), members, max_batch_tokens=600)
    assert not fits(sequence(100, 51, 8), members, max_batch_tokens=600)  # budget
    assert not fits(sequence(10, 10, 3), members, max_batch_tokens=10_000)  # its own limit
    assert not fits(sequence(10, 10, 8), [*members[:2], sequence(1, 1, 3)], 10_000)  # a member's


def long_prompt(tokens: int) -> Prompt:
    sentence = "The river Lune floods most winters near Harwick and closes the bridge. "
    return Prompt.plain(sentence * (tokens // 14) + "\nSummarise.")


class SetAfterPolls(threading.Event):
    """A cancellation event that reads as set from its `n`-th poll on: the caller gives up at
    a known point inside the prefill, whatever the machine's speed."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.polls = 0

    def is_set(self) -> bool:
        self.polls += 1
        return self.polls >= self.n or super().is_set()


@pytest.mark.slow
def test_cancel_during_prefill_stops_at_the_next_block(local_generator):
    """A long prompt whose caller gives up mid-prefill stops at the next block boundary, and the
    model is free for the next caller."""
    prompt = long_prompt(3000)
    blocks = -(-len(local_generator.token_ids(prompt)) // local_generator.prefill_block_tokens)
    assert blocks >= 4
    event = SetAfterPolls(3)  # the scheduler polls before each block: two blocks, then stop
    with cancellable(event), pytest.raises(GenerationCancelled, match="during prefill"):
        local_generator.invoke(prompt, max_new_tokens=4)
    assert event.polls == 3
    assert local_generator.loaded().scheduler().active == 0
    assert local_generator.invoke("Say hi.", max_new_tokens=2).usage.completion_tokens > 0


@pytest.mark.slow
def test_closing_a_stream_cancels_its_sequence(local_generator):
    stream = local_generator.stream("Count from one to one hundred in words.", max_new_tokens=200)
    first = next(stream)
    assert first.answer is None
    stream.close()
    scheduler = local_generator.loaded().scheduler()
    deadline = time.perf_counter() + 10
    while scheduler.active and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert scheduler.active == 0
    # The model is free for the next caller.
    assert local_generator.invoke("Say hi.", max_new_tokens=2).usage.completion_tokens > 0


@pytest.mark.slow
def test_batch_of_one_bad_prompt_fails_before_any_runs(local_generator):
    too_long = Prompt.plain("word " * 40_000)
    with pytest.raises(Exception, match="exceeds the model's context"):
        local_generator.batch([Prompt.plain("hi"), too_long])
    assert local_generator.loaded().scheduler().active == 0
