"""Library progress bars are drawn only on a terminal, never into logs."""

from __future__ import annotations

import sys

from transformers.utils import logging as hf_logging

from ragkit.terminal import library_progress_bars


class Terminal:
    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


def test_bars_are_off_inside_the_block_when_stderr_is_not_a_terminal(monkeypatch):
    assert not sys.stderr.isatty()  # pytest captures it
    hf_logging.enable_progress_bar()
    with library_progress_bars():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()  # restored for whoever comes next


def test_bars_stay_on_at_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    hf_logging.enable_progress_bar()
    with library_progress_bars():
        assert hf_logging.is_progress_bar_enabled()


def test_a_caller_who_turned_bars_off_keeps_them_off():
    hf_logging.disable_progress_bar()
    try:
        with library_progress_bars():
            assert not hf_logging.is_progress_bar_enabled()
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
