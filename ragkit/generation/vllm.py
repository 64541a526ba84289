"""vLLM in-process on a GPU, through its async engine so concurrent requests batch inside vLLM.

Every call (a server's concurrent streams, `batch`) submits its request to one `AsyncLLM`
running on a background event loop (`ragkit.generation.aio.LoopThread`); vLLM's scheduler
decodes them together, and with `enable_prefix_caching` reuses the KV blocks of prompt prefixes
it has seen (`RequestOutput.num_cached_tokens` becomes `usage.cached_prompt_tokens`). A caller
that is cancelled has its request aborted in the engine.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import Field, PrivateAttr

from ragkit.errors import ConfigError
from ragkit.generation.aio import LoopThread
from ragkit.generation.base import (
    AnswerChunks,
    GenerationParams,
    Generator,
    StopScanner,
    build_usage,
    drain,
)
from ragkit.types import Answer, AnswerChunk, Prompt


class VLLMGenerator(Generator):
    """Renders prompts with the model's chat template and streams them through vLLM."""

    model: str
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    max_model_len: int | None = Field(default=None, gt=0)
    max_concurrency: int = Field(default=64, gt=0)

    _llm: Any = PrivateAttr(default=None)
    _tokenizer: Any = PrivateAttr(default=None)
    _loop: LoopThread | None = PrivateAttr(default=None)

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        if model is not None:
            kwargs["model"] = model
        super().__init__(**kwargs)

    def engine(self) -> Any:
        """The `AsyncLLM`, created on first use (it takes the GPU memory it is given)."""
        if self._llm is None:
            try:
                from vllm import AsyncEngineArgs
                from vllm.v1.engine.async_llm import AsyncLLM
            except ImportError as exc:
                raise ConfigError(
                    "VLLMGenerator needs vLLM and a CUDA GPU: pip install vllm"
                ) from exc
            args = AsyncEngineArgs(
                model=self.model,
                enable_prefix_caching=self.enable_prefix_caching,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
                max_num_seqs=self.max_concurrency,
            )
            self._loop = LoopThread("ragkit-vllm")

            async def start() -> Any:  # the engine binds its output task to this loop
                return AsyncLLM.from_engine_args(args)

            self._llm = self._loop.run(start())
        return self._llm

    def reset_prefix_cache(self) -> None:
        """Forgets every cached prompt prefix (for measurements that start cold)."""
        result = self.engine().reset_prefix_cache()
        if inspect.isawaitable(result):  # async on the async engine
            self._loop.run(result)  # type: ignore[union-attr]

    def _chat_tokenizer(self) -> Any:
        if self._tokenizer is None:
            tokenizer = self.engine().get_tokenizer()
            if inspect.isawaitable(tokenizer):  # async in recent vLLM releases
                tokenizer = self._loop.run(tokenizer)  # type: ignore[union-attr]
            self._tokenizer = tokenizer
        return self._tokenizer

    def _sampling(self, params: GenerationParams) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            stop=list(params.stop) or None,
            seed=params.seed if params.temperature > 0 else None,
        )

    def _stream_one(self, prompt: Prompt, params: GenerationParams) -> AnswerChunks:
        text = self.render(prompt)
        engine = self.engine()
        request_id = f"ragkit-{uuid.uuid4().hex}"
        started = time.perf_counter()
        outputs = engine.generate(text, self._sampling(params), request_id)
        yield from stream_outputs(
            self._loop.iterate(outputs, lambda: engine.abort(request_id)),  # type: ignore[union-attr]
            params,
            started,
        )

    def _batch(self, prompts: list[Prompt], params: GenerationParams) -> list[Answer]:
        """All prompts in flight at once, so vLLM schedules them as one batch."""
        if not prompts:
            return []
        self.engine()
        with ThreadPoolExecutor(min(len(prompts), self.max_concurrency)) as pool:
            return list(pool.map(lambda p: drain(self._stream_one(p, params)), prompts))


def stream_outputs(outputs: Iterator[Any], params: GenerationParams, started: float):
    """Cumulative `RequestOutput`s → text deltas (cut at stop strings), then the Answer."""
    scanner = StopScanner(params.stop)
    seen = 0
    first = None
    last = None
    for output in outputs:
        last = output
        text = output.outputs[0].text
        if len(text) > seen:
            first = first or time.perf_counter()
            delta = scanner.feed(text[seen:])
            seen = len(text)
            if delta:
                yield AnswerChunk(delta)
    tail = scanner.flush()
    if tail:
        yield AnswerChunk(tail)
    if last is None:
        return  # cancelled before the engine answered
    completion = last.outputs[0]
    usage = build_usage(
        prompt_tokens=len(last.prompt_token_ids or []),
        cached_prompt_tokens=int(getattr(last, "num_cached_tokens", 0) or 0),
        completion_tokens=len(completion.token_ids),
        started=started,
        first_token_at=first,
        finished=time.perf_counter(),
    )
    yield AnswerChunk("", answer=Answer(text=scanner.text.strip(), usage=usage))
