"""Text embedding: one sentence-transformers model turning passages and queries into vectors."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cache
from typing import Any, Literal

import numpy as np
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, PrivateAttr, field_validator, model_validator

from ragkit.errors import ConfigError
from ragkit.models import DEFAULT_EMBEDDING_MODEL, resolve_embedding_model

Precision = Literal["auto", "float32", "bfloat16"]


@cache
def _cpu_has_fast_bf16() -> bool:
    """bf16 pays off on CPUs with AMX or AVX512-BF16; elsewhere it is emulated and slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: Precision, device: str) -> Literal["float32", "bfloat16"]:
    """Pick the dtype for `auto`: bf16 where the hardware runs it natively, fp32 otherwise."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device == "cpu" and _cpu_has_fast_bf16():
        return "bfloat16"
    return "float32"


class Embedder(RunnableSerializable[str, list[float]]):
    """Embeds passages for the store and queries for retrieval with one loaded model.

    As a Runnable it maps a query string to its vector (that is what a retrieval chain needs);
    `batch` encodes all inputs in one model call. Passages go through `embed_documents`.
    `query_prefix` / `passage_prefix` serve e5-style models that expect "query: " / "passage: ".
    """

    model: str = DEFAULT_EMBEDDING_MODEL
    device: str = "cpu"
    precision: Precision = "auto"
    batch_size: int = 64
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _model: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"batch_size must be > 0, but got {value}")
        return value

    @field_validator("model")
    @classmethod
    def _non_empty_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must name a sentence-transformers model or folder, got ''")
        return value

    @model_validator(mode="after")
    def _default_name(self) -> Embedder:
        """The Runnable's name (shown in traces) defaults to the model name."""
        if self.name is None:
            self.name = self.model
        return self

    @property
    def model_name(self) -> str:
        """The model name as given (not the resolved path), so stores record a portable name."""
        return self.model

    @property
    def dtype(self) -> Literal["float32", "bfloat16"]:
        return resolve_precision(self.precision, self.device)

    def _load(self) -> Any:
        """Load the model once, thread-safely: ingestion threads may ask for it concurrently."""
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                import torch
                from sentence_transformers import SentenceTransformer

                path = resolve_embedding_model(self.model)
                try:
                    model = SentenceTransformer(path, device=self.device)
                except (OSError, ValueError) as exc:
                    raise ConfigError(
                        f"embedding model {self.model!r} (resolved to {path!r}) cannot be "
                        f"loaded: {exc}"
                    ) from exc
                model.eval()
                if self.dtype == "bfloat16":
                    model = model.to(torch.bfloat16)
                self._model = model
        return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None)
        if getter is None:  # sentence-transformers before 5
            getter = model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, so chunk windows are counted in the model's own tokens."""
        return self._load().tokenizer

    @property
    def max_seq_length(self) -> int:
        return int(self._load().max_seq_length)

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        """Encode in length order to cut padding, then restore the caller's order."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of strings, got one str")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        model = self._load()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        ordered = [prefix + texts[i] for i in order]
        with torch.inference_mode():
            encoded = model.encode(
                ordered,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
        vectors = encoded.float().cpu().numpy()
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, float32, shape (n, dimension)."""
        return self._encode(texts, self.passage_prefix)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(queries, self.query_prefix)

    def embed_query(self, query: str) -> np.ndarray:
        return self.embed_queries([query])[0]

    def invoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[float]:
        return self._call_with_config(lambda q: self.embed_query(q).tolist(), input, config)

    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[list[float]]:
        if not inputs:
            return []

        def run(queries: list[str]) -> list[list[float]]:
            return self.embed_queries(queries).tolist()

        return self._batch_with_config(run, inputs, config, return_exceptions=return_exceptions)
