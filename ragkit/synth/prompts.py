"""The question-writing prompt in the chunk's language, and reading the model's reply."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragkit.text import cjk_ratio
from ragkit.types import Prompt

# Two short calls rather than one: a small model writes a good question when that is all it is
# asked, and then copies a short answer when shown the question and the passage.
_PROMPTS = {
    "en": (
        "Passage:\n{text}\n\n"
        "Write one question that this passage answers with a name, a number or a date. The "
        'question names its subject and makes sense on its own (never say "the passage"). '
        "Reply with the question only."
    ),
    "zh": (
        "段落：\n{text}\n\n"
        "写一个能用这个段落中的人名、数字或日期回答的问题。问题要写明具体对象，单独看也能读懂，"
        "不要出现“段落”“文中”“本文”等字样。只输出问题。"
    ),
}
ANSWER_MARK = {"en": "Answer the question", "zh": "请用段落中的原话回答问题"}
_ANSWER_PROMPTS = {
    "en": (
        "Answer the question with the shortest phrase copied from the passage (a name, a "
        "number or a date, at most five words). Reply with the answer only.\n\n"
        "Passage:\n{text}\n\nQuestion: {question}"
    ),
    "zh": (
        "请用段落中的原话回答问题，答案越短越好（人名、数字或日期，不超过十个字），只输出答案。\n\n"
        "段落：\n{text}\n\n问题：{question}"
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


def answer_prompt(text: str, question: str, lang: str) -> Prompt:
    return Prompt.plain(_ANSWER_PROMPTS[lang].format(text=text.strip(), question=question))


def parse_question(reply: str) -> str | None:
    """The question of a reply: a `Question:` line, else the first line ending in a
    question mark."""
    pair = _QUESTION.search(reply)
    if pair is not None:
        return pair.group(1).strip().strip("*").strip() or None
    for line in reply.splitlines():
        line = line.strip().strip("*").strip()
        if line.endswith(("?", "？")):
            return line
    return None


def parse_answer(reply: str) -> str | None:
    """The answer of a reply: an `Answer:` line, else its first non-empty line."""
    found = _ANSWER.search(reply)
    line = found.group(1) if found else next((x for x in reply.splitlines() if x.strip()), "")
    return line.strip().strip(_TRAILING) or None


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
