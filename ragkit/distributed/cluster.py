"""Connecting to Ray: a clear error when it is missing or unreachable, quiet and offline when on."""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from typing import Any
from urllib.parse import urlparse

from ragkit.errors import ConfigError

INSTALL_HINT = "pip install 'ragkit[ray]'"
START_TIMEOUT_ENV = "RAGKIT_RAY_START_TIMEOUT"
CONNECT_TIMEOUT_S = 5.0


def import_ray() -> Any:
    """Ray, imported on demand with usage reporting off (ragkit never phones home)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401  (the `data` extra is what ingestion needs)
    except ImportError as exc:
        raise ConfigError(
            f"--engine ray needs Ray Data, which is not installed: {INSTALL_HINT}"
        ) from exc
    _quiet()
    return ray


def _quiet() -> None:
    """ragkit draws its own progress bar: Ray Data's bars and per-run INFO lines would garble
    it, so only its warnings are shown."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # Ray Data re-creates its handlers per run, but leaves the levels of inner loggers alone.
    logging.getLogger("ray.data._internal").setLevel(logging.WARNING)
    # Its resource manager warns that a pool "may hang forever" while the pool's workers are
    # still starting, and advises on object store sizing: neither applies to a fixed pool
    # (one that cannot start fails after RAGKIT_RAY_START_TIMEOUT with a clear reason).
    logging.getLogger("ray.data._internal.execution.resource_manager").setLevel(logging.ERROR)
    warnings.filterwarnings(
        "ignore", message="Tip: In future versions of Ray", category=FutureWarning
    )


def connect(address: str | None = None) -> float:
    """Join the cluster at `address` ('auto', 'ray://host:10001', a GCS host:port), or start a
    local one when it is None; returns the seconds it took (0 when already connected)."""
    ray = import_ray()
    if ray.is_initialized():
        return 0.0
    started = time.perf_counter()
    if address is not None and address != "auto":
        _check_reachable(address)
    options: dict[str, Any] = {"logging_level": logging.WARNING}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "this machine"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"Ray cluster at {where} cannot be reached: {reason}") from exc
    return time.perf_counter() - started


def _check_reachable(address: str) -> None:
    """Fail in seconds on a wrong host or port: Ray itself keeps retrying for minutes."""
    target = urlparse(address if "://" in address else f"ray://{address}")
    try:
        host, port = target.hostname, target.port
    except ValueError as exc:
        raise ConfigError(f"--address {address!r} is not host:port or ray://host:port") from exc
    if not host or not port:
        raise ConfigError(f"--address {address!r} is not host:port or ray://host:port")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(f"Ray cluster at {address} cannot be reached: {reason}") from exc


def cluster_cpus() -> int:
    """CPUs the cluster offers now (autoscaling clusters may offer more later)."""
    ray = import_ray()
    return int(ray.cluster_resources().get("CPU", 0))


def default_workers() -> int:
    """One worker per CPU of the cluster: each worker keeps one CPU busy with the model."""
    return max(1, cluster_cpus())


def check_capacity(workers: int, address: str | None) -> None:
    """On a Ray that ragkit started here, more workers than CPUs would wait forever: refuse."""
    if address is None and workers > cluster_cpus():
        raise ConfigError(
            f"--workers {workers} needs {workers} CPUs, but the Ray cluster has "
            f"{cluster_cpus()}; ask for fewer workers or join a larger cluster with --address"
        )


def start_timeout() -> float:
    """How long a worker pool may take to start before the run fails with a clear reason."""
    return float(os.environ.get(START_TIMEOUT_ENV, "300"))


def check_workers(workers: int) -> None:
    if workers <= 0:
        raise ValueError(f"--workers must be > 0, got {workers}")


def failure_reason(exc: BaseException) -> str:
    """The first line of what went wrong on a worker, without Ray's remote traceback."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}".rstrip(": ")
