"""The question-writing prompt in the chunk's language, and reading the model's reply."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragkit.text import cjk_ratio
from ragkit.types import Prompt

_PROMPTS = {
    "en": (
        "Passage:\n{text}\n\n"
        "First copy one short fact from the passage (a name, a number, a date or at most five "
        "words). Then write a question whose answer is exactly that fact. The question must "
        'name its subject and make sense without the passage (never say "the passage").\n'
        "Reply with exactly two lines:\nAnswer: <the fact, copied>\nQuestion: <the question>"
    ),
    "zh": (
        "段落：\n{text}\n\n"
        "先从段落中原样摘录一个简短事实（人名、数字、日期，或不超过十个字的词语），"
        "再写一个答案恰好是这个事实的问题。问题要写明具体对象，单独看也能读懂，"
        "不要出现“段落”“文中”“本文”等字样。\n"
        "只输出两行：\n答案：<摘录的事实>\n问题：<问题>"
    ),
}
_QUESTION = re.compile(r"^\s*(?:\**\s*)?(?:question|问题)\s*\**\s*[:：]\s*(.+)$", re.I | re.M)
_ANSWER = re.compile(r"^\s*(?:\**\s*)?(?:answer|答案)\s*\**\s*[:：]\s*(.+)$", re.I | re.M)
_TRAILING = " \t\"'“”‘’。.，,;；*"


@dataclass(frozen=True)
class Pair:
    question: str
    answer: str


def language(text: str) -> str:
    """`zh` when a fifth or more of the visible characters are Chinese, else `en`."""
    return "zh" if cjk_ratio(text) >= 0.2 else "en"


def question_prompt(text: str, lang: str) -> Prompt:
    return Prompt.plain(_PROMPTS[lang].format(text=text.strip()))


def parse(reply: str) -> Pair | None:
    """The first `Question:`/`Answer:` lines (or 问题/答案) of a reply; None when either is
    missing or empty."""
    q, a = _QUESTION.search(reply), _ANSWER.search(reply)
    if q is None or a is None:
        return None
    question = q.group(1).strip().strip("*").strip()
    answer = a.group(1).strip().strip(_TRAILING)
    if not question or not answer:
        return None
    return Pair(question, answer)
