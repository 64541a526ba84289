"""Builds the optional stages (rewriter, reranker, expander, compressor, Iter-RetGen) from their
spec sections through the component registries, turning a stage's own ValueError into a one-line
`ConfigError` that names the section."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable

from ragkit.components import COMPRESSORS, E5_NAMES, EXPANDERS, RERANKERS, REWRITERS
from ragkit.errors import ConfigError
from ragkit.registry import Parts, Registry
from ragkit.spec import CompressSpec, ExpandSpec, IterateSpec, RerankSpec, RewriteSpec

if TYPE_CHECKING:
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
