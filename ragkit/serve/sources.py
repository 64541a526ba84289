"""Source names as clients see them: relative to the folder that was ingested.

The store keeps each document's full path (local tools open it), but a client of the server
has no business learning how the server's disk is laid out. The ingested folder is not recorded
per document, so it is taken as the deepest folder holding every document of the pipeline's
store; a source outside it (ingested later elsewhere) shows only its file name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragkit.protocols import Pipeline

log = logging.getLogger("ragkit.serve")


def _stores(component: Any, depth: int = 0) -> Iterator[Any]:
    """Stores reachable from a retriever (dense `store`, BM25 `corpus`, hybrid `retrievers`)."""
    if component is None or depth > 4:
        return
    for attribute in ("store", "corpus"):
        found = getattr(component, attribute, None)
        if found is not None and hasattr(found, "documents"):
            yield found
    for child in getattr(component, "retrievers", None) or ():
        yield from _stores(child, depth + 1)


def common_root(sources: Iterable[str]) -> str | None:
    """The deepest folder holding every absolute file source (`path#n` records count as path)."""
    paths = [s.split("#", 1)[0] for s in sources]
    paths = [p for p in paths if os.path.isabs(p)]
    if not paths:
        return None
    try:
        root = os.path.commonpath(paths)
    except ValueError:  # mixed drives
        return None
    if root in paths:  # one file, or every source is the same file
        root = os.path.dirname(root)
    return root


class SourceNames:
    """Maps stored sources to what the API shows."""

    def __init__(self, root: str | None) -> None:
        self.root = root

    @classmethod
    def for_pipeline(cls, rag: Pipeline) -> SourceNames:
        sources: list[str] = []
        for store in _stores(rag.retriever):
            try:
                sources += [record.source for record in store.documents().values()]
            except Exception as exc:  # a store that cannot list documents: names only
                log.warning("could not list the store's documents: %s", exc)
        return cls(common_root(sources))

    def shown(self, source: str) -> str:
        path, hash_, record = source.partition("#")
        if not os.path.isabs(path):
            return source
        if self.root is not None:
            relative = os.path.relpath(path, self.root)
            if not relative.startswith(os.pardir):
                return PurePath(relative).as_posix() + hash_ + record
        return PurePath(path).name + hash_ + record
