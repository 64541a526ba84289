"""`ragkit tune`: space validation, the split, the Pareto front, the leaderboard, the winner
YAML, and a sweep over the bundled corpus that resumes without recomputing finished variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragkit.errors import ConfigError
from ragkit.eval.datasets import load_suite
from ragkit.eval.tasks import read_item
from ragkit.spec import load_spec
from ragkit.tune import plan, report, sweep
from ragkit.tune.report import Row
from ragkit.tune.run import tune
from ragkit.tune.space import check, load_space, override, spec_digest, variants
from ragkit.tune.split import split_items
from ragkit.tune.sweep import Sweep, TuneOptions


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- space file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("space:\n  retriever.kind: [bm25, sparse]\n", "space.retriever.kind: value 'sparse'"),
        ("space:\n  retriever.depth: [3]\n", "space.retriever.depth: unknown spec key 'depth'"),
        ("space:\n  retrievr.kind: [bm25]\n", "space.retrievr.kind: unknown spec key 'retrievr'"),
        ("space:\n  retriever.top_k: 5\n", "space.retriever.top_k: must be a non-empty list"),
        ("space:\n  retriever.top_k: [0]\n", "space.retriever.top_k: value 0"),
        ("space:\n  store.location: [a]\n", "space.store.location: not a tunable key"),
        ("spaces:\n  retriever.top_k: [3]\n", "spaces: unknown key"),
        ("space: [1, 2]\n", "space: must map spec keys"),
        ("space:\n  retriever.top_k: [3, 3]\n", "space.retriever.top_k: a value repeats"),
        ("space:\n  retriever.top_k: [3\n", "invalid YAML"),
    ],
)
def test_bad_space_files_fail_with_file_key_and_reason(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        variants(load_space(path), load_spec("naive"))
    message = str(err.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_cli_reports_a_bad_space_file_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from ragkit.cli import app

    path = write(tmp_path, "space:\n  retriever.kind: [bm25, sparse]\n")
    result = CliRunner().invoke(app, ["tune", "--space", str(path), "--runs", str(tmp_path)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {path}: space.retriever.kind: value 'sparse'")


def test_variants_start_with_the_base_and_cover_every_combination(tmp_path):
    path = write(
        tmp_path,
        "space:\n  retriever.kind: [bm25, dense]\n  chunker.chunk_tokens: [128, 256]\n",
    )
    found = variants(load_space(path), load_spec("naive"))
    assert found[0].label == "base"
    # 2 x 2 combinations, and dense with 256-token chunks is the base itself
    kinds = [(v.spec.retriever.kind, v.spec.chunker.chunk_tokens) for v in found]
    assert kinds == [("dense", 256), ("bm25", 128), ("bm25", 256), ("dense", 128)]
    # a combination equal to the base is the base, not a second variant
    same = write(tmp_path, "space:\n  retriever.kind: [dense]\n", "same.yaml")
    assert len(variants(load_space(same), load_spec("naive"))) == 1


def test_budget_draws_a_seeded_subset(tmp_path):
    path = write(tmp_path, "space:\n  retriever.top_k: [1, 2, 3, 6, 7, 8, 9]\n")
    space, base = load_space(path), load_spec("naive")
    first = variants(space, base, budget=4, seed=1)
    assert len(first) == 4 and first[0].label == "base"
    assert [v.id for v in first] == [v.id for v in variants(space, base, budget=4, seed=1)]
    with pytest.raises(ValueError, match="--budget"):
        variants(space, base, budget=0)


def test_invalid_combinations_are_skipped_and_listed_with_file_keys_values_and_reason(tmp_path):
    path = write(
        tmp_path, "space:\n  chunker.overlap_tokens: [0, 64]\n  chunker.chunk_tokens: [64, 128]\n"
    )
    checked = check(load_space(path), load_spec("naive"))
    assert [i.line(str(path)) for i in checked.invalid] == [
        f"{path}: chunker.overlap_tokens=64 chunker.chunk_tokens=64: chunker.overlap_tokens: "
        "must be less than chunker.chunk_tokens (64) (got 64)"
    ]
    found = checked.draw()
    assert [(v.spec.chunker.overlap_tokens, v.spec.chunker.chunk_tokens) for v in found] == [
        (32, 256),  # the base
        (0, 64),
        (0, 128),
        (64, 128),
    ]
    lines = plan.invalid_lines(checked)
    assert lines[-1] == f"{path}: 1 invalid combinations skipped (of 4)"


def test_a_value_is_judged_with_the_values_it_is_paired_with_not_the_base(tmp_path):
    # 16-token chunks break the base's 32-token overlap, but the space pairs them with 8
    for text in (
        "space:\n  chunker.chunk_tokens: [16]\n  chunker.overlap_tokens: [8]\n",
        "space:\n  chunker.overlap_tokens: [8]\n  chunker.chunk_tokens: [16]\n",
    ):
        found = variants(load_space(write(tmp_path, text)), load_spec("naive"))
        assert [(v.spec.chunker.chunk_tokens, v.spec.chunker.overlap_tokens) for v in found][
            1:
        ] == [(16, 8)]


def test_values_that_never_work_are_refused_together_one_line_each(tmp_path):
    path = write(
        tmp_path,
        "space:\n  generator.kind: [scripted, 'collections:OrderedDict', 'no_such_mod:Thing']\n"
        "  retriever.top_k: [0, 3]\n  chunker.overlap_tokens: [0, 300]\n",
    )
    with pytest.raises(ConfigError) as err:
        check(load_space(path), load_spec("naive"))
    lines = str(err.value).splitlines()
    assert lines == [
        f"{path}: space.generator.kind: value 'collections:OrderedDict': collections:"
        "OrderedDict is not a generator: it lacks invoke, batch, stream (methods every "
        "langchain Runnable has)",
        f"{path}: space.generator.kind: value 'no_such_mod:Thing': cannot import 'no_such_mod' "
        "for 'no_such_mod:Thing': No module named 'no_such_mod'",
        f"{path}: space.retriever.top_k: value 0: Input should be greater than 0",
        f"{path}: space.chunker.overlap_tokens: value 300: must be less than "
        "chunker.chunk_tokens (256)",
    ]


def test_a_space_over_the_default_budget_stops_before_any_work(tmp_path):
    size = plan.DEFAULT_BUDGET + 25
    tops = list(range(1, 16))
    candidates = list(range(10, 10 + size // len(tops) + 1))
    path = write(
        tmp_path, f"space:\n  retriever.top_k: {tops}\n  retriever.candidate_k: {candidates}\n"
    )
    said: list[str] = []
    with pytest.raises(ConfigError) as err:
        tune("bundled", path, pipeline="bm25-zh", runs=tmp_path / "runs", say=said.append)
    assert said == [
        f"{path}: {len(tops) * len(candidates)} combinations of 2 keys over base `bm25-zh`; "
        "checking each"
    ]
    assert str(err.value).startswith(f"{path}: {len(tops) * len(candidates)} variants, over the")
    assert "--budget N" in str(err.value) and "--yes" in str(err.value)
    assert not (tmp_path / "runs").exists()  # nothing was started

    said.clear()
    result = tune(
        "bundled",
        path,
        pipeline="bm25-zh",
        runs=tmp_path / "runs",
        store_location=str(tmp_path / "store"),
        options=TuneOptions(metric="answer_recall@5", budget=3),
        say=said.append,
    )
    assert len(result.rows) == 3
    # the estimate comes before the work and counts it as the sweep does it: one in-memory
    # BM25 index, and one search per retrieval setting other than top_k
    assert said[1] == (
        "3 variants: 1 indexes (0 embedded, 1 BM25 in memory), 3 searches of 24 questions "
        "(72 queries); no answers generated (a retrieval metric ranks) (drawn from "
        f"{len(tops) * len(candidates)} by --budget)"
    )
    assert (result.work.indexes, result.work.searches) == (1, 3)


def test_the_estimate_counts_work_as_the_sweep_shares_it(tmp_path):
    path = write(tmp_path, LEXICAL_SPACE)
    chosen = variants(load_space(path), load_spec("bm25-zh"))
    work = plan.estimate(chosen, questions=24, answered=3)
    assert (work.variants, work.embedded_indexes, work.lexical_indexes) == (8, 0, 2)
    assert work.searches == 4 and work.answered == 3  # as test_sweep_shares_indexes_and_searches
    dense = variants(
        load_space(write(tmp_path, "space:\n  retriever.kind: [dense]\n", "d.yaml")),
        load_spec("bm25-zh"),
    )
    assert plan.estimate(dense, 24, 0).embedded_indexes == 1


def test_cli_lists_every_bad_value_and_states_a_large_space_first(tmp_path):
    from typer.testing import CliRunner

    from ragkit.cli import app

    bad = write(tmp_path, "space:\n  retriever.kind: [bm25, sparse]\n  retriever.top_k: [0, 3]\n")
    result = CliRunner().invoke(app, ["tune", "--space", str(bad), "--runs", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert [e.split(": ")[2] for e in errors] == ["space.retriever.kind", "space.retriever.top_k"]
    big = write(
        tmp_path,
        "space:\n  retriever.top_k: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]\n"
        "  retriever.candidate_k: [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]\n",
        "big.yaml",
    )
    result = CliRunner().invoke(app, ["tune", "--space", str(big), "--runs", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{big}: 225 combinations of 2 keys over base `naive`; checking each",
        f"error: {big}: 225 variants, over the default budget of 200: pass --budget N to run N "
        "of them (drawn with --seed), or --yes to run them all",
    ]


def test_override_switches_on_a_section_and_validates():
    spec = load_spec("naive")
    assert spec.rerank is None
    reranked = override(spec, "rerank.candidates", 30)
    assert reranked.rerank is not None and reranked.rerank.candidates == 30
    assert override(reranked, "rerank", None).rerank is None
    with pytest.raises(KeyError):
        override(spec, "retriever.nope", 1)


# ---- split ---------------------------------------------------------------------------------


def items(n: int, per_group: int = 1):
    return [
        read_item(f"q{i}", f"question {i}?", "a", metadata={"factoid_id": f"g{i // per_group}"})
        for i in range(n)
    ]


def test_split_is_deterministic_disjoint_and_sized():
    tuning, held = split_items(items(40), 0.3, seed=7)
    assert len(held) == 12 and len(tuning) == 28
    assert not {i.id for i in tuning} & {i.id for i in held}
    again = split_items(items(40), 0.3, seed=7)
    assert [i.id for i in again[1]] == [i.id for i in held]
    other = split_items(items(40), 0.3, seed=8)
    assert [i.id for i in other[1]] != [i.id for i in held]


def test_split_keeps_questions_about_one_story_together():
    tuning, held = split_items(items(30, per_group=3), 0.3, seed=0)
    groups = lambda part: {i.metadata["factoid_id"] for i in part}  # noqa: E731
    assert not groups(tuning) & groups(held)
    assert 6 <= len(held) <= 12


def test_split_rejects_bad_holdout():
    with pytest.raises(ValueError, match="--holdout"):
        split_items(items(10), 1.0, seed=0)


# ---- Pareto front and leaderboard ----------------------------------------------------------


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 0.5), (2.0, 0.7), (2.5, 0.6), (0.5, 0.5), (3.0, 0.7), (4.0, 0.9)]
    assert report.pareto_front(points) == [3, 1, 5]


def row(name, tuning, held, latency=0.1, reference=False):
    return Row(name, name, {"recall@5": tuning}, {"recall@5": held}, latency, False, reference)


def test_leaderboard_leads_with_the_winners_held_back_score():
    rows = [
        row("base", 0.6, 0.7),
        row("a", 0.8, 0.75),
        row("b", 0.8, 0.9, latency=0.5),
        row("ref", 0.95, 0.95, reference=True),
    ]
    assert report.winner(rows, "recall@5").variant == "a"  # a tie goes to the faster
    text = report.markdown(rows, "recall@5", title="t", base=rows[0])
    lead = text.splitlines()[2]
    assert lead.startswith("**Winner: `a`: held-back recall@5 0.750**")
    assert "base `base` 0.700" in lead
    assert "wins only on the tuning part" not in text
    table = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [line.split("|")[2].strip() for line in table] == [
        "`ref (reference)`",
        "`a`",
        "`b`",
        "`base`",
    ]


def test_leaderboard_says_when_the_winner_only_wins_on_the_tuning_part(tmp_path):
    rows = [row("base", 0.6, 0.8), row("a", 0.9, 0.7)]
    text = report.markdown(rows, "recall@5", title="t", base=rows[0])
    assert "wins only on the tuning part" in text
    report.write_json(rows, "recall@5", tmp_path / "l.json", {"suite": "s"})
    body = json.loads((tmp_path / "l.json").read_text())
    assert body["winner"] == "a" and [r["variant"] for r in body["rows"]] == ["a", "base"]
    plot = report.plot(rows, "recall@5", tmp_path / "p.png", "t")
    assert plot.stat().st_size > 1000


def test_winner_yaml_loads_back_as_the_same_pipeline(tmp_path):
    spec = override(
        override(load_spec("naive"), "retriever.kind", "bm25"), "chunker.overlap_tokens", 0
    )
    path = report.write_winner(spec, tmp_path / "winner.yaml", "tuned on x\nheld-back 0.9")
    loaded = load_spec(path)
    assert spec_digest(loaded) == spec_digest(spec)
    assert loaded.name == "winner" and loaded.description == "tuned on x"


# ---- sweeps over the bundled corpus (lexical variants: no embedding pass) -----------------

LEXICAL_SPACE = (
    "space:\n  retriever.lexical: [words, words+bigrams]\n  retriever.top_k: [3, 5]\n"
    "  chunker.chunk_tokens: [96, 256]\n"
)


def lexical_sweep(tmp_path: Path) -> Sweep:
    path = write(tmp_path, LEXICAL_SPACE)
    chosen = variants(load_space(path), load_spec("bm25-zh"))
    return Sweep(
        load_suite("bundled"),
        chosen,
        tmp_path / "run",
        options=TuneOptions(),
        store_location=str(tmp_path / "store"),
    )


def test_sweep_shares_indexes_and_searches(tmp_path):
    s = lexical_sweep(tmp_path)
    found = s.run_retrieval()
    assert len(found) == len(s.variants) == 8  # base (words, top 5, 256) is one of the 8
    assert s.work.indexes == 2  # one per chunk size
    assert s.work.searches == 4  # top_k 3 and 5 cut one ranking
    for record in found.values():
        assert set(record["scores"]) == {i.id for i in s.items}
    by_setting = {
        (v.spec.retriever.lexical, v.spec.chunker.chunk_tokens, v.spec.retriever.top_k): v.id
        for v in s.variants
    }
    for (lexical, tokens, k), vid in by_setting.items():
        if k != 3:
            continue
        wider = found[by_setting[(lexical, tokens, 5)]]["scores"]
        for item_id, scores in found[vid]["scores"].items():  # a shorter cut never finds more
            assert scores["answer_recall@5"] <= wider[item_id]["answer_recall@5"]


def test_a_killed_sweep_resumes_without_recomputing_finished_variants(tmp_path, monkeypatch):
    s = lexical_sweep(tmp_path)
    real_append = sweep.append_record
    calls = []

    def append_then_die(path, record):  # the process is killed after 3 variants are written
        real_append(path, record)
        calls.append(record["variant"])
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "append_record", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        s.run_retrieval()
    log = tmp_path / "run" / "retrieval.jsonl"
    with log.open("a", encoding="utf-8") as out:  # and a fourth was cut mid-line
        out.write('{"variant": "half')
    monkeypatch.setattr(sweep, "append_record", real_append)
    again = lexical_sweep(tmp_path)
    found = again.run_retrieval()
    assert again.work.cached_variants == 3
    assert again.work.variants_scored == 5
    assert len(found) == 8
    assert len(log.read_text().splitlines()) == 8
    third = lexical_sweep(tmp_path)
    third.run_retrieval()
    assert (third.work.searches, third.work.variants_scored, third.work.cached_variants) == (
        0,
        0,
        8,
    )


def test_tune_writes_leaderboard_plot_and_a_winner_query_can_load(tmp_path):
    path = write(tmp_path, LEXICAL_SPACE)
    result = tune(
        "bundled",
        path,
        pipeline="bm25-zh",
        runs=tmp_path / "runs",
        store_location=str(tmp_path / "store"),
        compare=["best"],
        options=TuneOptions(metric="answer_recall@5"),
    )
    names = {p.name for p in result.run_dir.iterdir()}
    assert {
        "leaderboard.md",
        "leaderboard.json",
        "pareto.png",
        "winner.yaml",
        "split.json",
        "retrieval.jsonl",
    } <= names
    assert result.report.startswith("# ragkit tune: bundled\n\n**Winner: ")
    assert not result.winner.reference
    assert result.winner.score("answer_recall@5") == max(
        r.score("answer_recall@5") for r in result.rows if not r.reference
    )
    winner = load_spec(result.winner_path)
    assert winner.retriever.kind == "bm25"
    split = json.loads((result.run_dir / "split.json").read_text())
    assert len(split["tuning"]) + len(split["held_back"]) == 24
    again = tune(
        "bundled",
        path,
        pipeline="bm25-zh",
        runs=tmp_path / "runs",
        store_location=str(tmp_path / "store"),
        compare=["best"],
        options=TuneOptions(metric="answer_recall@5"),
    )
    assert again.run_dir == result.run_dir and again.work.searches == 0


def test_an_unknown_metric_is_named(tmp_path):
    path = write(tmp_path, "space:\n  retriever.top_k: [3]\n")
    with pytest.raises(ConfigError, match="--metric bleu9"):
        tune(
            "bundled",
            path,
            pipeline="bm25-zh",
            runs=tmp_path / "runs",
            store_location=str(tmp_path / "store"),
            options=TuneOptions(metric="bleu9"),
        )


# ---- in-memory lexical index ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["best", "chat", "iter-retgen-bm25"])
def test_in_memory_index_keeps_the_pipelines_stages(tmp_path, name):
    """A lexical variant searches chunks held in memory whatever stages wrap its retriever:
    conversational search keeps its wrapper, Iter-RetGen keeps its rounds."""
    from ragkit import build
    from ragkit.pipeline import RAGPipeline
    from ragkit.stages.history import HistorySearch
    from ragkit.stages.iterate import IterRetGen
    from ragkit.tune.retrieval import in_memory
    from ragkit.types import Chunk, Query

    if name == "iter-retgen-bm25":
        spec = load_spec("iter-retgen").override(retriever={"kind": "bm25"})
    else:
        spec = load_spec(name)
    spec = spec.override(generator={"kind": "scripted"}).with_store(str(tmp_path / "empty"))
    texts = ["The harbour master is Ines Albescu.", "The ferry leaves at dawn."]
    chunks = [Chunk(f"c{i}", f"d{i}", t, 0, len(t)) for i, t in enumerate(texts)]
    rag = in_memory(build.pipeline(spec), chunks)
    assert type(rag) is (IterRetGen if name == "iter-retgen-bm25" else RAGPipeline)
    assert isinstance(rag.retriever, HistorySearch) == (name == "chat")
    hits = rag.retrieve([Query("Who is the harbour master?")])[0]
    assert hits[0].chunk.id == "c0" and {h.chunk.id for h in hits} <= {"c0", "c1"}
    assert rag.invoke("Who is the harbour master?").retrieved[0].chunk.id == "c0"


CONTEXT_SPACE = "space:\n  expand.sentences: [0, 3]\n  compress.max_tokens: [30, 4000]\n"


def test_a_sweep_searches_window_size_and_compression_budget(tmp_path):
    path = write(tmp_path, CONTEXT_SPACE)
    base = load_spec("bm25-zh").override(chunker={"chunk_tokens": 48, "overlap_tokens": 8})
    chosen = variants(load_space(path), base)
    assert len(chosen) == 5
    s = Sweep(
        load_suite("bundled"),
        chosen,
        tmp_path / "run",
        options=TuneOptions(),
        store_location=str(tmp_path / "store"),
    )
    found = s.run_retrieval()
    assert s.work.indexes == 1 and s.work.searches == 5  # in-memory chunks, one search each
    recall = {
        v.label: sum(r["answer_recall@5"] for r in found[v.id]["scores"].values()) for v in chosen
    }
    # Wider windows only add text around each hit: more answers reach the prompt; a tight
    # budget cuts some out.
    assert recall["expand.sentences=3 compress.max_tokens=4000"] > recall["base"]
    assert (
        recall["expand.sentences=3 compress.max_tokens=30"]
        < recall["expand.sentences=3 compress.max_tokens=4000"]
    )
