"""Runs blocking pipeline streams off the event loop, as many at once per generator as it
declares it can take, behind a bounded wait queue.

Each generator gets a `GenerationGate`: up to `capacity` requests run (a batching server takes
many, the local model fewer), up to `max_queue` more wait, and the rest are refused at once (the
server answers 503) instead of piling up. A stream runs in its own thread and hands pieces to the
event loop through an asyncio queue. Setting its `stop` event makes the thread stop pulling from
the pipeline and close it, and, because the thread binds the event with `cancellable`, a
generator that polls `cancelled()` stops even inside a long prefill. The gate is released by the
thread itself, only after the generation has really stopped, so a client that leaves early never
lets more generations overlap than the generator takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ragkit.generation.cancel import cancellable


class QueueFull(Exception):
    """More requests are waiting for a generator than the server allows."""


class ShuttingDown(Exception):
    """The server is draining: it takes no new work."""


class GenerationGate:
    """A counting semaphore with a bounded, first-come-first-served wait queue.

    `running` counts admitted requests, `waiting` the queued ones; `on_change(running, waiting)`
    reports both after every change (for gauges). `close()` refuses everyone still waiting.
    """

    def __init__(
        self,
        capacity: int,
        max_queue: int,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0, got {capacity}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.capacity = capacity
        self.max_queue = max_queue
        self.running = 0
        self.closed = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_change = on_change

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.closed:
            raise ShuttingDown("the server is shutting down")
        if self.running < self.capacity and not self._waiters:
            self.running += 1
            self._changed()
            return
        if len(self._waiters) >= self.max_queue:
            raise QueueFull(
                f"{self.running} requests are generating (max_concurrency={self.capacity}) and "
                f"{len(self._waiters)} are waiting (max_queue={self.max_queue})"
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._changed()
        try:
            await future
        except BaseException:
            if future in self._waiters:
                self._waiters.remove(future)
                self._changed()
            elif future.done() and not future.cancelled() and future.exception() is None:
                self.release()  # the slot was handed over just as this waiter gave up
            raise

    def release(self) -> None:
        """Hands the slot to the longest waiter, or frees it."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                self._changed()
                return
        self.running -= 1
        self._changed()

    def close(self) -> None:
        """Refuses new requests and every waiting one (they answer 503)."""
        self.closed = True
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(ShuttingDown("the server is shutting down"))
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.running, len(self._waiters))


_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Interrupted(Exception):
    """The server ended this stream itself (it is shutting down); carries the reason."""


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

    def interrupt(self, reason: str) -> None:
        """Stops the generation and makes the consumer's next `next()` raise `Interrupted`."""
        self._stop.set()
        self._queue.put_nowait(_Failure(Interrupted(reason)))

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
            with cancellable(self._stop):
                try:
                    iterator = self._make()
                    for item in iterator:
                        self._put(item)
                        if self._stop.is_set():
                            break
                finally:
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()
        except BaseException as exc:  # handed to the request, which turns it into an error body
            self._put(_Failure(exc))
        finally:
            self._put(_END)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        self.finished.set()
        self._release()
