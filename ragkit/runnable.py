"""The batch-first Runnable base: a stage writes its batched path once, and one input is a batch
of one, so every model call inside sees the whole batch."""

from __future__ import annotations

from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig, RunnableSerializable

In = TypeVar("In")
Out = TypeVar("Out")


class BatchedRunnable(RunnableSerializable[In, Out]):
    """Subclasses implement `_run_batch(inputs, config)`; `invoke` and `batch` come from here,
    with callbacks and tracing handled by langchain-core's `_batch_with_config`."""

    def invoke(self, input: In, config: RunnableConfig | None = None, **kwargs: Any) -> Out:
        return self.batch([input], config)[0]

    def batch(
        self,
        inputs: list[In],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Out]:
        if not inputs:
            return []
        return self._batch_with_config(
            # langchain-core annotates the callback's result as list[Exception | Output], which a
            # list[Output] does not match (lists are invariant), though that is what it returns.
            self._run_batch,  # type: ignore[arg-type]
            inputs,
            config,
            return_exceptions=return_exceptions,
        )

    def _run_batch(self, inputs: list[In], config: list[RunnableConfig] | None = None) -> list[Out]:
        """The outputs of `inputs`; `config` is langchain-core's per-input configs."""
        raise NotImplementedError
