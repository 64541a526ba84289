"""The `ragkit` command line, run in-process so it shares the test run's loaded models."""

import json

import pytest
from typer.testing import CliRunner

from ragkit.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_unknown_pipeline_is_one_line_error():
    result = run("query", "hello", "--pipeline", "no-such-pipeline")
    assert result.exit_code == 1
    assert "unknown pipeline 'no-such-pipeline'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_missing_path_is_one_line_error(tmp_path):
    result = run("ingest", str(tmp_path / "nowhere"), "--store", str(tmp_path / "idx"))
    assert result.exit_code == 1
    assert "nowhere" in result.output and "Traceback" not in result.output


def test_bad_spec_file_names_file_and_key(tmp_path):
    spec = tmp_path / "mine.yaml"
    spec.write_text("retriever:\n  kind: telepathy\n")
    result = run("query", "hello", "--pipeline", str(spec))
    assert result.exit_code == 1
    assert "mine.yaml" in result.output and "retriever.kind" in result.output


@pytest.mark.slow
def test_ingest_then_reingest_is_unchanged(tmp_path, bundled_corpus, bundled_spec):
    store = str(tmp_path / "idx")
    first = run("ingest", str(bundled_corpus), "--store", store)
    assert first.exit_code == 0, first.output
    assert " 0 unchanged" in first.output and "chunks written" in first.output
    second = run("ingest", str(bundled_corpus), "--store", store)
    assert second.exit_code == 0
    assert " 0 added" in second.output and "0 chunks written" in second.output
    info = run("info", "--store", store)
    assert "ragkit:" in info.output and "chunks" in info.output


@pytest.mark.slow
def test_query_from_a_questions_file_prints_sources(bundled_spec, repo_root):
    questions = repo_root / "evals" / "bundled" / "questions.jsonl"
    result = run(
        "query",
        "--questions",
        str(questions),
        "--limit",
        "1",
        "--top-k",
        "2",
        "--store",
        bundled_spec.store.location,
    )
    assert result.exit_code == 0, result.output
    assert "Q:" in result.output and "A:" in result.output
    assert "[1] " in result.output and "prompt tokens" in result.output
    # Sources as the server shows them: relative to the ingested folder, not the disk layout.
    listed = [line for line in result.output.splitlines() if "] " in line and " chars " in line]
    assert len(listed) == 2, result.output
    for line in listed:
        source = line.split("] ", 1)[1].split(" chars ")[0].split("#")[0]
        corpus = repo_root / "evals" / "bundled" / "corpus"
        assert not source.startswith("/") and (corpus / source).is_file(), line


@pytest.mark.slow
def test_query_json_output(bundled_spec):
    result = run(
        "query",
        "Who runs the ferries?",
        "--json",
        "-k",
        "2",
        "--store",
        bundled_spec.store.location,
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    assert record["output"] and record["retrieved"] and record["usage"]["prompt_tokens"] > 0


def test_contradictory_settings_are_one_line_before_anything_loads(tmp_path):
    spec = tmp_path / "my.yaml"
    spec.write_text("chunker: {chunk_tokens: 16, overlap_tokens: 64}\n")
    for args in (["query", "hello"], ["ingest", str(tmp_path)]):
        result = run(*args, "--pipeline", str(spec), "--store", str(tmp_path / "idx"))
        assert result.exit_code == 1
        assert result.output.splitlines() == [
            f"error: {spec}: chunker.overlap_tokens: must be less than chunker.chunk_tokens "
            "(16) (got 64)"
        ]
    assert not (tmp_path / "idx").exists()
