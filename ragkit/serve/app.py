"""The chat server: an OpenAI-compatible `/v1/chat/completions` over ragkit pipelines, with
`/v1/models`, `/health`, `/metrics` and a chat page at `/`.

Each request runs the same pipeline object the CLI and notebooks use (`pipeline.stream`), in a
worker thread; as many run at once per generator as it declares (`max_concurrency`, a batching
model server takes many), so their retrieval, reranking and generation overlap. See
`ragkit.serve.worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ragkit.errors import ConfigError
from ragkit.prompting import PromptAssembler
from ragkit.serve.errors import (
    APIError,
    busy,
    install_error_handlers,
    pipeline_error,
    shutting_down,
)
from ragkit.serve.limits import check_prompt_tokens, check_unicode, token_counter
from ragkit.serve.metrics import CONTENT_TYPE, ServerMetrics
from ragkit.serve.middleware import GuardMiddleware, MetricsMiddleware
from ragkit.serve.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Delta,
    ModelCard,
    ModelList,
    PromptTokensDetails,
    ResponseMessage,
    Source,
)
from ragkit.serve.shutdown import Drain
from ragkit.serve.sources import SourceNames
from ragkit.serve.worker import GenerationGate, Interrupted, QueueFull, ShuttingDown, ThreadedStream
from ragkit.types import Answer, Query

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
log = logging.getLogger("ragkit.serve")

__all__ = ["APIError", "ServeSettings", "create_app", "sources", "to_query"]


class ServeSettings(BaseModel):
    """Limits and access control of the server; validated when built.

    `max_concurrency`, when set, replaces every generator's own `max_concurrency`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: str | None = Field(None, min_length=1)
    max_queue: int = Field(8, ge=0, le=10_000)
    max_concurrency: int | None = Field(None, gt=0, le=10_000)
    max_body_bytes: int = Field(1_000_000, gt=0)
    max_tokens_limit: int = Field(1024, gt=0)
    max_prompt_tokens: int = Field(4096, gt=0)
    max_history_messages: int = Field(8, ge=0)
    snippet_chars: int = Field(300, gt=0)
    disconnect_poll_s: float = Field(0.25, gt=0)
    shutdown_grace_s: float = Field(10.0, ge=0)


