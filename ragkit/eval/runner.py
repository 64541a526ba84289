"""Runs pipelines over an evaluation suite and writes a run folder: per-item JSONL (the cache
that lets an interrupted run resume), a summary JSON, a Markdown report and comparison plots."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit import build
from ragkit.errors import ConfigError
from ragkit.eval import reporting, tasks
from ragkit.eval.datasets import Suite
from ragkit.eval.html_report import html_report
from ragkit.eval.judge import DEFAULT_CACHE
from ragkit.eval.scoring import batch_scores, record_notes
from ragkit.eval.tasks import EvalItem
from ragkit.protocols import Pipeline
from ragkit.report import answer_record
from ragkit.runlog import read_records
from ragkit.spec import PipelineSpec, load_spec


@dataclass(frozen=True)
class EvalResult:
    run_dir: Path
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    report: str
    plots: list[Path]
    computed: int  # items run in this call; the rest came from the run folder's cache


@dataclass(frozen=True)
class EvalOptions:
    """`judge_url`/`judge_model` name an OpenAI-compatible server that writes and answers
    RAGQuestEval's questions and judges ragas' LLM metrics; without one the packaged model
    judges QuestEval. `judge_cache` keeps the judge's replies across runs (None: no cache)."""

    batch_size: int = 4
    use_ragas: bool = True
    judge_url: str | None = None
    judge_model: str | None = None
    judge_cache: Path | None = DEFAULT_CACHE
    questeval: bool = True
    similarity: bool = True


def default_run_dir(
    suite: Suite,
    pipelines: Sequence[str],
    limit: int | None,
    root: Path,
    tasks: Sequence[str] | None = None,
) -> Path:
    """The same suite, pipelines, limit and tasks give the same folder, so re-running resumes."""
    chosen: list[Any] = [suite.name, list(pipelines), limit]
    if tasks:  # left out when absent, so runs made before tasks could be chosen keep their folder
        chosen.append(sorted(set(tasks)))
    key = json.dumps(chosen)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return root / f"{suite.name}-{'-'.join(Path(p).stem for p in pipelines)}-{digest}"


def limit_items(items: Iterable[EvalItem], limit: int | None) -> list[EvalItem]:
    """At most `limit` items of each task kind, in file order."""
    if limit is None:
        return list(items)
    counts: dict[str, int] = {}
    out = []
    for item in items:
        if counts.get(item.task, 0) < limit:
            counts[item.task] = counts.get(item.task, 0) + 1
            out.append(item)
    return out


def task_items(items: Sequence[EvalItem], wanted: Sequence[str] | None) -> list[EvalItem]:
    """The items of the wanted task kinds; a kind the suite lacks is a config error, not an empty
    run that reads as a clean one."""
    if not wanted:
        return list(items)
    present = sorted({item.task for item in items})
    missing = sorted(set(wanted) - set(present))
    if missing:
        named, kinds = ", ".join(missing), ", ".join(present)
        raise ConfigError(f"task {named} not in this suite; it has {kinds}")
    return [item for item in items if item.task in wanted]


def pipeline_input(item: EvalItem) -> dict[str, Any]:
    return {
        "question": tasks.query(item),
        "instruction": tasks.instruction(item),
        "cue": tasks.cue(item),
    }


def evaluate_batch(
    spec: PipelineSpec, rag: Pipeline, batch: list[EvalItem], options: EvalOptions
) -> list[dict[str, Any]]:
    """Answer and score one batch of items: the unit of work of every evaluation engine."""
    began = time.perf_counter()
    answers = rag.batch([pipeline_input(i) for i in batch])
    latency = (time.perf_counter() - began) / len(batch)
    scores = batch_scores(
        batch,
        answers,
        embedder=build.embedder(spec) if options.similarity else None,
        use_ragas=options.use_ragas,
        judge_url=options.judge_url,
        judge_model=options.judge_model,
    )
    return [
        {
            **answer_record(answer),
            "pipeline": spec.name,
            "item_id": item.id,
            "task": item.task,
            "query": tasks.query(item),
            "reference": item.reference,
            "gold_sources": list(item.gold_sources),
            "latency_s": latency,
            "scores": score,
        }
        for item, answer, score in zip(batch, answers, scores, strict=True)
    ]


