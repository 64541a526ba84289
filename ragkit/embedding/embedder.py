"""Text embedding: one sentence-transformers model turning passages and queries into vectors.

The model runs on one of three backends:

- "torch": sentence-transformers as loaded (fp32, or bf16 where the CPU runs it natively);
- "onnx": the whole model (transformer, pooling, normalisation) exported once to ONNX and run
  by onnxruntime, one text per call on every core; same vectors as torch fp32 (cosine 1.0000);
- "onnx-int8": that export with its weight matrices dynamically quantised to int8, a further
  ~1.25x on AVX2 at a cosine of ~0.993 to fp32 (min ~0.985 on short Chinese snippets).

"auto" (the default) is torch; "onnx" and "onnx-int8" are explicit choices, e.g. for bulk
ingestion, or process-wide preferences for "auto" through RAGKIT_EMBEDDING_BACKEND (which then
still falls back to torch where ONNX cannot serve: GPUs, bf16, a model that does not export).
Every export is checked against torch fp32 on fixed English and Chinese probe texts when it is
built, and one that drifts is refused. int8's per-text drift, though small, exceeds what
ragkit's precision checks allow (0.99 cosine for every text).

The export and its checks live in `ragkit.embedding.onnx_export`, CPU probing in
`ragkit.embedding.cpu`.

Vectors from the backends of one model are interchangeable for search (int8 keeps mean cosine
>= 0.99 to fp32 and the same answer recall on the bundled questions), so a store records the
model name only: a collection built with one backend may be queried with another.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ragkit.embedding.cpu import cpu_has_fast_bf16
from ragkit.embedding.onnx_export import OnnxEncoder, export_dir, load_onnx, onnx_available
from ragkit.errors import ConfigError
from ragkit.models import DEFAULT_EMBEDDING_MODEL, resolve_embedding_model
from ragkit.runnable import BatchedRunnable

# The ONNX helpers are re-exported so the embedder's backends are one import away.
__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "Backend",
    "Embedder",
    "OnnxEncoder",
    "Precision",
    "backend_candidates",
    "export_dir",
    "load_onnx",
    "onnx_available",
    "preferred_backend",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16"]
Backend = Literal["auto", "torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "onnx-int8")
BACKEND_ENV = "RAGKIT_EMBEDDING_BACKEND"


def resolve_precision(precision: Precision, device: str) -> Literal["float32", "bfloat16"]:
    """Pick the dtype for `auto`: bf16 where the hardware runs it natively, fp32 otherwise."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device == "cpu" and cpu_has_fast_bf16():
        return "bfloat16"
    return "float32"


def backend_candidates(backend: str, device: str, precision: Precision) -> list[str]:
    """Backends to try, best first: one for an explicit choice, a fallback chain for `auto`.

    `auto` is torch for now: the ONNX backends are opt-in until they have run as the default
    through the whole test suite without a difference from torch (one ingest test picked a
    different top hit once with `onnx`, unexplained so far). RAGKIT_EMBEDDING_BACKEND puts an
    ONNX backend first for `auto` where it can serve (CPU, fp32), with torch behind it.
    """
    if backend != "auto":
        return [backend]
    preferred = preferred_backend()
    onnx_fits = device == "cpu" and resolve_precision(precision, device) == "float32"
    if preferred in ("onnx", "onnx-int8") and onnx_fits and onnx_available():
        return [preferred, "torch"]
    return ["torch"]


def preferred_backend() -> str:
    """What `auto` should try first, from RAGKIT_EMBEDDING_BACKEND ("auto" when unset)."""
    value = os.environ.get(BACKEND_ENV, "").strip() or "auto"
    if value not in BACKENDS:
        raise ValueError(
            f"{BACKEND_ENV}={value!r} is not an embedding backend; "
            f"choose one of {', '.join(BACKENDS)}"
        )
    return value


