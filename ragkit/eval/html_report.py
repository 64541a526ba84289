"""A run's full report as one static HTML page: every score of every task (the terminal report
shows at most eight), how many items each mean is over, costs, plots and every item note."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from ragkit.eval import reporting

DESCRIPTIONS = {
    "crud_bleu": "CRUD-RAG's bleu-avg: unsmoothed BLEU-4 over jieba.cut tokens / brevity penalty",
    "crud_bleu1": "CRUD-RAG's bleu-1: unigram precision",
    "crud_bleu2": "CRUD-RAG's bleu-2: bigram precision",
    "crud_bleu3": "CRUD-RAG's bleu-3: trigram precision",
    "crud_bleu4": "CRUD-RAG's bleu-4: 4-gram precision",
    "crud_rouge_l": "CRUD-RAG's ROUGE-L F over jieba.cut tokens",
    "crud_quest_f1": "CRUD-RAG's RAGQuestEval F1 over the questions the output answered",
    "crud_quest_recall": "CRUD-RAG's RAGQuestEval recall: share of questions answered",
    "embedding_similarity": "cosine of output and reference embeddings",
    "smoothed_bleu4": "ragkit: sentence BLEU-4, exp smoothing, penalty kept, words only",
    "word_rouge_l": "ragkit: ROUGE-L F over lowercased words without punctuation",
    "quest_f1_incl_unanswered": "ragkit: QuestEval F1 over every question, unanswered = 0",
    "recall@1": "gold document at rank 1",
    "recall@5": "share of gold documents in the top 5",
    "mrr@10": "reciprocal rank of the first gold document in the top 10",
    "answer_recall@5": "an answer string occurs in a top-5 passage",
    "contains_reference": "the output contains the reference answer",
    "token_f1": "SQuAD token F1 of output and reference",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}"
    "small{color:#666}"
)


def html_report(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]],
    records: Sequence[Mapping[str, Any]],
    *,
    title: str,
    notes: Sequence[str] = (),
    item_notes: Sequence[tuple[str, str, str]] = (),
    plots: Sequence[Path] = (),
) -> str:
    counts = reporting.metric_counts(records)
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if notes:
        out.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    tasks = sorted({t for tasks in summary.values() for t in tasks})
    for task in tasks:
        metrics = reporting.all_metrics(summary, task)
        rows = [(p, summary[p][task]) for p in sorted(summary) if task in summary[p]]
        out.append(f"<h2>{escape(task)}</h2><table><tr><th>metric</th>")
        out += [f"<th>{escape(p)} <small>(n={int(s['n'])})</small></th>" for p, s in rows]
        out.append("</tr>")
        for metric in metrics:
            tip = escape(DESCRIPTIONS.get(metric, ""), quote=True)
            out.append(f"<tr><td title='{tip}'>{escape(metric)}</td>")
            for pipeline, stats in rows:
                out.append(_cell(stats.get(metric), counts.get((pipeline, task, metric), 0), stats))
            out.append("</tr>")
        out.append("</table>")
    if tasks:
        out.append("<h2>latency and tokens (means per item)</h2><table><tr><th>pipeline</th>")
        out.append("<th>task</th>" + "".join(f"<th>{escape(c)}</th>" for c in reporting.COSTS))
        out.append("</tr>")
        for task in tasks:
            for pipeline in sorted(summary):
                means = summary[pipeline].get(task)
                if means is None:
                    continue
                cells = "".join(
                    f"<td class='n'>{means.get(c, 0.0):.2f}</td>" for c in reporting.COSTS
                )
                out.append(f"<tr><td>{escape(pipeline)}</td><td>{escape(task)}</td>{cells}</tr>")
        out.append("</table>")
    for plot in plots:
        out.append(f"<p><img src='{escape(plot.name, quote=True)}' alt='{escape(plot.stem)}'></p>")
    if item_notes:
        out.append(f"<h2>notes on {len(item_notes)} items</h2><table>")
        out.append("<tr><th>pipeline</th><th>item</th><th>note</th></tr>")
        out += [
            f"<tr><td>{escape(p)}</td><td>{escape(i)}</td><td>{escape(n)}</td></tr>"
            for p, i, n in item_notes
        ]
        out.append("</table>")
    known = [m for m in DESCRIPTIONS if any(m in reporting.all_metrics(summary, t) for t in tasks)]
    if known:
        out.append("<h2>metrics</h2><dl>")
        out += [f"<dt>{escape(m)}</dt><dd>{escape(DESCRIPTIONS[m])}</dd>" for m in known]
        out.append("</dl>")
    out.append("</body></html>")
    return "\n".join(out)


def _cell(value: float | None, count: int, stats: Mapping[str, float]) -> str:
    """A mean, and how many items it is over when that is fewer than the pipeline ran."""
    if value is None:
        return "<td class='n'>–</td>"
    over = f" <small>({count})</small>" if count < int(stats["n"]) else ""
    return f"<td class='n'>{value:.3f}{over}</td>"
