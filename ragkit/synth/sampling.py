"""Where synthetic questions come from: the chunks of a folder or of an indexed store, visited
in an order spread over documents, so a few long documents cannot supply every question."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ragkit.spec import PipelineSpec
from ragkit.types import Chunk

# Shorter chunks (a heading, a table row) rarely hold a fact worth a question.
MIN_CHUNK_CHARS = 60


def is_store(source: str) -> bool:
    """A chroma server URL or a folder holding a chroma database (not documents to read)."""
    return source.startswith(("http://", "https://")) or (Path(source) / "chroma.sqlite3").is_file()


def source_chunks(source: str, spec: PipelineSpec, collection: str | None = None) -> list[Chunk]:
    """Chunks as the pipeline would index them: read from the store, or cut from the folder's
    documents by the pipeline's chunker (nothing is embedded)."""
    from ragkit import build

    if is_store(source):
        return build.store(spec.with_store(source, collection)).get_chunks()
    from ragkit.index.loaders import load_documents

    return chunk_documents(load_documents([source]), spec)


def chunk_documents(documents: Iterable[Any], spec: PipelineSpec) -> list[Chunk]:
    from ragkit import build

    return list(build.chunker(spec).split_documents(documents))


def spread(chunks: Sequence[Chunk], seed: int) -> list[Chunk]:
    """Round-robin over documents in a seeded order: every document's first pick comes before
    any document's second. Chunks too short to ask about are left out."""
    rng = random.Random(seed)
    by_doc: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        if len(chunk.text.strip()) >= MIN_CHUNK_CHARS:
            by_doc.setdefault(chunk.source, []).append(chunk)
    docs = sorted(by_doc)
    rng.shuffle(docs)
    for doc in docs:
        rng.shuffle(by_doc[doc])
    order = []
    for depth in range(max((len(v) for v in by_doc.values()), default=0)):
        order += [by_doc[d][depth] for d in docs if depth < len(by_doc[d])]
    return order


def gold_source(chunk: Chunk, root: Path | None) -> str:
    """The chunk's document as a suite names it: relative to the corpus folder when it lies
    inside it (so the suite can move with its corpus), else as stored."""
    source = chunk.source
    if root is None:
        return source
    path, mark, record = source.partition("#")
    try:
        rel = os.path.relpath(path, root)
    except ValueError:
        return source
    if rel.startswith(".."):
        return source
    return rel.replace(os.sep, "/") + mark + record


def corpus_root(source: str, chunks: Sequence[Chunk]) -> Path | None:
    """The folder a suite points at: the given folder, or the common folder of a store's
    documents when it still exists on this machine."""
    if not is_store(source):
        path = Path(source).resolve()
        return path if path.is_dir() else path.parent
    paths = [c.source.partition("#")[0] for c in chunks]
    try:
        common = Path(os.path.commonpath(paths)) if paths else None
    except ValueError:
        return None
    return common if common is not None and common.is_dir() else None
