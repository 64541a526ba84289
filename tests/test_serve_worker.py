"""The server's admission gate, its worker-thread streams (cancellation reaches the generation),
the async-engine bridge the vLLM adapter uses, and how sources are shown to clients."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from ragkit.generation.aio import LoopThread
from ragkit.generation.base import GenerationParams
from ragkit.generation.cancel import cancellable, cancelled
from ragkit.generation.vllm import stream_outputs
from ragkit.serve.sources import SourceNames, common_root
from ragkit.serve.worker import (
    GenerationGate,
    Interrupted,
    QueueFull,
    ShuttingDown,
    ThreadedStream,
)


def test_gate_admits_capacity_then_queues_then_refuses():
    async def run() -> list[str]:
        seen: list[tuple[int, int]] = []
        gate = GenerationGate(2, 1, lambda r, w: seen.append((r, w)))
        await gate.acquire()
        await gate.acquire()
        assert (gate.running, gate.waiting) == (2, 0)
        third = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        assert gate.waiting == 1 and not third.done()
        with pytest.raises(QueueFull, match="max_concurrency=2.*max_queue=1"):
            await gate.acquire()
        gate.release()  # the slot passes to the waiter, the count stays
        await third
        assert (gate.running, gate.waiting) == (2, 0)
        gate.release()
        gate.release()
        assert gate.running == 0 and seen[-1] == (0, 0)
        return ["ok"]

    assert asyncio.run(run()) == ["ok"]


def test_gate_serves_waiters_in_order_and_close_refuses_them():
    async def run() -> None:
        gate = GenerationGate(1, 3)
        await gate.acquire()
        order: list[int] = []

        async def waiter(i: int) -> None:
            await gate.acquire()
            order.append(i)

        tasks = [asyncio.create_task(waiter(i)) for i in range(2)]
        await asyncio.sleep(0)
        gate.release()
        await asyncio.sleep(0)
        gate.release()
        await asyncio.gather(*tasks)
        assert order == [0, 1]
        late = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        gate.close()
        with pytest.raises(ShuttingDown):
            await late
        with pytest.raises(ShuttingDown):
            await gate.acquire()

    asyncio.run(run())


def test_a_waiter_that_gives_up_leaves_the_queue():
    async def run() -> None:
        gate = GenerationGate(1, 1)
        await gate.acquire()
        waiting = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert gate.waiting == 0
        gate.release()
        assert gate.running == 0
        await gate.acquire()  # the slot is free again

    asyncio.run(run())


PREFILL_POLLS = 10_000  # about 50 s: far longer than any stop takes to arrive


def scripted_prefill(polls: list[float], polling: threading.Event | None = None):
    """A scripted generator stream: a long 'prefill' that polls `cancelled()` like the local
    model does between blocks (setting `polling` at its first poll), then tokens."""
    for _ in range(PREFILL_POLLS):
        polls.append(time.monotonic())
        if polling is not None:
            polling.set()
        if cancelled():
            return
        time.sleep(0.005)
    yield "token"


def test_stopping_a_stream_reaches_the_generation_inside_its_prefill():
    async def run() -> tuple[float, list[float]]:
        polls: list[float] = []
        polling = threading.Event()
        released = asyncio.Event()
        stream = ThreadedStream(lambda: scripted_prefill(polls, polling), released.set)
        await asyncio.to_thread(polling.wait)  # the generation is inside its prefill
        stopped_at = time.monotonic()
        stream.stop()
        await released.wait()  # the gate is released once the generation has stopped
        return stopped_at, polls

    stopped_at, polls = asyncio.run(run())
    assert polls[-1] >= stopped_at and len(polls) < PREFILL_POLLS


def test_interrupt_ends_the_consumer_with_the_reason():
    async def run() -> None:
        released = asyncio.Event()
        stream = ThreadedStream(lambda: scripted_prefill([]), released.set)
        stream.interrupt("shutting down")
        with pytest.raises(Interrupted, match="shutting down"):
            await stream.next(5)
        await asyncio.wait_for(released.wait(), 1.0)

    asyncio.run(run())


def test_loop_thread_iterates_and_aborts_on_cancel():
    loop = LoopThread()
    aborted = []

    async def numbers():
        for i in range(1000):
            await asyncio.sleep(0.01)
            yield i

    async def abort() -> None:
        aborted.append(True)

    try:
        assert list(loop.iterate(_take(numbers(), 3))) == [0, 1, 2]
        event = threading.Event()
        got = []
        with cancellable(event):
            for item in loop.iterate(numbers(), abort):
                got.append(item)
                if item == 4:
                    event.set()
        assert got == [0, 1, 2, 3, 4] and aborted == [True]
    finally:
        loop.close()


async def _take(agen, n):
    async for item in agen:
        if n == 0:
            return
        n -= 1
        yield item


def test_vllm_outputs_become_deltas_cut_at_stop_strings():
    params = GenerationParams(16, 0.0, ("STOP",), 0)

    def output(text: str, tokens: int):
        return SimpleNamespace(
            outputs=[SimpleNamespace(text=text, token_ids=list(range(tokens)))],
            prompt_token_ids=[1, 2, 3],
            num_cached_tokens=2,
        )

    outputs = [output("Hel", 1), output("Hello wor", 3), output("Hello world STOP more", 6)]
    chunks = list(stream_outputs(iter(outputs), params, time.perf_counter()))
    assert "".join(c.text for c in chunks) == "Hello world "
    answer = chunks[-1].answer
    assert answer.text == "Hello world"
    assert (answer.usage.prompt_tokens, answer.usage.cached_prompt_tokens) == (3, 2)
    assert answer.usage.completion_tokens == 6


def test_sources_are_shown_relative_to_the_ingested_folder():
    sources = ["/srv/data/corpus/a.md", "/srv/data/corpus/sub/b.md", "/srv/data/corpus/c.jsonl#3"]
    assert common_root(sources) == "/srv/data/corpus"
    names = SourceNames(common_root(sources))
    assert names.shown("/srv/data/corpus/sub/b.md") == "sub/b.md"
    assert names.shown("/srv/data/corpus/c.jsonl#3") == "c.jsonl#3"
    assert names.shown("/elsewhere/secret/d.md") == "d.md"  # outside: the file name only
    assert SourceNames(common_root(["/srv/one/file.md"])).shown("/srv/one/file.md") == "file.md"
    assert SourceNames(None).shown("/srv/x/y.md") == "y.md"
    assert SourceNames(None).shown("notes-42") == "notes-42"
