"""The document manifest beside a chunk collection: which documents a store holds completely.

Each chunk collection `<name>` has a companion collection `<name>__docs` with one entry per
document (source, content hash, chunk count, `complete`). Ingestion writes `complete=True` only
after a document's last chunk is stored, which is what makes it resumable and lets unchanged
files be skipped without reading their chunks. The entries carry a one-dimensional placeholder
vector because chroma stores nothing without one. `ragkit.index.store.ChromaStore` owns both
collections and keeps them in step; this module reads and writes the manifest's entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MANIFEST_SUFFIX", "DocumentManifest", "DocumentRecord", "batches", "manifest_name"]

MANIFEST_SUFFIX = "__docs"


def manifest_name(collection: str) -> str:
    """The manifest collection's name for a chunk collection."""
    return collection + MANIFEST_SUFFIX


def batches(n: int, size: int) -> Iterator[slice]:
    """Slices of at most `size` over `n` items: chroma refuses writes above its batch limit."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """One document's manifest entry; `complete` is set only once all its chunks are stored."""

    doc_id: str
    source: str
    content_hash: str
    chunks: int
    complete: bool


class DocumentManifest:
    """Entries of one `<collection>__docs` collection, read and written in pages of `page`."""

    def __init__(self, collection: Any, page: int) -> None:
        self.collection = collection
        self.page = page

    def mark(self, records: Sequence[DocumentRecord]) -> None:
        """Insert or overwrite entries by document id."""
        for part in batches(len(records), self.page):
            chunk = records[part]
            self.collection.upsert(
                ids=[r.doc_id for r in chunk],
                embeddings=np.ones((len(chunk), 1), dtype=np.float32),
                metadatas=[
                    {
                        "source": r.source,
                        "content_hash": r.content_hash,
                        "chunks": r.chunks,
                        "complete": r.complete,
                    }
                    for r in chunk
                ],
            )

    def records(self) -> dict[str, DocumentRecord]:
        """Every entry by document id, complete or not."""
        out: dict[str, DocumentRecord] = {}
        offset = 0
        while True:
            got = self.collection.get(limit=self.page, offset=offset, include=["metadatas"])
            for doc_id, meta in zip(got["ids"], got["metadatas"], strict=True):
                out[doc_id] = DocumentRecord(
                    doc_id=doc_id,
                    source=str(meta["source"]),
                    content_hash=str(meta.get("content_hash", "")),
                    chunks=int(meta.get("chunks", 0)),
                    complete=bool(meta.get("complete", False)),
                )
            if len(got["ids"]) < self.page:
                return out
            offset += self.page

    def delete(self, doc_ids: Iterable[str]) -> None:
        """Remove entries (their chunks are the store's to remove, first)."""
        self.collection.delete(ids=list(doc_ids))
