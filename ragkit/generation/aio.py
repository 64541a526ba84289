"""An event loop of its own, in a daemon thread, for engines whose API is async (vLLM's
`AsyncLLM`) but whose callers are blocking threads (a server's request threads, `batch`).

All requests share the one loop, so the engine sees them together and batches them; each caller
consumes its own async generator as a plain iterator. A caller that sets its cancellation event
(`ragkit.generation.cancel`) gets the generator closed and `on_cancel` awaited, which lets the
engine drop the request at once instead of finishing it for nobody.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

from ragkit.generation.cancel import cancelled

T = TypeVar("T")
_POLL_S = 0.05


class LoopThread:
    """`run(coro)` and `iterate(agen)` from any thread, on one background event loop."""

    def __init__(self, name: str = "ragkit-engine-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_awaited(coro), self.loop).result()

    def iterate(
        self,
        agen: AsyncIterator[T],
        on_cancel: Callable[[], Awaitable[Any]] | None = None,
    ) -> Iterator[T]:
        """The items of `agen`, pulled one at a time on the loop; stops early (closing `agen`
        and awaiting `on_cancel`) when the caller is cancelled or closes this iterator."""
        finished = False
        try:
            while True:
                future = asyncio.run_coroutine_threadsafe(_next(agen), self.loop)
                while True:
                    try:
                        step = future.result(timeout=_POLL_S)
                        break
                    except concurrent.futures.TimeoutError:
                        if cancelled():
                            future.cancel()
                            return
                if step is None:
                    finished = True
                    return
                yield step[0]
                if cancelled():
                    return
        finally:
            if not finished:
                self.run(_abandon(agen, on_cancel))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


async def _awaited(value: Awaitable[T]) -> T:
    return await value


async def _next(agen: AsyncIterator[T]) -> tuple[T] | None:
    """The next item in a 1-tuple (an item may itself be None), or None once `agen` is done."""
    try:
        return (await agen.__anext__(),)
    except StopAsyncIteration:
        return None


async def _abandon(
    agen: AsyncIterator[Any], on_cancel: Callable[[], Awaitable[Any]] | None
) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(RuntimeError):  # a step we cancelled is still ending it
            await aclose()
    if on_cancel is not None:
        await on_cancel()
