"""Progress bars for people at a terminal, and nothing for logs.

transformers draws tqdm bars while it converts or loads weights; written to a file or a CI log,
each redraw becomes one more line of carriage-return frames. Libraries' bars are therefore shown
only when standard error is a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def library_progress_bars() -> Iterator[None]:
    """transformers' progress bars inside this block only when stderr is a terminal."""
    from transformers.utils import logging as hf_logging

    if sys.stderr.isatty() or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()
