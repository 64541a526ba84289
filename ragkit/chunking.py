"""Moved to `ragkit.index.chunking`; import from there. This module re-exports its public names
so that existing imports keep working."""

from ragkit.index.chunking import TokenChunker, plain_tokenizer

__all__ = ["TokenChunker", "plain_tokenizer"]
