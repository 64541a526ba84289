"""ASGI guards in front of the chat app: API-key check, request-body bound, and response metrics.

They are plain ASGI so they act before FastAPI reads or validates anything: a request without the
key, or with an oversized body, is refused without its body being parsed.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from ragkit.serve.metrics import ServerMetrics
from ragkit.serve.schemas import error_body

Scope = dict[str, Any]
ASGIApp = Any

KNOWN_PATHS = ("/", "/health", "/metrics", "/v1/models", "/v1/chat/completions")
CHAT_PATH = "/v1/chat/completions"


async def send_error(
    send: Any,
    status: int,
    message: str,
    type: str,
    code: str,
    headers: dict[str, str] | None = None,
) -> None:
    body = json.dumps(error_body(message, type, None, code)).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _protected(path: str) -> bool:
    return path.startswith("/v1/") or path == "/metrics"


class GuardMiddleware:
    """Refuses requests without `Authorization: Bearer <api_key>` (when a key is set) with 401,
    and bodies over `max_body_bytes` with 413, before the app sees them.

    The body is read here, bounded, and replayed to the app; later `receive` calls pass through,
    so the app still learns when the client disconnects.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.api_key is not None and _protected(scope["path"]) and not self._authorized(scope):
            await send_error(
                send,
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                "invalid_request_error",
                "invalid_api_key",
                {"WWW-Authenticate": "Bearer"},
            )
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send, int(declared))
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._too_large(send, len(body))
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, scope: Scope) -> bool:
        value = _header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            token.strip().encode(),
            self.api_key.encode(),  # type: ignore[union-attr]
        )

    async def _too_large(self, send: Any, size: int) -> None:
        await send_error(
            send,
            413,
            f"request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes",
            "invalid_request_error",
            "request_too_large",
        )


class MetricsMiddleware:
    """Counts every response by path and status, and times chat completions to their last byte."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        label = (
            path if path in KNOWN_PATHS else "/static" if path.startswith("/static/") else "other"
        )
        started = time.perf_counter()
        status = 500
        recorded = False

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            self.metrics.record_response(label, status)
            if path == CHAT_PATH and status == 200:
                self.metrics.observe("ragkit_chat_latency_seconds", time.perf_counter() - started)

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                record()

        try:
            await self.app(scope, receive, counting_send)
        finally:
            record()
