"""Idempotent, resumable ingestion: files -> chunks -> vectors -> store, pipelined.

Three threads overlap the work so the embedding model is the bottleneck: a producer loads and
chunks documents, the calling thread embeds batches, and a writer upserts them. Crash safety
comes from two facts: chunk ids are deterministic (`<doc id>:<index>`) so writing a chunk twice
leaves one copy, and the store's manifest marks a document complete only after the batch that
holds its last chunk is written. A killed run leaves at most incomplete documents; the next
run chunks them again but embeds only the chunks not already stored, and skips complete ones
without chunking or embedding. Long documents travel through the threads in parts, so memory
stays bounded by the queues, not by the size of the largest file.

The three stages and their queues are kept in one module: they share the shutdown and error
path (a failure in any thread stops the others and is raised in the caller), which is easier to
check in one place than across several. What is complete, the crash-safe write order and the
report are in `ragkit.index.ledger` (shared with the Ray engine); chunking of long documents is
in `ragkit.index.chunk_stream`.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit.index.chunk_stream import PIECE_CHARS, Part, document_parts
from ragkit.index.ledger import IngestReport, Ledger, document_record, write_batch
from ragkit.index.loaders import load_documents
from ragkit.index.sources import real_source
from ragkit.index.store import ChromaStore
from ragkit.types import Chunk, Document

__all__ = ["IngestProgress", "IngestReport", "Ingestor"]

_DONE = object()


@dataclass
class _Batch:
    """Chunks for one model call, with the documents whose first / last chunk they hold."""

    chunks: list[Chunk] = field(default_factory=list)
    started: list[Document] = field(default_factory=list)
    finished: list[tuple[Document, int]] = field(default_factory=list)
    vectors: Any = None


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class IngestProgress:
    """Documents done and chunks written, as a rich progress bar; nothing when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._doc_task: Any = None
        self._chunk_task: Any = None

    def __enter__(self) -> IngestProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._doc_task = self._bar.add_task("documents", total=None)
            self._chunk_task = self._bar.add_task("chunks written", total=None)
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, *, docs: int = 0, chunks: int = 0) -> None:
        if self._bar is None:
            return
        if docs:
            self._bar.advance(self._doc_task, docs)
        if chunks:
            self._bar.advance(self._chunk_task, chunks)


def _under(source: str, roots: Sequence[str]) -> bool:
    """Whether a source lies under one of the roots (a JSONL record's source is `path#n`); the
    stored source is mapped back to the real path first (see `ragkit.index.sources`)."""
    source = real_source(source)
    return any(
        source == root or source.startswith((root.rstrip(os.sep) + os.sep, root + "#"))
        for root in roots
    )


