"""Run-folder JSONL: one record per finished unit of work, appended and flushed at once, so a
killed run loses at most the unit it was computing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records written by earlier runs; a line cut short by a kill is dropped (and rewritten
    away) so its unit is computed again."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    records, broken = [], False
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
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
