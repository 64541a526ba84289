"""The values that flow between ragkit's stages, shared by every module and nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Layout = Literal["prepend", "append"]


@dataclass(frozen=True, slots=True)
class Document:
    """A whole source text; `id` is stable across runs (source path + content hash)."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", self.id))


@dataclass(frozen=True, slots=True)
class Chunk:
    """A window of a document; `text == document.text[start:end]` so citations can point back."""

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", self.doc_id))


@dataclass(frozen=True, slots=True)
class Retrieved:
    """A chunk found for a query; `source` names the retriever or fusion that produced the score."""

    chunk: Chunk
    score: float
    rank: int
    source: str = "dense"


@dataclass(frozen=True, slots=True)
class Query:
    """A question with what may narrow or shape its retrieval."""

    question: str
    history: tuple[tuple[str, str], ...] = ()  # (role, content) of earlier turns
    filters: Mapping[str, Any] | None = None
    # A task prompt (e.g. "continue this news text … Documents:") that replaces the default
    # instruction-and-question prefix, and the cue that follows the passages.
    instruction: str | None = None
    cue: str | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """One passage as the generator sees it: its citation number and its rendered text.

    `text[body_start:]` is the part that does not depend on `number` (the assembler renders the
    number first), so a generator can reuse that part's KV wherever the passage is placed.
    """

    number: int
    chunk_id: str
    doc_id: str
    source: str
    text: str
    body_start: int = 0


@dataclass(frozen=True, slots=True)
class Prompt:
    """The pieces of a generator's input, in the order they are rendered.

    `prefix` is what stays the same across calls (system rules, instructions, and in the append
    layout the conversation and the question), so a generator can reuse its KV cache for it;
    `segments` are the passages; `suffix` closes the prompt (the question in the prepend layout,
    a short answer cue in the append layout).
    """

    system: str
    prefix: str
    segments: tuple[Segment, ...]
    suffix: str
    question: str
    layout: Layout = "append"

    @property
    def user_text(self) -> str:
        return self.prefix + "".join(s.text for s in self.segments) + self.suffix

    def messages(self) -> list[dict[str, str]]:
        """Chat messages in the OpenAI shape; a stable system message keeps the prefix stable."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        out.append({"role": "user", "content": self.user_text})
        return out

    @classmethod
    def plain(cls, text: str, system: str = "") -> Prompt:
        """A prompt with no passages, for rewriting, judging and direct questions."""
        return cls(system=system, prefix=text, segments=(), suffix="", question=text)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token and time accounting for one generation; `cached_prompt_tokens` were reused from a
    KV cache (a prompt prefix or stored passages), not computed. The `passage_*` counts are the
    passage KV store's lookups for this generation: passages found, passages computed and
    stored, and stored passages evicted to make room."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float = 0.0
    total_time_s: float = 0.0
    passage_hits: int = 0
    passage_misses: int = 0
    passage_evictions: int = 0

    @property
    def computed_prompt_tokens(self) -> int:
        return self.prompt_tokens - self.cached_prompt_tokens


@dataclass(frozen=True, slots=True)
class Citation:
    """A passage the answer cites as `[number]`, mapped back to its chunk and file; `inferred`
    when the model wrote no marker and the passage was matched to the answer's words."""

    number: int
    chunk_id: str
    doc_id: str
    source: str
    inferred: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer; pipelines also attach what was retrieved and a per-round trace."""

    text: str
    citations: tuple[Citation, ...] = ()
    usage: Usage = field(default_factory=Usage)
    question: str = ""
    retrieved: tuple[Retrieved, ...] = ()
    trace: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class AnswerChunk:
    """One streamed piece: a text delta; the last chunk carries the finished `Answer`."""

    text: str
    answer: Answer | None = None
