"""Moved to `ragkit.index.sources`; import from there. This module re-exports its public names
so that existing imports keep working."""

from ragkit.index.sources import (
    LONE_SURROGATE,
    escape_reason,
    needs_escape,
    real_source,
    stored_source,
)

__all__ = ["LONE_SURROGATE", "escape_reason", "needs_escape", "real_source", "stored_source"]
