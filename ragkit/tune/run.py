"""`ragkit tune`: search a space of pipeline settings on a suite and report the winner by its
score on questions it was not chosen on."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.errors import ConfigError
from ragkit.spec import load_spec
from ragkit.tune import plan, report
from ragkit.tune.retrieval import RETRIEVAL_METRICS
from ragkit.tune.space import Variant, check, load_space, spec_digest
from ragkit.tune.split import split_items
from ragkit.tune.sweep import Sweep, TuneOptions, WorkDone

# Generation scores `--metric` may name; they need answers, so only the shortlist has them.
ANSWER_METRICS = (
    "contains_reference",
    "token_f1",
    "crud_bleu",
    "crud_rouge_l",
    "smoothed_bleu4",
    "word_rouge_l",
)


@dataclass(frozen=True)
class TuneResult:
    run_dir: Path
    rows: list[report.Row]
    winner: report.Row
    report: str
    winner_path: Path
    plot_path: Path
    work: WorkDone
    seconds: float


def default_run_dir(suite: str, space: Path, base: str, options: TuneOptions, root: Path) -> Path:
    """The same inputs give the same folder, so running the command again resumes."""
    key = json.dumps(
        [
            suite,
            space.read_text(encoding="utf-8"),
            base,
            options.metric,
            options.holdout,
            options.seed,
            options.budget,
            options.shortlist,
        ]
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return root / f"tune-{Path(suite).stem if '/' in suite else suite}-{digest}"


def tune(
    suite: str,
    space_path: Path,
    *,
    pipeline: str | None = None,
    options: TuneOptions | None = None,
    compare: Sequence[str] = (),
    runs: Path = Path("runs"),
    run_dir: Path | None = None,
    store_location: str | None = None,
    data: Path | None = None,
    articles: int = 3000,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
) -> TuneResult:
    """Run the sweep, then write leaderboard.md/.json, pareto.png and winner.yaml.

    Before any work the space is checked whole (see `space.check`) and `say` is told its size,
    the invalid combinations skipped and the work ahead; a space over the default budget
    stops here unless `options` has a budget or `yes`.
    """
    from ragkit.eval.suites import open_suite

    options = options or TuneOptions()
    say = say or (lambda line: None)
    started = time.perf_counter()
    space = load_space(space_path)
    base_name = pipeline or space.base or "naive"
    base = load_spec(base_name)
    if options.budget is not None and options.budget < 1:
        raise ValueError(f"--budget must be >= 1, got {options.budget}")
    if options.metric not in (*RETRIEVAL_METRICS, *ANSWER_METRICS):
        known = ", ".join((*RETRIEVAL_METRICS, *ANSWER_METRICS))
        raise ConfigError(f"--metric {options.metric}: unknown (one of: {known})")
    if space.size > plan.DEFAULT_BUDGET:  # checking takes a while: say what is being checked
        say(
            f"{space_path}: {space.size:,} combinations of {len(space.axes)} keys over base "
            f"`{base_name}`; checking each"
        )
    checked = check(space, base)
    for line in plan.invalid_lines(checked):
        say(line)
    plan.gate(checked, options.budget, options.yes)
    chosen = checked.draw(options.budget, options.seed)
    cut = len(chosen) < checked.size
    chosen += _references(compare, {v.id for v in chosen})
    opened, documents = open_suite(suite, data=data, articles=articles)
    wanted = options.shortlist or (0 if options.metric in RETRIEVAL_METRICS else 3)
    reads = sum(1 for i in opened.items if i.task == "read")
    drawn = f" (drawn from {checked.size:,} by --budget)" if cut else ""
    say(plan.estimate(chosen, reads, wanted).line() + drawn)
    folder = run_dir or default_run_dir(suite, Path(space_path), base_name, options, runs)
    folder.mkdir(parents=True, exist_ok=True)
    listed = plan.write_invalid(checked, folder)
    if listed is not None and len(checked.invalid) > plan.SHOWN_INVALID:
        say(f"all invalid combinations: {listed}")
    sweep = Sweep(
        opened,
        chosen,
        folder,
        options=options,
        store_location=store_location,
        documents=documents,
    )
    tuning, held = split_items(sweep.items, options.holdout, options.seed)
    (folder / "split.json").write_text(
        json.dumps(
            {
                "seed": options.seed,
                "tuning": [i.id for i in tuning],
                "held_back": [i.id for i in held],
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    found = sweep.run_retrieval(progress)
    rank_by = _retrieval_metric(options.metric, found, [i.id for i in tuning])
    rows = _rows(chosen, found, {}, tuning, held, compare_ids=_ids(chosen, compare))
    answered: dict[str, dict[str, dict[str, Any]]] = {}
    if wanted:
        short = [r.variant for r in report.ranked(rows, rank_by)[:wanted]]
        answered = sweep.run_generation([v for v in chosen if v.id in short], progress)
        rows = _rows(chosen, found, answered, tuning, held, compare_ids=_ids(chosen, compare))
    if not any(r.score(options.metric) is not None for r in rows):
        have = sorted({m for r in rows for m in r.tuning})
        raise ConfigError(f"--metric {options.metric}: not scored on this suite (have: {have})")
    best = report.winner(rows, options.metric)
    base_row = next(r for r in rows if r.variant == chosen[0].id)
    seconds = time.perf_counter() - started
    title = f"ragkit tune: {opened.name}"
    work = sweep.work
    notes = [
        f"suite {opened.name}: {len(sweep.items)} questions, {len(tuning)} for tuning, "
        f"{len(held)} held back (seed {options.seed})",
        f"space {space_path}: {len(chosen)} variants from base `{base_name}`"
        + (f" ({len(checked.invalid)} invalid combinations skipped)" if checked.invalid else "")
        + "; "
        f"{work.indexes} indexes built, {work.searches} searches, {work.answers} answers "
        f"generated this run ({work.cached_variants} variants from the run folder)",
        f"ranked by {options.metric} on the tuning part"
        + (f"; shortlist for answers by {rank_by}" if wanted else ""),
        "latency: seconds per question, search shared by variants that differ only in top_k"
        + ("; answered variants add generation" if wanted else ""),
        f"wall time {seconds:.1f} s",
    ]
    columns = [m for m in (*RETRIEVAL_METRICS, *ANSWER_METRICS) if any(m in r.tuning for r in rows)]
    text = report.markdown(
        rows, options.metric, title=title, base=base_row, notes=notes, columns=columns
    )
    (folder / "leaderboard.md").write_text(text, encoding="utf-8")
    report.write_json(
        rows,
        options.metric,
        folder / "leaderboard.json",
        {
            "suite": opened.name,
            "base": base_name,
            "seconds": seconds,
            "tuning_questions": len(tuning),
            "held_back_questions": len(held),
        },
    )
    plot_path = report.plot(
        _plotted(rows, options.metric), options.metric, folder / "pareto.png", title
    )
    spec = next(v.spec for v in chosen if v.id == best.variant)
    comment = (
        f"Tuned by `ragkit tune` on suite {opened.name} from `{base_name}`: {best.label}\n"
        f"held-back {options.metric} {best.score(options.metric, 'held')}"
    )
    winner_path = report.write_winner(spec, folder / "winner.yaml", comment)
    return TuneResult(folder, rows, best, text, winner_path, plot_path, work, seconds)


def _references(names: Sequence[str], seen: set[str]) -> list[Variant]:
    out = []
    for name in names:
        spec = load_spec(name)
        if spec_digest(spec) not in seen:
            seen.add(spec_digest(spec))
            out.append(Variant(f"pipeline:{spec.name}", (), spec))
    return out


def _ids(chosen: Sequence[Variant], compare: Sequence[str]) -> set[str]:
    return {v.id for v in chosen if v.label.startswith("pipeline:")} if compare else set()


def _retrieval_metric(metric: str, found: dict[str, dict[str, Any]], ids: list[str]) -> str:
    """The metric that ranks variants before generation: `metric` itself when retrieval
    scores it, else gold-document recall@5 when the suite has gold documents."""
    if metric in RETRIEVAL_METRICS:
        return metric
    if metric not in ANSWER_METRICS:
        known = ", ".join((*RETRIEVAL_METRICS, *ANSWER_METRICS))
        raise ConfigError(f"--metric {metric}: unknown (one of: {known})")
    sample = next(iter(found.values()))["scores"]
    has_gold = any("recall@5" in sample.get(i, {}) for i in ids)
    return "recall@5" if has_gold else "answer_recall@5"


def _rows(
    chosen: Sequence[Variant],
    found: dict[str, dict[str, Any]],
    answered: dict[str, dict[str, dict[str, Any]]],
    tuning: Sequence[Any],
    held: Sequence[Any],
    compare_ids: set[str],
) -> list[report.Row]:
    rows = []
    for v in chosen:
        record = found[v.id]
        per_item = {k: dict(s) for k, s in record["scores"].items()}
        latency = record["retrieval_latency_s"]
        answers = answered.get(v.id, {})
        if answers:
            for item_id, a in answers.items():
                scores = {m: a["scores"][m] for m in ANSWER_METRICS if m in a["scores"]}
                per_item.setdefault(item_id, {}).update(scores)
            latency += sum(a["latency_s"] for a in answers.values()) / len(answers)
        rows.append(
            report.Row(
                variant=v.id,
                label=v.label,
                tuning=report.mean_scores(per_item, [i.id for i in tuning]),
                held=report.mean_scores(per_item, [i.id for i in held]),
                latency_s=latency,
                answered=bool(answers),
                reference=v.id in compare_ids,
            )
        )
    return rows


def _plotted(rows: list[report.Row], metric: str) -> list[report.Row]:
    """Answer metrics only mean something for answered variants; plot just those then."""
    if metric in RETRIEVAL_METRICS:
        return rows
    return [r for r in rows if r.answered] or rows
