"""Checks on a request's text before any work starts: valid Unicode and a bounded prompt length.

A prompt is counted with the generator's own tokenizer when it has one (the local model, vLLM in
process). A generator behind an HTTP API has none here, so its prompts are counted as one token
per `BYTES_PER_TOKEN` UTF-8 bytes, rounded up: close to real tokenizers on English prose and on
Chinese (three bytes a character, a little over one character a token).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ragkit.serve.errors import APIError
from ragkit.serve.schemas import ChatCompletionRequest

BYTES_PER_TOKEN = 4


def check_unicode(body: ChatCompletionRequest) -> None:
    """Refuses text that is not valid Unicode (a lone surrogate such as an unpaired `\\ud800`
    escape), which no tokenizer or model server accepts, naming where it is."""
    fields: list[tuple[str, str]] = [("model", body.model), ("user", body.user or "")]
    for i, message in enumerate(body.messages):
        fields.append((f"messages.{i}.content", message.text))
    for i, stop in enumerate(body.stop_list or []):
        fields.append((f"stop.{i}", stop))
    for param, text in fields:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = f"U+{ord(text[exc.start]):04X}"
            raise APIError(
                400,
                f"{param} is not valid Unicode: a lone surrogate {bad} at character {exc.start}",
                param=param,
                code="invalid_value",
            ) from None


def token_counter(generator: Any) -> Callable[[str], int]:
    """`text -> tokens` with the generator's tokenizer, or the byte approximation."""
    try:
        tokenizer = generator._chat_tokenizer()
    except Exception:  # HTTP backends have no tokenizer here; an unloaded vLLM neither
        tokenizer = None
    encode = getattr(tokenizer, "encode", None)
    if encode is None:
        return approximate_tokens

    def count(text: str) -> int:
        return len(encode(text, add_special_tokens=False))

    return count


def approximate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def check_prompt_tokens(texts: list[str], count: Callable[[str], int], limit: int) -> int:
    """The tokens of the request's own text (question and kept history); a 400 naming the
    limit when they exceed it. Retrieved passages are not counted: the pipeline bounds them."""
    total = 0
    for text in texts:
        total += count(text)
        if total > limit:
            # stop counting early: a huge prompt costs no more than the limit to refuse
            raise APIError(
                400,
                f"the prompt is over {limit} tokens, this server's limit (--max-prompt-tokens);"
                " shorten the messages",
                param="messages",
                code="prompt_too_long",
            )
    return total
