"""Iter-RetGen: alternate retrieval and generation, searching with the question plus the last
draft answer, so facts the draft mentions pull in the passages that support them.

Each round's new passages are appended to the previous prompt (`PromptAssembler.extend`), so
round t+1's prompt shares round t's whole token prefix and a prefix-caching generator only
computes the new passages. The loop stops early for a question whose answer stops changing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import patch_config
from pydantic import ConfigDict, Field

from ragkit.pipeline import PipelineInput, RAGPipeline, to_query
from ragkit.runnable import BatchedRunnable
from ragkit.types import Answer, AnswerChunk, Prompt, Query, Retrieved, Usage


class IterRetGen(BatchedRunnable[PipelineInput, Answer]):
    """Wraps a `RAGPipeline` in `rounds` of retrieve → generate; same interface as the pipeline.

    Round 1 is the wrapped pipeline's own retrieval (rewriting and reranking included); later
    rounds search with "question + draft" through the retriever and reranker only. The final
    `Answer.retrieved` is every passage the prompt holds, in prompt order; `Answer.trace` has
    one entry per round with its search queries, chunk ids, draft and usage; `Answer.usage`
    sums the rounds, and its time to first token counts the earlier rounds' time as waiting.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pipeline: RAGPipeline
    rounds: int = Field(2, gt=0)
    stop_when_stable: bool = True

    @property
    def pipeline_name(self) -> str:
        return self.pipeline.pipeline_name

    def stream(
        self, input: PipelineInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AnswerChunk]:
        """Drafts are computed silently; the last round's generation streams token by token."""
        state = _State.start(to_query(input))
        self._first_round([state], config)
        for number in range(2, self.rounds + 1):
            if state.stable:
                break
            self._retrieve_more([state], number, config)
            if number < self.rounds:
                self._generate([state], number, config)
                continue
            for piece in self.pipeline.generator.stream(state.prompt, config):
                if piece.answer is None:
                    yield piece
                else:
                    state.record(number, piece.answer, self.stop_when_stable)
                    yield AnswerChunk("", self._final(state))
            return
        yield AnswerChunk(state.answers[-1].text)
        yield AnswerChunk("", self._final(state))

    # ---- steps ------------------------------------------------------------------------
    def _run_batch(
        self, inputs: list[PipelineInput], config: list[RunnableConfig] | None = None
    ) -> list[Answer]:
        child = patch_config(config[0] if config else None)
        states = [_State.start(to_query(x)) for x in inputs]
        self._first_round(states, child)
        for number in range(2, self.rounds + 1):
            active = [s for s in states if not s.stable]
            if not active:
                break
            self._retrieve_more(active, number, child)
            self._generate(active, number, child)
        return [self._final(s) for s in states]

    def _first_round(self, states: list[_State], config: RunnableConfig | None) -> None:
        """The wrapped pipeline's own round: its rewriting, retrieval, reranking and prompt."""
        queries = [s.query for s in states]
        search = self.pipeline.search_queries(queries, config)
        found = self.pipeline.retrieve(queries, config, search=search)
        for state, searched, hits in zip(states, search, found, strict=True):
            state.add([q.question for q in searched], hits)
            state.prompt = self.pipeline.prompt_for(state.query, hits)
        self._generate(states, 1, config)

    def _retrieve_more(
        self, states: list[_State], number: int, config: RunnableConfig | None
    ) -> None:
        """Search with question + draft, skipping the rewriter, and append what is new."""
        queries = [
            dataclasses.replace(s.query, question=f"{s.query.question}\n{s.answers[-1].text}")
            for s in states
        ]
        found = self.pipeline.retrieve(queries, config, search=[[q] for q in queries])
        for state, query, hits in zip(states, queries, found, strict=True):
            state.add([query.question], hits)
            state.prompt = self.pipeline.assembler.extend(state.prompt, hits)

    def _generate(self, states: list[_State], number: int, config: RunnableConfig | None) -> None:
        answers = self.pipeline.generator.batch([s.prompt for s in states], config)
        for state, answer in zip(states, answers, strict=True):
            state.record(number, answer, self.stop_when_stable)

    def _final(self, state: _State) -> Answer:
        segments_by_id = {s.chunk_id for s in state.prompt.segments}
        in_prompt = [h for h in state.all_hits if h.chunk.id in segments_by_id]
        answer = dataclasses.replace(state.answers[-1], usage=_total(state.answers))
        final = self.pipeline.finish(answer, state.query, state.prompt, in_prompt)
        return dataclasses.replace(final, trace=tuple(state.trace))


@dataclasses.dataclass
class _State:
    """One question's progress through the rounds."""

    query: Query
    prompt: Prompt | None = None
    answers: list[Answer] = dataclasses.field(default_factory=list)
    all_hits: list[Retrieved] = dataclasses.field(default_factory=list)
    trace: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pending: dict[str, Any] = dataclasses.field(default_factory=dict)
    stable: bool = False

    @classmethod
    def start(cls, query: Query) -> _State:
        return cls(query)

    def add(self, queries: Sequence[str], hits: Sequence[Retrieved]) -> None:
        seen = {h.chunk.id for h in self.all_hits}
        self.all_hits.extend(h for h in hits if h.chunk.id not in seen)
        self.pending = {"queries": list(queries), "chunk_ids": [h.chunk.id for h in hits]}

    def record(self, number: int, answer: Answer, stop_when_stable: bool) -> None:
        assert self.prompt is not None
        new_ids = [s.chunk_id for s in self.prompt.segments]
        self.trace.append(
            {
                "round": number,
                **self.pending,
                "prompt_chunk_ids": new_ids,
                "draft": answer.text,
                "usage": dataclasses.asdict(answer.usage),
            }
        )
        if stop_when_stable and self.answers and _same(self.answers[-1].text, answer.text):
            self.stable = True
        self.answers.append(answer)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


def _total(answers: Sequence[Answer]) -> Usage:
    usages = [a.usage for a in answers]
    earlier = sum(u.total_time_s for u in usages[:-1])
    return Usage(
        prompt_tokens=sum(u.prompt_tokens for u in usages),
        cached_prompt_tokens=sum(u.cached_prompt_tokens for u in usages),
        completion_tokens=sum(u.completion_tokens for u in usages),
        time_to_first_token_s=earlier + usages[-1].time_to_first_token_s,
        total_time_s=sum(u.total_time_s for u in usages),
        passage_hits=sum(u.passage_hits for u in usages),
        passage_misses=sum(u.passage_misses for u in usages),
        passage_evictions=sum(u.passage_evictions for u in usages),
    )
