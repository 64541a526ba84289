"""Ingestion spread over a Ray cluster, writing exactly what the local engine writes.

Ray Data streams the work: `from_items` over files (or already loaded documents), a `flat_map`
that loads and chunks one item with the local loader and chunker, and a `map_batches` on a pool
of actors that each load the embedding model once. Ray fuses the `flat_map` into the actors, so
a block of documents is read, chunked and embedded in one worker process without a hand-off.

The driver writes what comes back through the local engine's `write_batch` and `Ledger`, so
chunk ids, metadata and manifest entries are the local ones, unchanged documents are skipped and
changed ones replaced. Rows may arrive in any order and, after a task Ray retried, twice: a
document is marked complete once every one of its chunks is written, and a chunk seen before is
dropped. A failed or killed worker therefore writes nothing twice, and a killed run, started
again, writes what is missing.

This module is the driver; what the workers run (loading, chunking, embedding, and the rows
they send back) is in `ragkit.distributed.ray_tasks`.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragkit import build
from ragkit.distributed.cluster import (
    START_TIMEOUT_ENV,
    check_capacity,
    check_workers,
    cluster_cpus,
    connect,
    default_workers,
    failure_reason,
    import_ray,
    start_timeout,
)
from ragkit.distributed.ray_tasks import (
    CHUNK,
    ISSUE,
    NOTE,
    UNCHANGED,
    EmbedChunks,
    load_and_chunk,
)
from ragkit.errors import ConfigError, RagkitError
from ragkit.index.ingest import IngestProgress
from ragkit.index.ledger import IngestReport, Ledger, write_batch
from ragkit.index.loaders import FORMATS, LoadIssue, load_documents
from ragkit.index.manifest import DocumentRecord
from ragkit.index.sources import stored_source
from ragkit.index.store import ChromaStore
from ragkit.spec import PipelineSpec
from ragkit.types import Chunk, Document


@dataclass
class RayIngestReport(IngestReport):
    """An ingestion report with the cluster's start-up cost kept apart from the work."""

    workers: int = 0
    connect_seconds: float = 0.0  # ray.init (0 when already connected)
    pool_seconds: float = 0.0  # job start until the pool's last worker had its model loaded
    model_load_seconds: float = 0.0  # the slowest worker's own model load and warm-up
    worker_pids: list[int] = field(default_factory=list)  # in order of first output

    @property
    def startup_seconds(self) -> float:
        return self.connect_seconds + self.pool_seconds

    @property
    def steady_seconds(self) -> float:
        """The run's time without connecting and starting the pool: what a warm cluster takes."""
        return max(0.0, self.seconds - self.startup_seconds)


@dataclass
class _InFlight:
    record: DocumentRecord
    got: set[int] = field(default_factory=set)


