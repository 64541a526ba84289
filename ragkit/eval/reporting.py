"""Turns per-item evaluation records into a summary, a Markdown report and comparison plots.

The Markdown report is what `ragkit eval` prints, so it is kept readable in a terminal: per task
one table of at most `MAX_TABLE_METRICS` scores, CRUD-RAG's paper columns first, then one table
of latency and token counts. Every other score is in `summary.json` and `report.html`.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

MAX_TABLE_METRICS = 8
# The CRUD-RAG paper's columns, then retrieval, then answer checks: the first that a task has,
# up to MAX_TABLE_METRICS, make its terminal table.
HEADLINE = (
    "crud_bleu",
    "crud_rouge_l",
    "embedding_similarity",
    "crud_quest_f1",
    "crud_quest_recall",
    "recall@5",
    "answer_recall@5",
    "mrr@10",
    "contains_reference",
    "token_f1",
)
LABELS = {
    "crud_bleu": "BLEU",
    "crud_rouge_l": "ROUGE-L",
    "embedding_similarity": "emb. sim.",
    "crud_quest_f1": "QuestEval F1",
    "crud_quest_recall": "QuestEval recall",
    "answer_recall@5": "answer R@5",
    "contains_reference": "contains ref.",
    "token_f1": "token F1",
}
COSTS = ("latency_s", "prompt_tokens", "cached_prompt_tokens", "completion_tokens")
_COST_LABELS = ("latency s", "prompt tok", "reused tok", "output tok")
_PLOTTED = (
    "crud_bleu",
    "crud_rouge_l",
    "embedding_similarity",
    "crud_quest_f1",
    "crud_quest_recall",
    "recall@5",
    "answer_recall@5",
    "contains_reference",
)
NOTES_SHOWN = 10


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean of every score per pipeline and task (NaN values left out), with counts and costs."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["pipeline"], record["task"])].append(record)
    summary: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (pipeline, task), rows in sorted(groups.items()):
        values: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            for name, value in row.get("scores", {}).items():
                if isinstance(value, int | float) and not math.isnan(value):
                    values[name].append(float(value))
        stats = {name: sum(v) / len(v) for name, v in values.items() if v}
        stats["n"] = float(len(rows))
        stats["latency_s"] = _mean(r.get("latency_s", 0.0) for r in rows)
        for key in COSTS[1:]:
            stats[key] = _mean(r.get("usage", {}).get(key, 0) for r in rows)
        summary[pipeline][task] = stats
    return dict(summary)


def metric_counts(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], int]:
    """How many items each (pipeline, task, metric) mean is over: NaN and absent scores are not."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for record in records:
        for name, value in record.get("scores", {}).items():
            if isinstance(value, int | float) and not math.isnan(value):
                counts[(record["pipeline"], record["task"], name)] += 1
    return dict(counts)


def all_metrics(summary: Mapping[str, Mapping[str, Mapping[str, float]]], task: str) -> list[str]:
    """Every score a task has: the headline ones in their order, then the rest by name."""
    names = {m for tasks in summary.values() for m in tasks.get(task, {})}
    names -= {"n", *COSTS}
    return [m for m in HEADLINE if m in names] + sorted(names - set(HEADLINE))


def metric_columns(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]], task: str
) -> list[str]:
    """The scores a task's terminal table shows: the headline ones it has (any, for a suite
    with none of them), at most `MAX_TABLE_METRICS`."""
    names = all_metrics(summary, task)
    headline = [m for m in names if m in HEADLINE]
    return (headline or names)[:MAX_TABLE_METRICS]


def label(metric: str) -> str:
    return LABELS.get(metric, metric)


def markdown_report(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    title: str = "Evaluation",
    notes: Sequence[str] = (),
    item_notes: Sequence[tuple[str, str, str]] = (),
) -> str:
    """Per task a table of its headline scores, then latency and tokens per pipeline and task,
    then the first item notes (`(pipeline, item id, note)`); the rest are in report.html."""
    tasks = sorted({t for tasks in summary.values() for t in tasks})
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    hidden = 0
    for task in tasks:
        columns = metric_columns(summary, task)
        hidden = max(hidden, len(all_metrics(summary, task)) - len(columns))
        lines += [f"## {task}", ""]
        lines += _table(
            ["pipeline", "n", *(label(c) for c in columns)],
            [
                [pipeline, f"{int(stats['n'])}", *(_fmt(stats.get(c)) for c in columns)]
                for pipeline, stats in _rows(summary, task)
            ],
        )
        lines.append("")
    if tasks:
        lines += ["## latency and tokens (means per item)", ""]
        lines += _table(
            ["pipeline", "task", *_COST_LABELS],
            [
                [
                    pipeline,
                    task,
                    f"{stats['latency_s']:.2f}",
                    *(f"{stats.get(k, 0.0):.0f}" for k in COSTS[1:]),
                ]
                for task in tasks
                for pipeline, stats in _rows(summary, task)
            ],
        )
        lines.append("")
    if any(label(c) != c for task in tasks for c in metric_columns(summary, task)):
        lines.append(
            "BLEU, ROUGE-L and QuestEval are CRUD-RAG's definitions (`crud_*` in summary.json)."
        )
    if hidden:
        lines.append(
            f"Up to {hidden} more scores per task (ragkit's variants, ragas, n-gram precisions) "
            "are in summary.json and report.html."
        )
    if item_notes:
        lines += ["", f"## notes on {len(item_notes)} items", ""]
        lines += [f"- {p} / {i}: {n}" for p, i, n in item_notes[:NOTES_SHOWN]]
        if len(item_notes) > NOTES_SHOWN:
            lines.append(f"- … {len(item_notes) - NOTES_SHOWN} more in report.html")
    return "\n".join(lines).rstrip() + "\n"


def plot_comparison(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]], out_dir: Path
) -> list[Path]:
    """One PNG per task: grouped bars of the headline metrics, a bar group per pipeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    pipelines = sorted(summary)
    for task in sorted({t for tasks in summary.values() for t in tasks}):
        metrics = [m for m in metric_columns(summary, task) if m in _PLOTTED]
        if not metrics:
            continue
        fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(metrics) * max(1, len(pipelines)) / 2, 3.6))
        width = 0.8 / max(1, len(pipelines))
        for i, pipeline in enumerate(pipelines):
            stats = summary[pipeline].get(task, {})
            xs = [j + i * width for j in range(len(metrics))]
            ax.bar(xs, [stats.get(m, 0.0) for m in metrics], width, label=pipeline)
        ax.set_xticks(
            [j + width * (len(pipelines) - 1) / 2 for j in range(len(metrics))],
            [label(m) for m in metrics],
            fontsize="small",
        )
        ax.set_ylim(0, 1)
        ax.set_title(f"{task}: pipelines compared")
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = out_dir / f"{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_summary(summary: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")


def _rows(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]], task: str
) -> list[tuple[str, Mapping[str, float]]]:
    return [(p, summary[p][task]) for p in sorted(summary) if task in summary[p]]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _mean(values: Iterable[float]) -> float:
    items = [float(v) for v in values]
    return sum(items) / len(items) if items else 0.0
