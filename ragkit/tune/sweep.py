"""Runs a search space over a suite with the work shared: one index per chunking, one search
per retrieval setting (variants that differ only in `top_k` cut the same ranking), and answers
generated only for the shortlist that retrieval scores pick. Finished variants are cached in the
run folder, so an interrupted sweep resumes where it stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragkit import build
from ragkit.errors import ConfigError
from ragkit.eval import tasks
from ragkit.eval.datasets import Suite
from ragkit.eval.runner import EvalRunner, pipeline_input
from ragkit.eval.scoring import item_scores
from ragkit.eval.tasks import EvalItem
from ragkit.protocols import Pipeline
from ragkit.runlog import append_record, read_records
from ragkit.tune import retrieval
from ragkit.tune.progress import Progress
from ragkit.tune.space import Variant
from ragkit.types import Query, Retrieved


@dataclass(frozen=True)
class TuneOptions:
    metric: str = "recall@5"
    holdout: float = 0.3
    seed: int = 0
    budget: int | None = None
    yes: bool = False  # run a space over the default budget whole
    shortlist: int = 0  # variants answered with the generator, best by retrieval first
    batch_size: int = 16


@dataclass
class WorkDone:
    """What this call computed, as opposed to read from the run folder."""

    indexes: int = 0
    searches: int = 0
    variants_scored: int = 0
    answers: int = 0
    cached_variants: int = 0


@dataclass
class SweepResult:
    records: dict[str, dict[str, Any]]  # variant id -> record (scores per item, latency)
    work: WorkDone = field(default_factory=WorkDone)


class Sweep:
    """The variants of one space on one suite's read questions."""

    def __init__(
        self,
        suite: Suite,
        variants: Sequence[Variant],
        run_dir: Path,
        *,
        options: TuneOptions,
        store_location: str | None = None,
        documents: Callable[[], Iterable[Any]] | None = None,
    ) -> None:
        self.suite = suite
        self.variants = list(variants)
        self.run_dir = run_dir
        self.options = options
        self.items = [i for i in suite.items if i.task == "read"]
        if not self.items:
            raise ConfigError(f"suite {suite.name!r}: no questions (read items) to tune on")
        self.documents = documents
        self.indexer = EvalRunner(
            suite,
            [self.variants[0].spec],
            run_dir,
            store_location=store_location,
            documents=documents,
        )
        self._chunks: dict[str, list[Any]] = {}
        self.work = WorkDone()

    # ---- retrieval -----------------------------------------------------------------------
    def run_retrieval(self, progress: bool = False) -> dict[str, dict[str, Any]]:
        path = self.run_dir / "retrieval.jsonl"
        done = {r["variant"]: r for r in read_records(path)}
        pending = [v for v in self.variants if v.id not in done]
        self.work.cached_variants = len(self.variants) - len(pending)
        groups: dict[str, dict[str, list[Variant]]] = {}
        for v in pending:
            by_search = groups.setdefault(retrieval.chunking_key(v.spec), {})
            by_search.setdefault(retrieval.retrieval_key(v.spec), []).append(v)
        searches = sum(len(g) for g in groups.values())
        with Progress(progress, "searching", searches * len(self.items), 0) as advance:
            for by_search in groups.values():
                members = [v for vs in by_search.values() for v in vs]
                source = self._index(members, progress)
                for same in by_search.values():
                    for record in self._search(same, source, advance):
                        append_record(path, record)
                        done[record["variant"]] = record
        return {v.id: done[v.id] for v in self.variants}

    def _index(self, members: list[Variant], progress: bool) -> list[Any] | None:
        """Index the variants' corpus once for their chunking: in the store when any of them
        searches vectors, else as in-memory chunks for BM25 (no embedding pass)."""
        spec = members[0].spec
        key = retrieval.chunking_key(spec)
        if any(retrieval.needs_embeddings(v.spec) for v in members):
            self.indexer.ensure_index(self.indexer.index_spec(spec), progress)
            self.work.indexes += 1
            return None
        if key not in self._chunks:
            self._chunks[key] = list(build.chunker(spec).split_documents(self._corpus()))
            self.work.indexes += 1
        return self._chunks[key]

    def _corpus(self) -> Iterable[Any]:
        if self.documents is not None:
            return self.documents()
        if self.suite.corpus is None:
            raise ConfigError(f"suite {self.suite.name!r} names no corpus folder to index")
        from ragkit.index.loaders import load_documents

        return load_documents([self.suite.corpus])

    def _search(
        self, same: list[Variant], chunks: list[Any] | None, advance: Callable[[int], None]
    ) -> Iterable[dict[str, Any]]:
        """One search at the largest `top_k` of variants that rank alike; each is scored on its
        own cut of that ranking."""
        depth = max(v.spec.retriever.top_k for v in same)
        spec = same[0].spec
        spec = spec.model_copy(
            update={"retriever": spec.retriever.model_copy(update={"top_k": depth})}
        )
        # An iterating pipeline's `retrieve` is its first round's search: ranked by that.
        rag = build.pipeline(self.indexer.index_spec(spec))
        if chunks is not None:
            rag = retrieval.in_memory(rag, chunks, spec)
        queries = [Query(tasks.query(i)) for i in self.items]
        rag.retrieve(queries[:1])  # builds a lazy index outside the timing
        ranked: list[list[Retrieved]] = []
        started = time.perf_counter()
        size = self.options.batch_size
        for start in range(0, len(queries), size):
            ranked.extend(rag.retrieve(queries[start : start + size]))
            advance(min(size, len(queries) - start))
        latency = (time.perf_counter() - started) / len(queries)
        self.work.searches += 1
        for v in same:
            k = v.spec.retriever.top_k
            scores = {
                item.id: retrieval.item_retrieval_scores(item, hits[:k])
                for item, hits in zip(self.items, ranked, strict=True)
            }
            self.work.variants_scored += 1
            yield {
                "variant": v.id,
                "label": v.label,
                "overrides": [[key, value] for key, value in v.overrides],
                "retrieval_latency_s": latency,
                "scores": scores,
            }

    # ---- generation ----------------------------------------------------------------------
    def run_generation(
        self, chosen: Sequence[Variant], progress: bool = False
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """Answers and answer scores per variant and item; resumable item by item."""
        path = self.run_dir / "answers.jsonl"
        done: dict[str, dict[str, dict[str, Any]]] = {}
        for r in read_records(path):
            done.setdefault(r["variant"], {})[r["item_id"]] = r
        todo = sum(1 for v in chosen for i in self.items if i.id not in done.get(v.id, {}))
        with Progress(progress, "answering", todo, 0) as advance:
            for v in chosen:
                pending = [i for i in self.items if i.id not in done.get(v.id, {})]
                if not pending:
                    continue
                spec = self.indexer.index_spec(v.spec)
                chunks = self._index([v], progress)
                rag = build.pipeline(spec)
                if chunks is not None:
                    rag = retrieval.in_memory(rag, chunks, spec)
                for batch in _batches(pending, 4):
                    for record in self._answer(v, rag, batch):
                        append_record(path, record)
                        done.setdefault(v.id, {})[record["item_id"]] = record
                        self.work.answers += 1
                    advance(len(batch))
        return {v.id: done.get(v.id, {}) for v in chosen}

    def _answer(self, v: Variant, rag: Pipeline, batch: list[EvalItem]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        answers = rag.batch([pipeline_input(i) for i in batch])
        latency = (time.perf_counter() - started) / len(batch)
        return [
            {
                "variant": v.id,
                "item_id": item.id,
                "answer": answer.text,
                "latency_s": latency,
                "scores": item_scores(item, answer),
            }
            for item, answer in zip(batch, answers, strict=True)
        ]


def _batches(items: list[EvalItem], size: int) -> list[list[EvalItem]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
