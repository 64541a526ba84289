"""Optional retrieval stages that wrap the core pipeline: query rewriting, reranking and the
Iter-RetGen loop. Names resolve on first use so importing the package loads no model."""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "QueryRewriter": "ragkit.stages.rewrite",
    "StandaloneQuestion": "ragkit.stages.rewrite",
    "CrossEncoderReranker": "ragkit.stages.rerank",
    "EmbedderReranker": "ragkit.stages.rerank",
    "LLMJudgeReranker": "ragkit.stages.rerank",
    "RRFReranker": "ragkit.stages.rerank",
    "E5Embedder": "ragkit.stages.rerank",
    "IterRetGen": "ragkit.stages.iterate",
    "build_rewriter": "ragkit.stages.factory",
    "build_reranker": "ragkit.stages.factory",
    "wrap_iterate": "ragkit.stages.factory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ragkit.stages' has no attribute {name!r}")
