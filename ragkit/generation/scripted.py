"""A scripted, deterministic generator: answers are computed from the prompt by fixed rules, not
by a model, so pipeline, stage, server and evaluation logic can be tested in milliseconds.

It is a real `Generator` (same validation, stop strings, streaming, callbacks and usage
accounting as the model backends), so any code path that takes a generator takes this one.
It is for tests and dry runs; answers carry no meaning beyond the rules below.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping

from pydantic import Field, PrivateAttr

from ragkit.generation.base import (
    AnswerChunks,
    GenerationParams,
    Generator,
    StopScanner,
    build_usage,
)
from ragkit.types import Answer, AnswerChunk, Prompt

_WORD = re.compile(r"\S+\s*")


class ScriptedGenerator(Generator):
    """Prompt → an answer chosen by rules, in order:

    1. `replies`: the first key found (case-insensitive) in the prompt's question or user text
       gives the reply, verbatim;
    2. a prompt with passages: the first sentence of passage 1, cited as `[1]`;
    3. otherwise `fallback`.

    The reply is cut at `max_new_tokens` words (a word stands in for a token) and at stop
    strings, and streams one word per chunk. Every prompt seen is kept in `prompts`, in order,
    so a test can assert what a pipeline asked.
    """

    replies: Mapping[str, str] = Field(default_factory=dict)
    fallback: str = "I do not know."
    max_concurrency: int = Field(default=4, gt=0)
    _prompts: list[Prompt] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def prompts(self) -> list[Prompt]:
        with self._lock:
            return list(self._prompts)

    def reply_for(self, prompt: Prompt) -> str:
        """The full reply the rules give for `prompt`, before length and stop cuts."""
        haystack = f"{prompt.question}\n{prompt.user_text}".lower()
        for key, reply in self.replies.items():
            if key.lower() in haystack:
                return reply
        if prompt.segments:
            first = prompt.segments[0]
            sentence = re.split(r"(?<=[.!?。！？])\s*", first.text.strip(), maxsplit=1)[0]
            return f"{sentence} [{first.number}]"
        return self.fallback

    def _stream_one(self, prompt: Prompt, params: GenerationParams) -> AnswerChunks:
        with self._lock:
            self._prompts.append(prompt)
        started = time.perf_counter()
        first_at = None
        scanner = StopScanner(params.stop)
        words = _WORD.findall(self.reply_for(prompt))[: params.max_new_tokens]
        for word in words:
            delta = scanner.feed(word)
            if delta:
                first_at = first_at or time.perf_counter()
                yield AnswerChunk(delta)
            if scanner.stopped:
                break
        tail = scanner.flush()
        if tail:
            yield AnswerChunk(tail)
        usage = build_usage(
            prompt_tokens=len(prompt.user_text.split()) + len(prompt.system.split()),
            cached_prompt_tokens=0,
            completion_tokens=len(_WORD.findall(scanner.text)),
            started=started,
            first_token_at=first_at,
            finished=time.perf_counter(),
        )
        yield AnswerChunk("", answer=Answer(text=scanner.text.strip(), usage=usage))
