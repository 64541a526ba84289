"""RAGQuestEval over a run's answers, after generation: one record per (pipeline, item, judge)
in the run folder's `questeval.jsonl`, so a rerun (or a run resumed with another judge) only
scores what is missing, and the judge's cache spares even those the calls it answered before.

Every item that cannot be scored gets a note saying why (no question written, the judge
failing) instead of a score of 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ragkit.eval.judge import ANSWER_KWARGS, Judge, one_line
from ragkit.eval.questeval import RAGQuestEval
from ragkit.eval.tasks import EvalItem
from ragkit.runlog import read_records

FILE = "questeval.jsonl"
NO_QUESTION = "QuestEval left out: the judge wrote no usable question about the reference"


def quest_record(quest: RAGQuestEval, item: EvalItem, output: str) -> dict[str, Any]:
    """One item's QuestEval scores, or a note saying why there are none. An item without a
    reference or an output is skipped without a note: the run's report notes those already."""
    if not item.reference.strip() and item.questions is None:
        return {"skipped": "no reference"}
    if not output.strip():
        return {"skipped": "empty output"}
    try:
        result = quest.score(output, item.reference, item.questions, item.answers)
    except Exception as exc:  # a judge failing is a note on the item, never the run's end
        return {"note": f"QuestEval not scored: {one_line(exc)}"}
    record: dict[str, Any] = {
        "questions": list(result.questions),
        "reference_answers": list(result.ref_answers),
        "output_answers": list(result.pred_answers),
    }
    if not result.questions:
        record["note"] = NO_QUESTION
        return record
    record["scores"] = result.scores()
    return record


def run_questeval(
    records: Sequence[Mapping[str, Any]],
    items: Mapping[str, EvalItem],
    judge: Judge,
    run_dir: Path,
    *,
    max_questions: int = 5,
) -> list[dict[str, Any]]:
    """Score every record the file has no result for under this judge; returns all results."""
    path = run_dir / FILE
    done = read_records(path, required=("pipeline", "item_id", "judge"))
    quest = questeval_for(judge, max_questions)
    name, setup = judge.name, quest.setup()
    have = {
        (r["pipeline"], r["item_id"])
        for r in done
        if r["judge"] == name and r.get("setup") == setup
    }
    with path.open("a", encoding="utf-8") as out:
        for record in records:
            key = (record["pipeline"], record["item_id"])
            item = items.get(record["item_id"])
            if key in have or item is None:
                continue
            result = {
                "pipeline": key[0],
                "item_id": key[1],
                "judge": name,
                "setup": setup,
                **quest_record(quest, item, str(record.get("output", ""))),
            }
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
            out.flush()
            done.append(result)
            have.add(key)
    return done


def questeval_for(judge: Judge, max_questions: int = 5) -> RAGQuestEval:
    """RAGQuestEval with this judge: it writes the questions if it can; a judge that cannot
    (the packaged model) gets cloze ones and its answers must be spans of the text it read."""
    return RAGQuestEval(
        judge,
        max_questions=max_questions,
        answer_kwargs=ANSWER_KWARGS,
        questions_by="judge" if judge.writes_questions else "cloze",
        extractive=not judge.writes_questions,
    )


def merge(
    records: Iterable[Mapping[str, Any]],
    results: Iterable[Mapping[str, Any]],
    judge: str,
    setup: str | None = None,
) -> list[dict[str, Any]]:
    """Records with the QuestEval scores and notes of this judge (and setup, when given)
    added; copies, the inputs are unchanged."""
    by_key = {
        (r["pipeline"], r["item_id"]): r
        for r in results
        if r.get("judge") == judge and (setup is None or r.get("setup") == setup)
    }
    out = []
    for record in records:
        merged = {**record, "scores": dict(record.get("scores", {}))}
        result = by_key.get((record["pipeline"], record["item_id"]))
        if result is not None:
            merged["scores"].update(result.get("scores", {}))
            if result.get("note"):
                merged["notes"] = [*record.get("notes", ()), result["note"]]
        out.append(merged)
    return out
