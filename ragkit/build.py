"""Turns a `PipelineSpec` into live components; models and stores are shared process-wide, so
several pipelines (an evaluation comparing them, a server hosting them) load each model once."""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Any

from ragkit.errors import ConfigError
from ragkit.spec import EmbedderSpec, GeneratorSpec, PipelineSpec, StoreSpec, load_spec

_lock = threading.RLock()
_registry: dict[tuple[str, Any], Any] = {}


@cache
def _embedder(spec: EmbedderSpec) -> Any:
    from ragkit.embedding import Embedder
    from ragkit.retrieval.e5 import E5Embedder, is_e5

    return (E5Embedder if is_e5(spec.model) else Embedder)(
        model=spec.model,
        precision=spec.precision,
        batch_size=spec.batch_size,
        query_prefix=spec.query_prefix,
        passage_prefix=spec.passage_prefix,
    )


@cache
def _store(spec: StoreSpec, embedding_model: str) -> Any:
    from ragkit.store import ChromaStore

    return ChromaStore(spec.location, spec.collection, embedding_model=embedding_model)


@cache
def _generator(spec: GeneratorSpec) -> Any:
    concurrency = {} if spec.max_concurrency is None else {"max_concurrency": spec.max_concurrency}
    if spec.kind == "local":
        from ragkit.generation.local import LocalGenerator

        return LocalGenerator(
            model=spec.model or "packaged",
            max_new_tokens=spec.max_new_tokens,
            temperature=spec.temperature,
            prefix_cache_bytes=spec.prefix_cache_mb * 2**20,
            **concurrency,
        )
    if spec.kind == "openai":
        if not spec.base_url:
            raise ConfigError("generator.base_url: required when generator.kind is 'openai'")
        from ragkit.generation.openai_compat import OpenAICompatibleGenerator

        return OpenAICompatibleGenerator(
            base_url=spec.base_url,
            model=spec.model,
            api_key=spec.api_key,
            timeout_s=spec.timeout_s,
            max_new_tokens=spec.max_new_tokens,
            temperature=spec.temperature,
            **concurrency,
        )
    from ragkit.generation.vllm import VLLMGenerator

    if not spec.model:
        raise ConfigError("generator.model: required when generator.kind is 'vllm'")
    return VLLMGenerator(
        model=spec.model,
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        **concurrency,
    )


def register_embedder(spec: EmbedderSpec, instance: Any) -> None:
    """Reuse an already loaded embedder for every spec with these settings."""
    with _lock:
        _registry[("embedder", spec)] = instance


def register_generator(spec: GeneratorSpec, instance: Any) -> None:
    """Reuse an already loaded generator for every spec with these settings."""
    with _lock:
        _registry[("generator", spec)] = instance


def embedder(spec: PipelineSpec) -> Any:
    with _lock:
        return _registry.get(("embedder", spec.embedder)) or _embedder(spec.embedder)


def store(spec: PipelineSpec) -> Any:
    with _lock:
        return _store(spec.store, spec.embedder.model)


def generator(spec: PipelineSpec) -> Any:
    with _lock:
        return _registry.get(("generator", spec.generator)) or _generator(spec.generator)


def retriever(spec: PipelineSpec) -> Any:
    from ragkit.retrieval import BM25Retriever, DenseRetriever, HybridRetriever

    r = spec.retriever
    # A reranker needs a shortlist longer than the final top_k to choose from.
    top_k = r.top_k if spec.rerank is None else max(r.top_k, spec.rerank.candidates)
    if r.kind == "bm25":
        return BM25Retriever(store(spec), top_k=top_k, terms=r.lexical)
    dense = DenseRetriever(store=store(spec), embedder=embedder(spec), top_k=top_k)
    if r.kind == "dense":
        return dense
    dense_wide = DenseRetriever(store=store(spec), embedder=embedder(spec), top_k=r.candidate_k)
    bm25_wide = BM25Retriever(store(spec), top_k=r.candidate_k, terms=r.lexical)
    return HybridRetriever(retrievers=[dense_wide, bm25_wide], top_k=top_k)


def chunker(spec: PipelineSpec) -> Any:
    from ragkit.chunking import TokenChunker

    c = spec.chunker
    model = embedder(spec)
    # The embedder truncates at max_seq_length including [CLS]/[SEP]: never make longer chunks.
    limit = model.max_seq_length - 2
    return TokenChunker(
        tokenizer=model.tokenizer,
        chunk_tokens=min(c.chunk_tokens, limit),
        overlap_tokens=min(c.overlap_tokens, limit // 2),
        respect_sentences=c.respect_sentences,
    )


def ingestor(spec: PipelineSpec) -> Any:
    from ragkit.ingest import Ingestor

    return Ingestor(store=store(spec), embedder=embedder(spec), chunker=chunker(spec))


def pipeline(spec: PipelineSpec) -> Any:
    from ragkit.pipeline import RAGPipeline
    from ragkit.prompting import PromptAssembler
    from ragkit.stages.factory import build_reranker, build_rewriter, wrap_iterate

    p = spec.prompt
    assembler = PromptAssembler(layout=p.layout, system=p.system, instruction=p.instruction)
    search = retriever(spec)
    rewriter = None
    if spec.rewrite is not None and spec.rewrite.mode == "history":
        from ragkit.stages.history import HistorySearch

        search = HistorySearch(retriever=search, turns=spec.rewrite.turns, top_k=search.top_k)
    elif spec.rewrite is not None:
        rewriter = build_rewriter(spec.rewrite, generator(spec))
    reranker = (
        None
        if spec.rerank is None
        else build_reranker(spec.rerank, embedder(spec), generator(spec))
    )
    rag = RAGPipeline(
        retriever=search,
        generator=generator(spec),
        assembler=assembler,
        rewriter=rewriter,
        reranker=reranker,
        top_k=spec.retriever.top_k,
        pipeline_name=spec.name,
    )
    return rag if spec.iterate is None else wrap_iterate(rag, spec.iterate)


def load_pipeline(
    name_or_path: str | Path, *, store_location: str | None = None, collection: str | None = None
) -> Any:
    """A ready pipeline from a named spec in `pipelines/` or a YAML file."""
    return pipeline(load_spec(name_or_path).with_store(store_location, collection))
