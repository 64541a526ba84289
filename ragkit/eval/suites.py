"""Opens a suite by name or path: the bundled suite, a suite.yaml, or one of the CRUD-RAG suites
over its news corpus (which is indexed from documents, not files)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ragkit.errors import ConfigError
from ragkit.eval import crud_news
from ragkit.eval.crud_rag import answerable_factoids, default_crud_dir, load_crud_news
from ragkit.eval.datasets import Suite, load_suite

CRUD_SUITE = "crud-rag"
CRUD_SUITES = (CRUD_SUITE, crud_news.SUITE)
FACTOID_FILE = crud_news.FACTOID_FILE


def crud_data_dir(data: Path | None, suite: str = CRUD_SUITE) -> Path:
    """The CRUD-RAG folder: `--data`, else $RAGKIT_CRUD_DIR, else ../shared/data/crud-rag."""
    candidates = [data] if data is not None else []
    if os.environ.get("RAGKIT_CRUD_DIR"):
        candidates.append(Path(os.environ["RAGKIT_CRUD_DIR"]))
    candidates.append(default_crud_dir())
    for path in candidates:
        if (path / FACTOID_FILE).is_file() and (path / "news").is_dir():
            return path
    raise ConfigError(
        f"suite {suite!r} needs the CRUD-RAG data (news/ and {FACTOID_FILE}): put it in "
        f"{candidates[-1]} or pass --data DIR (looked in {', '.join(map(str, candidates))})"
    )


def open_suite(
    name_or_path: str, *, data: Path | None = None, articles: int = 3000
) -> tuple[Suite, Callable[[], Iterable[Any]] | None]:
    """The suite, and for corpora that are not plain files a callable yielding its Documents."""
    if name_or_path not in CRUD_SUITES:
        return load_suite(name_or_path), None
    if articles <= 0:
        raise ValueError(f"--articles must be > 0, got {articles}")
    root = crud_data_dir(data, name_or_path)
    if name_or_path == crud_news.SUITE:
        return crud_news.build_crud_news(root, articles=articles)
    news = root / "news"
    items = answerable_factoids(news, root / FACTOID_FILE, max_articles=articles)
    suite = Suite(name=f"{CRUD_SUITE}-{articles}", items=tuple(items), corpus=None, path=root)
    return suite, lambda: load_crud_news(news, limit=articles)
