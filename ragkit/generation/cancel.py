"""Cancellation that reaches a generation from whoever consumes it.

A generator stream runs in a worker thread and may sit inside one long forward pass (a prefill
of thousands of tokens) where nobody pulls from it, so closing the iterator cannot stop it.
The consumer instead sets an event bound with `cancellable`, and backends poll `cancelled()`
between prefill blocks and decode steps. A context variable carries the event, so it follows
the call through langchain's runnables (which copy the context into their executors) without
every stage passing it along.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[threading.Event | None] = ContextVar("ragkit_cancel", default=None)


@contextmanager
def cancellable(event: threading.Event) -> Iterator[threading.Event]:
    """Generations started inside this block stop soon after `event` is set."""
    token = _current.set(event)
    try:
        yield event
    finally:
        _current.reset(token)


def current_event() -> threading.Event | None:
    """The event bound by the innermost `cancellable`, if any."""
    return _current.get()


def cancelled() -> bool:
    """Whether the caller of the running generation has asked it to stop."""
    event = _current.get()
    return event is not None and event.is_set()
