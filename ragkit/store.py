"""Moved to `ragkit.index.store` (the document manifest to `ragkit.index.manifest`); import from
there. This module re-exports their public names so that existing imports keep working."""

from ragkit.index.manifest import MANIFEST_SUFFIX, DocumentRecord
from ragkit.index.store import (
    DIMENSION_KEY,
    MODEL_KEY,
    ChromaStore,
    CollectionInfo,
    chunk_to_record,
    to_where,
)

__all__ = [
    "DIMENSION_KEY",
    "MANIFEST_SUFFIX",
    "MODEL_KEY",
    "ChromaStore",
    "CollectionInfo",
    "DocumentRecord",
    "chunk_to_record",
    "to_where",
]
