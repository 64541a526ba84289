"""Lexical retrieval: BM25 over word tokens (jieba for Chinese), built from chunks or a store."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import PrivateAttr

from ragkit.protocols import ChunkSource
from ragkit.retrieval import Retriever
from ragkit.text import LexicalTerms, lexical_terms
from ragkit.types import Chunk, Query, Retrieved


def matches(chunk: Chunk, filters: Mapping[str, Any] | None) -> bool:
    """Simple `{key: value}` filters (a list value means any of), as the dense store applies."""
    if not filters:
        return True
    for key, wanted in filters.items():
        value = chunk.doc_id if key == "doc_id" else chunk.metadata.get(key)
        if isinstance(wanted, list | tuple | set | frozenset):
            if value not in wanted:
                return False
        elif isinstance(wanted, Mapping):
            raise ValueError(
                f"BM25 filters take {{key: value}} or {{key: [values]}}; got an operator for "
                f"{key!r}: {wanted!r}"
            )
        elif value != wanted:
            return False
    return True


class BM25Retriever(Retriever):
    """Keyword matching that catches names, numbers and rare terms dense vectors blur.

    Given a store, the index is built from the store's chunks on first use and rebuilt when
    the collection's size changes; given a list of chunks, it is built once from them.
    Chunks with no query term in common (score 0) are never returned.
    """

    corpus: ChunkSource | list[Any]  # a store, or the Chunks themselves
    terms: LexicalTerms = "words"

    _chunks: list[Chunk] = PrivateAttr(default_factory=list)
    _index: Any = PrivateAttr(default=None)
    _built_at: int = PrivateAttr(default=-1)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(
        self, corpus: ChunkSource | Sequence[Chunk] | None = None, top_k: int = 5, **kwargs: Any
    ):
        if corpus is None:
            raise ValueError("BM25Retriever needs chunks or a store, got None")
        if not hasattr(corpus, "get_chunks"):
            corpus = list(corpus)
            bad = next((c for c in corpus if not isinstance(c, Chunk)), None)
            if bad is not None:
                raise ValueError(f"BM25Retriever corpus must hold Chunks, got {type(bad)!r}")
        super().__init__(corpus=corpus, top_k=top_k, **kwargs)

    def warm_up(self) -> None:
        """Build (or rebuild after the store grew or shrank) the BM25 index, once per change;
        the lazy-load convention of `ragkit.protocols.SupportsWarmUp`."""
        corpus = self.corpus  # a list once `__init__` has read any other iterable of chunks
        size = len(corpus) if isinstance(corpus, list) else corpus.count()
        if not isinstance(corpus, list) and size == 0 and hasattr(corpus, "require_chunks"):
            corpus.require_chunks()  # a missing or empty index is an error, not no match
        if self._index is not None and size == self._built_at:
            return
        with self._lock:
            if self._index is not None and size == self._built_at:
                return
            import bm25s

            chunks = list(corpus) if isinstance(corpus, list) else corpus.get_chunks()
            index = bm25s.BM25()
            if chunks:
                index.index(
                    [lexical_terms(c.text, self.terms) for c in chunks], show_progress=False
                )
            self._chunks, self._index, self._built_at = chunks, index, size

    def _retrieve(self, queries: list[Query], top_k: int) -> list[list[Retrieved]]:
        self.warm_up()
        return [self._search(query, top_k) for query in queries]

    def _search(self, query: Query, top_k: int) -> list[Retrieved]:
        chunks = self._chunks
        tokens = lexical_terms(query.question, self.terms)
        if not chunks or not tokens:
            return []
        scores = np.asarray(self._index.get_scores(tokens), dtype=np.float64)
        if query.filters:
            allowed = np.fromiter(
                (matches(c, query.filters) for c in chunks), dtype=bool, count=len(chunks)
            )
            scores = np.where(allowed, scores, 0.0)
        candidates = np.flatnonzero(scores > 0)
        if candidates.size > top_k:
            candidates = candidates[np.argpartition(-scores[candidates], top_k - 1)[:top_k]]
        order = candidates[np.lexsort((candidates, -scores[candidates]))]
        return [
            Retrieved(chunk=chunks[i], score=float(scores[i]), rank=rank, source="bm25")
            for rank, i in enumerate(order, start=1)
        ]

    @classmethod
    def from_chunks(
        cls, chunks: Sequence[Chunk], top_k: int = 5, terms: LexicalTerms = "words"
    ) -> BM25Retriever:
        return cls(list(chunks), top_k=top_k, terms=terms)


def bm25_scores(
    query: str,
    texts: Sequence[str],
    k1: float = 1.2,
    b: float = 0.75,
    terms: LexicalTerms = "words",
) -> list[float]:
    """BM25 of each text for the query, with statistics from these texts alone: for scoring a
    short list (a shortlist of passages, the sentences of a few passages) without an index."""
    if not texts:
        return []
    docs = [Counter(lexical_terms(t, terms)) for t in texts]
    lengths = [sum(d.values()) for d in docs]
    mean = sum(lengths) / len(docs) or 1.0
    wanted = set(lexical_terms(query, terms))
    df = {term: sum(1 for d in docs if term in d) for term in wanted}
    scores = []
    for doc, length in zip(docs, lengths, strict=True):
        score = 0.0
        for term in wanted:
            tf = doc.get(term, 0)
            if tf:
                idf = math.log(1 + (len(docs) - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / mean))
        scores.append(score)
    return scores
