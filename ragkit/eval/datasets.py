"""Loaders that turn evaluation files into `EvalItem`s: suites and plain QA or task JSONL
(CRUD-RAG's own files: `ragkit.eval.crud_rag`).

Every loader validates as it reads and raises `InputError` (a data file) or `ConfigError` (a
suite spec) naming the file, the line or key, and the reason, so a broken data set fails before
any model is loaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragkit.errors import ConfigError, InputError
from ragkit.eval.tasks import (
    TASK_KINDS,
    EvalItem,
    TaskKind,
    create_item,
    delete_item,
    read_item,
    update_item,
)
from ragkit.resources import evals_dir

BUNDLED = "bundled"
_SUITE_KEYS = {"name", "description", "corpus", "tasks"}
# Required input fields per task kind in the bundled JSONL layout, in constructor order.
_TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "create": ("beginning", "continuing"),
    "update": ("beginning", "hallucinated", "corrected"),
    "delete": ("event", "summary"),
}
_QUEST_KEYS = ("quest_questions", "quest_answers")


@dataclass(frozen=True, slots=True)
class Suite:
    """A named set of items and the corpus folder they are answered from (None: bring your own)."""

    name: str
    items: tuple[EvalItem, ...]
    corpus: Path | None = None
    path: Path | None = None

    def by_task(self, task: TaskKind) -> tuple[EvalItem, ...]:
        return tuple(item for item in self.items if item.task == task)

    def __len__(self) -> int:
        return len(self.items)


# ---------------------------------------------------------------- JSONL (bundled and plain QA)


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a bad line names the file and line."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror or exc})") from exc
    with handle:
        try:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{line_no}: invalid JSON ({exc.msg})") from exc
                if not isinstance(obj, dict):
                    raise InputError(f"{path}:{line_no}: expected a JSON object per line")
                yield line_no, obj
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from exc


def _text(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        raise InputError(f"{where}: missing key {key!r}")
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InputError(f"{where}: key {key!r} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise InputError(f"{where}: key {key!r} is empty")
    return text


def _strings(obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: key {key!r} must be a list of strings")
    return tuple(v for v in value if v.strip())


def load_qa_jsonl(path: str | Path) -> list[EvalItem]:
    """Read items from JSONL lines `{"question", "answer" and/or "answers", ...}`; an item
    without either has an empty reference (scored on retrieval only, with a note).

    Optional keys: `id` (default `<file stem>-<line>`), `contexts` (reference passages),
    `gold_sources` (supporting file names); any other key, e.g. `hops`, goes to metadata.
    """
    path = Path(path)
    items = []
    for line_no, obj in _read_jsonl(path):
        where = f"{path}:{line_no}"
        question = _text(obj, "question", where)
        variants = _strings(obj, "answers", where)
        if obj.get("answer") is not None:
            answer = _text(obj, "answer", where)
        else:
            # no reference: the item still scores retrieval, and the report says so
            answer = variants[0] if variants else ""
        known = {"id", "question", "answer", "answers", "contexts", "gold_sources"}
        items.append(
            read_item(
                str(obj.get("id", f"{path.stem}-{line_no}")),
                question,
                answer,
                answers=variants,
                gold_sources=_strings(obj, "gold_sources", where),
                contexts=_strings(obj, "contexts", where),
                metadata={k: v for k, v in obj.items() if k not in known},
            )
        )
    return items


def load_task_jsonl(path: str | Path, task: TaskKind) -> list[EvalItem]:
    """Create/update/delete items from JSONL (fields per kind: see `_TASK_FIELDS`).

    Read items use `load_qa_jsonl`; this covers the three generation kinds of the bundled suite.
    """
    if task not in _TASK_FIELDS:
        if task == "read":
            return load_qa_jsonl(path)
        raise ValueError(f"task must be one of {TASK_KINDS}, got {task!r}")
    path = Path(path)
    # The builders differ in their positional fields, which `_TASK_FIELDS` lists per kind.
    builders: dict[str, Callable[..., EvalItem]] = {
        "create": create_item,
        "update": update_item,
        "delete": delete_item,
    }
    build = builders[task]
    fields = _TASK_FIELDS[task]
    items: list[EvalItem] = []
    for line_no, obj in _read_jsonl(path):
        where = f"{path}:{line_no}"
        # the last field is the reference; without it only retrieval is scored
        values = [_text(obj, key, where) for key in fields[:-1]]
        values.append(_text(obj, fields[-1], where) if obj.get(fields[-1]) is not None else "")
        quest = _QUEST_KEYS
        extra = {k: v for k, v in obj.items() if k not in {"id", "gold_sources", *fields, *quest}}
        # Shipping RAGQuestEval's questions with an item saves generating and answering them
        # from the reference on every run, as CRUD-RAG's own data does.
        questions, answers = (_strings(obj, key, where) for key in quest)
        if len(questions) != len(answers):
            raise InputError(f"{where}: {quest[0]!r} and {quest[1]!r} differ in length")
        items.append(
            build(
                str(obj.get("id", f"{path.stem}-{line_no}")),
                *values,
                gold_sources=_strings(obj, "gold_sources", where),
                metadata=extra,
                quest_questions=questions or None,
                quest_answers=answers or None,
            )
        )
    return items


# ---------------------------------------------------------------- suites


def _suite_file(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "suite.yaml"
    if path.is_file():
        return path
    if isinstance(name_or_path, str) and re.fullmatch(r"[\w.-]+", name_or_path):
        candidate = evals_dir() / name_or_path / "suite.yaml"
        if candidate.is_file():
            return candidate
        raise ConfigError(
            f"suite {name_or_path!r}: no {candidate} (known: {BUNDLED}; pass the path to a "
            "suite.yaml instead)"
        )
    raise ConfigError(f"suite {str(name_or_path)!r}: no such file or folder")


def load_suite(name_or_path: str | Path = BUNDLED) -> Suite:
    """Load a suite by name (`"bundled"` → `evals/bundled/suite.yaml`) or by path.

    A suite file is YAML with `name`, `description`, `corpus` (a folder) and `tasks` (a map from
    task kind to a JSONL file); paths are relative to the suite file.
    """
    from ragkit.spec import read_yaml

    path = _suite_file(name_or_path)
    spec = read_yaml(path)
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(spec) - _SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (allowed: {sorted(_SUITE_KEYS)})")
    tasks = spec.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise ConfigError(f"{path}: key 'tasks' must map task kinds to JSONL files")
    corpus = None
    if spec.get("corpus") is not None:
        corpus = (path.parent / str(spec["corpus"])).resolve()
        if not corpus.is_dir():
            raise ConfigError(f"{path}: key 'corpus': folder {corpus} does not exist")
    items: list[EvalItem] = []
    for kind, file in tasks.items():
        if kind not in TASK_KINDS:
            raise ConfigError(f"{path}: key 'tasks.{kind}': not a task kind {TASK_KINDS}")
        task_file = path.parent / str(file)
        if not task_file.is_file():
            raise ConfigError(f"{path}: key 'tasks.{kind}': file {task_file} does not exist")
        items.extend(load_task_jsonl(task_file, kind))
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise InputError(f"{path}: item id {item.id!r} is used twice")
        seen.add(item.id)
    name = str(spec.get("name") or path.parent.name)
    return Suite(name=name, items=tuple(items), corpus=corpus, path=path)
