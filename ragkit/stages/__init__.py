"""Optional retrieval stages that wrap the core pipeline: query rewriting, reranking and the
Iter-RetGen loop. Names resolve on first use so importing the package loads no model."""

from ragkit.lazy import lazy_exports

_EXPORTS = {
    "ragkit.stages.rewrite": ("QueryRewriter", "StandaloneQuestion"),
    "ragkit.stages.rerank": (
        "CrossEncoderReranker",
        "EmbedderReranker",
        "LLMJudgeReranker",
        "RRFReranker",
        "E5Embedder",
    ),
    "ragkit.stages.iterate": ("IterRetGen",),
    "ragkit.stages.factory": ("build_rewriter", "build_reranker", "wrap_iterate"),
}


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
