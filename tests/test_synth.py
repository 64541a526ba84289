"""`ragkit synth`: reading replies, the checks and what each drops, the chunk order, and a run
over the bundled corpus whose suite `ragkit eval` and `ragkit tune` read; a scripted question
writer drives the fast tests, the packaged local model the slow one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragkit.eval.datasets import load_suite
from ragkit.synth.checks import Checker, copied, gives_away, supported
from ragkit.synth.prompts import (
    ANSWER_MARK,
    Pair,
    answer_prompt,
    language,
    parse,
    parse_answer,
    parse_question,
    question_prompt,
)
from ragkit.synth.run import synthesize
from ragkit.synth.sampling import spread
from ragkit.types import Answer, Chunk

CHUNK = (
    "The Skerrow Light was first lit in 1871. Its keeper for thirty years was Maren Tolle, "
    "who kept a log of every ship that passed the reef."
)
ZH_CHUNK = "奥林角灯塔由工程师霍玛于1862年建成，塔高31米，是当地最古老的建筑之一。"


def test_parse_reads_both_languages_and_either_order():
    assert parse("Question: Who kept the light?\nAnswer: Maren Tolle.") == Pair(
        "Who kept the light?", "Maren Tolle"
    )
    assert parse("答案：1862年\n问题：奥林角灯塔哪一年建成？") == Pair(
        "奥林角灯塔哪一年建成？", "1862年"
    )
    assert parse("**Question:** When was it lit?\n**Answer:** 1871") == Pair(
        "When was it lit?", "1871"
    )
    assert parse("Who kept the light?") is None
    assert parse("Question: \nAnswer: x") is None


def test_two_step_replies_give_the_question_then_the_answer():
    assert parse_question("Sure!\nWho kept the Skerrow Light?\nMore text") == (
        "Who kept the Skerrow Light?"
    )
    assert parse_question("Question: Who kept it?") == "Who kept it?"
    assert parse_question("A statement.") is None
    assert parse_answer("Maren Tolle.\nExtra") == "Maren Tolle"
    assert parse_answer("答案：1862年。") == "1862年"
    prompt = answer_prompt(CHUNK, "Who kept it?", "en").prefix
    assert ANSWER_MARK["en"] in prompt and "Who kept it?" in prompt


def test_prompt_follows_the_chunks_language():
    assert language(CHUNK) == "en" and language(ZH_CHUNK) == "zh"
    assert "段落" in question_prompt(ZH_CHUNK, "zh").prefix
    assert CHUNK in question_prompt(CHUNK, "en").prefix


def test_answer_support_exact_fuzzy_and_absent():
    assert supported("Maren Tolle", CHUNK) == ("Maren Tolle",)
    # a near miss keeps the chunk's own spelling as a second answer, found verbatim
    fuzzy = supported("Maren Tole", CHUNK)
    assert fuzzy == ("Maren Tole", "Maren Tolle")
    assert supported("Ada Holm", CHUNK) == ()
    assert supported("1862年", ZH_CHUNK) == ("1862年",)


def test_copied_sentence_and_give_away():
    assert copied("The Skerrow Light was first lit in which year?", CHUNK)
    assert not copied("Who kept the Skerrow Light for thirty years?", CHUNK)
    assert gives_away("Was Maren Tolle the keeper?", "Maren Tolle", "en")
    assert gives_away("What did the keeper log, every ship?", "every ship that passed", "en")
    assert not gives_away("Who kept the Skerrow Light?", "Maren Tolle", "en")


@pytest.mark.parametrize(
    ("pair", "failed"),
    [
        (None, "unparsed"),
        (Pair("Who?", "Maren Tolle"), "unparsed"),
        (
            Pair("Who kept the Skerrow Light?", "the keeper for thirty years was Maren Tolle who"),
            "answer_too_long",
        ),
        (Pair("Who is named in the passage as keeper?", "Maren Tolle"), "not_standalone"),
        (Pair("Who built the Skerrow Light?", "Ada Holm"), "answer_not_in_chunk"),
        (Pair("Did Maren Tolle keep the Skerrow Light?", "Maren Tolle"), "answer_in_question"),
        (Pair("The Skerrow Light was first lit in what?", "1871"), "copied_sentence"),
        (Pair("Who kept the Skerrow Light for thirty years?", "Maren Tolle"), None),
    ],
)
def test_each_check_names_what_it_drops(pair, failed):
    assert Checker().check(pair, CHUNK, "en").failed == failed


def test_near_duplicates_are_dropped_after_the_first():
    checker = Checker()
    first = Pair("Who kept the Skerrow Light for thirty years?", "Maren Tolle")
    again = Pair("Who kept the Skerrow Light for thirty years ?", "Maren Tolle")
    assert checker.check(first, CHUNK, "en").failed is None
    assert checker.check(again, CHUNK, "en").failed == "near_duplicate"
    assert (
        checker.check(Pair("When was the Skerrow Light first lit?", "1871"), CHUNK, "en").failed
        is None
    )


def test_spread_visits_every_document_before_any_twice():
    chunks = [
        Chunk(f"{d}-{i}", d, f"document {d} chunk {i} " + "x" * 80, 0, 1, {"source": d})
        for d in "abc"
        for i in range(3 if d == "a" else 1)
    ] + [Chunk("short", "d", "too short", 0, 1, {"source": "d"})]
    order = spread(chunks, seed=3)
    assert len(order) == 5 and "short" not in {c.id for c in order}
    assert {c.source for c in order[:3]} == {"a", "b", "c"}
    assert [c.id for c in spread(chunks, seed=3)] == [c.id for c in order]


class ScriptedQuestionWriter:
    """Stands in for the generator: replies from a script keyed by a phrase of the chunk, and
    counts the question prompts (one per candidate); it can interrupt like Ctrl-C on the n-th."""

    def __init__(self, script: dict[str, str], interrupt_on: int | None = None) -> None:
        self.script, self.calls, self.interrupt_on = script, 0, interrupt_on

    def invoke(self, prompt, **kwargs) -> Answer:
        if not any(mark in prompt.prefix for mark in ANSWER_MARK.values()):
            self.calls += 1
            if self.calls == self.interrupt_on:
                raise KeyboardInterrupt
        for phrase, reply in self.script.items():
            if phrase in prompt.prefix:
                return Answer(text=reply)
        return Answer(text="I cannot write a question about this.")


SCRIPT = {
    "Elias Marrick": "Question: Who founded Varrow Point in 1847?\nAnswer: Elias Marrick",
    "22,000": "Question: How much water does the Brinewell plant make a day?\n"
    "Answer: 22,000 cubic metres",
    "42 minutes": "Question: How long is the ferry crossing to the Isle of Aubry?\n"
    "Answer: 42 minutes",
}


@pytest.fixture(scope="module")
def bundled_chunks(tmp_path_factory):
    from ragkit.spec import load_spec
    from ragkit.synth.sampling import source_chunks

    return source_chunks(str(load_suite("bundled").corpus), load_spec("naive"))


def test_a_run_writes_a_suite_eval_reads_and_counts_drops(tmp_path, bundled_chunks):
    corpus = load_suite("bundled").corpus
    writer = ScriptedQuestionWriter(SCRIPT)
    out = tmp_path / "suite"
    result = synthesize(bundled_chunks, writer, out, n=50, corpus=corpus, max_candidates=400)
    assert result.kept == 3
    assert result.candidates == writer.calls == min(400, len(spread(bundled_chunks, 0)))
    assert result.dropped["unparsed"] == result.candidates - 3 - sum(
        v for k, v in result.dropped.items() if k != "unparsed"
    )
    suite = load_suite(out)
    assert suite.corpus == corpus.resolve()
    answers = {i.reference for i in suite.items}
    assert answers == {"Elias Marrick", "22,000 cubic metres", "42 minutes"}
    for item in suite.items:
        assert item.task == "read" and len(item.gold_sources) == 1
        assert (corpus / item.gold_sources[0].split("#")[0]).is_file()
        assert item.reference in item.contexts[0]
        assert item.metadata["gold_chunk"]
    report = json.loads((out / "synth-report.json").read_text())
    assert report["kept"] == 3 and sum(report["dropped"].values()) == result.candidates - 3


def test_an_interrupted_run_resumes_at_the_next_chunk(tmp_path, bundled_chunks):
    out = tmp_path / "suite"
    first = ScriptedQuestionWriter(SCRIPT, interrupt_on=6)
    with pytest.raises(KeyboardInterrupt):
        synthesize(bundled_chunks, first, out, n=50, max_candidates=40)
    written = (out / "candidates.jsonl").read_text().splitlines()
    assert len(written) == 5 and (out / "suite.yaml").is_file()  # the suite so far is saved
    second = ScriptedQuestionWriter(SCRIPT)
    result = synthesize(bundled_chunks, second, out, n=50, max_candidates=40)
    total = min(40, len(spread(bundled_chunks, 0)))
    assert second.calls == result.generated == total - 5 and result.candidates == total
    third = ScriptedQuestionWriter(SCRIPT)
    synthesize(bundled_chunks, third, out, n=50, max_candidates=40)
    assert third.calls == 0


def test_a_tune_sweep_reads_the_written_suite(tmp_path, bundled_chunks):
    from ragkit.tune.run import tune

    out = tmp_path / "suite"
    synthesize(
        bundled_chunks,
        ScriptedQuestionWriter(SCRIPT),
        out,
        n=3,
        corpus=load_suite("bundled").corpus,
        max_candidates=400,
    )
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  chunker.chunk_tokens: [96, 256]\n", encoding="utf-8")
    result = tune(
        str(out),
        space,
        pipeline="bm25-zh",
        runs=tmp_path / "runs",
        store_location=str(tmp_path / "store"),
    )
    assert {r.score("recall@5") for r in result.rows} <= {0.0, 0.5, 1.0}
    assert result.winner.score("recall@5") is not None


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the local model writes a question in seconds on an idle CPU
def test_synth_then_tune_end_to_end_with_the_local_model(tmp_path):
    """The commands a user runs: `ragkit synth` on the bundled corpus with the packaged model,
    then `ragkit tune` on the suite it wrote, answering the shortlist with the same model."""
    corpus = load_suite("bundled").corpus
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "my-suite"
    synth = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragkit.cli",
            "synth",
            str(corpus),
            "--n",
            "1",
            "-o",
            str(out),
            "--max-candidates",
            "3",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )
    assert synth.returncode == 0, synth.stderr
    assert "questions kept of" in synth.stdout and "dropped:" in synth.stdout
    report = json.loads((out / "synth-report.json").read_text())
    candidates = [json.loads(x) for x in (out / "candidates.jsonl").read_text().splitlines()]
    assert report["candidates"] == len(candidates) >= report["kept"]
    assert sum(report["dropped"].values()) == report["candidates"] - report["kept"]
    assert all(c["reply"].strip() for c in candidates)  # the model answered every prompt
    kept = [json.loads(x) for x in (out / "questions.jsonl").read_text().splitlines()]
    for item in kept:
        assert any(a in item["contexts"][0] for a in item["answers"])
    # tune on the written suite; a few bundled questions join it when the model kept fewer
    # than the split needs, so the tune step always runs on real model answers
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    bundled = (corpus.parent / "questions.jsonl").read_text().splitlines()[: max(0, 3 - len(kept))]
    lines = [json.dumps(k) for k in kept] + bundled
    (mixed / "questions.jsonl").write_text("\n".join(lines) + "\n")
    (mixed / "suite.yaml").write_text(f"corpus: {corpus}\ntasks:\n  read: questions.jsonl\n")
    suite = str(mixed)
    space = tmp_path / "space.yaml"
    space.write_text("space:\n  retriever.lexical: [words, words+bigrams]\n", encoding="utf-8")
    base = tmp_path / "short-bm25.yaml"  # bm25-zh with short answers, to keep the test quick
    base.write_text(
        "retriever: {kind: bm25, top_k: 5}\ngenerator: {kind: local, max_new_tokens: 24}\n",
        encoding="utf-8",
    )
    tuned = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragkit.cli",
            "tune",
            "--suite",
            suite,
            "--space",
            str(space),
            "-p",
            str(base),
            "--metric",
            "contains_reference",
            "--shortlist",
            "1",
            "--runs",
            str(tmp_path / "runs"),
            "--store",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )
    assert tuned.returncode == 0, tuned.stderr
    assert "**Winner: " in tuned.stdout
    run = Path(tuned.stdout.split("run folder: ")[1].split()[0])
    answers = (run / "answers.jsonl").read_text().splitlines()
    assert len(answers) == len(lines) and all(json.loads(a)["answer"].strip() for a in answers)
    winner = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragkit.cli",
            "info",
            "-p",
            str(run / "winner.yaml"),
            "--store",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert winner.returncode == 0 and "pipeline winner: " in winner.stdout