class EvalRunner:
    """Evaluates named pipelines on one suite; the index of the suite's corpus is built (or
    found up to date) once per embedder/chunker setting."""

    def __init__(
        self,
        suite: Suite,
        pipelines: Sequence[str | PipelineSpec],
        run_dir: Path,
        *,
        store_location: str | None = None,
        options: EvalOptions | None = None,
        documents: Callable[[], Iterable[Any]] | None = None,
    ) -> None:
        if not pipelines:
            raise ValueError("give at least one pipeline")
        self.suite = suite
        self.specs = [p if isinstance(p, PipelineSpec) else load_spec(p) for p in pipelines]
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline names repeat: {names}")
        self.run_dir = run_dir
        self.store_location = store_location or str(Path(".ragkit") / "eval" / suite.name)
        self.options = options or EvalOptions()
        self.documents = documents

    def index_spec(self, spec: PipelineSpec) -> PipelineSpec:
        """Point a pipeline at the suite's index; one collection per embedding and chunking."""
        key = json.dumps([spec.embedder.model, spec.chunker.model_dump()], sort_keys=True)
        collection = f"{self.suite.name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        return spec.with_store(self.store_location, collection)

    def ensure_index(self, spec: PipelineSpec, progress: bool) -> None:
        ingestor = build.ingestor(spec)
        if self.documents is not None:
            ingestor.ingest_documents(self.documents(), progress=progress)
        elif self.suite.corpus is not None:
            ingestor.ingest([str(self.suite.corpus)], progress=progress)

    def run(self, items: Sequence[EvalItem], *, progress: bool = True) -> EvalResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cache_path = self.run_dir / "items.jsonl"
        records = read_records(cache_path, required=("pipeline", "item_id"))
        done = {(r["pipeline"], r["item_id"]) for r in records}
        todo = [(s, i) for s in self.specs for i in items if (s.name, i.id) not in done]
        computed = 0
        with (
            _progress(progress, len(todo), len(done)) as advance,
            cache_path.open("a", encoding="utf-8") as out,
        ):
            for spec in self.specs:
                pending = [i for i in items if (spec.name, i.id) not in done]
                if not pending:
                    continue
                spec = self.index_spec(spec)
                self.ensure_index(spec, progress)
                for batch_records in self.evaluate_pending(spec, pending):
                    for record in batch_records:
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        records.append(record)
                    out.flush()
                    computed += len(batch_records)
                    advance(len(batch_records))
        quest: list[dict[str, Any]] = []
        if self.options.questeval:
            quest = self.questeval(records, items)
        return self.write_report(records, computed, quest)

    def questeval(
        self, records: list[dict[str, Any]], items: Sequence[EvalItem]
    ) -> list[dict[str, Any]]:
        """RAGQuestEval of every answer not yet scored by this judge, after all generation, so
        the judge's model and the pipelines' never compete for memory at once."""
        from ragkit.eval.judge import make_judge
        from ragkit.eval.quest_pass import run_questeval

        self.judge = make_judge(
            self.options.judge_url, self.options.judge_model, cache_path=self.options.judge_cache
        )
        names = {s.name for s in self.specs}
        wanted = {i.id: i for i in items}
        mine = [r for r in records if r["pipeline"] in names and r["item_id"] in wanted]
        return run_questeval(mine, wanted, self.judge, self.run_dir)

    def batches(self, items: Sequence[EvalItem]) -> list[list[EvalItem]]:
        size = self.options.batch_size
        return [list(items[start : start + size]) for start in range(0, len(items), size)]

    def evaluate_pending(
        self, spec: PipelineSpec, pending: Sequence[EvalItem]
    ) -> Iterator[list[dict[str, Any]]]:
        """Records of the pending items, one batch at a time as each finishes; the Ray engine
        overrides this to spread the batches over workers."""
        rag = build.pipeline(spec)
        for batch in self.batches(pending):
            yield evaluate_batch(spec, rag, batch, self.options)

    def write_report(
        self,
        records: list[dict[str, Any]],
        computed: int,
        quest: Sequence[dict[str, Any]] = (),
    ) -> EvalResult:
        from ragkit.eval.quest_pass import merge

        names = {s.name for s in self.specs}
        mine = [{**r, "notes": record_notes(r)} for r in records if r["pipeline"] in names]
        notes = [
            f"suite: {self.suite.name} ({len({r['item_id'] for r in mine})} items)",
            "latency is per item, averaged over each batch",
        ]
        if self.options.similarity:
            models = sorted({s.embedder.model for s in self.specs})
            notes.append(f"embedding similarity by {', '.join(models)}")
        judge = getattr(self, "judge", None)
        if judge is not None:
            from ragkit.eval.quest_pass import questeval_for

            mine = merge(mine, quest, judge.name, questeval_for(judge).setup())
            wrote = (
                "wrote and answered the questions"
                if judge.writes_questions
                else (
                    "answered them; questions without shipped ones are cloze questions on the "
                    "reference's key facts"
                )
            )
            notes.append(
                f"RAGQuestEval judge: {judge.name} ({wrote}; {judge.calls} new calls, the "
                "rest from its cache)"
            )
        summary = reporting.summarize(mine)
        reporting.write_summary(summary, self.run_dir / "summary.json")
        item_notes = [(r["pipeline"], r["item_id"], n) for r in mine for n in r.get("notes", ())]
        title = f"ragkit eval: {self.suite.name}"
        report = reporting.markdown_report(summary, title=title, notes=notes, item_notes=item_notes)
        (self.run_dir / "report.md").write_text(report, encoding="utf-8")
        plots = reporting.plot_comparison(summary, self.run_dir)
        page = html_report(
            summary, mine, title=title, notes=notes, item_notes=item_notes, plots=plots
        )
        (self.run_dir / "report.html").write_text(page, encoding="utf-8")
        return EvalResult(self.run_dir, mine, summary, report, plots, computed)


