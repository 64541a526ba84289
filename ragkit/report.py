"""Printing answers for people (sources, citations, timings) and as records for machines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragkit.errors import InputError
from ragkit.types import Answer


def print_answer(
    answer: Answer,
    *,
    reference: str | None = None,
    text_shown: bool = False,
    shown: Callable[[str], str] = str,
) -> None:
    """Print an answer with its passages; `shown` maps a stored source to the name printed
    (the CLI passes the server's mapping, so both show paths relative to the ingested folder)."""
    from rich.console import Console
    from rich.markup import escape  # questions, answers and file names may hold "[/b]"

    console = Console()
    if answer.question and not text_shown:
        console.print(f"[bold]Q:[/bold] {escape(answer.question)}", highlight=False)
    if not text_shown:
        console.print(f"[bold]A:[/bold] {escape(answer.text.strip())}", highlight=False)
    if reference is not None:
        found = "found" if reference.lower() in answer.text.lower() else "not found"
        console.print(
            f"   reference: {escape(reference)} ({found} in the answer)",
            highlight=False,
        )
    marks = {c.number: "~" if c.inferred else "*" for c in answer.citations}
    for number, hit in enumerate(answer.retrieved, start=1):
        mark = marks.get(number, " ")
        source = escape(shown(hit.chunk.source))
        console.print(
            f"  {mark}\\[{number}] {source} chars {hit.chunk.start}-{hit.chunk.end} "
            f"(score {hit.score:.3f})",
            highlight=False,
        )
    if answer.citations:
        console.print(
            "   * cited by the model, ~ matched to the answer's words", style="dim", highlight=False
        )
    u = answer.usage
    console.print(
        f"   {u.prompt_tokens} prompt tokens ({u.cached_prompt_tokens} reused), "
        f"{u.completion_tokens} generated, first token {u.time_to_first_token_s:.2f}s, "
        f"total {u.total_time_s:.2f}s\n",
        style="dim",
        highlight=False,
    )


def answer_record(answer: Answer, item: dict[str, Any] | None = None) -> dict[str, Any]:
    u = answer.usage
    spans = {r.chunk.id: (r.chunk.start, r.chunk.end) for r in answer.retrieved}
    return {
        **(item or {}),
        "question": answer.question,
        "output": answer.text,
        "citations": [
            {
                "number": c.number,
                "chunk_id": c.chunk_id,
                "source": c.source,
                "span": list(spans[c.chunk_id]) if c.chunk_id in spans else None,
                "inferred": c.inferred,
            }
            for c in answer.citations
        ],
        "retrieved": [
            {
                "chunk_id": r.chunk.id,
                "source": r.chunk.source,
                "span": [r.chunk.start, r.chunk.end],
                "score": r.score,
            }
            for r in answer.retrieved
        ],
        "usage": {
            "prompt_tokens": u.prompt_tokens,
            "cached_prompt_tokens": u.cached_prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "time_to_first_token_s": u.time_to_first_token_s,
            "total_time_s": u.total_time_s,
            "passage_hits": u.passage_hits,
            "passage_misses": u.passage_misses,
            "passage_evictions": u.passage_evictions,
        },
    }


def read_questions(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Questions from JSONL (`question` required, `answer` optional), failing on the bad line."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    items = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{line_no}: invalid JSON: {exc.msg}") from exc
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise InputError(f"{path}:{line_no}: needs a string 'question' field")
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    return items
