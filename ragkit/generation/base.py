"""The generator contract every backend shares: input coercion, parameters, stop strings, usage.

A backend implements `_stream_one` (and may override `_invoke_one`, `_batch`, `_astream_one`,
`_ainvoke_one` where it can do better); `Generator` turns those hooks into the Runnable
protocol (`invoke`, `batch`, `stream`, `ainvoke`, `astream`) with callbacks and tracing.
"""

from __future__ import annotations

import asyncio
import collections.abc
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from pydantic import Field, field_validator

from ragkit.types import Answer, AnswerChunk, Prompt, Usage

GeneratorInput = Prompt | str
# What a backend's `_stream_one` returns: a generator, so an abandoned stream can be closed.
AnswerChunks = collections.abc.Generator[AnswerChunk, None, None]


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Constructor settings merged with call-time overrides, resolved once per call."""

    max_new_tokens: int
    temperature: float
    stop: tuple[str, ...]
    seed: int


def to_prompt(value: GeneratorInput) -> Prompt:
    if isinstance(value, Prompt):
        return value
    if isinstance(value, str):
        return Prompt.plain(value)
    raise TypeError(f"a generator takes a Prompt or a str, got {type(value).__name__}")


def render_chat(tokenizer: Any, prompt: Prompt) -> str:
    """The prompt as the model's own chat template writes it, ready for the assistant turn."""
    return tokenizer.apply_chat_template(
        prompt.messages(), tokenize=False, add_generation_prompt=True
    )


def build_usage(
    *,
    prompt_tokens: int,
    cached_prompt_tokens: int,
    completion_tokens: int,
    started: float,
    first_token_at: float | None,
    finished: float,
    passage_counts: tuple[int, int, int] = (0, 0, 0),
) -> Usage:
    """Usage from raw counts and `time.perf_counter()` stamps; the one place Usage is built.

    `passage_counts` are the passage KV store's hits, misses and evictions for this generation.
    """
    if first_token_at is None:
        first_token_at = finished
    hits, misses, evictions = passage_counts
    return Usage(
        prompt_tokens=prompt_tokens,
        cached_prompt_tokens=min(cached_prompt_tokens, prompt_tokens),
        completion_tokens=completion_tokens,
        time_to_first_token_s=max(0.0, first_token_at - started),
        total_time_s=max(0.0, finished - started),
        passage_hits=hits,
        passage_misses=misses,
        passage_evictions=evictions,
    )


