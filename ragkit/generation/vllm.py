"""vLLM in-process on a GPU: one `LLM.generate` call per batch, with automatic prefix caching."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from pydantic import PrivateAttr, field_validator

from ragkit.errors import ConfigError
from ragkit.generation.base import GenerationParams, Generator, StopScanner, build_usage
from ragkit.types import Answer, AnswerChunk, Prompt


class VLLMGenerator(Generator):
    """Renders prompts with the model's chat template and hands the whole batch to vLLM.

    vLLM schedules the batch itself and, with `enable_prefix_caching`, reuses the KV blocks of
    prompt prefixes it has seen; `RequestOutput.num_cached_tokens` becomes
    `usage.cached_prompt_tokens`. `stream` yields the whole answer as one delta: `LLM` is an
    offline engine (serve vLLM and use `OpenAICompatibleGenerator` to stream tokens).
    """

    model: str
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None

    _llm: Any = PrivateAttr(default=None)

    def __init__(self, model: str | None = None, **kwargs: Any) -> None:
        if model is not None:
            kwargs["model"] = model
        super().__init__(**kwargs)

    @field_validator("gpu_memory_utilization")
    @classmethod
    def _check_memory(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be within (0, 1], got {value}")
        return value

    @field_validator("max_model_len")
    @classmethod
    def _check_len(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError(f"max_model_len must be > 0, got {value}")
        return value

    def engine(self) -> Any:
        """The `vllm.LLM`, created on first use (it takes the GPU memory it is given)."""
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError as exc:
                raise ConfigError(
                    "VLLMGenerator needs vLLM and a CUDA GPU: pip install vllm"
                ) from exc
            self._llm = LLM(
                model=self.model,
                enable_prefix_caching=self.enable_prefix_caching,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
            )
        return self._llm

    def _chat_tokenizer(self) -> Any:
        return self.engine().get_tokenizer()

    def _sampling(self, params: GenerationParams) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            stop=list(params.stop) or None,
            seed=params.seed if params.temperature > 0 else None,
        )

    def _batch(self, prompts: list[Prompt], params: GenerationParams) -> list[Answer]:
        if not prompts:
            return []
        texts = [self.render(p) for p in prompts]
        started = time.perf_counter()
        outputs = self.engine().generate(texts, self._sampling(params), use_tqdm=False)
        finished = time.perf_counter()
        return [_answer(out, params, started, finished) for out in outputs]

    def _invoke_one(self, prompt: Prompt, params: GenerationParams) -> Answer:
        return self._batch([prompt], params)[0]

    def _stream_one(self, prompt: Prompt, params: GenerationParams) -> Iterator[AnswerChunk]:
        answer = self._invoke_one(prompt, params)
        if answer.text:
            yield AnswerChunk(answer.text)
        yield AnswerChunk("", answer=answer)


def _answer(output: Any, params: GenerationParams, started: float, finished: float) -> Answer:
    """A vLLM `RequestOutput` as an Answer; its timing covers the whole batch."""
    completion = output.outputs[0]
    scanner = StopScanner(params.stop)
    scanner.feed(completion.text)
    first = None
    metrics = getattr(output, "metrics", None)
    if metrics is not None and getattr(metrics, "first_token_time", None) and metrics.arrival_time:
        first = started + (metrics.first_token_time - metrics.arrival_time)
    usage = build_usage(
        prompt_tokens=len(output.prompt_token_ids or []),
        cached_prompt_tokens=int(getattr(output, "num_cached_tokens", 0) or 0),
        completion_tokens=len(completion.token_ids),
        started=started,
        first_token_at=first,
        finished=finished,
    )
    return Answer(text=scanner.text.strip(), usage=usage)
