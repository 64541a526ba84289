"""ragkit: build, serve and measure retrieval-augmented generation pipelines.

Importing the package is cheap: names resolve on first use, and models, chromadb and torch load
only when a component first needs them.
"""

from ragkit.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Answer": "ragkit.types",
    "AnswerChunk": "ragkit.types",
    "Chunk": "ragkit.types",
    "Citation": "ragkit.types",
    "Document": "ragkit.types",
    "Prompt": "ragkit.types",
    "Query": "ragkit.types",
    "Retrieved": "ragkit.types",
    "Usage": "ragkit.types",
    "PipelineSpec": "ragkit.spec",
    "load_spec": "ragkit.spec",
    "load_pipeline": "ragkit.build",
    "RAGPipeline": "ragkit.pipeline",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
