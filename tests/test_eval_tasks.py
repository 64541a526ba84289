"""Evaluating some task kinds only (`evaluate(tasks=...)`, `ragkit eval --task`), on the
scripted generator over the real bundled index."""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.cli import app
from ragkit.errors import ConfigError
from ragkit.eval.datasets import load_suite
from ragkit.eval.runner import EvalOptions, default_run_dir, evaluate

OPTIONS = EvalOptions(use_ragas=False, questeval=False, similarity=False)


def test_only_the_chosen_task_is_answered_and_scored(tmp_path, scripted_spec):
    result = evaluate(
        "bundled",
        [scripted_spec],
        tasks=["read"],
        limit=2,
        run_dir=tmp_path / "run",
        store_location=scripted_spec.store.location,
        options=OPTIONS,
    )
    records = [json.loads(x) for x in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    assert result.computed == 2 and [r["task"] for r in records] == ["read", "read"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary[scripted_spec.name]) == {"read"}


def test_a_task_the_suite_lacks_is_named_before_anything_runs(tmp_path, scripted_spec):
    tasks = sorted({item.task for item in load_suite("bundled").items})
    expected = f"task summarise not in this suite; it has {', '.join(tasks)}"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        evaluate("bundled", [scripted_spec], tasks=["summarise"], runs=tmp_path, options=OPTIONS)
    result = CliRunner().invoke(
        app, ["eval", "--task", "summarise", "--no-ragas", "--runs", str(tmp_path / "runs")]
    )
    assert result.exit_code == 1 and result.output.splitlines() == [f"error: {expected}"]
    assert not any(tmp_path.iterdir())


def test_the_run_folder_depends_on_the_tasks_but_not_their_order():
    suite, root = load_suite("bundled"), Path("runs")
    plain = default_run_dir(suite, ["naive"], 2, root)
    read = default_run_dir(suite, ["naive"], 2, root, ["read"])
    assert read != plain
    assert read == default_run_dir(suite, ["naive"], 2, root, ["read", "read"])
    both = default_run_dir(suite, ["naive"], 2, root, ["read", "update"])
    assert both == default_run_dir(suite, ["naive"], 2, root, ["update", "read"]) != read
