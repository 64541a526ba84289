"""Split Documents into sentence-aware windows of the embedder's own tokens, with overlap."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, PrivateAttr, model_validator

from ragkit.errors import ConfigError
from ragkit.models import DEFAULT_EMBEDDING_MODEL, resolve_embedding_model
from ragkit.runnable import BatchedRunnable
from ragkit.text import sentence_spans
from ragkit.types import Chunk, Document

_WORD_SNAP_TOKENS = 16  # how far back a cut may move to land on a word start


@cache
def _default_tokenizer() -> Any:
    """The default embedder's tokenizer, loaded once per process and shared by all chunkers.

    A packaged model folder ships `tokenizer.json`, which the Rust `tokenizers` library loads
    in a fraction of a second; going through `transformers` would add its import (10+ s on a
    small machine) to every chunking-only process for the same tokenizer.
    """
    location = resolve_embedding_model(DEFAULT_EMBEDDING_MODEL)
    tokenizer_file = Path(location) / "tokenizer.json"
    if tokenizer_file.is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(tokenizer_file))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(location)


def plain_tokenizer(tokenizer: Any = None) -> Any:
    """The Rust tokenizer behind `tokenizer` (default: the default embedder's), with truncation
    and padding off, so any length of text is counted in full."""
    if tokenizer is None:
        tokenizer = _default_tokenizer()
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if not hasattr(backend, "encode_batch"):
        raise ConfigError(
            f"tokenizer: expected a HuggingFace fast tokenizer, got {type(tokenizer)!r}"
        )
    if backend.truncation is not None or backend.padding is not None:
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(backend.to_str())
        backend.no_truncation()
        backend.no_padding()
    return backend


class TokenChunker(BatchedRunnable[Document, list[Chunk]]):
    """Windows of at most `chunk_tokens` tokens, measured with the embedder's tokenizer.

    Counting the embedder's own tokens (not characters or words) is what keeps every chunk
    inside the embedding model's input limit, for Chinese and English alike. Windows end on a
    sentence boundary when one fits, so a passage rarely starts or ends mid-sentence; the
    next window starts `overlap_tokens` earlier so facts at a cut appear whole in one chunk.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    tokenizer: Any = None
    chunk_tokens: int = 256
    overlap_tokens: int = 32
    respect_sentences: bool = True

    _backend: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_sizes(self) -> TokenChunker:
        if self.chunk_tokens <= 0:
            raise ValueError(f"chunk_tokens must be > 0, but got {self.chunk_tokens}")
        if not 0 <= self.overlap_tokens < self.chunk_tokens:
            raise ValueError(
                f"overlap_tokens must be >= 0 and < chunk_tokens ({self.chunk_tokens}), "
                f"but got {self.overlap_tokens}"
            )
        return self

    def _run_batch(
        self, inputs: list[Document], config: list[RunnableConfig] | RunnableConfig | None = None
    ) -> list[list[Chunk]]:
        """All documents go through one tokenizer call, which the Rust tokenizer parallelises."""
        return self._split(inputs)

    def split_documents(self, docs: Iterable[Document], *, batch_size: int = 64) -> Iterator[Chunk]:
        """Chunks of a stream of documents, tokenized `batch_size` documents at a time so a
        large corpus never sits in memory as tokens all at once."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, but got {batch_size}")
        pending: list[Document] = []
        for doc in docs:
            pending.append(doc)
            if len(pending) == batch_size:
                for chunks in self._split(pending):
                    yield from chunks
                pending = []
        if pending:
            for chunks in self._split(pending):
                yield from chunks

    def _split(self, docs: list[Document]) -> list[list[Chunk]]:
        for doc in docs:
            if not isinstance(doc, Document):
                raise TypeError(f"TokenChunker expects ragkit.types.Document, got {type(doc)!r}")
        encodings = self._tokenizer().encode_batch(
            [doc.text for doc in docs], add_special_tokens=False
        )
        return [self._chunk(doc, enc) for doc, enc in zip(docs, encodings, strict=True)]

    def _tokenizer(self) -> Any:
        """The Rust tokenizer behind a HF fast tokenizer, with truncation and padding off.

        Calling the Rust side directly gives offsets for any length of text without the
        "sequence longer than model_max_length" warning and without per-call Python overhead.
        """
        if self._backend is None:
            self._backend = plain_tokenizer(self.tokenizer)
        return self._backend

    def _chunk(self, doc: Document, encoding: Any) -> list[Chunk]:
        text = doc.text
        if not text.strip():
            return []
        starts = [start for start, _ in encoding.offsets]
        n = len(starts)
        if n == 0:  # only characters the tokenizer drops: keep them findable anyway
            only = self._make(doc, 0, 0, len(text), 0)
            return [only] if only is not None else []
        boundaries: list[int] = []
        if self.respect_sentences:
            ends = (bisect_left(starts, end) for _, end in sentence_spans(text))
            boundaries = sorted({b for b in ends if 0 < b < n})
        words = _WordStarts(encoding)
        chunks: list[Chunk] = []
        a, floor = 0, 0
        while True:
            b = self._window_end(a, floor, n, boundaries, words)
            start = 0 if a == 0 else starts[a]
            end = len(text) if b >= n else starts[b]
            chunk = self._make(doc, len(chunks), start, end, b - a)
            if chunk is not None:
                chunks.append(chunk)
            if b >= n:
                return chunks
            a, floor = self._next_start(a, b, boundaries, words), b

    def _window_end(
        self, a: int, floor: int, n: int, boundaries: list[int], words: _WordStarts
    ) -> int:
        """Last sentence end that fits and moves past `floor`, else a word start, else the limit."""
        limit = a + self.chunk_tokens
        if limit >= n:
            return n
        i = bisect_right(boundaries, limit) - 1
        if i >= 0 and boundaries[i] > max(a, floor):
            return boundaries[i]
        lowest = max(a, floor, limit - _WORD_SNAP_TOKENS)
        for j in range(limit, lowest, -1):
            if words.starts_word(j):
                return j
        return limit

    def _next_start(self, a: int, b: int, boundaries: list[int], words: _WordStarts) -> int:
        """`overlap_tokens` before `b`: whole trailing sentences if they fit, else a word start."""
        if self.overlap_tokens == 0:
            return b
        target = max(b - self.overlap_tokens, a + 1)
        i = bisect_left(boundaries, target)
        if i < len(boundaries) and boundaries[i] < b:
            return boundaries[i]
        lowest = max(a, target - _WORD_SNAP_TOKENS)
        for j in range(target, lowest, -1):
            if words.starts_word(j):
                return j
        return target

    @staticmethod
    def _make(doc: Document, index: int, start: int, end: int, tokens: int) -> Chunk | None:
        """A chunk with surrounding whitespace moved out of its span, never cut from its text."""
        text = doc.text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end:
            return None
        return Chunk(
            id=f"{doc.id}:{index:05d}",
            doc_id=doc.id,
            text=text[start:end],
            start=start,
            end=end,
            metadata={**doc.metadata, "chunk_index": index, "token_count": tokens},
        )


class _WordStarts:
    """Whether token i begins a word; word ids are fetched only for documents that need a cut
    inside a sentence, since most windows end on a sentence boundary."""

    def __init__(self, encoding: Any) -> None:
        self._encoding = encoding
        self._ids: list[int | None] | None = None

    def starts_word(self, i: int) -> bool:
        if self._ids is None:
            self._ids = self._encoding.word_ids
        return self._ids[i] is None or self._ids[i] != self._ids[i - 1]
