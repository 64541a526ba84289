"""Passage extraction: each final passage cut to the sentences that bear on the question, so the
prompt is shorter (less prefill, which is most of the time to first token on a CPU) and carries
less that could mislead a small model.

Sentences are found with `ragkit.text.sentence_spans` (English and Chinese rules) and scored
against the question: by BM25 over words and Chinese character bigrams, with statistics from
this question's sentences alone, or by cosine similarity under an embedder. Every passage keeps
its best sentence, so no passage disappears and the passage numbers the generator cites stay
those of the uncompressed prompt; then the best remaining sentences are added, best first,
while the total stays within `max_tokens` (counted with the default embedder's tokenizer, the
unit of `chunker.chunk_tokens`). Sentences that share no term with the question are left out.
Kept sentences stay in their original order; runs of them are joined by an ellipsis.

A compressed passage keeps its chunk's id, document and span, so a citation still names the
file and the characters it came from; its text is the kept sentences, and
`metadata["kept_spans"]` lists their `[start, end)` in the source document. A passage whose
every sentence was kept is returned unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr

from ragkit.runnable import BatchedRunnable
from ragkit.text import is_cjk, sentence_spans
from ragkit.types import Chunk, Retrieved

CompressInput = dict[str, Any]
Sentence = tuple[int, int]  # [start, end) inside the passage's text, whitespace trimmed
KEPT_KEY = "kept_spans"


def sentences_of(text: str) -> list[Sentence]:
    """The passage's sentences, trimmed of surrounding whitespace; blank ones dropped."""
    out = []
    for start, end in sentence_spans(text):
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            out.append((start + lead, start + lead + len(stripped)))
    return out


class ExtractiveCompressor(BatchedRunnable[CompressInput, list[Retrieved]]):
    """`{"query", "retrieved"}` in; the same passages, in the same order, cut to their most
    relevant sentences within `max_tokens`. With an `embedder` sentences are scored by cosine
    similarity to the question, otherwise by BM25."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    max_tokens: int = Field(400, gt=0)
    embedder: Any = None
    tokenizer: Any = None  # counts tokens; the default embedder's tokenizer when None

    _counter: Any = PrivateAttr(default=None)

    def _run_batch(
        self, inputs: list[CompressInput], config: list[RunnableConfig] | None = None
    ) -> list[list[Retrieved]]:
        questions = [_question(x) for x in inputs]
        lists = [list(x.get("retrieved") or ()) for x in inputs]
        found = [[sentences_of(h.chunk.text) for h in hits] for hits in lists]
        scores = self._scores(questions, lists, found)
        allowed = self._allowed(questions, lists, found, config[0] if config else None)
        return [
            self._keep(hits, sents, score, allow)
            for hits, sents, score, allow in zip(lists, found, scores, allowed, strict=True)
        ]

    # ---- scoring -------------------------------------------------------------------------
    def _scores(
        self,
        questions: list[str],
        lists: list[list[Retrieved]],
        found: list[list[list[Sentence]]],
    ) -> list[list[list[float]]]:
        """Per question, per passage, per sentence: how well it matches the question."""
        texts = [
            [h.chunk.text[a:b] for h, sents in zip(hits, per, strict=True) for a, b in sents]
            for hits, per in zip(lists, found, strict=True)
        ]
        if self.embedder is not None:
            flat = self._cosines(questions, texts)
        else:
            from ragkit.retrieval.bm25 import bm25_scores

            flat = [
                bm25_scores(q, t, terms="words+bigrams")
                for q, t in zip(questions, texts, strict=True)
            ]
        return [_regroup(f, per) for f, per in zip(flat, found, strict=True)]

    def _cosines(self, questions: list[str], texts: list[list[str]]) -> list[list[float]]:
        import numpy as np

        q = np.asarray(self.embedder.embed_queries(questions), dtype=np.float32)
        every = [t for group in texts for t in group]
        if not every:
            return [[] for _ in texts]
        p = np.asarray(self.embedder.embed_documents(every), dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        out, start = [], 0
        for vec, group in zip(q, texts, strict=True):
            out.append([float(x) for x in p[start : start + len(group)] @ vec])
            start += len(group)
        return out

    def _allowed(
        self,
        questions: list[str],
        lists: list[list[Retrieved]],
        found: list[list[list[Sentence]]],
        config: RunnableConfig | None,
    ) -> list[list[set[int]] | None]:
        """Which sentences may be kept, per passage; None lets the scores decide alone."""
        return [None] * len(questions)

    # ---- selection -----------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._counter is None:
            from ragkit.index.chunking import plain_tokenizer

            self._counter = plain_tokenizer(self.tokenizer)
        if not texts:
            return []
        encoded = self._counter.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encoded]

    def _keep(
        self,
        hits: list[Retrieved],
        found: list[list[Sentence]],
        scores: list[list[float]],
        allowed: list[set[int]] | None,
    ) -> list[Retrieved]:
        flat = [(p, s) for p, sents in enumerate(found) for s in range(len(sents))]
        sizes = self.count_tokens([hits[p].chunk.text[slice(*found[p][s])] for p, s in flat])
        tokens = dict(zip(flat, sizes, strict=True))
        kept: list[set[int]] = [set() for _ in hits]
        used = 0
        for p, sents in enumerate(found):  # every passage keeps its best sentence
            if sents:
                pool = (allowed[p] if allowed is not None else set()) or set(range(len(sents)))
                best = min(pool, key=lambda s: (-scores[p][s], s))
                kept[p].add(best)
                used += tokens[(p, best)]
        ranked = sorted(flat, key=lambda ps: (-scores[ps[0]][ps[1]], ps[0], ps[1]))
        for p, s in ranked:
            if s in kept[p]:
                continue
            if allowed is not None:
                if s not in allowed[p]:
                    continue
            elif scores[p][s] <= 0:
                continue
            if used + tokens[(p, s)] <= self.max_tokens:
                kept[p].add(s)
                used += tokens[(p, s)]
        return [_cut(hit, sents, keep) for hit, sents, keep in zip(hits, found, kept, strict=True)]


def _question(value: CompressInput) -> str:
    if not isinstance(value, dict) or "query" not in value:
        raise TypeError(f"a compressor takes {{'query': str, 'retrieved': [...]}}, got {value!r}")
    query = value["query"]
    return str(getattr(query, "question", query))


def _regroup(flat: Sequence[float], found: list[list[Sentence]]) -> list[list[float]]:
    out, start = [], 0
    for sents in found:
        out.append([float(x) for x in flat[start : start + len(sents)]])
        start += len(sents)
    return out


def _cut(hit: Retrieved, found: list[Sentence], keep: set[int]) -> Retrieved:
    """The passage with only the kept sentences; unchanged when all were kept."""
    if len(keep) == len(found):
        return hit
    text = hit.chunk.text
    runs: list[list[int]] = []
    for s in sorted(keep):
        if runs and runs[-1][1] == s - 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    pieces = [text[found[a][0] : found[b][1]] for a, b in runs]
    joint = "…" if is_cjk(text) else " … "
    base = hit.chunk.start
    spans = [[base + found[a][0], base + found[b][1]] for a, b in runs]
    chunk: Chunk = dataclasses.replace(
        hit.chunk,
        text=joint.join(pieces),
        metadata={**hit.chunk.metadata, KEPT_KEY: spans},
    )
    return dataclasses.replace(hit, chunk=chunk)