class Embedder(BatchedRunnable[str, list[float]]):
    """Embeds passages for the store and queries for retrieval with one loaded model.

    As a Runnable it maps a query string to its vector (that is what a retrieval chain needs);
    `batch` encodes all inputs in one model call. Passages go through `embed_documents`.
    `query_prefix` / `passage_prefix` serve e5-style models that expect "query: " / "passage: ".
    `backend` picks how the model runs (see the module docstring); what `auto` tries first can
    be set process-wide with RAGKIT_EMBEDDING_BACKEND, e.g. to compare backends in benchmarks
    that build their own embedders.
    """

    model: str = DEFAULT_EMBEDDING_MODEL
    device: str = "cpu"
    precision: Precision = "auto"
    backend: Backend = "auto"
    batch_size: int = Field(64, gt=0)
    normalize: bool = True
    query_prefix: str = ""
    passage_prefix: str = ""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    _model: Any = PrivateAttr(default=None)
    _backend: str | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("backend", mode="before")
    @classmethod
    def _known_backend(cls, value: Any) -> Any:
        if value not in BACKENDS:
            raise ValueError(
                f"embedding backend {value!r} is unknown; choose one of {', '.join(BACKENDS)}"
            )
        return value

    @field_validator("model")
    @classmethod
    def _non_empty_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model must name a sentence-transformers model or folder, got ''")
        return value

    @model_validator(mode="after")
    def _known_preference(self) -> Embedder:
        """A misspelt RAGKIT_EMBEDDING_BACKEND fails here, naming itself, not at first use."""
        if self.backend == "auto":
            preferred_backend()
        return self

    @model_validator(mode="after")
    def _default_name(self) -> Embedder:
        """The Runnable's name (shown in traces) defaults to the model name."""
        if self.name is None:
            self.name = self.model
        return self

    @property
    def model_name(self) -> str:
        """The model name as given (not the resolved path), so stores record a portable name.

        The backend is deliberately not part of it: all backends of a model share one vector
        space (int8 is validated to stay within 0.99 cosine of fp32), so a collection stays
        usable when the backend changes.
        """
        return self.model

    @property
    def dtype(self) -> Literal["float32", "bfloat16"]:
        return resolve_precision(self.precision, self.device)

    @property
    def resolved_backend(self) -> str:
        """The backend actually running the model (loads it)."""
        self.warm_up()
        return self._backend or "torch"

    def warm_up(self) -> Any:
        """Load the model once, thread-safely: ingestion threads may ask for it concurrently."""
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                path = resolve_embedding_model(self.model)
                self._model, self._backend = self._load_first(path)
        return self._model

    def _load_first(self, path: str) -> tuple[Any, str]:
        """The first candidate backend that loads (and, for `auto`, passed validation)."""
        candidates = backend_candidates(self.backend, self.device, self.precision)
        for backend in candidates:
            if backend == "torch":
                return self._load_torch(path), "torch"
            explicit = self.backend != "auto"
            self._check_onnx_request(backend, explicit)
            try:
                encoder = load_onnx(path, backend)
            except ConfigError:
                raise
            except Exception as exc:  # export can fail on models the tracer cannot follow
                if explicit:
                    raise ConfigError(
                        f"embedding model {self.model!r} cannot run on backend {backend!r}: {exc}"
                    ) from exc
                logger.warning("embedding backend %s unavailable for %s: %s", backend, path, exc)
                continue
            check = encoder.manifest.get("validation", {})
            if check.get("passed") or explicit:
                if not check.get("passed"):
                    logger.warning("backend %s drifts from fp32 here: %s", backend, check)
                return encoder, backend
            logger.info("skipping backend %s for %s: %s", backend, path, check)
        raise ConfigError(f"no embedding backend could load {self.model!r}")  # pragma: no cover

    def _check_onnx_request(self, backend: str, explicit: bool) -> None:
        if not explicit:
            return
        if self.device != "cpu":
            raise ConfigError(f"embedding backend {backend!r} runs on cpu only, not {self.device}")
        if self.precision == "bfloat16":
            raise ConfigError(f"embedding backend {backend!r} has no bfloat16 mode; use torch")

    def _load_torch(self, path: str) -> Any:
        import torch
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(path, device=self.device)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"embedding model {self.model!r} (resolved to {path!r}) cannot be loaded: {exc}"
            ) from exc
        model.eval()
        if self.dtype == "bfloat16":
            model = model.to(torch.bfloat16)
        return model

    @property
    def dimension(self) -> int:
        model = self.warm_up()
        getter = getattr(model, "get_embedding_dimension", None)
        if getter is None:  # sentence-transformers before 5
            getter = model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, so chunk windows are counted in the model's own tokens."""
        return self.warm_up().tokenizer

    @property
    def max_seq_length(self) -> int:
        return int(self.warm_up().max_seq_length)

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        """Encode in length order to cut padding, then restore the caller's order."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of strings, got one str")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.warm_up()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        ordered = [prefix + texts[i] for i in order]
        if isinstance(model, OnnxEncoder):
            vectors = model.encode(
                ordered, batch_size=self.batch_size, normalize_embeddings=self.normalize
            )
        else:
            vectors = self._encode_torch(model, ordered)
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    def _encode_torch(self, model: Any, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            encoded = model.encode(
                texts,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
            encoded = encoded.float()
            if self.normalize:
                # bf16 normalizes at bf16 precision; cosine stores expect unit float32 vectors.
                encoded = torch.nn.functional.normalize(encoded, dim=-1)
        return encoded.cpu().numpy()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, float32, shape (n, dimension)."""
        return self._encode(texts, self.passage_prefix)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(queries, self.query_prefix)

    def embed_query(self, query: str) -> np.ndarray:
        return self.embed_queries([query])[0]

    def _run_batch(
        self, inputs: list[str], config: list[RunnableConfig] | RunnableConfig | None = None
    ) -> list[list[float]]:
        """As a Runnable the embedder embeds queries (with the query prefix), all in one call."""
        return self.embed_queries(inputs).tolist()
