"""Optional retrieval stages that wrap the core pipeline: query rewriting, reranking, context
expansion and compression, and the Iter-RetGen loop. Names resolve on first use so importing the
package loads no model."""

from ragkit.lazy import lazy_exports

_EXPORTS = {
    "ragkit.stages.rewrite": ("QueryRewriter", "StandaloneQuestion"),
    "ragkit.stages.rerank": (
        "CrossEncoderReranker",
        "EmbedderReranker",
        "LLMJudgeReranker",
        "RRFReranker",
    ),
    "ragkit.embedding.e5": ("E5Embedder",),  # the reranker's default embedder
    "ragkit.stages.expand": ("SentenceWindow", "ParentChunks"),
    "ragkit.stages.compress": ("ExtractiveCompressor",),
    "ragkit.stages.compress_model": ("ModelCompressor",),
    "ragkit.stages.iterate": ("IterRetGen",),
    "ragkit.stages.factory": (
        "build_rewriter",
        "build_reranker",
        "build_expander",
        "build_compressor",
        "wrap_iterate",
    ),
}


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
