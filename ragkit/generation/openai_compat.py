"""A generator that calls any OpenAI-compatible chat server (vLLM, llama.cpp, TGI, OpenAI).

The server renders the chat template and keeps its own prefix cache; this client sends the
prompt's messages, reads the usage it reports (including `prompt_tokens_details.cached_tokens`)
and turns connection problems into one-line `ModelServerError`s.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pydantic import Field, PrivateAttr, field_validator

from ragkit.errors import ModelServerError
from ragkit.generation.base import (
    AnswerChunks,
    GenerationParams,
    Generator,
    StopScanner,
    build_usage,
)
from ragkit.generation.cancel import cancelled
from ragkit.types import Answer, AnswerChunk, Prompt

_RETRYABLE = (httpx.TransportError,)  # connect errors, timeouts, dropped connections


class OpenAICompatibleGenerator(Generator):
    """Prompt → `/v1/chat/completions`; real async, streaming over SSE, retries with backoff.

    `model=None` asks the server's `/v1/models` and uses the first id. Non-streaming calls
    cannot see the first token arrive, so their time to first token equals the total time.

    Model servers batch concurrent requests, so one instance is shared by many threads (a
    server's requests, `batch`): `max_concurrency` sizes both what a server lets through at once
    and the connection pool.
    """

    base_url: str
    model: str | None = None
    api_key: str | None = None
    timeout_s: float = Field(default=60.0, ge=0)
    max_retries: int = Field(default=2, ge=0)
    backoff_s: float = Field(default=0.25, ge=0)
    max_concurrency: int = Field(default=64, gt=0)

    _client: httpx.Client | None = PrivateAttr(default=None)
    _model_id: str | None = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, base_url: str | None = None, **kwargs: Any) -> None:
        if base_url is not None:
            kwargs["base_url"] = base_url
        super().__init__(**kwargs)

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
        value = value.rstrip("/")
        return value if value.endswith("/v1") else value + "/v1"

    # -- requests ------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )

    def _sync_client(self) -> httpx.Client:
        """One pooled client for every thread (httpx clients are thread-safe)."""
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout_s, headers=self._headers(), limits=self._limits()
                )
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        """A fresh client per call: an AsyncClient's pool belongs to one event loop."""
        return httpx.AsyncClient(timeout=self.timeout_s, headers=self._headers())

    def _body(self, prompt: Prompt, params: GenerationParams, model: str, stream: bool) -> dict:
        body: dict[str, Any] = {
            "model": model,
            "messages": prompt.messages(),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "seed": params.seed,
            "stream": stream,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _send(self, method: str, path: str, body: dict | None = None, stream: bool = False):
        url = self.base_url + path
        client = self._sync_client()
        for attempt in range(self.max_retries + 1):
            request = client.build_request(method, url, json=body)
            try:
                response = client.send(request, stream=stream)
            except _RETRYABLE as exc:
                if attempt == self.max_retries:
                    raise _unreachable(url, exc, attempt) from exc
            else:
                if response.status_code < 500 or attempt == self.max_retries:
                    if stream and response.status_code >= 400:
                        response.read()
                    return _checked(url, response)
                response.close()
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    async def _asend(
        self, client: httpx.AsyncClient, path: str, body: dict | None, stream: bool = False
    ):
        url = self.base_url + path
        method = "GET" if body is None else "POST"
        for attempt in range(self.max_retries + 1):
            request = client.build_request(method, url, json=body)
            try:
                response = await client.send(request, stream=stream)
            except _RETRYABLE as exc:
                if attempt == self.max_retries:
                    raise _unreachable(url, exc, attempt) from exc
            else:
                if response.status_code < 500 or attempt == self.max_retries:
                    if stream and response.status_code >= 400:
                        await response.aread()
                    return _checked(url, response)
                await response.aclose()
            await asyncio.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def resolved_model(self) -> str:
        """The configured model, or the first one the server lists."""
        if self.model is not None:
            return self.model
        if self._model_id is None:
            self._model_id = _first_model(self.base_url, self._send("GET", "/models").json())
        return self._model_id

    async def _aresolved_model(self, client: httpx.AsyncClient) -> str:
        if self.model is not None:
            return self.model
        if self._model_id is None:
            response = await self._asend(client, "/models", None)
            self._model_id = _first_model(self.base_url, response.json())
        return self._model_id

    # -- generator hooks -----------------------------------------------------------------

    def _invoke_one(self, prompt: Prompt, params: GenerationParams) -> Answer:
        started = time.perf_counter()
        body = self._body(prompt, params, self.resolved_model(), stream=False)
        data = self._send("POST", "/chat/completions", body).json()
        return _answer(self.base_url, data, params, started, time.perf_counter())

    async def _ainvoke_one(self, prompt: Prompt, params: GenerationParams) -> Answer:
        started = time.perf_counter()
        async with self._async_client() as client:
            body = self._body(prompt, params, await self._aresolved_model(client), stream=False)
            response = await self._asend(client, "/chat/completions", body)
        return _answer(self.base_url, response.json(), params, started, time.perf_counter())

    def _batch(self, prompts: list[Prompt], params: GenerationParams) -> list[Answer]:
        """Requests in parallel: a server batches concurrent requests itself."""
        if len(prompts) <= 1:
            return [self._invoke_one(p, params) for p in prompts]
        self.resolved_model()
        with ThreadPoolExecutor(min(self.max_concurrency, len(prompts))) as pool:
            return list(pool.map(lambda p: self._invoke_one(p, params), prompts))

    def _stream_one(self, prompt: Prompt, params: GenerationParams) -> AnswerChunks:
        started = time.perf_counter()
        body = self._body(prompt, params, self.resolved_model(), stream=True)
        reader = _SSEReader(params, started)
        response = self._send("POST", "/chat/completions", body, stream=True)
        try:
            for line in response.iter_lines():
                delta = reader.feed(line)
                if delta:
                    yield AnswerChunk(delta)
                if reader.done or cancelled():
                    break
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc, 0) from exc
        finally:
            response.close()
        yield from reader.finish()

    async def _astream_one(
        self, prompt: Prompt, params: GenerationParams
    ) -> AsyncIterator[AnswerChunk]:
        started = time.perf_counter()
        reader = _SSEReader(params, started)
        async with self._async_client() as client:
            body = self._body(prompt, params, await self._aresolved_model(client), stream=True)
            response = await self._asend(client, "/chat/completions", body, stream=True)
            try:
                async for line in response.aiter_lines():
                    delta = reader.feed(line)
                    if delta:
                        yield AnswerChunk(delta)
                    if reader.done:
                        break
            except httpx.TransportError as exc:
                raise _unreachable(self.base_url, exc, 0) from exc
            finally:
                await response.aclose()
        for chunk in reader.finish():
            yield chunk


class _SSEReader:
    """Server-sent chat completion chunks → text deltas, then the final Answer."""

    def __init__(self, params: GenerationParams, started: float) -> None:
        self.scanner = StopScanner(params.stop)
        self.started = started
        self.first_token_at: float | None = None
        self.usage: dict[str, Any] = {}
        self.pieces = 0
        self.done = False

    def feed(self, line: str) -> str:
        if not line.startswith("data:"):
            return ""
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return ""
        data = json.loads(payload)
        if data.get("usage"):
            self.usage = data["usage"]
        text = "".join((c.get("delta") or {}).get("content") or "" for c in data.get("choices", []))
        if text:
            self.pieces += 1
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
        return self.scanner.feed(text)

    def finish(self) -> Iterator[AnswerChunk]:
        tail = self.scanner.flush()
        if tail:
            yield AnswerChunk(tail)
        # Servers that ignore `include_usage` (llama-cpp-python) send one token per chunk.
        raw = self.usage or {"completion_tokens": self.pieces}
        usage = _usage(raw, self.started, self.first_token_at, time.perf_counter())
        yield AnswerChunk("", answer=Answer(text=self.scanner.text.strip(), usage=usage))


def _answer(url: str, data: dict, params: GenerationParams, started: float, end: float) -> Answer:
    try:
        text = data["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError) as exc:
        raise ModelServerError(f"{url}: response has no choices[0].message.content") from exc
    scanner = StopScanner(params.stop)
    scanner.feed(text)
    return Answer(
        text=scanner.text.strip(), usage=_usage(data.get("usage") or {}, started, None, end)
    )


def _usage(raw: dict[str, Any], started: float, first: float | None, end: float):
    details = raw.get("prompt_tokens_details") or {}
    return build_usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        cached_prompt_tokens=int(details.get("cached_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        started=started,
        first_token_at=first,
        finished=end,
    )


def _first_model(url: str, data: dict) -> str:
    models = data.get("data") or []
    if not models:
        raise ModelServerError(f"{url}/models lists no models; pass model= explicitly")
    return str(models[0]["id"])


def _checked(url: str, response: httpx.Response) -> httpx.Response:
    if response.status_code < 400:
        return response
    try:
        error = response.json().get("error", response.text)
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
    except (json.JSONDecodeError, AttributeError):
        message = response.text
    message = " ".join(str(message).split())[:500]
    raise ModelServerError(f"{url} answered HTTP {response.status_code}: {message}")


def _unreachable(url: str, exc: Exception, retries: int) -> ModelServerError:
    cause = " ".join(str(exc).split()) or type(exc).__name__
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
    tries = f" after {retries + 1} attempts" if retries else ""
    return ModelServerError(f"{url} {kind}{tries}: {type(exc).__name__}: {cause}")
