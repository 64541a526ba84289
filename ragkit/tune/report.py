"""Leaderboard of a sweep: scores per part of the split, the Pareto front of quality against
latency, a plot of it, and the winner written as a pipeline YAML."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ragkit.spec import PipelineSpec


@dataclass(frozen=True)
class Row:
    variant: str
    label: str
    tuning: dict[str, float]  # mean score per metric over the tuning questions
    held: dict[str, float]  # the same over the held-back questions
    latency_s: float  # per question: search, plus generation for answered variants
    answered: bool
    reference: bool = False  # a named pipeline shown for comparison, never the winner

    def score(self, metric: str, part: str = "tuning") -> float | None:
        return getattr(self, part).get(metric)


def mean_scores(
    per_item: Mapping[str, Mapping[str, float]], ids: Sequence[str]
) -> dict[str, float]:
    """Mean of each score over `ids`, leaving out items without it (NaN or absent)."""
    sums: dict[str, list[float]] = {}
    for item_id in ids:
        for name, value in per_item.get(item_id, {}).items():
            if isinstance(value, int | float) and not math.isnan(value):
                sums.setdefault(name, []).append(float(value))
    return {name: sum(v) / len(v) for name, v in sums.items()}


def ranked(rows: Sequence[Row], metric: str) -> list[Row]:
    """Best tuning score first; ties go to the faster variant, then to the earlier one."""
    order = {r.variant: i for i, r in enumerate(rows)}
    scored = [r for r in rows if r.score(metric) is not None]
    return sorted(scored, key=lambda r: (-(r.score(metric) or 0.0), r.latency_s, order[r.variant]))


def winner(rows: Sequence[Row], metric: str) -> Row:
    candidates = [r for r in ranked(rows, metric) if not r.reference]
    if not candidates:
        raise ValueError(f"no variant has a {metric!r} score")
    return candidates[0]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of (latency, quality) points no other point beats on both: as fast or faster
    and as good or better, strictly on one. Sorted by latency."""
    front = []
    for i, (lat, q) in enumerate(points):
        dominated = any(
            (lo <= lat and qo >= q) and (lo < lat or qo > q)
            for j, (lo, qo) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def markdown(
    rows: Sequence[Row],
    metric: str,
    *,
    title: str,
    base: Row,
    notes: Sequence[str] = (),
    columns: Sequence[str] = (),
) -> str:
    best = winner(rows, metric)
    held, held_base = best.score(metric, "held"), base.score(metric, "held")
    lines = [f"# {title}", ""]
    lines.append(
        f"**Winner: `{best.label}`: held-back {metric} {_fmt(held)}** "
        f"(base `{base.label}` {_fmt(held_base)} on the same questions; "
        f"tuning part: winner {_fmt(best.score(metric))}, base {_fmt(base.score(metric))})."
    )
    if held is not None and held_base is not None and held < held_base:
        lines += [
            "",
            f"The winner wins only on the tuning part: on held-back questions the "
            f"base scores higher ({_fmt(held_base)} against {_fmt(held)}).",
        ]
    lines.append("")
    lines += [f"- {n}" for n in notes]
    shown = [c for c in columns if c != metric]
    header = [
        "#",
        "variant",
        f"{metric} (tuning)",
        f"{metric} (held-back)",
        *shown,
        "latency s/q",
        "answered",
    ]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for place, row in enumerate(ranked(rows, metric), 1):
        name = f"{row.label} (reference)" if row.reference else row.label
        cells = [str(place), f"`{name}`", _fmt(row.score(metric)), _fmt(row.score(metric, "held"))]
        cells += [_fmt(row.score(c)) for c in shown]
        cells += [f"{row.latency_s:.3f}", "yes" if row.answered else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_json(rows: Sequence[Row], metric: str, path: Path, extra: Mapping[str, Any]) -> None:
    body = {
        **extra,
        "metric": metric,
        "winner": winner(rows, metric).variant,
        "rows": [asdict(r) for r in ranked(rows, metric)],
    }
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False), encoding="utf-8")


def plot(rows: Sequence[Row], metric: str, path: Path, title: str) -> Path:
    """Tuning-part quality against seconds per question; the front is joined and ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.score(metric) is not None]
    points = [(r.latency_s, r.score(metric) or 0.0) for r in shown]
    front = pareto_front(points)
    best = winner(rows, metric)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=22, color="0.55", label="variant")
    ax.plot(
        [points[i][0] for i in front],
        [points[i][1] for i in front],
        "-o",
        color="tab:red",
        markerfacecolor="none",
        markersize=9,
        label="Pareto front",
    )
    for i in front:
        ax.annotate(
            shown[i].label, points[i], fontsize=6, xytext=(4, -8), textcoords="offset points"
        )
    w = shown.index(best)
    ax.scatter(
        [points[w][0]],
        [points[w][1]],
        marker="*",
        s=160,
        color="tab:blue",
        label="winner",
        zorder=3,
    )
    if points and max(p[0] for p in points) > 20 * max(min(p[0] for p in points), 1e-9):
        ax.set_xscale("log")
    ax.set_xlabel("seconds per question")
    ax.set_ylabel(f"{metric} (tuning part)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_winner(spec: PipelineSpec, path: Path, comment: str) -> Path:
    """The winning spec as YAML `load_spec` reads back to the same pipeline (store left to the
    user's `--store`, so it indexes their documents where they choose)."""
    body = spec.model_dump(
        mode="json", exclude={"store", "name", "description"}, exclude_defaults=True
    )
    body = {"name": "", "description": "", **body}
    body["name"] = path.stem
    body["description"] = comment.splitlines()[0]
    text = "".join(f"# {line}\n" for line in comment.splitlines())
    text += yaml.safe_dump(body, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