def create_app(
    pipelines: Mapping[str, Any] | Sequence[Any], settings: ServeSettings | None = None
) -> FastAPI:
    """An app serving `pipelines` (name → pipeline, or pipelines named by `pipeline_name`)."""
    if settings is None:
        settings = ServeSettings()
    if not isinstance(pipelines, Mapping):
        pipelines = {
            str(getattr(p, "pipeline_name", f"pipeline-{i}")): p for i, p in enumerate(pipelines)
        }
    if not pipelines:
        raise ConfigError("serve: give at least one pipeline")
    created = int(time.time())
    metrics = ServerMetrics()
    drain = Drain(settings.shutdown_grace_s)
    gates: dict[int, GenerationGate] = {}
    for name, rag in pipelines.items():
        key = id(rag.generator)
        if key not in gates:
            capacity = settings.max_concurrency or getattr(rag.generator, "max_concurrency", 1)
            gates[key] = GenerationGate(
                capacity,
                settings.max_queue,
                lambda running, waiting, name=name: metrics.set_gate(name, running, waiting),
            )
            metrics.set_gate(name, 0, 0)
            metrics.set_gauge("ragkit_max_concurrency", capacity, {"generator": name})
            drain.gates.append(gates[key])
    names = {name: SourceNames.for_pipeline(rag) for name, rag in pipelines.items()}
    counters: dict[int, Callable[[str], int]] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        drain.bind_loop(asyncio.get_running_loop())
        yield

    app = FastAPI(
        title="ragkit", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.pipelines = dict(pipelines)
    app.state.drain = drain
    install_error_handlers(app)
    app.add_middleware(
        GuardMiddleware, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/health")
    async def health() -> Any:
        body = {
            "status": "shutting_down" if drain.draining else "ok",
            "models": sorted(pipelines),
            "queue_depth": sum(g.waiting for g in gates.values()),
            "in_flight": sum(g.running for g in gates.values()),
            "auth": settings.api_key is not None,
        }
        return JSONResponse(body, 503 if drain.draining else 200)

    @app.get("/metrics")
    async def metrics_text() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(
            data=[_card(name, rag, created) for name, rag in sorted(pipelines.items())]
        )

    @app.get("/v1/models/{model}")
    async def model(model: str) -> ModelCard:
        return _card(model, _pipeline(pipelines, model), created)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatCompletionRequest, request: Request) -> Any:
        started = time.perf_counter()
        if drain.draining:
            raise shutting_down()
        rag = _pipeline(pipelines, body.model)
        limit = body.token_limit
        if limit is not None and limit > settings.max_tokens_limit:
            param = (
                "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
            )
            raise APIError(
                400,
                f"{param} is {limit}, above this server's limit of {settings.max_tokens_limit}",
                param=param,
                code="invalid_value",
            )
        check_unicode(body)
        query = to_query(body.messages, settings.max_history_messages)
        key = id(rag.generator)
        if key not in counters:
            counters[key] = await asyncio.to_thread(token_counter, rag.generator)
        texts = [query.question] + [text for _, text in query.history]
        await asyncio.to_thread(
            check_prompt_tokens, texts, counters[key], settings.max_prompt_tokens
        )
        bound = _bind_generation(rag, limit, body)
        gate = gates[key]
        try:
            await gate.acquire()
        except QueueFull as exc:
            raise busy(exc) from None
        except ShuttingDown:
            raise shutting_down() from None
        metrics.add_gauge("ragkit_generations_in_progress", 1)
        metrics.inc(
            "ragkit_chat_requests_total", {"model": body.model, "stream": str(body.stream).lower()}
        )

        def release() -> None:
            metrics.add_gauge("ragkit_generations_in_progress", -1)
            gate.release()

        try:
            stream = ThreadedStream(lambda: bound.stream(query), release)
        except BaseException:
            release()
            raise
        run = _Run(body, rag, stream, request, settings, metrics, started, limit, names[body.model])
        run.drain = drain
        drain.running.add(run)
        if body.stream:
            return StreamingResponse(
                run.events(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await run.complete()

    return app


def to_query(messages: Sequence[ChatMessage], max_history: int) -> Query:
    """The last user message is the question; earlier user/assistant turns are the history.

    System messages are dropped: the pipeline's own instructions decide how it answers.
    """
    turns = [
        (m.role, m.text) for m in messages if m.role in ("user", "assistant") and m.text.strip()
    ]
    if not messages or messages[-1].role != "user":
        raise APIError(400, "the last message must have role 'user'", param="messages")
    if not turns or turns[-1][0] != "user":
        raise APIError(400, "the last user message is empty", param="messages")
    history = turns[:-1][-max_history:] if max_history else []
    return Query(turns[-1][1].strip(), history=tuple(history))


class _Run:
    """One accepted chat completion: turns the pipeline's stream into an HTTP response."""

    def __init__(
        self,
        body: ChatCompletionRequest,
        rag: Any,
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
            yield f"data: {JSONResponse(err.body()).body.decode()}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            self._done()
            if ended:
                self.stream.stop()
            else:
                self._client_left()


def sources(
    rag: Any, answer: Answer, snippet_chars: int, names: SourceNames | None = None
) -> list[Source]:
    """The passages the model saw, numbered as its `[n]` citations number them; sources are
    shown as `names` shows them (relative to the ingested folder)."""
    if names is None:
        names = SourceNames(None)
    assembler = getattr(rag, "assembler", None)
    if not isinstance(assembler, PromptAssembler):
        assembler = PromptAssembler()
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


def _bind_generation(rag: Any, limit: int | None, body: ChatCompletionRequest) -> Any:
    """The pipeline with this request's generation settings bound to its generator; the
    generator object itself (its weights and prefix cache) is shared, not copied."""
    overrides = {
        "max_new_tokens": limit,
        "temperature": body.temperature,
        "stop": body.stop_list,
        "seed": body.seed,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return rag
    return rag.model_copy(update={"generator": rag.generator.bind(**overrides)})


def _pipeline(pipelines: Mapping[str, Any], name: str) -> Any:
    if name not in pipelines:
        raise APIError(
            404,
            f"model {name!r} does not exist; this server has: {', '.join(sorted(pipelines))}",
            param="model",
            code="model_not_found",
        )
    return pipelines[name]


def _card(name: str, rag: Any, created: int) -> ModelCard:
    generator = getattr(rag, "generator", None)
    return ModelCard(
        id=name, created=created, description=f"ragkit pipeline {name} ({type(generator).__name__})"
    )
