"""Chunks of documents in bounded parts, so ingesting a long document neither holds all of it
as tokens and chunks at once nor starts it over after a crash.

A document longer than `PIECE_CHARS` is chunked a piece at a time. The last two chunks of a
piece are dropped and the next piece starts where the first of them started, so every chunk
kept was cut with its full window of tokens in view and overlap carries across the seam as it
does inside a piece. The cut depends only on the text, so the chunks (and their ids) come out
the same on every run; a document no longer than one piece is chunked exactly as a whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragkit.types import Chunk, Document

PIECE_CHARS = 200_000


@dataclass
class Part:
    """Some of one document's chunks in order; `first` and `last` mark where it starts and ends,
    and `total` counts its chunks so far, including those already stored and left out."""

    doc: Document
    chunks: list[Chunk] = field(default_factory=list)
    first: bool = False
    last: bool = False
    total: int = 0
    reused: int = 0  # chunks of this part already stored by an earlier run


def chunk_pieces(
    chunker: Any, doc: Document, piece_chars: int = PIECE_CHARS
) -> Iterator[list[Chunk]]:
    """The document's chunks, one list per piece of at most about `piece_chars` characters."""
    text = doc.text
    if len(text) <= piece_chars:
        yield chunker.batch([doc])[0]
        return
    pos, index, size = 0, 0, piece_chars
    while True:
        end = min(pos + size, len(text))
        piece = Document(id=doc.id, text=text[pos:end], metadata=doc.metadata)
        chunks = chunker.batch([piece])[0]
        if end == len(text):
            yield [_moved(c, doc.id, pos, index + i) for i, c in enumerate(chunks)]
            return
        restart = chunks[-2].start if len(chunks) >= 3 else 0
        if restart <= 0:  # too few chunks to cut safely (mostly whitespace): widen the piece
            size *= 2
            continue
        kept = chunks[:-2]
        yield [_moved(c, doc.id, pos, index + i) for i, c in enumerate(kept)]
        index += len(kept)
        pos, size = pos + restart, piece_chars


def _moved(chunk: Chunk, doc_id: str, offset: int, index: int) -> Chunk:
    """A piece's chunk placed in its document: offsets from the document's start, and the
    index (hence the id) it has among all the document's chunks."""
    if offset == 0 and chunk.metadata.get("chunk_index") == index:
        return chunk
    return Chunk(
        id=f"{doc_id}:{index:05d}",
        doc_id=doc_id,
        text=chunk.text,
        start=chunk.start + offset,
        end=chunk.end + offset,
        metadata={**chunk.metadata, "chunk_index": index},
    )


def document_parts(
    chunker: Any,
    group: Sequence[Document],
    stored: Callable[[Document], Mapping[str, tuple[int, int]]],
    piece_chars: int = PIECE_CHARS,
) -> Iterator[Part]:
    """Parts of each document of `group` in order. Short documents are chunked together in
    one tokenizer call; long ones piece by piece. `stored(doc)` gives the spans of chunks an
    earlier, interrupted run already wrote: a chunk found there with the same span is left
    out of its part (counted in `reused`), so it is not embedded again."""
    short = [doc for doc in group if len(doc.text) <= piece_chars]
    whole = iter(chunker.batch(short) if short else [])
    for doc in group:
        pieces = [next(whole)] if len(doc.text) <= piece_chars else None
        done = stored(doc)
        total, first = 0, True
        source = iter(pieces) if pieces is not None else chunk_pieces(chunker, doc, piece_chars)
        current: list[Chunk] = next(source, [])
        while True:
            following = next(source, None)
            total += len(current)
            todo = [c for c in current if done.get(c.id) != (c.start, c.end)]
            yield Part(
                doc,
                todo,
                first=first,
                last=following is None,
                total=total,
                reused=len(current) - len(todo),
            )
            if following is None:
                break
            current, first = following, False
