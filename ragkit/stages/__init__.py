"""Optional retrieval stages that wrap the core pipeline: query rewriting, reranking and the
Iter-RetGen loop. Names resolve on first use so importing the package loads no model."""

from ragkit.lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)