class _Collector:
    """Turns rows arriving in any order, maybe twice, into ordered-enough store writes."""

    def __init__(
        self,
        store: ChromaStore,
        ledger: Ledger,
        progress: IngestProgress,
        report: RayIngestReport,
        *,
        admitted: bool,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.progress = progress
        self.report = report
        self.admitted = admitted  # the driver admitted every document before sending it
        self.in_flight: dict[str, _InFlight] = {}
        self.done: set[str] = set()
        self.issues: set[tuple[str, str]] = set()
        self.ready: dict[int, float] = {}
        self.load_seconds = 0.0

    def take(self, batch: dict[str, np.ndarray]) -> None:
        chunks: list[Chunk] = []
        rows: list[int] = []
        started: list[DocumentRecord] = []
        finished: list[DocumentRecord] = []
        self._note_workers(batch)
        for i, kind in enumerate(batch["kind"]):
            if kind in (ISSUE, NOTE):
                self._issue(str(batch["source"][i]), str(batch["note"][i]), kind == ISSUE)
                continue
            doc_id = str(batch["doc_id"][i])
            if doc_id in self.done:
                continue  # a row again from a task Ray retried
            doc = self.in_flight.get(doc_id)
            if doc is None:
                doc = self._arrive(batch, i, kind)
                if doc is None:
                    continue
                started.append(dataclasses.replace(doc.record, chunks=0, complete=False))
            if kind == CHUNK:
                index = int(batch["chunk_index"][i])
                if index in doc.got:
                    continue
                doc.got.add(index)
                chunks.append(pickle.loads(batch["chunk"][i]))
                rows.append(i)
            if len(doc.got) >= doc.record.chunks:
                finished.append(doc.record)
                self.done.add(doc_id)
                del self.in_flight[doc_id]
        vectors = (
            np.stack([np.frombuffer(batch["vector"][i], dtype=np.float32) for i in rows])
            if rows
            else None
        )
        write_batch(self.store, chunks, vectors, started=started, finished=finished)
        self.ledger.wrote(len(chunks), ((r.doc_id, r.source) for r in finished))
        self.progress.advance(docs=len(finished), chunks=len(chunks))

    def _arrive(self, batch: dict[str, np.ndarray], i: int, kind: str) -> _InFlight | None:
        """A document's first row: admit it (unless the driver already did), then track it."""
        record = DocumentRecord(
            doc_id=str(batch["doc_id"][i]),
            source=str(batch["source"][i]),
            content_hash=str(batch["content_hash"][i]),
            chunks=int(batch["doc_chunks"][i]),
            complete=True,
        )
        verdict = "write" if self.admitted else self.ledger.admit(record.doc_id, record.source)
        if verdict != "write" or kind == UNCHANGED:
            self.done.add(record.doc_id)
            if verdict == "unchanged":
                self.progress.advance(docs=1)
            return None
        doc = _InFlight(record)
        self.in_flight[record.doc_id] = doc
        return doc

    def _issue(self, path: str, reason: str, skipped: bool) -> None:
        if (path, reason) not in self.issues:
            self.issues.add((path, reason))
            self.report.add_issue(LoadIssue(path, reason, skipped))

    def _note_workers(self, batch: dict[str, np.ndarray]) -> None:
        if "worker" not in batch or not len(batch["worker"]):
            return
        for pid, ready, load in zip(
            batch["worker"], batch["ready_at"], batch["load_seconds"], strict=True
        ):
            if ready and int(pid) not in self.ready:
                self.ready[int(pid)] = float(ready)
                self.report.worker_pids.append(int(pid))
                self.load_seconds = max(self.load_seconds, float(load))


class RayIngestor:
    """Keeps a store in step with files like `Ingestor`, with the work done by Ray workers.

    The workers build the chunker and embedder from `spec`, so they need ragkit installed and,
    for `ingest(paths)`, the files at the same paths (a shared folder on a real cluster). The
    store is written by this process only, so a local folder store works as well as a server.
    """

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        address: str | None = None,
        workers: int | None = None,
        doc_batch_size: int = 32,
        store: ChromaStore | None = None,
    ) -> None:
        if workers is not None:
            check_workers(workers)
        if doc_batch_size <= 0:
            raise ValueError(f"doc_batch_size must be > 0, but got {doc_batch_size}")
        self.spec = spec
        self.address = address
        self.requested_workers = workers
        self.doc_batch_size = doc_batch_size
        self.store = store if store is not None else build.store(spec)

    # -- public -------------------------------------------------------------------------------

    def ingest(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        progress: bool = True,
        delete: bool = False,
    ) -> IngestReport:
        """Ingest files and folders; the workers read them. `delete=True` removes them instead
        (no workers are needed for that)."""
        roots = [paths] if isinstance(paths, str | Path) else list(paths)
        if delete:
            from ragkit.index.ingest import Ingestor

            return Ingestor(self.store, embedder=None, chunker=None).delete(roots)
        load_documents(roots)  # checks every root now: a typo fails before the cluster starts
        files = _files(roots)
        report = RayIngestReport()
        run = _RayRun(self, report, progress)
        return run.execute([{"path": f, "document": b""} for f in files], admitted=False)

    def ingest_documents(
        self,
        docs: Iterable[Document],
        *,
        progress: bool = True,
        report: IngestReport | None = None,
    ) -> IngestReport:
        """Ingest already-loaded Documents: the driver skips unchanged ones before anything is
        sent, so an index that is up to date starts no workers at all. The returned report is
        a new `RayIngestReport` that starts with `report`'s issues."""
        out = RayIngestReport(
            issues=list(report.issues) if report else [], notes=list(report.notes) if report else []
        )
        run = _RayRun(self, out, progress)
        items = (
            {"path": "", "document": pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL)}
            for doc in run.admit(docs)
        )
        return run.execute(list(items), admitted=True)


