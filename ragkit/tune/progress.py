"""A labelled rich progress bar with an ETA, or nothing when output is not a terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Progress:
    def __init__(self, enabled: bool, label: str, total: int, already: int = 0) -> None:
        self.enabled = enabled and total > 0
        self.label, self.total, self.already = label, total, already
        self.bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        self.bar.start()
        label = f"{self.label} ({self.already} cached)" if self.already else self.label
        task = self.bar.add_task(label, total=self.total + self.already, completed=self.already)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
