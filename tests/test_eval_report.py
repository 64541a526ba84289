"""The report people read: CRUD-RAG's columns first, at most eight score columns per terminal
table, costs in their own table, every score and every item note in the HTML page."""

from __future__ import annotations

import math
import re

from ragkit.eval.html_report import html_report
from ragkit.eval.reporting import (
    HEADLINE,
    MAX_TABLE_METRICS,
    markdown_report,
    metric_columns,
    summarize,
)

READ_SCORES = {
    "recall@1": 1.0,
    "recall@5": 1.0,
    "mrr@10": 1.0,
    "answer_recall@5": 1.0,
    "contains_reference": 1.0,
    "token_f1": 0.5,
    "crud_bleu": 0.4,
    "crud_bleu1": 0.9,
    "crud_bleu2": 0.6,
    "crud_bleu3": 0.5,
    "crud_bleu4": 0.4,
    "crud_rouge_l": 0.7,
    "smoothed_bleu4": 0.45,
    "word_rouge_l": 0.71,
    "embedding_similarity": 0.8,
    "crud_quest_f1": 0.6,
    "crud_quest_recall": 0.75,
    "quest_f1_incl_unanswered": 0.45,
    "ragas_bleu_score": 0.0,
    "ragas_rouge_score": 0.1,
    "ragas_string_present": 1.0,
}
CREATE_SCORES = {k: v for k, v in READ_SCORES.items() if "recall@" not in k and "mrr" not in k}


def _records():
    usage = {"prompt_tokens": 900, "cached_prompt_tokens": 300, "completion_tokens": 120}
    records = []
    for pipeline in ("naive", "best", "chat"):
        for task, scores in (("read", READ_SCORES), ("create", CREATE_SCORES)):
            for i in range(2):
                records.append(
                    {
                        "pipeline": pipeline,
                        "task": task,
                        "item_id": f"{task}-{i}",
                        "scores": dict(scores),
                        "latency_s": 2.0,
                        "usage": usage,
                    }
                )
    # one item without CRUD-RAG's QuestEval: its mean is over the other item only
    records[0]["scores"]["crud_quest_f1"] = math.nan
    records[1]["scores"]["crud_quest_f1"] = 0.2
    return records


def _tables(report: str) -> list[list[str]]:
    """Header cells of every Markdown table."""
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line, following in zip(report.splitlines(), report.splitlines()[1:], strict=False)
        if line.startswith("|") and following.startswith("|---")
    ]


def test_every_terminal_table_has_at_most_eight_metric_columns():
    summary = summarize(_records())
    report = markdown_report(summary, title="t")
    tables = _tables(report)
    score_tables = [t for t in tables if t[:2] == ["pipeline", "n"]]
    assert len(score_tables) == 2  # one per task
    for header in score_tables:
        assert 0 < len(header) - 2 <= MAX_TABLE_METRICS
    assert all(len(t) - 2 <= MAX_TABLE_METRICS for t in tables)


def test_paper_columns_come_first_then_retrieval_recall():
    summary = summarize(_records())
    assert metric_columns(summary, "read") == [
        "crud_bleu",
        "crud_rouge_l",
        "embedding_similarity",
        "crud_quest_f1",
        "crud_quest_recall",
        "recall@5",
        "answer_recall@5",
        "mrr@10",
    ]
    assert metric_columns(summary, "create")[:5] == list(HEADLINE[:5])
    report = markdown_report(summary, title="t")
    read_header = _tables(report)[1]
    assert read_header[2:7] == ["BLEU", "ROUGE-L", "emb. sim.", "QuestEval F1", "QuestEval recall"]
    assert "ragas_bleu_score" not in report and "smoothed_bleu4" not in report


def test_latency_and_tokens_have_their_own_table():
    summary = summarize(_records())
    report = markdown_report(summary, title="t")
    cost = [t for t in _tables(report) if t[:2] == ["pipeline", "task"]]
    assert cost == [["pipeline", "task", "latency s", "prompt tok", "reused tok", "output tok"]]
    assert "| best | read | 2.00 | 900 | 300 | 120 |" in report
    for header in _tables(report):
        if header[:2] == ["pipeline", "n"]:
            assert not {"latency s", "prompt tok"} & set(header)


def test_html_report_has_every_score_and_how_many_items_each_mean_is_over():
    records = _records()
    summary = summarize(records)
    notes = [("naive", "create-0", "no QuestEval question could be written")]
    page = html_report(summary, records, title="t", item_notes=notes)
    for metric in READ_SCORES:
        assert f">{metric}</td>" in page
    # naive/create's crud_quest_f1 is the mean of one item: 0.2 over 1 of 2
    assert "0.200 <small>(1)</small>" in page
    assert "no QuestEval question could be written" in page
    assert re.search(r"<th>completion_tokens</th>", page)


def test_item_notes_are_listed_and_capped_in_the_terminal():
    summary = summarize(_records())
    notes = [("naive", f"read-{i}", "empty output") for i in range(15)]
    report = markdown_report(summary, title="t", item_notes=notes)
    assert "## notes on 15 items" in report
    assert report.count(": empty output") == 10
    assert "5 more in report.html" in report
