"""Evaluation spread over a Ray cluster, into the same run folder a local run writes.

A pool of actors each builds the pipeline once and evaluates whole batches of items with the
local engine's `evaluate_batch`; the driver appends each batch's records to items.jsonl as it
arrives, so an interrupted run resumes from what was written, whichever engine ran it. The
suite's index is built through the Ray ingestion path, from documents the driver loads, so an
index that is already up to date costs no workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ragkit import build
from ragkit.distributed.cluster import (
    check_capacity,
    check_workers,
    connect,
    default_workers,
    failure_reason,
    import_ray,
)
from ragkit.errors import RagkitError
from ragkit.eval.runner import EvalOptions, EvalRunner, evaluate_batch
from ragkit.eval.tasks import EvalItem
from ragkit.process import configure_process
from ragkit.spec import PipelineSpec

WORKER_RETRIES = 3  # restarts of a dead worker, and retries of the batch it held


class EvalWorker:
    """One pool member: the pipeline (and its models) built once, then batch after batch."""

    def __init__(self, spec: PipelineSpec, options: EvalOptions) -> None:
        configure_process()  # a worker process is an entry point: settings as `ragkit eval`
        self.spec = spec
        self.options = options
        self.rag = build.pipeline(spec)

    def evaluate(self, batch: list[EvalItem]) -> list[dict[str, Any]]:
        return evaluate_batch(self.spec, self.rag, batch, self.options)


class RayEvalRunner(EvalRunner):
    """An `EvalRunner` whose batches run on Ray workers; folder, cache and report are shared."""

    def __init__(
        self, *args: Any, address: str | None = None, workers: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if workers is not None:
            check_workers(workers)
        self.address = address
        self.workers = workers

    def ensure_index(self, spec: PipelineSpec, progress: bool) -> None:
        from ragkit.distributed.ray_ingest import RayIngestor
        from ragkit.index.loaders import load_documents

        ingestor = RayIngestor(spec, address=self.address, workers=self.workers)
        if self.documents is not None:
            ingestor.ingest_documents(self.documents(), progress=progress)
        elif self.suite.corpus is not None:
            ingestor.ingest_documents(load_documents([self.suite.corpus]), progress=progress)

    def evaluate_pending(
        self, spec: PipelineSpec, pending: Sequence[EvalItem]
    ) -> Iterator[list[dict[str, Any]]]:
        ray = import_ray()
        from ray.util import ActorPool

        connect(self.address)
        batches = self.batches(pending)
        size = min(self.workers or default_workers(), len(batches))
        check_capacity(size, self.address)
        remote = ray.remote(
            num_cpus=1, max_restarts=WORKER_RETRIES, max_task_retries=WORKER_RETRIES
        )(EvalWorker)
        actors = [remote.remote(spec, self.options) for _ in range(size)]
        try:
            pool = ActorPool(actors)
            yield from pool.map_unordered(lambda a, batch: a.evaluate.remote(batch), batches)
        except ray.exceptions.RayError as exc:
            raise RagkitError(f"Ray evaluation failed: {failure_reason(exc)}") from exc
        finally:
            for actor in actors:  # free their CPUs for the next pipeline's workers
                ray.kill(actor)
