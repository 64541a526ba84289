"""Context expansion: each final passage widened from the text around it in its document.

Search works best on small, focused chunks; a generator answers best from a passage with the
sentences around the fact. Both expanders read the neighbouring chunks of each hit from the
store (`ragkit.stages.neighbours`), so an index made by the chunker needs no re-ingest.

- `SentenceWindow` (LlamaIndex's sentence window, Haystack's `SentenceWindowRetriever`): the
  hit, completed to whole sentences, plus `sentences` sentences before and after it, with
  sentence ends found by `ragkit.text.sentence_spans` (English `.!?`, Chinese `。！？；`,
  blank lines).
- `ParentChunks` (auto-merging retrieval): a document's chunks are grouped into parents of
  `parent_chunks` consecutive chunks, aligned on chunk indices (chunks 0-3, 4-7, ... for 4);
  when at least `min_hits` of one parent's chunks are among the hits, they are replaced by the
  whole parent, its text running from its first chunk's start to its last chunk's end. Other
  hits stay as they are.

Expanded passages of one document that overlap or touch are merged into one, placed where its
best-ranked hit was, with that hit's score and metadata. A changed passage is a new `Chunk`
whose `start`/`end` are its span in the source document and whose id is
`<doc_id>@<start>-<end>`; its metadata names the expansion (`expanded`) and the stored chunks
it holds (`chunk_ids`), so a citation of it still points at the file and the characters. A hit
left unchanged keeps its chunk; chunks without a `chunk_index` (not made by the chunker) are
never expanded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field, model_validator

from ragkit.runnable import BatchedRunnable
from ragkit.stages.neighbours import Block, DocumentChunks, chunk_index
from ragkit.text import sentence_spans
from ragkit.types import Chunk, Retrieved

ExpandInput = dict[str, Any]
Span = tuple[int, int]
_MAX_ROUNDS = 8  # reads of a document's neighbours per hit before a window is cut short
_DROPPED = ("chunk_index", "token_count")  # metadata of one stored chunk, not of a passage


class _Expander(BatchedRunnable[ExpandInput, list[Retrieved]]):
    """Shared plumbing: `{"query", "retrieved"}` in, the expanded and merged passages out."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    source: Any  # a store, or anything with `get_chunks(ids=, where=)` (a ChunkSource)
    name: str = "expand"  # the run name in traces and the mode marked on merged passages

    def _run_batch(
        self, inputs: list[ExpandInput], config: list[RunnableConfig] | None = None
    ) -> list[list[Retrieved]]:
        return [self.expand(_hits(x)) for x in inputs]

    def expand(self, hits: Sequence[Retrieved]) -> list[Retrieved]:
        """The passages for one query's hits, in rank order; empty in gives empty out."""
        hits = list(hits)
        if not hits:
            return []
        docs: dict[str, DocumentChunks] = {}
        for hit in hits:
            if chunk_index(hit.chunk) is not None and hit.chunk.doc_id not in docs:
                same = [h.chunk for h in hits if h.chunk.doc_id == hit.chunk.doc_id]
                docs[hit.chunk.doc_id] = DocumentChunks(self.source, hit.chunk.doc_id, same)
        spans = self._spans(hits, docs)
        return _merge(hits, spans, docs, self.name)

    def _spans(self, hits: list[Retrieved], docs: dict[str, DocumentChunks]) -> list[Span | None]:
        """Each hit's widened span, or None to leave it as it is."""
        raise NotImplementedError


def _hits(value: ExpandInput) -> list[Retrieved]:
    if not isinstance(value, dict) or "retrieved" not in value:
        raise TypeError(f"an expander takes {{'query': str, 'retrieved': [...]}}, got {value!r}")
    return list(value["retrieved"] or ())


class SentenceWindow(_Expander):
    """Each hit completed to whole sentences, with `sentences` more on each side."""

    sentences: int = Field(2, ge=0)
    name: str = "window"

    def _spans(self, hits: list[Retrieved], docs: dict[str, DocumentChunks]) -> list[Span | None]:
        spans: list[Span | None] = [None] * len(hits)
        reach = {i: [1, 1] for i, h in enumerate(hits) if h.chunk.doc_id in docs}
        for _ in range(_MAX_ROUNDS):
            if not reach:
                break
            by_doc: dict[str, set[int]] = {}
            for i, (before, after) in reach.items():
                index = chunk_index(hits[i].chunk)
                assert index is not None
                by_doc.setdefault(hits[i].chunk.doc_id, set()).update(
                    range(index - before, index + after + 1)
                )
            for doc_id, wanted in by_doc.items():
                docs[doc_id].fetch(wanted)
            for i in list(reach):
                chunk = hits[i].chunk
                doc = docs[chunk.doc_id]
                span, more_before, more_after = self._window(doc, chunk)
                spans[i] = span
                if not (more_before or more_after):
                    del reach[i]
                    continue
                reach[i][0] *= 2 if more_before else 1
                reach[i][1] *= 2 if more_after else 1
        return spans

    def _window(self, doc: DocumentChunks, chunk: Chunk) -> tuple[Span, bool, bool]:
        """The window's span in the text read so far, and whether more text is needed before
        or after it (the first and last sentence of a block may be cut by the chunker)."""
        index = chunk_index(chunk)
        assert index is not None
        block = doc.block(index)
        sentences = [
            (block.start + a, block.start + b)
            for a, b in sentence_spans(block.text)
            if block.text[a:b].strip()
        ]
        if not sentences:
            return (chunk.start, chunk.end), False, False
        first = next(i for i, (_, end) in enumerate(sentences) if end > chunk.start)
        last = max(i for i, (start, _) in enumerate(sentences) if start < chunk.end)
        can_before = block.first > 0 and doc.exists(block.first - 1) is not False
        can_after = doc.exists(block.last + 1) is not False
        floor = 1 if can_before else 0
        ceiling = len(sentences) - (2 if can_after else 1)
        low, high = first - self.sentences, last + self.sentences
        more_before, more_after = low < floor and can_before, high > ceiling and can_after
        low = min(max(low, floor), first)
        high = max(min(high, ceiling), last)
        start = min(sentences[low][0], chunk.start)
        end = max(sentences[high][1], chunk.end)
        return _trimmed(block, start, end), more_before, more_after


