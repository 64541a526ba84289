"""Where the passages of a rendered prompt lie in its token ids.

A passage's KV can only be reused if its tokens are the same wherever it appears, so the prompt
is tokenized in pieces: the text before the passages, each passage's number-dependent head and
its number-free body, and the text after them. Tokenizing the pieces apart can split a word at
a piece boundary differently from tokenizing the whole text; the default passage template puts
a bracket and a blank line at every boundary, where the model's pre-tokenizer splits anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragkit.types import Prompt


@dataclass(frozen=True)
class PassageSpan:
    """Token offsets of one passage: `[start, body)` holds its number, `[body, end)` the rest."""

    start: int
    body: int
    end: int


@dataclass(frozen=True)
class PromptPlan:
    """A prompt's token ids split into the text before the passages (`[0, prefix_end)`), the
    passages, and the text after them (`[suffix_start, len(ids))`).

    `context` is the text every passage is encoded after when it is computed on its own: all
    the text before the passages when it does not hold the question (the `prepend` layout), so
    the first passage is encoded exactly as a full prefill would and the rest nearly so;
    otherwise (the question comes before the passages, as in `append`) only the chat
    template's opening, with the system message, so the stored KV serves every question.
    """

    ids: tuple[int, ...]
    context: tuple[int, ...]
    prefix_end: int
    passages: tuple[PassageSpan, ...]
    suffix_start: int


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False).input_ids) if text else []


def plan_prompt(tokenizer: Any, rendered: str, prompt: Prompt) -> PromptPlan | None:
    """The plan of `prompt` as `rendered` by the chat template; None when it has no passages or
    the template does not carry the user text verbatim (then nothing can be reused by passage).
    """
    if not prompt.segments:
        return None
    user = prompt.user_text
    at = rendered.find(user)
    if at < 0:
        return None
    ids = encode(tokenizer, rendered[:at] + prompt.prefix)
    prefix_end = len(ids)
    shared = prompt.question not in prompt.prefix
    context = ids[:] if shared else encode(tokenizer, rendered[:at])
    spans = []
    for segment in prompt.segments:
        start = len(ids)
        ids += encode(tokenizer, segment.text[: segment.body_start])
        body = len(ids)
        ids += encode(tokenizer, segment.text[segment.body_start :])
        spans.append(PassageSpan(start, body, len(ids)))
    suffix_start = len(ids)
    ids += encode(tokenizer, prompt.suffix + rendered[at + len(user) :])
    return PromptPlan(tuple(ids), tuple(context), prefix_end, tuple(spans), suffix_start)


def body_tokens(plan: PromptPlan, span: PassageSpan) -> Sequence[int]:
    return plan.ids[span.body : span.end]
