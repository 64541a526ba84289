"""What Ray's workers run during ingestion: load and chunk one item, embed a block of chunks.

Each step reuses the local engine's pieces (loader, chunker, embedder) so a distributed run
writes what a local one does; the rows it emits carry everything the driver in
`ragkit.distributed.ray_ingest` needs to write them in any order. Each worker process builds
its models once and records when they became ready, so the driver can tell start-up cost from
steady work.
"""

from __future__ import annotations

import os
import pickle
import time
from functools import cache
from typing import Any

import numpy as np

from ragkit import build
from ragkit.errors import InputError
from ragkit.index.ledger import document_record
from ragkit.index.loaders import LoadIssue, load_documents
from ragkit.index.manifest import DocumentRecord
from ragkit.index.sources import real_source
from ragkit.process import configure_process
from ragkit.spec import PipelineSpec
from ragkit.types import Chunk, Document

CHUNK, EMPTY, UNCHANGED, ISSUE, NOTE = "chunk", "empty", "unchanged", "issue", "note"

_MODEL: dict[str, float] = {}  # this worker process: when its model became ready, and the cost


def _embedder(spec: PipelineSpec) -> Any:
    """The spec's embedder, its model loaded on first need and the load timed once per
    process: a run whose documents are all unchanged never loads a model."""
    embedder = build.embedder(spec)
    if not _MODEL:
        began = time.time()
        embedder.embed_documents(["warm-up"])  # the load and the first call are start-up cost
        _MODEL.update(ready_at=time.time(), seconds=time.time() - began)
    return embedder


@cache
def _chunker(spec: PipelineSpec) -> Any:
    """The spec's chunker, built once per worker process the way the local engine builds it."""
    _embedder(spec)  # its tokenizer comes from the model: load (and time) that first
    return build.chunker(spec)


def _row(
    kind: str,
    record: DocumentRecord | None = None,
    chunk: Chunk | None = None,
    note: str = "",
    source: str = "",
) -> dict[str, Any]:
    """One output row; every row has the same columns so blocks share one Arrow schema.

    The chunk travels pickled, so its metadata reaches the driver exactly as the chunker made
    it (Arrow would widen ints, merge dict keys across rows and drop tuples).
    """
    return {
        "kind": kind,
        "doc_id": record.doc_id if record else "",
        "source": record.source if record else source,
        "content_hash": record.content_hash if record else "",
        "doc_chunks": record.chunks if record else 0,
        "chunk_index": int(chunk.metadata.get("chunk_index", 0)) if chunk else 0,
        "text": chunk.text if chunk else "",
        "chunk": pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL) if chunk else b"",
        "note": note,
    }


def load_and_chunk(
    item: dict[str, Any], *, spec: PipelineSpec, skip: frozenset[str]
) -> list[dict[str, Any]]:
    """Rows for one input item: a file path the worker reads, or a pickled Document.

    Documents in `skip` (complete in the store when the run started) become one `unchanged`
    row and are not chunked; a file that cannot be read becomes an `issue` row.
    """
    issues: list[LoadIssue] = []
    if item["path"]:
        try:
            docs = list(load_documents([real_source(item["path"])], on_issue=issues.append))
        except (InputError, OSError) as exc:
            issues.append(LoadIssue(item["path"], str(exc)))
            docs = []
    else:
        docs = [pickle.loads(item["document"])]
    rows = [_row(ISSUE if i.skipped else NOTE, note=i.reason, source=i.path) for i in issues]
    todo: list[Document] = []
    for doc in docs:
        if doc.id in skip:
            rows.append(_row(UNCHANGED, document_record(doc, 0, complete=True)))
        else:
            todo.append(doc)
    chunk_lists = _chunker(spec).batch(todo) if todo else []
    for doc, chunks in zip(todo, chunk_lists, strict=True):
        record = document_record(doc, len(chunks), complete=True)
        if not chunks:
            rows.append(_row(EMPTY, record))
        rows.extend(_row(CHUNK, record, chunk) for chunk in chunks)
    return rows


class EmbedChunks:
    """A member of the embedding pool: embeds each block's chunk rows with a model it loads
    once, when the first chunk needs it.

    Every output row carries the worker's pid and when its model became ready, which is how
    the driver tells start-up (process, imports, model load) apart from steady-state work and
    sees a worker that Ray restarted.
    """

    def __init__(self, spec: PipelineSpec) -> None:
        configure_process()  # a worker process is an entry point: settings as `ragkit ingest`
        self.spec = spec
        self.pid = os.getpid()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["kind"])
        rows = np.flatnonzero(batch["kind"] == CHUNK)
        vectors = np.full(n, b"", dtype=object)  # float32 bytes: one column type for any block
        if len(rows):
            found = _embedder(self.spec).embed_documents([str(batch["text"][i]) for i in rows])
            for i, vector in zip(rows, np.asarray(found, dtype=np.float32), strict=True):
                vectors[i] = vector.tobytes()
        return {
            **batch,
            "vector": vectors,
            "worker": np.full(n, self.pid, dtype=np.int64),
            "ready_at": np.full(n, _MODEL.get("ready_at", 0.0), dtype=np.float64),
            "load_seconds": np.full(n, _MODEL.get("seconds", 0.0), dtype=np.float64),
        }
