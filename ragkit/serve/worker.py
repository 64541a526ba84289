"""Runs blocking pipeline streams off the event loop, one at a time per generator, behind a
bounded wait queue.

The local generator is not re-entrant, so each generator gets a `GenerationSlot`: one request
generates, up to `max_queue` wait, and the rest are refused at once (the server answers 503)
instead of piling up. A stream runs in its own thread and hands pieces to the event loop through
an asyncio queue; setting its `stop` event makes the thread stop pulling from the pipeline and
close it, which ends the generation. The slot is released by the thread itself, only after the
generation has really stopped, so a client that leaves early never lets two generations overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any


class QueueFull(Exception):
    """More requests are waiting for a generator than the server allows."""


class GenerationSlot:
    """A lock with a bounded number of waiters; `waiting` is the queue depth."""

    def __init__(self, max_queue: int, on_change: Callable[[int], None] | None = None) -> None:
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.max_queue = max_queue
        self.waiting = 0
        self._lock = asyncio.Lock()
        self._on_change = on_change

    async def acquire(self) -> None:
        if self._lock.locked() and self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests are waiting (max_queue={self.max_queue})")
        self._set_waiting(self.waiting + 1)
        try:
            await self._lock.acquire()
        finally:
            self._set_waiting(self.waiting - 1)

    def release(self) -> None:
        self._lock.release()

    def _set_waiting(self, value: int) -> None:
        self.waiting = value
        if self._on_change is not None:
            self._on_change(value)


_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ThreadedStream:
    """Iterates `make()` in a worker thread and yields its items on the event loop.

    `release` runs once the thread has finished (normally, on error or after `stop()`); it is
    scheduled on the loop so it may touch asyncio objects.
    """

    def __init__(self, make: Callable[[], Iterator[Any]], release: Callable[[], None]) -> None:
        self._make = make
        self._release = release
        self._stop = threading.Event()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self.finished = asyncio.Event()
        self._thread = threading.Thread(target=self._work, name="ragkit-generation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    async def next(self, timeout: float) -> Any:
        """The next item; raises `TimeoutError` when none came within `timeout` seconds,
        `StopAsyncIteration` at the end, and re-raises the pipeline's exception."""
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is _END:
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            raise item.exc
        return item

    async def items(self, poll: float, should_stop: Callable[[], Any]) -> AsyncIterator[Any]:
        """Items until the end; every `poll` seconds without one, and between items, awaits
        `should_stop()` and stops the generation when it says so."""
        while True:
            try:
                item = await self.next(poll)
            except TimeoutError:
                if await should_stop():
                    self.stop()
                    return
                continue
            except StopAsyncIteration:
                return
            yield item
            if await should_stop():
                self.stop()
                return

    def _put(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the server is shutting down
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _work(self) -> None:
        iterator: Iterator[Any] | None = None
        try:
            iterator = self._make()
            for item in iterator:
                self._put(item)
                if self._stop.is_set():
                    break
        except BaseException as exc:  # handed to the request, which turns it into an error body
            self._put(_Failure(exc))
        finally:
            try:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            finally:
                self._put(_END)
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        self.finished.set()
        self._release()
