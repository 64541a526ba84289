"""The RAG pipeline: query → (rewrite) → retrieve → (rerank) → (expand) → (compress) → assemble →
generate → cited answer.

Every component is itself a Runnable, and so is the pipeline, so it can be invoked, batched,
streamed and composed with `|` like any langchain-core runnable. `batch` hands the whole batch
to each component, so the embedder and the generator see every query at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config
from pydantic import ConfigDict, Field

from ragkit.attribution import attribute
from ragkit.generation.cancel import cancellable
from ragkit.prompting import PromptAssembler, cite
from ragkit.runnable import BatchedRunnable
from ragkit.types import Answer, AnswerChunk, Prompt, Query, Retrieved

PipelineInput = Query | str | Mapping[str, Any]


def to_query(value: PipelineInput) -> Query:
    """Accept a string, a `Query`, or an OpenAI/LangChain-style mapping with a `question`."""
    if isinstance(value, Query):
        query = value
    elif isinstance(value, str):
        query = Query(value)
    elif isinstance(value, Mapping) and "question" in value:
        history = tuple((str(r), str(c)) for r, c in value.get("history", ()))
        query = Query(
            str(value["question"]),
            history,
            value.get("filters"),
            value.get("instruction"),
            value.get("cue"),
        )
    else:
        raise TypeError(f"expected a question string, Query or {{'question': ...}}, got {value!r}")
    if not query.question.strip():
        raise ValueError("the question is empty")
    return query


class PipelineRunnable(BatchedRunnable[PipelineInput, Answer]):
    """The async half of the pipeline contract (`ragkit.protocols.Pipeline`), from the sync one.

    langchain-core's defaults would make `astream` yield one finished Answer and `abatch` run
    the inputs as separate batches of one; here `astream` pulls the sync stream piece by piece
    in worker threads (text deltas, then the Answer) and `abatch` is one `batch` in a thread.
    """

    if TYPE_CHECKING:  # each subclass streams its own way; `astream` closes the generator
        # Pieces of an answer rather than whole Answers, hence the ignored overrides of the
        # Runnable[..., Answer] signatures.
        def stream(  # type: ignore[override]
            self, input: PipelineInput, config: RunnableConfig | None = None, **kwargs: Any
        ) -> Generator[AnswerChunk, None, None]:
            """Text deltas as they are generated, then a last piece carrying the Answer."""
            ...

    async def astream(  # type: ignore[override]
        self, input: PipelineInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AnswerChunk]:
        pieces = self.stream(input, config, **kwargs)
        stop = threading.Event()  # set when the consumer leaves: the generation stops too
        end = object()

        def pull() -> Any:
            with cancellable(stop):
                return next(pieces, end)

        try:
            while (piece := await asyncio.to_thread(pull)) is not end:
                yield piece
        finally:
            stop.set()
            # A pull still running (the consumer was cancelled mid-wait) ends on `stop`.
            with contextlib.suppress(ValueError):
                pieces.close()

    async def abatch(
        self,
        inputs: list[PipelineInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Answer]:
        return await asyncio.to_thread(
            self.batch, inputs, config, return_exceptions=return_exceptions, **kwargs
        )


class RAGPipeline(PipelineRunnable):
    """Retrieval-augmented generation from composable parts.

    `rewriter` maps a Query to search queries (several are fused by reciprocal rank fusion);
    `reranker` maps `{"query", "retrieved"}` to a re-ordered shortlist; `expander` maps the
    final `{"query", "retrieved"}` to passages widened from their source text, and
    `compressor` to passages cut to their relevant sentences. All are optional.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Runnable
    generator: Runnable
    assembler: PromptAssembler = Field(default_factory=PromptAssembler)
    rewriter: Runnable | None = None
    reranker: Runnable | None = None
    expander: Runnable | None = None
    compressor: Runnable | None = None
    top_k: int = 5
    pipeline_name: str = "pipeline"

    # ---- Runnable protocol -------------------------------------------------------------
    def stream(  # type: ignore[override]
        self, input: PipelineInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Generator[AnswerChunk, None, None]:
        query = to_query(input)
        retrieved = self.retrieve([query], config)[0]
        prompt = self.prompt_for(query, retrieved)
        for piece in self.generator.stream(prompt, config):
            if piece.answer is None:
                yield piece
            else:
                yield AnswerChunk("", self.finish(piece.answer, query, prompt, retrieved))

    def with_generator(self, generator: Runnable) -> RAGPipeline:
        """This pipeline answering with `generator` (its stages keep their own)."""
        return self.model_copy(update={"generator": generator})

    def with_retriever(self, retriever: Runnable) -> RAGPipeline:
        return self.model_copy(update={"retriever": retriever})

    # ---- steps ------------------------------------------------------------------------
    def _run_batch(
        self,
        inputs: list[PipelineInput],
        config: list[RunnableConfig] | RunnableConfig | None = None,
    ) -> list[Answer]:
        child = patch_config(config[0] if isinstance(config, list) else config)
        queries = [to_query(x) for x in inputs]
        retrieved = self.retrieve(queries, child)
        prompts = [self.prompt_for(q, hits) for q, hits in zip(queries, retrieved, strict=True)]
        answers = self.generator.batch(prompts, child)
        return [
            self.finish(a, q, p, r)
            for a, q, p, r in zip(answers, queries, prompts, retrieved, strict=True)
        ]

    def search_queries(
        self, queries: Sequence[Query], config: RunnableConfig | None = None
    ) -> list[list[Query]]:
        """What each query is searched with: the rewriter's queries, or the query itself."""
        if self.rewriter is None:
            return [[q] for q in queries]
        return [
            [dataclasses.replace(q, question=s) for s in rewritten]
            for q, rewritten in zip(
                queries, self.rewriter.batch(list(queries), config), strict=True
            )
        ]

    def retrieve(
        self,
        queries: Sequence[Query],
        config: RunnableConfig | None = None,
        *,
        search: Sequence[Sequence[Query]] | None = None,
    ) -> list[list[Retrieved]]:
        """Search (after rewriting), rerank, expand and compress for each query; one retriever
        batch for all. What this returns is what the prompt holds.

        `search` gives each query's search queries instead of `search_queries` (a caller that
        already rewrote, or one that searches with its own text, as Iter-RetGen's later
        rounds do); the later stages still judge against the query's own question.
        """
        if search is None:
            search = self.search_queries(queries, config)
        flat = [s for group in search for s in group]
        hits = self.retriever.batch(flat, config)
        results: list[list[Retrieved]] = []
        i = 0
        for group in search:
            lists = hits[i : i + len(group)]
            i += len(group)
            # A reranker chooses from the whole fused shortlist, not just its first top_k.
            width = max(len(x) for x in lists) if self.reranker is not None else self.top_k
            results.append(_fuse(lists, max(width, 1)) if len(lists) > 1 else list(lists[0]))
        ranked = self.rerank(queries, results, config)
        return self.compress(queries, self.expand(queries, ranked, config), config)

    def rerank(
        self,
        queries: Sequence[Query],
        shortlists: list[list[Retrieved]],
        config: RunnableConfig | None = None,
    ) -> list[list[Retrieved]]:
        """Each shortlist re-ordered by the reranker (if any) and cut to `top_k`."""
        if self.reranker is not None:
            shortlists = self.reranker.batch(
                [
                    {"query": q.question, "retrieved": r}
                    for q, r in zip(queries, shortlists, strict=True)
                ],
                config,
            )
        return [r[: self.top_k] for r in shortlists]

    def expand(
        self,
        queries: Sequence[Query],
        passages: list[list[Retrieved]],
        config: RunnableConfig | None = None,
    ) -> list[list[Retrieved]]:
        """Each final list widened from its source text by the expander (if any)."""
        return _apply(self.expander, queries, passages, config)

    def compress(
        self,
        queries: Sequence[Query],
        passages: list[list[Retrieved]],
        config: RunnableConfig | None = None,
    ) -> list[list[Retrieved]]:
        """Each passage cut to its relevant sentences by the compressor (if any)."""
        return _apply(self.compressor, queries, passages, config)

    def prompt_for(self, query: Query, retrieved: Sequence[Retrieved]) -> Prompt:
        """The one place a query and its passages become a prompt: history, the query's task
        prompt and answer cue all go in, so every caller asks the model the same way."""
        return self.assembler.assemble(
            query.question,
            retrieved,
            history=query.history,
            task_prompt=query.instruction,
            cue=query.cue,
        )

    def finish(
        self, answer: Answer, query: Query, prompt: Prompt, retrieved: Sequence[Retrieved]
    ) -> Answer:
        """The generator's answer with citations mapped to passages, the question and the
        passages attached."""
        citations = cite(answer.text, prompt.segments) or attribute(
            answer.text, prompt.segments, query.question
        )
        return dataclasses.replace(
            answer,
            citations=citations,
            question=query.question,
            retrieved=tuple(retrieved),
        )


def _apply(
    stage: Runnable | None,
    queries: Sequence[Query],
    passages: list[list[Retrieved]],
    config: RunnableConfig | None,
) -> list[list[Retrieved]]:
    if stage is None:
        return passages
    return stage.batch(
        [{"query": q.question, "retrieved": r} for q, r in zip(queries, passages, strict=True)],
        config,
    )


def _fuse(lists: Sequence[Sequence[Retrieved]], top_k: int) -> list[Retrieved]:
    from ragkit.retrieval.fusion import reciprocal_rank_fusion

    return reciprocal_rank_fusion(lists, top_k=top_k)