def _files(roots: list[str | Path]) -> list[str]:
    """The files `load_documents` would read, in its order, each once."""
    from ragkit.index.loaders import _log_issue, _walk

    seen: set[Path] = set()
    out: list[str] = []
    for root in roots:
        for path in _walk(Path(root).expanduser(), _log_issue):
            resolved = path.resolve()
            if resolved not in seen and resolved.suffix.lower() in FORMATS:
                seen.add(resolved)
                out.append(stored_source(str(resolved)))  # Arrow takes valid UTF-8 only
    return out


class _RayRun:
    """One distributed ingestion: the ledger, the dataset and the collector of its output."""

    def __init__(self, owner: RayIngestor, report: RayIngestReport, progress: bool) -> None:
        self.started = time.perf_counter()
        self.owner = owner
        self.report = report
        self.progress = IngestProgress(progress)
        self.ledger = Ledger(owner.store, report)

    def admit(self, docs: Iterable[Document]) -> Iterator[Document]:
        """Documents that need writing, admitted through the ledger as the local engine does."""
        for doc in docs:
            verdict = self.ledger.admit(doc.id, doc.source)
            if verdict == "unchanged":
                self.progress.advance(docs=1)
            if verdict == "write":
                yield doc

    def execute(self, items: list[dict[str, Any]], *, admitted: bool) -> RayIngestReport:
        collector = _Collector(
            self.owner.store, self.ledger, self.progress, self.report, admitted=admitted
        )
        with self.progress:
            if items:
                try:
                    self._stream(items, collector)
                except KeyboardInterrupt:
                    self.report.interrupted = True
        if not self.report.interrupted:  # after Ctrl-C old versions stay for the next run
            if collector.in_flight:
                raise RagkitError(
                    f"{len(collector.in_flight)} documents came back incomplete from the Ray "
                    "workers; nothing was marked complete for them, run the ingestion again"
                )
            self.ledger.finished_sources.update(self.ledger.seen)
            self.ledger.remove_replaced()
        self.report.seconds = time.perf_counter() - self.started
        return self.report

    def _stream(self, items: list[dict[str, Any]], collector: _Collector) -> None:
        ray = import_ray()
        self.report.connect_seconds = connect(self.owner.address)
        workers = self.owner.requested_workers or default_workers()
        self.report.workers = workers
        check_capacity(workers, self.owner.address)
        spec = self.owner.spec
        # Blocks of doc_batch_size items, but at least two per worker so a small run spreads.
        per_batch = math.ceil(len(items) / self.owner.doc_batch_size)
        blocks = min(len(items), max(per_batch, 2 * workers))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        ds = ds.flat_map(
            load_and_chunk, fn_kwargs={"spec": spec, "skip": self.ledger.complete_ids()}
        )
        ds = ds.map_batches(
            EmbedChunks,
            fn_constructor_kwargs={"spec": spec},
            compute=ray.data.ActorPoolStrategy(size=workers),
            batch_size=None,  # a whole block: the flat_map above fuses into the actors
            batch_format="numpy",
        )
        ds.context.wait_for_min_actors_s = int(start_timeout())
        job_started = time.time()
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                collector.take(batch)
        except ray.exceptions.GetTimeoutError as exc:
            raise ConfigError(
                f"the Ray cluster did not start {workers} workers within {start_timeout():.0f}s "
                f"(it has {cluster_cpus()} CPUs; set --workers or {START_TIMEOUT_ENV})"
            ) from exc
        except ray.exceptions.RayError as exc:
            raise RagkitError(f"Ray ingestion failed: {failure_reason(exc)}") from exc
        ready = sorted(collector.ready.values())
        if ready:
            pool_ready = ready[min(workers, len(ready)) - 1]
            self.report.pool_seconds = max(0.0, pool_ready - job_started)
        self.report.model_load_seconds = collector.load_seconds
