"""`ragkit serve`: loads the named pipelines once and runs the chat server with uvicorn."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ragkit.errors import ConfigError
from ragkit.process import configure_process

if TYPE_CHECKING:
    from ragkit.protocols import Pipeline
    from ragkit.spec import PipelineSpec

log = logging.getLogger("ragkit.serve")


def serve(
    pipelines: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    store: str | None = None,
    collection: str | None = None,
    max_queue: int = 8,
    max_concurrency: int | None = None,
    max_tokens: int = 1024,
    max_prompt_tokens: int = 4096,
    shutdown_grace_s: float = 10.0,
    max_body_bytes: int = 1_000_000,
    log_level: str = "info",
    warm_up: bool = True,
) -> None:
    """Serve `pipelines` (names in `pipelines/` or YAML paths) until interrupted.

    With `warm_up`, each pipeline retrieves once and generates one token before the server
    starts listening, so models load (and a missing index fails) now rather than on the first
    request.

    Up to `max_concurrency` requests per generator run at once (default: what the generator
    declares; model servers take many), `max_queue` more wait, and the rest get 503. On SIGTERM
    the server stops taking requests and gives running ones `shutdown_grace_s` to finish.

    Binding anything but a loopback address without an API key is refused: the endpoint runs a
    model on request, so exposing it to a network must be a deliberate choice with a key.
    """
    if not pipelines:
        raise ConfigError("serve: name at least one pipeline (--pipeline)")
    configure_process()
    if not 0 < port < 65536:
        raise ConfigError(f"serve: --port must be within 1..65535, got {port}")
    if api_key is not None and not api_key.strip():
        raise ConfigError("serve: --api-key is empty")
    if not _is_loopback(host) and api_key is None:
        raise ConfigError(
            f"serve: --host {host} is reachable from other machines; set --api-key to serve there"
        )
    if max_concurrency is not None and max_concurrency <= 0:
        raise ConfigError(f"serve: --max-concurrency must be > 0, got {max_concurrency}")
    if max_prompt_tokens <= 0:
        raise ConfigError(f"serve: --max-prompt-tokens must be > 0, got {max_prompt_tokens}")
    if shutdown_grace_s < 0:
        raise ConfigError(f"serve: --shutdown-grace must be >= 0, got {shutdown_grace_s}")
    import uvicorn

    _show_log(log_level)
    from ragkit.serve.app import ServeSettings, create_app
    from ragkit.serve.shutdown import serving_server

    settings = ServeSettings(
        api_key=api_key,
        max_queue=max_queue,
        max_concurrency=max_concurrency,
        max_tokens_limit=max_tokens,
        max_prompt_tokens=max_prompt_tokens,
        shutdown_grace_s=shutdown_grace_s,
        max_body_bytes=max_body_bytes,
    )
    loaded = load_served(pipelines, store, collection, warm_up)
    app = create_app(loaded, settings)
    log.info("serving %s on http://%s:%d", ", ".join(loaded), host, port)
    # uvicorn's own limit comes after the app's grace, which ends requests properly first.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=int(shutdown_grace_s) + 10,
    )
    serving_server(config, app.state.drain).run()


def load_served(
    pipelines: Sequence[str | PipelineSpec],
    store: str | None = None,
    collection: str | None = None,
    warm_up: bool = True,
) -> dict[str, Pipeline]:
    """The pipelines to serve by name (names in `pipelines/`, YAML paths or specs), each
    warmed up when asked: one search and one generated token, through the pipeline contract
    every kind of pipeline offers."""
    from ragkit import build
    from ragkit.spec import PipelineSpec, load_spec
    from ragkit.types import Query

    loaded: dict[str, Pipeline] = {}
    for item in pipelines:
        spec = item if isinstance(item, PipelineSpec) else load_spec(item)
        rag = build.pipeline(spec.with_store(store, collection))
        if rag.pipeline_name in loaded:
            raise ConfigError(f"serve: two pipelines are named {rag.pipeline_name!r}")
        loaded[rag.pipeline_name] = rag
        if warm_up:
            log.info("warming up %s", rag.pipeline_name)
            rag.retrieve([Query("warm up")])
            rag.generator.invoke("Say OK.", max_new_tokens=1)
    return loaded


def _show_log(level: str) -> None:
    """The server's own lines (warm-up, shutdown progress, incidents) on stderr beside
    uvicorn's, at uvicorn's level; other libraries' loggers are left as they are."""
    logger = logging.getLogger("ragkit")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
    numeric = logging.getLevelName(level.upper())  # uvicorn's "trace" is below DEBUG
    logger.setLevel(numeric if isinstance(numeric, int) else logging.DEBUG)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
