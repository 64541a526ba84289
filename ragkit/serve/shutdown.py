"""Graceful shutdown: on SIGTERM the server stops taking work, lets running requests finish for
a grace period, then ends the rest with a proper error (an SSE error event and `[DONE]`, or a
JSON 503) so no client is left with a cut connection.

uvicorn itself stops accepting connections and waits for open ones; it learns nothing about
requests, so `ServingServer` tells the app's `Drain` when the signal arrives. A request answered
early (interrupted, or its client gone) may still have its generation thread running for a
moment, inside a model or index call; the app's shutdown waits for those threads to end, since
a daemon thread still in native code when the interpreter exits can abort the process (see
`ragkit.generation.scheduler`).
"""

from __future__ import annotations

import asyncio
import logging
from types import FrameType
from typing import Any

log = logging.getLogger("ragkit.serve")

INTERRUPTED = "the server shut down before this answer finished; retry"
# How long shutdown waits for stopped generations to leave their current model step.
SETTLE_TIMEOUT_S = 30.0


class Drain:
    """The app's shutdown state: its gates and the requests running now."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.draining = False
        self.gates: list[Any] = []
        self.running: set[Any] = set()  # objects with `interrupt(reason)`
        self.generations: set[Any] = set()  # streams (`finished` event) whose thread runs
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def request(self) -> None:
        """Starts draining from any thread (a signal handler included)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.begin)

    def begin(self) -> None:
        """Refuses queued and new requests now; ends running ones after the grace period."""
        if self.draining:
            return
        self.draining = True
        for gate in self.gates:
            gate.close()
        if self.running:
            log.info(
                "shutting down: %d requests running, %.1f s to finish",
                len(self.running),
                self.grace_s,
            )
            asyncio.get_running_loop().call_later(self.grace_s, self._interrupt)

    async def settle(self, timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
        """Waits until every generation thread has ended (they have all been told to stop);
        True when they did within `timeout_s`."""
        waits = [asyncio.ensure_future(s.finished.wait()) for s in list(self.generations)]
        if not waits:
            return True
        log.info("shutting down: waiting for %d generations to stop", len(waits))
        _, pending = await asyncio.wait(waits, timeout=timeout_s)
        for wait in pending:
            wait.cancel()
        if pending:
            log.warning("shutting down: %d generations did not stop in time", len(pending))
        return not pending

    def _interrupt(self) -> None:
        if self.running:
            log.info("shutting down: ending %d unfinished requests", len(self.running))
        for run in list(self.running):
            run.interrupt(INTERRUPTED)


def serving_server(config: Any, drain: Drain) -> Any:
    """A uvicorn server whose SIGTERM/SIGINT first drains the app, and that exits with status 0
    after a graceful shutdown instead of re-raising the signal."""
    import uvicorn

    class ServingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.should_exit:
                drain.request()
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return ServingServer(config)
