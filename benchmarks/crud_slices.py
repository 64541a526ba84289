"""Corpus slices and conversation kinds for the CRUD-RAG retrieval benchmark.

A slice is a disjoint set of the news files (`part N` = the three `documents_dup_part_N_*`
files); its questions are the answerable factoids whose gold article lies in the slice. Each
question is asked three ways:

- `standalone`: the question alone;
- `single`: one conversation per factoid item, its questions in order (the earlier ones are
  the history of the later; questions only, never answers);
- `switching`: the items of a slice are shuffled (fixed seed) and chained three at a time, so a
  conversation asks all of item A's questions, then B's, then C's, with no word that the subject
  changed; every question has all earlier questions of its conversation as history.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragkit.types import Query

KINDS = ("standalone", "single", "switching")
SEED = 20231201


def slice_files(news: Path, parts: Sequence[int]) -> list[Path]:
    files = sorted(p for n in parts for p in news.glob(f"documents_dup_part_{n}_*"))
    if not files:
        raise SystemExit(f"no news files for parts {list(parts)} under {news}")
    return files


def slice_dir(news: Path, parts: Sequence[int]) -> Path:
    """A temporary folder holding links to the slice's files, for the corpus loaders."""
    folder = Path(tempfile.mkdtemp(prefix=f"crud-slice-{'-'.join(map(str, parts))}-"))
    for file in slice_files(news, parts):
        (folder / file.name).symlink_to(file.resolve())
    return folder


def item_questions(factoid_file: Path) -> dict[str, list[str]]:
    """Every question of every factoid item, in order (answerable or not: all are asked)."""
    data = json.loads(factoid_file.read_text(encoding="utf-8"))
    return {key: list(obj.get("question", [])) for key, obj in data.items()}


def conversations(
    items: Sequence[Any], questions: dict[str, list[str]], kind: str, group: int = 3
) -> list[tuple[Any, Query]]:
    """(item, query) for each scored item, with the history its conversation kind gives it."""
    if kind == "standalone":
        return [(item, Query(item.query)) for item in items]
    if kind == "single":
        out = []
        for item in items:
            asked = questions[item.metadata["factoid_id"]][: item.metadata["question_index"]]
            out.append((item, Query(item.query, tuple(("user", q) for q in asked))))
        return out
    if kind != "switching":
        raise ValueError(f"unknown conversation kind {kind!r}; choose one of {KINDS}")
    by_factoid: dict[str, list[Any]] = {}
    for item in items:
        by_factoid.setdefault(item.metadata["factoid_id"], []).append(item)
    order = sorted(by_factoid)
    random.Random(SEED).shuffle(order)
    out = []
    for start in range(0, len(order), group):
        asked: list[str] = []
        for factoid in order[start : start + group]:
            scored = {i.metadata["question_index"]: i for i in by_factoid[factoid]}
            for index, question in enumerate(questions[factoid]):
                if index in scored:
                    history = tuple(("user", q) for q in asked)
                    out.append((scored[index], Query(question, history)))
                asked.append(question)
    return out


def answer_in_history(item: Any, query: Query) -> bool:
    """An earlier question states the answer: a gain there is the answer copied, not search."""
    return any(ref in text for ref in item.references for _, text in query.history)
