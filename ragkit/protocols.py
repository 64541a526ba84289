"""The boundaries between components, as structural types: anything with these methods fits,
so a user's store, embedder or generator plugs in without subclassing ragkit's own.

Each is named for the capability it asks for (`SupportsEmbedding`), so none shares a name with
a concrete base class (`ragkit.embedding.Embedder`, `ragkit.retrieval.Retriever`). The old names
(`Embedder`, `Generator`, `Retriever`, `Store`, `WarmUp`) remain as aliases for one release.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ragkit.types import Answer, AnswerChunk, Chunk, Prompt, Query, Retrieved

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable, RunnableConfig

    from ragkit.pipeline import PipelineInput
    from ragkit.prompting import PromptAssembler


@runtime_checkable
class SupportsWarmUp(Protocol):
    """The one lazy-load convention: a component that loads a model or builds an index on first
    use does it in `warm_up()` (idempotent, thread-safe where callers may race), so a server or a
    benchmark can pay the cost up front by calling it."""

    def warm_up(self) -> Any: ...


@runtime_checkable
class SupportsEmbedding(Protocol):
    """Text → unit vectors; queries and passages may get different prefixes.

    Only methods belong here: `isinstance` checks of a protocol touch every member, and a
    property such as `dimension` would load the model.
    """

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class ChunkSource(Protocol):
    """Where lexical retrieval reads chunks from (a store, or anything listing chunks)."""

    def get_chunks(
        self, ids: Sequence[str] | None = None, where: Mapping[str, Any] | None = None
    ) -> list[Chunk]: ...

    def count(self) -> int: ...


@runtime_checkable
class SupportsStorage(ChunkSource, Protocol):
    """A vector index of chunks: written by ingestion, searched by dense retrieval."""

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None: ...

    def query(
        self, vectors: np.ndarray, k: int = 5, where: Mapping[str, Any] | None = None
    ) -> list[list[Retrieved]]: ...

    def delete_documents(self, doc_ids: Iterable[str]) -> int: ...


@runtime_checkable
class SupportsGeneration(Protocol):
    """Prompt → Answer as a langchain-core Runnable; `stream` ends with the finished Answer."""

    def invoke(self, input: Prompt | str, config: Any = None, **kwargs: Any) -> Answer: ...

    def batch(self, inputs: list[Any], config: Any = None, **kwargs: Any) -> list[Answer]: ...

    def stream(
        self, input: Prompt | str, config: Any = None, **kwargs: Any
    ) -> Iterator[AnswerChunk]: ...


@runtime_checkable
class SupportsRetrieval(Protocol):
    """Query → ranked passages as a Runnable; `batch` searches many queries at once."""

    def invoke(self, input: Query | str, config: Any = None, **kwargs: Any) -> list[Retrieved]: ...

    def batch(
        self, inputs: list[Any], config: Any = None, **kwargs: Any
    ) -> list[list[Retrieved]]: ...


# Deprecated aliases, kept for one release: use the `Supports*` names.
WarmUp = SupportsWarmUp
"""Deprecated: `SupportsWarmUp`."""
Embedder = SupportsEmbedding
"""Deprecated: `SupportsEmbedding` (this name is also the concrete `ragkit.embedding.Embedder`)."""
Store = SupportsStorage
"""Deprecated: `SupportsStorage`."""
Generator = SupportsGeneration
"""Deprecated: `SupportsGeneration`."""
Retriever = SupportsRetrieval
"""Deprecated: `SupportsRetrieval` (this name is also the concrete `ragkit.retrieval.Retriever`)."""


@runtime_checkable
class Pipeline(Protocol):
    """What every pipeline `ragkit.build.pipeline` returns offers, whatever its stages: the
    server, the tuner and the evaluator use these members and nothing else, so a stage that
    wraps a pipeline (Iter-RetGen) is served, tuned and evaluated like the pipeline itself.

    `retrieve` is the pipeline's own search for each query (rewriting and reranking
    included); for a multi-round pipeline, its first round. `with_generator` and
    `with_retriever` return a copy with that part replaced (a server binds a request's
    sampling settings; a sweep swaps in an in-memory index), leaving the original untouched.
    `stream` and `astream` yield text deltas and end with a chunk carrying the final Answer.
    """

    @property
    def pipeline_name(self) -> str: ...

    @property
    def generator(self) -> Runnable: ...

    @property
    def retriever(self) -> Runnable: ...

    @property
    def assembler(self) -> PromptAssembler: ...

    def retrieve(
        self,
        queries: Sequence[Query],
        config: RunnableConfig | None = None,
        *,
        search: Sequence[Sequence[Query]] | None = None,
    ) -> list[list[Retrieved]]: ...

    def prompt_for(self, query: Query, retrieved: Sequence[Retrieved]) -> Prompt: ...

    def with_generator(self, generator: Runnable) -> Pipeline: ...

    def with_retriever(self, retriever: Runnable) -> Pipeline: ...

    def invoke(
        self, input: PipelineInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Answer: ...

    def batch(
        self,
        inputs: list[PipelineInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Answer]: ...

    def stream(
        self, input: PipelineInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AnswerChunk]: ...

    async def ainvoke(
        self, input: PipelineInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Answer: ...

    async def abatch(
        self,
        inputs: list[PipelineInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Answer]: ...

    def astream(
        self, input: PipelineInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AnswerChunk]: ...
