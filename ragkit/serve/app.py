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
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ragkit.errors import ConfigError
from ragkit.protocols import Pipeline
from ragkit.serve.completion import CompletionRun, sources
from ragkit.serve.errors import (
    APIError,
    busy,
    install_error_handlers,
    shutting_down,
)
from ragkit.serve.limits import check_prompt_tokens, check_unicode, token_counter
from ragkit.serve.metrics import CONTENT_TYPE, ServerMetrics
from ragkit.serve.middleware import GuardMiddleware, MetricsMiddleware
from ragkit.serve.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    ModelCard,
    ModelList,
)
from ragkit.serve.shutdown import Drain
from ragkit.serve.sources import SourceNames
from ragkit.serve.worker import GenerationGate, QueueFull, ShuttingDown, ThreadedStream
from ragkit.types import Query

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
    pipelines: Mapping[str, Pipeline] | Sequence[Pipeline], settings: ServeSettings | None = None
) -> FastAPI:
    """An app serving `pipelines` (name → pipeline, or pipelines named by `pipeline_name`);
    anything `ragkit.build.pipeline` returns fits (`ragkit.protocols.Pipeline`)."""
    if settings is None:
        settings = ServeSettings()
    if not isinstance(pipelines, Mapping):
        pipelines = {p.pipeline_name: p for p in pipelines}
    if not pipelines:
        raise ConfigError("serve: give at least one pipeline")
    for name, rag in pipelines.items():
        if not isinstance(rag, Pipeline):
            raise ConfigError(f"serve: {name!r} is a {type(rag).__name__}, not a ragkit pipeline")
    created = int(time.time())
    metrics = ServerMetrics()
    drain = Drain(settings.shutdown_grace_s)
    gates: dict[int, GenerationGate] = {}
    for name, rag in pipelines.items():
        key = id(rag.generator)
        if key not in gates:
            capacity = settings.max_concurrency or int(getattr(rag.generator, "max_concurrency", 1))
            gates[key] = GenerationGate(
                capacity, settings.max_queue, functools.partial(metrics.set_gate, name)
            )
            metrics.set_gate(name, 0, 0)
            metrics.set_gauge("ragkit_max_concurrency", capacity, {"generator": name})
            store = getattr(rag.generator, "passage_store", None)
            if store is not None:
                metrics.watch_passage_store(name, store)
            drain.gates.append(gates[key])
    names = {name: SourceNames.for_pipeline(rag) for name, rag in pipelines.items()}
    counters: dict[int, Callable[[str], int]] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        drain.bind_loop(asyncio.get_running_loop())
        yield
        await drain.settle()

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

        started_streams: list[ThreadedStream] = []

        def release() -> None:
            metrics.add_gauge("ragkit_generations_in_progress", -1)
            gate.release()
            for ended in started_streams:
                drain.generations.discard(ended)

        try:
            stream = ThreadedStream(lambda: bound.stream(query), release)
        except BaseException:
            release()
            raise
        started_streams.append(stream)  # release runs on this loop, so never before this
        drain.generations.add(stream)
        run = CompletionRun(
            body, rag, stream, request, settings, metrics, started, limit, names[body.model]
        )
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


def _bind_generation(rag: Pipeline, limit: int | None, body: ChatCompletionRequest) -> Pipeline:
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
    return rag.with_generator(rag.generator.bind(**overrides))


def _pipeline(pipelines: Mapping[str, Pipeline], name: str) -> Pipeline:
    if name not in pipelines:
        raise APIError(
            404,
            f"model {name!r} does not exist; this server has: {', '.join(sorted(pipelines))}",
            param="model",
            code="model_not_found",
        )
    return pipelines[name]


def _card(name: str, rag: Pipeline, created: int) -> ModelCard:
    generator = type(rag.generator).__name__
    return ModelCard(id=name, created=created, description=f"ragkit pipeline {name} ({generator})")
