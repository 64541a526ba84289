"""Dense retrieval: embed the query, find the nearest chunk vectors in the store."""

from __future__ import annotations

import json
from typing import Any

from pydantic import PrivateAttr

from ragkit.protocols import SupportsEmbedding, SupportsStorage
from ragkit.retrieval import Retriever
from ragkit.types import Query, Retrieved


class DenseRetriever(Retriever):
    """Nearest-neighbour search over the store with the same embedder that built it.

    All queries of a batch are embedded in one model call; queries that share the same
    `Query.filters` go to the store together as one multi-vector query.
    """

    store: SupportsStorage
    embedder: SupportsEmbedding

    _language_checked: bool = PrivateAttr(default=False)

    def __init__(
        self,
        store: SupportsStorage | None = None,
        embedder: SupportsEmbedding | None = None,
        top_k: int = 5,
        **kwargs: Any,
    ):
        super().__init__(store=store, embedder=embedder, top_k=top_k, **kwargs)
        if store is None or embedder is None:
            raise ValueError("DenseRetriever needs a store and an embedder, got None")

    def _retrieve(self, queries: list[Query], top_k: int) -> list[list[Retrieved]]:
        if not self._language_checked:
            from ragkit.languages import check_embedder

            self._language_checked = True
            model = getattr(self.embedder, "model_name", None)
            if isinstance(model, str):
                check_embedder(self.store, model)
        vectors = self.embedder.embed_queries([q.question for q in queries])
        groups: dict[str, list[int]] = {}
        for i, query in enumerate(queries):
            key = json.dumps(dict(query.filters or {}), sort_keys=True, default=str)
            groups.setdefault(key, []).append(i)
        results: list[list[Retrieved]] = [[] for _ in queries]
        for indices in groups.values():
            filters = queries[indices[0]].filters
            found = self.store.query(vectors[indices], k=top_k, where=filters)
            for i, hits in zip(indices, found, strict=True):
                results[i] = hits
        return results
