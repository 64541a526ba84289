"""The question-writing prompt in the chunk's language, and reading the model's reply."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragkit.text import cjk_ratio
from ragkit.types import Prompt

_PROMPTS = {
    "en": (
        "Read the passage and write one question that it answers, then the answer.\n"
        'The question names its subject and makes sense on its own (never say "the passage"). '
        "The answer is at most five words copied from the passage: a name, a number or a date, "
        "not a sentence.\n\n"
        "Passage:\n{text}\n\n"
        "Reply with exactly two lines:\nQuestion: <the question>\nAnswer: <at most five words>"
    ),
    "zh": (
        "阅读下面的段落，写出一个能用段落内容回答的问题，以及答案。\n"
        "问题要写明具体对象，单独看也能读懂，不要出现“段落”“文中”“本文”等字样。"
        "答案是从段落中原样摘录的不超过十个字的词语（人名、数字或日期），不要写成句子。\n\n"
        "段落：\n{text}\n\n"
        "只输出两行：\n问题：<问题>\n答案：<不超过十个字>"
    ),
}
_QUESTION = re.compile(r"^\s*(?:\**\s*)?(?:question|问题)\s*\**[:：][ \t]*(.+)$", re.I | re.M)
_ANSWER = re.compile(r"^\s*(?:\**\s*)?(?:answer|答案)\s*\**[:：][ \t]*(.+)$", re.I | re.M)
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
