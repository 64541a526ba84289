"""Source text around retrieved chunks, read back from the chunks stored beside them.

The index keeps each chunk's text and its character span, and the chunker's windows of one
document are numbered (`chunk_index`) and cover it end to end (neighbours overlap, or meet at
whitespace the chunker trimmed). So the text of a document near a hit can be rebuilt from the
hit's neighbouring chunks, with no copy of the document kept and no re-ingest: a run of
consecutive chunks gives one `Block` of text with its offsets in the document. Whitespace the
chunker trimmed between two chunks is not stored; it comes back as the same number of spaces,
or newlines when there were two or more characters, so offsets stay exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragkit.protocols import ChunkSource
from ragkit.types import Chunk

INDEX_KEY = "chunk_index"


def chunk_index(chunk: Chunk) -> int | None:
    """The chunk's position among its document's chunks, or None for a chunk made elsewhere."""
    value = chunk.metadata.get(INDEX_KEY)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class ChunkList:
    """Chunks held in memory, read like a store (`get_chunks` by ids or by simple filters), so
    expansion works over an in-memory BM25 index as it does over chroma."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self._chunks = list(chunks)
        self._by_id = {c.id: c for c in self._chunks}
        self._by_doc: dict[str, list[Chunk]] = defaultdict(list)
        for chunk in self._chunks:
            self._by_doc[chunk.doc_id].append(chunk)

    def count(self) -> int:
        return len(self._chunks)

    def get_chunks(
        self, ids: Sequence[str] | None = None, where: Mapping[str, Any] | None = None
    ) -> list[Chunk]:
        from ragkit.retrieval.bm25 import matches

        if ids is not None:
            found = (self._by_id.get(i) for i in ids)
            return [c for c in found if c is not None and matches(c, where)]
        doc = (where or {}).get("doc_id")
        pool = self._by_doc.get(doc, []) if isinstance(doc, str) else self._chunks
        return [c for c in pool if matches(c, where)]


@dataclass(frozen=True, slots=True)
class Block:
    """Text of a run of consecutive chunks: `text` is the document's `[start, end)`;
    `first`/`last` are the chunk indices it spans, `at_start`/`at_end` whether it reaches the
    document's first or last character."""

    doc_id: str
    first: int
    last: int
    start: int
    text: str
    at_start: bool
    at_end: bool

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    def covers(self, start: int, end: int) -> bool:
        return self.start <= start and end <= self.end

    def span_text(self, start: int, end: int) -> str:
        return self.text[start - self.start : end - self.start]


class DocumentChunks:
    """One document's chunks read so far, by index; fetches more on request and remembers
    which indices do not exist (past the document's end)."""

    def __init__(self, source: ChunkSource, doc_id: str, known: Iterable[Chunk] = ()) -> None:
        self.source = source
        self.doc_id = doc_id
        self.chunks: dict[int, Chunk] = {}
        self.missing: set[int] = set()
        for chunk in known:
            index = chunk_index(chunk)
            if index is not None:
                self.chunks[index] = chunk

    def fetch(self, indices: Iterable[int]) -> None:
        """Read the wanted chunks not read yet, in one call to the source."""
        wanted = sorted({i for i in indices if i >= 0} - set(self.chunks) - self.missing)
        if not wanted:
            return
        got = self.source.get_chunks(where={"doc_id": self.doc_id, INDEX_KEY: wanted})
        for chunk in got:
            index = chunk_index(chunk)
            if index is not None:
                self.chunks[index] = chunk
        self.missing.update(i for i in wanted if i not in self.chunks)

    def exists(self, index: int) -> bool | None:
        """True or False once known; None while that index was never asked for."""
        if index < 0 or index in self.missing:
            return False
        return True if index in self.chunks else None

    def block(self, index: int) -> Block:
        """The longest run of read consecutive chunks that holds chunk `index`."""
        first = last = index
        while first - 1 in self.chunks:
            first -= 1
        while last + 1 in self.chunks:
            last += 1
        start = self.chunks[first].start
        pieces: list[str] = []
        end = start
        for i in range(first, last + 1):
            chunk = self.chunks[i]
            if chunk.start > end:  # whitespace the chunker trimmed
                gap = chunk.start - end
                pieces.append("\n" * gap if gap >= 2 else " ")
                end = chunk.start
            if chunk.end > end:
                pieces.append(chunk.text[end - chunk.start :])
                end = chunk.end
        return Block(
            doc_id=self.doc_id,
            first=first,
            last=last,
            start=start,
            text="".join(pieces),
            at_start=first == 0,
            at_end=self.exists(last + 1) is False,
        )
