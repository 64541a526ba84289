"""Run-folder JSONL: one record per finished unit of work, appended and flushed at once, so a
killed run loses at most the unit it was computing. Shared by `ragkit eval`, `ragkit tune` and
`ragkit synth`, whose runs all resume from such a log."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_records(path: Path, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Records written by earlier runs. A line cut short by a kill, or one that is not a record
    with the `required` keys (`123`, a list), is dropped and rewritten away, so its unit is
    computed again rather than failing the resumed run."""
    if not path.exists():
        return []
    keys = tuple(required)
    text = path.read_text(encoding="utf-8")
    records, broken = [], False
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and all(k in record for k in keys):
            records.append(record)
        else:
            broken = True
    if broken or (text and not text.endswith("\n")):
        path.write_text("".join(_line(r) for r in records), encoding="utf-8")
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(_line(record))
        out.flush()


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"
