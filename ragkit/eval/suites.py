"""Opens a suite by name or path: the bundled suite, a suite.yaml, or the CRUD-RAG factoid
questions over its news corpus (which is indexed from documents, not files)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ragkit.errors import ConfigError
from ragkit.eval.crud_rag import answerable_factoids, load_crud_news
from ragkit.eval.datasets import Suite, load_suite

CRUD_SUITE = "crud-rag"
FACTOID_FILE = Path("qa") / "questanswer_1doc_factoids.json"


def crud_data_dir(data: Path | None) -> Path:
    """The CRUD-RAG folder: `--data`, else $RAGKIT_CRUD_DIR, else ../shared/data/crud-rag."""
    candidates = [data] if data is not None else []
    if os.environ.get("RAGKIT_CRUD_DIR"):
        candidates.append(Path(os.environ["RAGKIT_CRUD_DIR"]))
    candidates.append(Path("..") / "shared" / "data" / "crud-rag")
    for path in candidates:
        if (path / FACTOID_FILE).is_file():
            return path
    raise ConfigError(
        f"suite {CRUD_SUITE!r}: no {FACTOID_FILE} under {', '.join(map(str, candidates))}"
    )


def open_suite(
    name_or_path: str, *, data: Path | None = None, articles: int = 3000
) -> tuple[Suite, Callable[[], Iterable[Any]] | None]:
    """The suite, and for corpora that are not plain files a callable yielding its Documents."""
    if name_or_path != CRUD_SUITE:
        return load_suite(name_or_path), None
    if articles <= 0:
        raise ValueError(f"--articles must be > 0, got {articles}")
    root = crud_data_dir(data)
    news = root / "news"
    items = answerable_factoids(news, root / FACTOID_FILE, max_articles=articles)
    suite = Suite(name=f"{CRUD_SUITE}-{articles}", items=tuple(items), corpus=None, path=root)
    return suite, lambda: load_crud_news(news, limit=articles)
