"""Text embedding: the `Embedder` (sentence-transformers on torch or ONNX), its multilingual-e5
variant, the ONNX export with its checks, and the CPU probing that picks dtypes and int8 kernels.

`from ragkit.embedding import Embedder` is the public import; the modules are `embedder` (the
model and its backend choice), `e5` (multilingual-e5, packaged offline), `onnx_export` and `cpu`.
"""

from ragkit.embedding.e5 import E5Embedder
from ragkit.embedding.embedder import (
    BACKEND_ENV,
    BACKENDS,
    Backend,
    Embedder,
    OnnxEncoder,
    Precision,
    backend_candidates,
    export_dir,
    load_onnx,
    onnx_available,
    preferred_backend,
    resolve_precision,
)

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "Backend",
    "E5Embedder",
    "Embedder",
    "OnnxEncoder",
    "Precision",
    "backend_candidates",
    "export_dir",
    "load_onnx",
    "onnx_available",
    "preferred_backend",
    "resolve_precision",
]
