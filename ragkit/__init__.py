"""ragkit: build, serve and measure retrieval-augmented generation pipelines.

Importing the package is cheap: names resolve on first use, and models, chromadb and torch load
only when a component first needs them.
"""

from ragkit.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ragkit.types": (
        "Answer",
        "AnswerChunk",
        "Chunk",
        "Citation",
        "Document",
        "Prompt",
        "Query",
        "Retrieved",
        "Usage",
    ),
    "ragkit.spec": ("PipelineSpec", "load_spec"),
    "ragkit.build": ("load_pipeline",),
    "ragkit.pipeline": ("RAGPipeline",),
}


__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
