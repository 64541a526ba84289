"""Complete a dense search that chroma answered short.

After deletions and upserts, chroma's approximate index can return fewer hits than the records
that match (chroma-core/chroma#4275, #7758): a document just re-ingested may then be missing
from the search that should find it. A short answer is checked against how many records match
the filter; when some are missing, the query is answered exactly from the stored vectors, as
long as the matching records are few enough to read (beyond that the short answer stands, with
a warning). Full answers, the normal case, cost nothing extra.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Reading this many vectors for one exact search stays well under a second.
EXACT_LIMIT = 50_000
QUERY_FIELDS = ("ids", "documents", "metadatas", "distances")


def complete_short_results(
    collection: Any,
    vectors: np.ndarray,
    k: int,
    where: Mapping[str, Any] | None,
    result: Mapping[str, Any],
) -> dict[str, Any]:
    """`result` of `collection.query(vectors, n_results=k, where=where)`, with every query that
    got fewer hits than the records matching `where` answered again exactly (cosine distance)."""
    out = {name: list(result[name]) for name in QUERY_FIELDS}
    short = [i for i, ids in enumerate(out["ids"]) if len(ids) < k]
    if not short:
        return out
    matching = _matching_count(collection, where)
    short = [i for i in short if len(out["ids"][i]) < min(k, matching)]
    if not short:
        return out
    if matching > EXACT_LIMIT:
        log.warning(
            "chroma returned fewer than %d hits although %d records match; too many to search "
            "exactly, so the short answer stands",
            k,
            matching,
        )
        return out
    stored = collection.get(where=where, include=["embeddings", "documents", "metadatas"])
    matrix = np.asarray(stored["embeddings"], dtype=np.float32)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    for i in short:
        query = vectors[i] / max(float(np.linalg.norm(vectors[i])), 1e-12)
        distances = 1.0 - matrix @ query
        order = np.argsort(distances, kind="stable")[:k]
        out["ids"][i] = [stored["ids"][j] for j in order]
        out["documents"][i] = [stored["documents"][j] for j in order]
        out["metadatas"][i] = [stored["metadatas"][j] for j in order]
        out["distances"][i] = [float(distances[j]) for j in order]
    return out


def _matching_count(collection: Any, where: Mapping[str, Any] | None) -> int:
    if where is None:
        return int(collection.count())
    got = collection.get(where=where, include=[], limit=EXACT_LIMIT + 1)
    return len(got["ids"])