# Modules the scoring imports lazily, by the extra that installs them.
EVAL_MODULES = ("sacrebleu", "rouge_score", "matplotlib")
RAGAS_MODULES = ("ragas", "rapidfuzz")


def require_eval_extra(use_ragas: bool) -> None:
    """Fail before any model loads or item runs, rather than on the first item's scoring."""
    wanted = [*EVAL_MODULES, *RAGAS_MODULES] if use_ragas else list(EVAL_MODULES)
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"evaluation needs the eval extra (missing: {', '.join(missing)}): "
            "pip install 'ragkit[eval]'"
        )


def evaluate(
    suite: str = "bundled",
    pipelines: Sequence[str | PipelineSpec] = ("naive",),
    *,
    limit: int | None = None,
    tasks: Sequence[str] | None = None,
    runs: Path = Path("runs"),
    run_dir: Path | None = None,
    store_location: str | None = None,
    options: EvalOptions | None = None,
    data: Path | None = None,
    articles: int = 3000,
    progress: bool = False,
    runner: Callable[..., EvalRunner] | None = None,
) -> EvalResult:
    """Evaluate pipelines on a suite by name or path; what `ragkit eval` runs. `tasks` keeps
    some task kinds only (`["read"]`); `runner` makes the runner (an `EvalRunner` by default;
    the Ray engine passes its own)."""
    from ragkit.eval.suites import open_suite

    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be > 0, got {limit}")
    require_eval_extra((options or EvalOptions()).use_ragas)
    chosen, documents = open_suite(suite, data=data, articles=articles)
    if not chosen.items:  # an empty report would read as a run that found nothing wrong
        where = f" ({chosen.path})" if chosen.path is not None else ""
        raise ConfigError(f"suite {chosen.name!r}{where}: no items to evaluate")
    names = [p.name if isinstance(p, PipelineSpec) else str(p) for p in pipelines]
    items = task_items(chosen.items, tasks)
    folder = run_dir or default_run_dir(chosen, names, limit, runs, tasks)
    make_runner = runner or EvalRunner
    chosen_runner = make_runner(
        chosen,
        pipelines,
        folder,
        store_location=store_location,
        options=options,
        documents=documents,
    )
    return chosen_runner.run(limit_items(items, limit), progress=progress)


class _progress:
    """A rich progress bar with an ETA, or nothing when output is not a terminal."""

    def __init__(self, enabled: bool, total: int, already: int) -> None:
        self.enabled, self.total, self.already = enabled, total, already

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        self.bar.start()
        label = f"evaluating ({self.already} cached)" if self.already else "evaluating"
        task = self.bar.add_task(label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