class Ingestor:
    """Keeps a store in step with a set of files: adds new ones, replaces changed ones.

    `batch_size` is the number of chunks per model call; larger batches sort by length over
    more texts (less padding) at the cost of memory and of work lost to a crash. Documents
    longer than `piece_chars` characters are chunked that many characters at a time.
    """

    def __init__(
        self,
        store: ChromaStore,
        embedder: Any,
        chunker: Any,
        *,
        batch_size: int = 256,
        doc_batch_size: int = 32,
        piece_chars: int = PIECE_CHARS,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, but got {batch_size}")
        if doc_batch_size <= 0:
            raise ValueError(f"doc_batch_size must be > 0, but got {doc_batch_size}")
        if piece_chars <= 0:
            raise ValueError(f"piece_chars must be > 0, but got {piece_chars}")
        self.store = store
        self.embedder = embedder
        self.chunker = chunker
        self.batch_size = batch_size
        self.doc_batch_size = doc_batch_size
        self.piece_chars = piece_chars

    # -- public -------------------------------------------------------------------------------

    def ingest(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        progress: bool = True,
        delete: bool = False,
    ) -> IngestReport:
        """Ingest files and folders; with `delete=True`, remove everything stored under them."""
        roots = [paths] if isinstance(paths, str | Path) else list(paths)
        if delete:
            return self.delete(roots)
        report = IngestReport()
        docs = load_documents(roots, on_issue=report.add_issue)
        return self.ingest_documents(docs, progress=progress, report=report)

    def delete(self, paths: Iterable[str | Path]) -> IngestReport:
        """Remove stored documents whose source lies under the paths; the files may be gone."""
        started = time.perf_counter()
        roots = [str(Path(p).expanduser().resolve()) for p in paths]
        doomed = [r.doc_id for r in self.store.documents().values() if _under(r.source, roots)]
        self.store.delete_documents(doomed)
        return IngestReport(documents_deleted=len(doomed), seconds=time.perf_counter() - started)

    def ingest_documents(
        self,
        docs: Iterable[Document],
        *,
        progress: bool = True,
        report: IngestReport | None = None,
    ) -> IngestReport:
        """Ingest already-loaded Documents (the path-free entry point benchmarks and tests use)."""
        run = _Run(self, report if report is not None else IngestReport(), progress)
        return run.execute(docs)


class _Run:
    """The state of one ingestion: the ledger, the threads and the queues between them."""

    def __init__(self, owner: Ingestor, report: IngestReport, progress: bool) -> None:
        self.started = time.perf_counter()  # the manifest read below is part of the cost
        self.owner = owner
        self.store = owner.store
        self.report = report
        self.progress = IngestProgress(progress)
        self.stop = threading.Event()
        self.chunk_queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self.write_queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.ledger = Ledger(self.store, report)
        self.writer_failure: BaseException | None = None

    # -- orchestration ------------------------------------------------------------------------

    def execute(self, docs: Iterable[Document]) -> IngestReport:
        producer = threading.Thread(target=self._produce, args=(docs,), daemon=True)
        writer = threading.Thread(target=self._write, daemon=True)
        failure: BaseException | None = None
        with self.progress:
            producer.start()
            writer.start()
            try:
                self._embed()
            except KeyboardInterrupt:
                self.report.interrupted = True
            except BaseException as exc:  # surfaced after the threads are stopped
                failure = exc
            finally:
                self.stop.set()
                self.write_queue.put(_DONE)  # the writer drains everything before it
                writer.join()
                producer.join()
        if failure is None and self.writer_failure is not None:
            failure = self.writer_failure
        if failure is not None:
            raise failure
        self.ledger.remove_replaced()
        self.report.seconds = time.perf_counter() - self.started
        return self.report

    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        """Blocking put that gives up once the run is stopping."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self.stop.is_set():
                    return False

    # -- producer: load and chunk -------------------------------------------------------------

    def _produce(self, docs: Iterable[Document]) -> None:
        try:
            for group in self._new_documents(docs):
                if self.stop.is_set():
                    break
                parts = document_parts(
                    self.owner.chunker, group, self._stored_spans, self.owner.piece_chars
                )
                for part in parts:
                    self.report.chunks_reused += part.reused
                    if not self._put(self.chunk_queue, part):
                        return
            self._put(self.chunk_queue, _DONE)
        except BaseException as exc:
            self._put(self.chunk_queue, _Failure(exc))

    def _stored_spans(self, doc: Document) -> dict[str, tuple[int, int]]:
        """Chunks an interrupted run already stored for this document (none unless the
        manifest holds it as incomplete)."""
        record = self.ledger.known.get(doc.id)
        if record is None or record.complete:
            return {}
        return self.store.chunk_spans(doc.id)

    def _new_documents(self, docs: Iterable[Document]) -> Iterator[list[Document]]:
        """Groups of documents that need writing; unchanged ones are counted and dropped here."""
        group: list[Document] = []
        chars = 0
        current_source: str | None = None
        finished_sources = self.ledger.finished_sources
        for doc in docs:
            if self.stop.is_set():
                return
            source = doc.source
            if source != current_source:
                if current_source is not None:
                    finished_sources.add(current_source)
                current_source = source
            verdict = self.ledger.admit(doc.id, source)
            if verdict == "unchanged":
                self.progress.advance(docs=1)
            if verdict != "write":
                continue
            group.append(doc)
            chars += len(doc.text)
            if len(group) >= self.owner.doc_batch_size or chars >= self.owner.piece_chars:
                yield group
                group, chars = [], 0
        if current_source is not None:
            finished_sources.add(current_source)
        if group:
            yield group

    # -- embedder: the calling thread ---------------------------------------------------------

    def _embed(self) -> None:
        for batch in self._batches():
            if batch.chunks:
                batch.vectors = self.owner.embedder.embed_documents([c.text for c in batch.chunks])
            if not self._put(self.write_queue, batch):
                return
            if self.writer_failure is not None:
                return

    def _batches(self) -> Iterator[_Batch]:
        """Cut the chunk stream into model-sized batches, tracking where documents end."""
        size = self.owner.batch_size
        batch = _Batch()
        while True:
            item = self.chunk_queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Failure):
                raise item.exc
            part: Part = item
            if part.first:
                batch.started.append(part.doc)
            for chunk in part.chunks:
                batch.chunks.append(chunk)
                if len(batch.chunks) >= size:
                    yield batch
                    batch = _Batch()
            if part.last:
                batch.finished.append((part.doc, part.total))
            if self.stop.is_set():
                return
        if batch.chunks or batch.finished:
            yield batch

    # -- writer -------------------------------------------------------------------------------

    def _write(self) -> None:
        while True:
            batch = self.write_queue.get()
            if batch is _DONE:
                return
            if self.writer_failure is not None:
                continue
            try:
                self._write_batch(batch)
            except BaseException as exc:
                self.writer_failure = exc
                self.stop.set()

    def _write_batch(self, batch: _Batch) -> None:
        write_batch(
            self.store,
            batch.chunks,
            batch.vectors,
            started=(document_record(doc, 0, complete=False) for doc in batch.started),
            finished=(document_record(doc, n, complete=True) for doc, n in batch.finished),
        )
        self.ledger.wrote(len(batch.chunks), ((doc.id, doc.source) for doc, _ in batch.finished))
        self.progress.advance(docs=len(batch.finished), chunks=len(batch.chunks))
