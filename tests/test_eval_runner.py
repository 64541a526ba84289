"""`ragkit eval` end to end on the bundled suite: run folder, resume, report, plots."""

import json

import pytest

from ragkit.errors import ConfigError
from ragkit.eval.datasets import load_suite
from ragkit.eval.reporting import markdown_report, summarize
from ragkit.eval.runner import (
    EvalOptions,
    EvalRunner,
    evaluate,
    limit_items,
    require_eval_extra,
)
from ragkit.runlog import read_records
from ragkit.spec import load_spec

pytestmark = pytest.mark.slow


def test_summary_and_report_are_computed_from_records():
    records = [
        {"pipeline": "a", "task": "read", "scores": {"recall@5": 1.0, "bleu4": float("nan")}},
        {"pipeline": "a", "task": "read", "scores": {"recall@5": 0.0, "bleu4": 0.5}},
        {"pipeline": "b", "task": "read", "scores": {"recall@5": 0.5}},
    ]
    summary = summarize(records)
    assert summary["a"]["read"]["recall@5"] == 0.5
    assert summary["a"]["read"]["bleu4"] == 0.5  # NaN is left out, not averaged in
    assert summary["a"]["read"]["n"] == 2
    report = markdown_report(summary)
    assert "| a | 2 | 0.500 |" in report and "| b | 1 | 0.500 |" in report


def test_missing_eval_extra_fails_before_anything_runs(tmp_path, monkeypatch):
    require_eval_extra(use_ragas=True)  # installed here: passes
    # A fake: an installed package cannot be made missing for one test, so the lookup is patched.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sacrebleu" else real(name)
    )
    with pytest.raises(ConfigError, match=r"missing: sacrebleu\).*ragkit\[eval\]"):
        evaluate("bundled", ["naive"], runs=tmp_path)
    assert not any(tmp_path.iterdir())  # no run folder was started


def test_truncated_cache_line_is_dropped(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"pipeline": "a", "item_id": "1"}\n{"pipeline": "a", "ite')
    assert [r["item_id"] for r in read_records(path, required=("pipeline", "item_id"))] == ["1"]
    assert path.read_text().endswith("}\n")


def test_eval_two_pipelines_then_resume(tmp_path, bundled_spec):
    suite = load_suite("bundled")
    naive = load_spec("naive").model_copy(update={"retriever": bundled_spec.retriever})
    prepend = naive.model_copy(
        update={
            "name": "naive-prepend",
            "prompt": naive.prompt.model_copy(update={"layout": "prepend"}),
        }
    )
    options = EvalOptions(batch_size=4, use_ragas=True)
    store = str(tmp_path / "index")
    first = EvalRunner(
        suite, [naive, prepend], tmp_path / "run", store_location=store, options=options
    )
    items = limit_items(suite.items, 1)
    assert {i.task for i in items} == {"create", "read", "update", "delete"}
    result = first.run(items[:2], progress=False)
    assert result.computed == 4

    again = EvalRunner(
        suite, [naive, prepend], tmp_path / "run", store_location=store, options=options
    )
    resumed = again.run(items, progress=False)
    assert resumed.computed == 2 * len(items) - 4  # finished items came from the cache

    lines = (tmp_path / "run" / "items.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert len(records) == 2 * len(items)
    assert len({(r["pipeline"], r["item_id"]) for r in records}) == len(records)
    read = next(r for r in records if r["task"] == "read")
    assert {
        "recall@1",
        "mrr@10",
        "contains_reference",
        "crud_rouge_l",
        "embedding_similarity",
    } <= set(read["scores"])
    assert read["retrieved"] and read["usage"]["prompt_tokens"] > 0
    # Generation tasks ship RAGQuestEval pairs; QuestEval runs after generation, and the
    # report's records carry its scores.
    delete = next(r for r in resumed.records if r["task"] == "delete")
    assert 0.0 <= delete["scores"]["crud_quest_recall"] <= 1.0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary) == {"naive", "naive-prepend"}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## read" in report and "naive-prepend" in report
    for line in report.splitlines():
        if line.startswith("| pipeline | n |"):
            assert line.count("|") - 3 <= 8, line  # at most eight score columns
    page = (tmp_path / "run" / "report.html").read_text()
    assert ">ragas_bleu_score</td>" in page and ">smoothed_bleu4</td>" in page
    assert (tmp_path / "run" / "read.png").stat().st_size > 1000
