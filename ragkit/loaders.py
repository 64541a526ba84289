"""Moved to `ragkit.index.loaders`; import from there. This module re-exports its public names
so that existing imports keep working."""

from ragkit.index.loaders import (
    DEFAULT_MAX_BYTES,
    FORMATS,
    RESERVED_KEYS,
    LoadIssue,
    load_documents,
)

__all__ = ["DEFAULT_MAX_BYTES", "FORMATS", "RESERVED_KEYS", "LoadIssue", "load_documents"]