class StopScanner:
    """Cuts generated text at the first stop string, holding back text that may start one.

    Streaming must not emit "Ans" when "Answer:" is a stop string and the next token may
    complete it, so a tail that is a prefix of some stop string waits for more text.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = [s for s in stop if s]
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Add generated text; return the part now safe to emit."""
        if self.stopped:
            return ""
        self.text += delta
        cut = min((i for s in self.stop if (i := self.text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            self.stopped = True
            return self._emit(len(self.text))
        return self._emit(len(self.text) - self._held())

    def flush(self) -> str:
        return self._emit(len(self.text))

    def _held(self) -> int:
        for n in range(min(len(self.text), max((len(s) for s in self.stop), default=0)), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stop):
                return n
        return 0

    def _emit(self, upto: int) -> str:
        if upto <= self.emitted:
            return ""
        out = self.text[self.emitted : upto]
        self.emitted = upto
        return out


def drain(chunks: Iterator[AnswerChunk]) -> Answer:
    """The finished Answer from a chunk stream (its last chunk carries it)."""
    answer = None
    for chunk in chunks:
        if chunk.answer is not None:
            answer = chunk.answer
    if answer is None:
        raise RuntimeError("generation stream ended without a final answer")
    return answer


class Generator(RunnableSerializable[GeneratorInput, Answer]):
    """Prompt (or str) → Answer; `stream`/`astream` yield AnswerChunk deltas, then the Answer.

    Call-time keyword overrides (`max_new_tokens`, `temperature`, `stop`, `seed`) win over the
    constructor's values, including explicit zeros.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    stop: list[str] = Field(default_factory=list)
    seed: int = 0
    # How many requests this backend serves at once; a server admits this many before queueing.
    # Backends that batch raise the default.
    max_concurrency: int = Field(default=1, gt=0)

    @field_validator("max_new_tokens")
    @classmethod
    def _check_max_new_tokens(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {value}")
        return value

    @field_validator("temperature")
    @classmethod
    def _check_temperature(cls, value: float) -> float:
        if not 0.0 <= value <= 2.0:
            raise ValueError(f"temperature must be within [0, 2], got {value}")
        return value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: list[str]) -> list[str]:
        if any(not s for s in value):
            raise ValueError(f"stop strings must be non-empty, got {value!r}")
        return value

    # -- backend hooks -------------------------------------------------------------------

    def _stream_one(self, prompt: Prompt, params: GenerationParams) -> AnswerChunks:
        raise NotImplementedError

    def _invoke_one(self, prompt: Prompt, params: GenerationParams) -> Answer:
        return drain(self._stream_one(prompt, params))

    def _batch(self, prompts: list[Prompt], params: GenerationParams) -> list[Answer]:
        return [self._invoke_one(p, params) for p in prompts]

    async def _astream_one(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncIterator[AnswerChunk]:
        """Runs the blocking stream in worker threads so the event loop stays free."""
        chunks = self._stream_one(prompt, params)
        end = object()
        try:
            while (chunk := await asyncio.to_thread(next, chunks, end)) is not end:
                yield chunk  # type: ignore[misc]
        finally:
            chunks.close()

    async def _ainvoke_one(self, prompt: Prompt, params: GenerationParams) -> Answer:
        return await asyncio.to_thread(self._invoke_one, prompt, params)

    def _chat_tokenizer(self) -> Any:
        """The tokenizer whose chat template renders prompts for this backend."""
        raise NotImplementedError(f"{type(self).__name__} sends messages, it does not render")

    # -- shared behaviour ----------------------------------------------------------------

    def render(self, prompt: GeneratorInput) -> str:
        """The exact text the model sees, via the tokenizer's chat template."""
        return render_chat(self._chat_tokenizer(), to_prompt(prompt))

    def params(
        self,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> GenerationParams:
        if max_new_tokens is None:
            max_new_tokens = self.max_new_tokens
        if temperature is None:
            temperature = self.temperature
        if stop is None:
            stop = self.stop
        if seed is None:
            seed = self.seed
        self._check_max_new_tokens(max_new_tokens)
        self._check_temperature(temperature)
        self._check_stop(list(stop))
        return GenerationParams(max_new_tokens, float(temperature), tuple(stop), seed)

    def invoke(
        self, input: GeneratorInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Answer:
        params = self.params(**kwargs)
        return self._call_with_config(
            lambda value: self._invoke_one(to_prompt(value), params), input, config
        )

    def batch(
        self,
        inputs: list[GeneratorInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Answer]:
        params = self.params(**kwargs)
        return self._batch_with_config(
            # list[Answer] against langchain-core's list[Exception | Output]: see BatchedRunnable.
            lambda values: self._batch([to_prompt(v) for v in values], params),  # type: ignore[arg-type]
            inputs,
            config,
            return_exceptions=return_exceptions,
        )

    async def ainvoke(
        self, input: GeneratorInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Answer:
        params = self.params(**kwargs)

        async def run(value: GeneratorInput) -> Answer:
            return await self._ainvoke_one(to_prompt(value), params)

        return await self._acall_with_config(run, input, config)

    def stream(  # type: ignore[override]
        self, input: GeneratorInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AnswerChunk]:
        params = self.params(**kwargs)
        config = ensure_config(config)
        run = get_callback_manager_for_config(config).on_chain_start(
            None,
            input,
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )
        answer = None
        try:
            for chunk in self._stream_one(to_prompt(input), params):
                answer = chunk.answer or answer
                yield chunk
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end(answer)

    async def astream(  # type: ignore[override]
        self, input: GeneratorInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AnswerChunk]:
        params = self.params(**kwargs)
        config = ensure_config(config)
        run = await get_async_callback_manager_for_config(config).on_chain_start(
            None,
            input,
            name=config.get("run_name") or self.get_name(),
            run_id=config.pop("run_id", None),
        )
        answer = None
        try:
            async for chunk in self._astream_one(to_prompt(input), params):
                answer = chunk.answer or answer
                yield chunk
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end(answer)
