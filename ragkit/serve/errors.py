"""Errors of the chat server, always answered in OpenAI's shape and never with internal text.

A client sees a message the server wrote for it: what was wrong with its request, or that the
server or its model server failed. Exception text from inside the pipeline (tokenizers, HTTP
libraries, file paths of the model server) stays in the server's log, under an id the client
message carries so the two can be matched.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragkit.errors import InputError, ModelServerError
from ragkit.serve.schemas import UNSUPPORTED, error_body
from ragkit.serve.worker import Interrupted, QueueFull, ShuttingDown

log = logging.getLogger("ragkit.serve")


class APIError(Exception):
    """An error answered in OpenAI's shape `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), self.status, headers=self.headers)


def busy(exc: QueueFull) -> APIError:
    return APIError(
        503,
        f"the server is busy: {exc}; retry later",
        type="server_error",
        code="queue_full",
        headers={"Retry-After": "1"},
    )


def shutting_down(reason: str = "the server is shutting down; retry on another server") -> APIError:
    return APIError(
        503, reason, type="server_error", code="server_shutting_down", headers={"Retry-After": "5"}
    )


def pipeline_error(exc: BaseException) -> APIError:
    """The client-facing error for anything a request's pipeline raised."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, QueueFull):
        return busy(exc)
    if isinstance(exc, ShuttingDown):
        return shutting_down()
    if isinstance(exc, Interrupted):
        return shutting_down(str(exc))
    if isinstance(exc, InputError):
        return APIError(400, str(exc))
    incident = uuid.uuid4().hex[:12]
    if isinstance(exc, ModelServerError):
        log.error("model server failed [%s]: %s", incident, exc)
        return APIError(
            502,
            f"the model server failed to answer (incident {incident} in the server log)",
            type="server_error",
            code="model_server_error",
        )
    log.error("request failed [%s]", incident, exc_info=exc)
    return APIError(
        500,
        f"the server failed to answer (incident {incident} in the server log)",
        type="server_error",
        code="internal_error",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        code = "invalid_value"
        if first.get("type") == "json_invalid":
            message, param = "the request body is not valid JSON", None
        elif first.get("type") == "missing":
            message = f"{param}: required"
        elif first.get("type") in UNSUPPORTED:  # the schema's own refusal says it all
            message, code = f"{param}: {first.get('msg')}", first["type"]
        else:
            # repr() escapes what JSON cannot carry (lone surrogates, control characters)
            message = f"{param or 'body'}: {first.get('msg')} (got {first.get('input')!r})"[:500]
        return JSONResponse(error_body(message, "invalid_request_error", param, code), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return JSONResponse(
            error_body(
                f"{request.method} {request.url.path}: {exc.detail}",
                "invalid_request_error",
                None,
                code,
            ),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return pipeline_error(exc).response()
