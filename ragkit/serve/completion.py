"""One accepted chat completion: the pipeline's stream, turned into an HTTP response (a JSON
body or server-sent events), with its sources, usage and metrics."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import JSONResponse

from ragkit.protocols import Pipeline
from ragkit.serve.errors import APIError, pipeline_error
from ragkit.serve.metrics import ServerMetrics
from ragkit.serve.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    PromptTokensDetails,
    ResponseMessage,
    Source,
)
from ragkit.serve.shutdown import Drain
from ragkit.serve.sources import SourceNames
from ragkit.serve.worker import Interrupted, ThreadedStream
from ragkit.types import Answer

if TYPE_CHECKING:
    from ragkit.serve.app import ServeSettings

log = logging.getLogger("ragkit.serve")


class CompletionRun:
    """One accepted chat completion: turns the pipeline's stream into an HTTP response."""

    def __init__(
        self,
        body: ChatCompletionRequest,
        rag: Pipeline,
        stream: ThreadedStream,
        request: Request,
        settings: ServeSettings,
        metrics: ServerMetrics,
        started: float,
        limit: int | None,
        names: SourceNames,
    ) -> None:
        self.body, self.rag, self.stream, self.request = body, rag, stream, request
        self.names = names
        self.drain: Drain | None = None
        self.settings, self.metrics, self.started = settings, metrics, started
        if limit is None:
            limit = getattr(rag.generator, "max_new_tokens", None)
        self.limit = limit
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.first_token: float | None = None
        self.disconnected = False
        self.answer: Answer | None = None

    async def _should_stop(self) -> bool:
        if await self.request.is_disconnected():
            self.disconnected = True
        return self.disconnected

    async def _pieces(self) -> AsyncIterator[str]:
        """Text deltas; sets `self.answer` when the pipeline finishes."""
        async for piece in self.stream.items(self.settings.disconnect_poll_s, self._should_stop):
            if piece.answer is not None:
                self.answer = piece.answer
            elif piece.text:
                if self.first_token is None:
                    self.first_token = time.perf_counter() - self.started
                    self.metrics.observe("ragkit_time_to_first_token_seconds", self.first_token)
                yield piece.text

    def interrupt(self, reason: str) -> None:
        """Ends this request now (the server is shutting down): its stream raises `reason`."""
        self.stream.interrupt(reason)

    def _done(self) -> None:
        if self.drain is not None:
            self.drain.running.discard(self)

    def _client_left(self) -> None:
        self.stream.stop()
        self.metrics.inc("ragkit_client_disconnects_total")
        log.info("%s: the client left; generation stopped", self.id)

    def _finish(self, answer: Answer) -> tuple[list[Source], CompletionUsage, str]:
        u = answer.usage
        self.metrics.record_usage(u.prompt_tokens, u.cached_prompt_tokens, u.completion_tokens)
        self.metrics.record_passages(u.passage_hits, u.passage_misses, u.passage_evictions)
        usage = CompletionUsage(
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            total_tokens=u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=u.cached_prompt_tokens),
            time_to_first_token_s=round(u.time_to_first_token_s, 4),
        )
        reason = (
            "length" if self.limit is not None and u.completion_tokens >= self.limit else "stop"
        )
        found = sources(self.rag, answer, self.settings.snippet_chars, self.names)
        return found, usage, reason

    async def complete(self) -> JSONResponse:
        try:
            text = "".join([t async for t in self._pieces()])
        except Exception as exc:
            if isinstance(exc, Interrupted):
                self.metrics.inc("ragkit_shutdown_interrupted_total")
            raise pipeline_error(exc) from None
        finally:
            self.stream.stop()
            self._done()
        if self.answer is None and self.disconnected:
            self._client_left()
        if self.answer is None:
            status = 499 if self.disconnected else 500
            raise APIError(status, "the generation ended without an answer", type="server_error")
        found, usage, reason = self._finish(self.answer)
        message = ResponseMessage(content=self.answer.text or text, sources=found)
        result = ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.body.model,
            choices=[Choice(message=message, finish_reason=reason)],
            usage=usage,
        )
        return JSONResponse(result.model_dump(exclude_none=True))

    def _chunk(
        self, delta: Delta, finish: str | None = None, usage: CompletionUsage | None = None
    ) -> str:
        return ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.body.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            usage=usage,
        ).sse()

    async def events(self) -> AsyncIterator[str]:
        """SSE lines. The server cancels this generator when the client leaves; otherwise
        `_pieces` notices the departure itself. Either way the generation is stopped."""
        ended = False
        try:
            yield self._chunk(Delta(role="assistant", content=""))
            async for text in self._pieces():
                yield self._chunk(Delta(content=text))
            if self.disconnected:
                return
            if self.answer is None:
                raise RuntimeError("the generation ended without an answer")
            found, usage, reason = self._finish(self.answer)
            options = self.body.stream_options
            include_usage = options is None or options.include_usage
            yield self._chunk(Delta(sources=found), reason, usage if include_usage else None)
            yield "data: [DONE]\n\n"
            ended = True
        except Exception as exc:
            ended = True
            if isinstance(exc, Interrupted):
                self.metrics.inc("ragkit_shutdown_interrupted_total")
            err = pipeline_error(exc)
            self.metrics.inc("ragkit_stream_errors_total", {"status": str(err.status)})
            yield f"data: {bytes(JSONResponse(err.body()).body).decode()}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            self._done()
            if ended:
                self.stream.stop()
            else:
                self._client_left()


def sources(
    rag: Pipeline, answer: Answer, snippet_chars: int, names: SourceNames | None = None
) -> list[Source]:
    """The passages the model saw, numbered as its `[n]` citations number them; sources are
    shown as `names` shows them (relative to the ingested folder)."""
    if names is None:
        names = SourceNames(None)
    assembler = rag.assembler
    by_id = {r.chunk.id: r for r in answer.retrieved}
    cited = {c.chunk_id for c in answer.citations}
    out = []
    for seg in assembler.segments(answer.retrieved):
        hit = by_id[seg.chunk_id]
        text = " ".join(hit.chunk.text.split())
        if len(text) > snippet_chars:
            text = text[: snippet_chars - 1].rstrip() + "…"
        out.append(
            Source(
                number=seg.number,
                source=names.shown(seg.source),
                chunk_id=seg.chunk_id,
                text=text,
                score=round(float(hit.score), 6),
                cited=seg.chunk_id in cited,
            )
        )
    return out
