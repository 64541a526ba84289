"""Turns per-item evaluation records into a summary, a Markdown report and comparison plots."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Columns shown first when present; any other score follows in name order.
_PREFERRED = (
    "recall@1",
    "recall@5",
    "mrr@10",
    "answer_recall@5",
    "contains_reference",
    "token_f1",
    "bleu4",
    "rouge_l",
    "embedding_similarity",
    "quest_recall",
    "quest_f1",
)
_PLOTTED = (
    "recall@5",
    "answer_recall@5",
    "contains_reference",
    "rouge_l",
    "embedding_similarity",
    "quest_f1",
)


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
        stats["prompt_tokens"] = _mean(r.get("usage", {}).get("prompt_tokens", 0) for r in rows)
        stats["cached_prompt_tokens"] = _mean(
            r.get("usage", {}).get("cached_prompt_tokens", 0) for r in rows
        )
        summary[pipeline][task] = stats
    return dict(summary)


def metric_columns(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]], task: str
) -> list[str]:
    names = {m for tasks in summary.values() for m in tasks.get(task, {})}
    names -= {"n", "latency_s", "prompt_tokens", "cached_prompt_tokens"}
    return [m for m in _PREFERRED if m in names] + sorted(names - set(_PREFERRED))


def markdown_report(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    title: str = "Evaluation",
    notes: Sequence[str] = (),
) -> str:
    tasks = sorted({t for tasks in summary.values() for t in tasks})
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    for task in tasks:
        columns = metric_columns(summary, task)
        lines += [f"## {task}", ""]
        header = ["pipeline", "n", *columns, "latency s", "prompt tok", "reused tok"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        for pipeline in sorted(summary):
            stats = summary[pipeline].get(task)
            if stats is None:
                continue
            cells = [pipeline, f"{int(stats['n'])}"]
            cells += [_fmt(stats.get(c)) for c in columns]
            cells += [
                f"{stats['latency_s']:.2f}",
                f"{stats['prompt_tokens']:.0f}",
                f"{stats['cached_prompt_tokens']:.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


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
        ax.set_xticks([j + width * (len(pipelines) - 1) / 2 for j in range(len(metrics))], metrics)
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


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _mean(values: Iterable[float]) -> float:
    items = [float(v) for v in values]
    return sum(items) / len(items) if items else 0.0