class ParentChunks(_Expander):
    """Hits replaced by their parent (`parent_chunks` consecutive chunks, aligned on chunk
    indices) when at least `min_hits` of the parent's chunks were hit."""

    parent_chunks: int = Field(4, ge=2)
    min_hits: int = Field(2, ge=1)
    name: str = "parent"

    @model_validator(mode="after")
    def _check(self) -> ParentChunks:
        if self.min_hits > self.parent_chunks:
            raise ValueError(
                f"min_hits ({self.min_hits}) cannot exceed parent_chunks ({self.parent_chunks})"
            )
        return self

    def _spans(self, hits: list[Retrieved], docs: dict[str, DocumentChunks]) -> list[Span | None]:
        families: dict[tuple[str, int], list[int]] = {}
        for i, hit in enumerate(hits):
            index = chunk_index(hit.chunk)
            if index is not None:
                families.setdefault((hit.chunk.doc_id, index // self.parent_chunks), []).append(i)
        # Every hit takes part in merging: a hit that overlaps a parent joins it.
        spans: list[Span | None] = [
            (h.chunk.start, h.chunk.end) if chunk_index(h.chunk) is not None else None for h in hits
        ]
        for (doc_id, parent), members in families.items():
            if len({chunk_index(hits[i].chunk) for i in members}) < self.min_hits:
                continue
            doc = docs[doc_id]
            first = parent * self.parent_chunks
            doc.fetch(range(first, first + self.parent_chunks))
            children = [doc.chunks.get(i) for i in range(first, first + self.parent_chunks)]
            present = [c for c in children if c is not None]
            span = (min(c.start for c in present), max(c.end for c in present))
            for i in members:
                spans[i] = span
        return spans


def _trimmed(block: Block, start: int, end: int) -> Span:
    text = block.span_text(start, end)
    lead = len(text) - len(text.lstrip())
    tail = len(text) - len(text.rstrip())
    return (start + lead, end - tail) if lead + tail < len(text) else (start, end)


def _merge(
    hits: list[Retrieved],
    spans: list[Span | None],
    docs: dict[str, DocumentChunks],
    mode: str,
) -> list[Retrieved]:
    """One passage per group of overlapping or touching spans of a document, at the place of
    its best-ranked hit; hits whose span did not change and merged with nothing stay as they
    are."""
    blocks: dict[int, Block] = {}
    for i, hit in enumerate(hits):
        if spans[i] is not None:
            index = chunk_index(hit.chunk)
            assert index is not None
            blocks[i] = docs[hit.chunk.doc_id].block(index)
    # Union spans that lie in one block and overlap or meet at whitespace.
    group_of = list(range(len(hits)))
    by_block: dict[tuple[str, int], list[int]] = {}
    for i, block in blocks.items():
        by_block.setdefault((block.doc_id, block.first), []).append(i)
    for members in by_block.values():
        members.sort(key=lambda i: spans[i])  # type: ignore[arg-type, return-value]
        head, reach = members[0], spans[members[0]][1]  # type: ignore[index]
        for i in members[1:]:
            start, end = spans[i]  # type: ignore[misc]
            if start <= reach or not blocks[i].span_text(reach, start).strip():
                group_of[i] = head
                reach = max(reach, end)
            else:
                head, reach = i, end
    groups: dict[int, list[int]] = {}
    for i in range(len(hits)):
        root = group_of[i]
        while group_of[root] != root:
            root = group_of[root]
        groups.setdefault(root, []).append(i)
    ordered = sorted(groups.values(), key=min)
    out = []
    for rank, members in enumerate(ordered, start=1):
        best = hits[min(members)]
        first_span = spans[members[0]]
        unchanged = first_span is None or (
            len(members) == 1 and first_span == (best.chunk.start, best.chunk.end)
        )
        if unchanged:
            out.append(dataclasses.replace(best, rank=rank))
            continue
        start = min(spans[i][0] for i in members)  # type: ignore[index]
        end = max(spans[i][1] for i in members)  # type: ignore[index]
        block = blocks[members[0]]
        meta = {k: v for k, v in best.chunk.metadata.items() if k not in _DROPPED}
        meta["expanded"] = mode
        meta["chunk_ids"] = [hits[i].chunk.id for i in sorted(members)]
        chunk = Chunk(
            id=f"{best.chunk.doc_id}@{start}-{end}",
            doc_id=best.chunk.doc_id,
            text=block.span_text(start, end),
            start=start,
            end=end,
            metadata=meta,
        )
        score = max(hits[i].score for i in members)
        out.append(Retrieved(chunk=chunk, score=score, rank=rank, source=best.source))
    return out
