"""Turns a `PipelineSpec` into live components; models and stores are shared process-wide, so
several pipelines (an evaluation comparing them, a server hosting them) load each model once."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError
from ragkit.protocols import Pipeline, SupportsEmbedding, SupportsGeneration, SupportsRetrieval
from ragkit.registry import GENERATORS, RETRIEVERS, REWRITERS, Parts
from ragkit.spec import EmbedderSpec, GeneratorSpec, PipelineSpec, StoreSpec, load_spec

if TYPE_CHECKING:
    from ragkit.index.chunking import TokenChunker
    from ragkit.index.ingest import Ingestor
    from ragkit.index.store import ChromaStore
    from ragkit.prompting import PromptAssembler

_lock = threading.RLock()
_registry: dict[tuple[str, Any], Any] = {}


@cache
def _embedder(spec: EmbedderSpec) -> SupportsEmbedding:
    from ragkit.embedding import Embedder
    from ragkit.embedding.e5 import E5Embedder, is_e5

    return (E5Embedder if is_e5(spec.model) else Embedder)(
        model=spec.model,
        precision=spec.precision,
        batch_size=spec.batch_size,
        query_prefix=spec.query_prefix,
        passage_prefix=spec.passage_prefix,
    )


@cache
def _store(spec: StoreSpec, embedding_model: str) -> ChromaStore:
    from ragkit.index.store import ChromaStore

    return ChromaStore(spec.location, spec.collection, embedding_model=embedding_model)


@cache
def _generator(spec: GeneratorSpec) -> SupportsGeneration:
    # Cached per generator section, so it may use no other part of a pipeline.
    return GENERATORS.build(spec.kind, spec, Parts())


def register_embedder(spec: EmbedderSpec, instance: SupportsEmbedding) -> None:
    """Reuse an already loaded embedder for every spec with these settings."""
    with _lock:
        _registry[("embedder", spec)] = instance


def register_generator(spec: GeneratorSpec, instance: SupportsGeneration) -> None:
    """Reuse an already loaded generator for every spec with these settings."""
    with _lock:
        _registry[("generator", spec)] = instance


def embedder(spec: PipelineSpec) -> SupportsEmbedding:
    with _lock:
        return _registry.get(("embedder", spec.embedder)) or _embedder(spec.embedder)


def store(spec: PipelineSpec) -> ChromaStore:
    with _lock:
        return _store(spec.store, spec.embedder.model)


def generator(spec: PipelineSpec) -> SupportsGeneration:
    with _lock:
        return _registry.get(("generator", spec.generator)) or _generator(spec.generator)


def parts(spec: PipelineSpec) -> Parts:
    """The shared components a registered maker or a user's class may ask for."""
    return Parts(
        embedder=lambda: embedder(spec),
        store=lambda: store(spec),
        generator=lambda: generator(spec),
    )


def _search_k(spec: PipelineSpec) -> int:
    """Passages the retriever returns: a reranker needs a shortlist longer than the final
    top_k to choose from."""
    k = spec.retriever.top_k
    return k if spec.rerank is None else max(k, spec.rerank.candidates)


def retriever(spec: PipelineSpec) -> SupportsRetrieval:
    r = spec.retriever
    if spec.rerank is not None:
        r = r.model_copy(update={"top_k": _search_k(spec)})
    return RETRIEVERS.build(r.kind, r, parts(spec))


def chunker(spec: PipelineSpec) -> TokenChunker:
    from ragkit.index.chunking import TokenChunker

    c = spec.chunker
    model = embedder(spec)
    # Chunks are counted in the embedder's own tokens (ragkit's embedders expose them; the
    # protocol does not ask for them).
    max_len = getattr(model, "max_seq_length", None)
    tokenizer = getattr(model, "tokenizer", None)
    if max_len is None or tokenizer is None:
        raise ConfigError(
            f"chunker: embedder {type(model).__name__} has no tokenizer and max_seq_length"
        )
    # The embedder truncates at max_seq_length including [CLS]/[SEP]: never make longer chunks.
    limit = max_len - 2
    return TokenChunker(
        tokenizer=tokenizer,
        chunk_tokens=min(c.chunk_tokens, limit),
        overlap_tokens=min(c.overlap_tokens, limit // 2),
        respect_sentences=c.respect_sentences,
    )


def ingestor(spec: PipelineSpec) -> Ingestor:
    from ragkit.index.ingest import Ingestor

    return Ingestor(store=store(spec), embedder=embedder(spec), chunker=chunker(spec))


def prompt_assembler(spec: PipelineSpec) -> PromptAssembler:
    from ragkit.prompting import PromptAssembler

    p = spec.prompt
    template: dict[str, Any] = (
        {} if p.passage_template is None else {"passage_template": p.passage_template}
    )
    return PromptAssembler(
        layout=p.layout,
        system=p.system,
        instruction=p.instruction,
        passage_order=p.passage_order,
        **template,
    )


def pipeline(spec: PipelineSpec) -> Pipeline:
    """The spec's pipeline: a `RAGPipeline`, wrapped in Iter-RetGen when `iterate` is set."""
    from ragkit.pipeline import RAGPipeline
    from ragkit.stages.factory import (
        build_compressor,
        build_expander,
        build_reranker,
        build_rewriter,
        wrap_iterate,
    )

    assembler = prompt_assembler(spec)
    shared = parts(spec)
    search = retriever(spec)
    rewriter = None
    if spec.rewrite is not None and REWRITERS.uses(spec.rewrite.mode, "retriever"):
        # A stage that searches itself (conversational search) wraps the retriever and takes
        # its place, rather than rewriting the query.
        wrapping = Parts(
            generator=lambda: generator(spec),
            embedder=lambda: embedder(spec),
            store=lambda: store(spec),
            retriever=lambda: search,
            top_k=lambda: _search_k(spec),
        )
        search = build_rewriter(spec.rewrite, wrapping)
    elif spec.rewrite is not None:
        rewriter = build_rewriter(spec.rewrite, shared)
    reranker = None if spec.rerank is None else build_reranker(spec.rerank, shared)
    expander = None if spec.expand is None else build_expander(spec.expand, shared)
    compressor = None if spec.compress is None else build_compressor(spec.compress, shared)
    rag = RAGPipeline(
        retriever=search,
        generator=generator(spec),
        assembler=assembler,
        rewriter=rewriter,
        reranker=reranker,
        expander=expander,
        compressor=compressor,
        top_k=spec.retriever.top_k,
        pipeline_name=spec.name,
    )
    return rag if spec.iterate is None else wrap_iterate(rag, spec.iterate)


def load_pipeline(
    name_or_path: str | Path,
    *,
    store_location: str | None = None,
    collection: str | None = None,
    **overrides: Mapping[str, Any] | None,
) -> Pipeline:
    """A ready pipeline from a named spec in `pipelines/` or a YAML file.

    Keyword sections change settings in one call, validated as YAML is:
    `load_pipeline("naive", generator={"max_new_tokens": 48})`.
    """
    spec = load_spec(name_or_path).with_store(store_location, collection)
    return pipeline(spec.override(**overrides) if overrides else spec)
