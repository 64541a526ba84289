"""The bookkeeping of one ingestion run, shared by the local and the distributed engines.

What is already stored (the manifest as the run found it), what the run has met and completed,
the order in which a batch is written so that a crash is harmless, and the report of what
changed. The local pipeline (`ragkit.index.ingest`) and the Ray driver
(`ragkit.distributed.ray_ingest`) both go through it, so they skip, count and replace documents
in the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ragkit.index.loaders import LoadIssue
from ragkit.index.store import ChromaStore, DocumentRecord
from ragkit.types import Chunk, Document

__all__ = ["IngestReport", "Ledger", "Verdict", "document_record", "write_batch"]


@dataclass
class IngestReport:
    """What one ingestion run changed; `interrupted` is set when Ctrl-C stopped it early."""

    documents_added: int = 0
    documents_unchanged: int = 0
    documents_replaced: int = 0
    documents_deleted: int = 0
    chunks_added: int = 0
    chunks_reused: int = 0  # chunks an interrupted earlier run had stored, not embedded again
    issues: list[LoadIssue] = field(default_factory=list)
    notes: list[LoadIssue] = field(default_factory=list)  # files loaded, with a remark (a name)
    seconds: float = 0.0
    interrupted: bool = False

    def add_issue(self, issue: LoadIssue) -> None:
        """File a loader's issue: a skipped file, or a note about one that was loaded."""
        (self.issues if issue.skipped else self.notes).append(issue)


def document_record(doc: Document, chunks: int, complete: bool) -> DocumentRecord:
    """A document's manifest entry; every ingestion path builds it here so entries agree."""
    return DocumentRecord(
        doc_id=doc.id,
        source=doc.source,
        content_hash=str(doc.metadata.get("content_hash", "")),
        chunks=chunks,
        complete=complete,
    )


def write_batch(
    store: ChromaStore,
    chunks: Sequence[Chunk],
    vectors: Any,
    *,
    started: Iterable[DocumentRecord] = (),
    finished: Iterable[DocumentRecord] = (),
) -> None:
    """Write one batch in the order that makes a crash harmless: the documents it starts are
    entered as incomplete, then the chunks are upserted, then the documents whose last chunk
    it holds are marked complete. A run killed anywhere in between leaves no document marked
    complete without all of its chunks."""
    started, finished = list(started), list(finished)
    if started:
        store.mark_documents(started)
    if chunks:
        store.upsert(chunks, vectors)
    if finished:
        store.mark_documents(finished)


Verdict = Literal["write", "unchanged", "repeat"]


class Ledger:
    """One run's bookkeeping, whichever engine does the work.

    It holds the manifest as it was when the run started and what the run has met and
    finished, and fills the report; the local threads and the distributed driver both go
    through it, so they skip, count and replace documents in the same way.
    """

    def __init__(self, store: ChromaStore, report: IngestReport) -> None:
        self.store = store
        self.report = report
        self.known = store.documents()
        self.known_by_source: dict[str, set[str]] = {}
        for record in self.known.values():
            self.known_by_source.setdefault(record.source, set()).add(record.doc_id)
        self.seen: dict[str, set[str]] = {}  # source -> doc ids met in this run
        self.written: set[str] = set()  # doc ids completed by this run
        self.finished_sources: set[str] = set()
        self.lock = threading.Lock()

    def complete_ids(self) -> frozenset[str]:
        """Ids already stored completely: workers that load documents themselves skip these."""
        return frozenset(i for i, record in self.known.items() if record.complete)

    def admit(self, doc_id: str, source: str) -> Verdict:
        """Whether a document needs writing; an unchanged one is counted here, a repeat of a
        document already met in this run is dropped silently."""
        ids = self.seen.setdefault(source, set())
        if doc_id in ids:
            return "repeat"
        ids.add(doc_id)
        record = self.known.get(doc_id)
        if record is not None and record.complete:
            self.report.documents_unchanged += 1
            return "unchanged"
        return "write"

    def wrote(self, chunks: int, finished: Iterable[tuple[str, str]]) -> None:
        """Count a written batch: its chunks and the (doc id, source) pairs it completed."""
        with self.lock:
            self.report.chunks_added += chunks
            for doc_id, source in finished:
                self.written.add(doc_id)
                older = self.known_by_source.get(source, set()) - {doc_id}
                if any(self.known[i].complete for i in older):
                    self.report.documents_replaced += 1
                else:
                    self.report.documents_added += 1

    def remove_replaced(self) -> None:
        """Drop older versions of sources whose new version is completely in.

        Runs after the new chunks are written, so a crash in between leaves both versions, and
        the next run (which finds the new one complete) removes the old one.
        """
        stale: set[str] = set()
        for source, ids in self.seen.items():
            if source not in self.finished_sources:
                continue
            if not all(i in self.written or self._complete_before(i) for i in ids):
                continue
            stale |= self.known_by_source.get(source, set()) - ids
        if stale:
            self.store.delete_documents(stale)

    def _complete_before(self, doc_id: str) -> bool:
        record = self.known.get(doc_id)
        return record is not None and record.complete
