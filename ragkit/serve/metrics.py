"""Server metrics in `prometheus_client` objects held in a registry of the app's own.

A per-app `CollectorRegistry` (not the process-wide default) lets several apps live in one
process, as in tests and notebooks, without sharing or clashing counters.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    exposition,
    generate_latest,
)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST

# name (without a counter's `_total`), kind, help, label names
_FAMILIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("ragkit_http_requests", "counter", "HTTP requests answered, by path and status.",
     ("path", "status")),
    ("ragkit_http_errors", "counter", "HTTP responses with status 400 or above, by status.",
     ("status",)),
    ("ragkit_chat_requests", "counter", "Chat completions accepted, by model and streaming.",
     ("model", "stream")),
    ("ragkit_chat_latency_seconds", "histogram",
     "Chat completion time from arrival to last byte.", ()),
    ("ragkit_time_to_first_token_seconds", "histogram",
     "Time from arrival to the first answer text.", ()),
    ("ragkit_prompt_tokens", "counter", "Prompt tokens of finished chat completions.", ()),
    ("ragkit_cached_prompt_tokens", "counter", "Prompt tokens reused from the KV cache.", ()),
    ("ragkit_completion_tokens", "counter", "Generated tokens of finished chat completions.", ()),
    ("ragkit_passage_kv_hits", "counter", "Passages whose KV came from the passage store.", ()),
    ("ragkit_passage_kv_misses", "counter",
     "Passages computed and stored because the passage store lacked them.", ()),
    ("ragkit_passage_kv_evictions", "counter",
     "Passage store entries evicted to stay within its byte budget.", ()),
    ("ragkit_passage_kv_bytes", "gauge", "Bytes held by a generator's passage store.",
     ("generator",)),
    ("ragkit_passage_kv_entries", "gauge", "Entries held by a generator's passage store.",
     ("generator",)),
    ("ragkit_client_disconnects", "counter", "Generations stopped because the client left.", ()),
    ("ragkit_stream_errors", "counter", "Streams that ended with an error event, by status.",
     ("status",)),
    ("ragkit_shutdown_interrupted", "counter",
     "Requests ended because the server shut down before they finished.", ()),
    ("ragkit_queue_depth", "gauge", "Requests waiting for a generator, by generator.",
     ("generator",)),
    ("ragkit_requests_queued", "gauge", "Requests waiting for a generator, by generator.",
     ("generator",)),
    ("ragkit_requests_in_flight", "gauge", "Requests running on a generator, by generator.",
     ("generator",)),
    ("ragkit_max_concurrency", "gauge", "Requests a generator runs at once, by generator.",
     ("generator",)),
    ("ragkit_generations_in_progress", "gauge", "Generations running now.", ()),
)  # fmt: skip


class ServerMetrics:
    """The chat server's counters, gauges and histograms; every method is thread-safe.

    Metrics are addressed by their exposed name (`ragkit_http_requests_total`) so call sites
    read like the `/metrics` page they feed.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        self._lock = threading.Lock()
        self._tokens = [0.0, 0.0]  # prompt, cached: for the cached-token ratio
        for name, kind, help_text, labels in _FAMILIES:
            if kind == "counter":
                metric = Counter(name, help_text, labels, registry=self.registry)
                self._metrics[name + "_total"] = metric
            elif kind == "gauge":
                self._metrics[name] = Gauge(name, help_text, labels, registry=self.registry)
            else:
                self._metrics[name] = Histogram(
                    name, help_text, labels, buckets=LATENCY_BUCKETS, registry=self.registry
                )
        ratio = Gauge(
            "ragkit_cached_token_ratio",
            "Cached prompt tokens over all prompt tokens so far.",
            registry=self.registry,
        )
        ratio.set_function(self._cached_ratio)

    def _get(self, name: str, labels: Mapping[str, str] | None) -> Counter | Gauge | Histogram:
        metric = self._metrics[name]
        return metric.labels(**labels) if labels else metric

    def inc(self, name: str, labels: Mapping[str, str] | None = None, value: float = 1.0) -> None:
        self._get(name, labels).inc(value)  # type: ignore[union-attr]

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        self._get(name, labels).set(value)  # type: ignore[union-attr]

    def add_gauge(self, name: str, delta: float, labels: Mapping[str, str] | None = None) -> None:
        self._get(name, labels).inc(delta)  # type: ignore[union-attr]

    def observe(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        self._get(name, labels).observe(value)  # type: ignore[union-attr]

    def record_response(self, path: str, status: int) -> None:
        self.inc("ragkit_http_requests_total", {"path": path, "status": str(status)})
        if status >= 400:
            self.inc("ragkit_http_errors_total", {"status": str(status)})

    def record_usage(self, prompt: int, cached: int, completion: int) -> None:
        with self._lock:
            self._tokens[0] += prompt
            self._tokens[1] += cached
        self.inc("ragkit_prompt_tokens_total", value=prompt)
        self.inc("ragkit_cached_prompt_tokens_total", value=cached)
        self.inc("ragkit_completion_tokens_total", value=completion)

    def record_passages(self, hits: int, misses: int, evictions: int) -> None:
        """One generation's passage store lookups (all zero unless it reuses passages)."""
        self.inc("ragkit_passage_kv_hits_total", value=hits)
        self.inc("ragkit_passage_kv_misses_total", value=misses)
        self.inc("ragkit_passage_kv_evictions_total", value=evictions)

    def watch_passage_store(self, generator: str, store: Any) -> None:
        """Report `store`'s size at every scrape (read when `/metrics` renders)."""
        labels = {"generator": generator}
        self._get("ragkit_passage_kv_bytes", labels).set_function(  # type: ignore[union-attr]
            lambda: float(store.total_bytes)
        )
        self._get("ragkit_passage_kv_entries", labels).set_function(  # type: ignore[union-attr]
            lambda: float(len(store))
        )

    def set_gate(self, generator: str, running: int, waiting: int) -> None:
        """In-flight and queued requests of one generator, as its gate reports them."""
        labels = {"generator": generator}
        self.set_gauge("ragkit_requests_in_flight", running, labels)
        self.set_gauge("ragkit_requests_queued", waiting, labels)
        self.set_gauge("ragkit_queue_depth", waiting, labels)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The current value of a sample (0 when never set)."""
        found = self.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if found is None else float(found)

    def _cached_ratio(self) -> float:
        with self._lock:
            prompt, cached = self._tokens
        return cached / prompt if prompt else 0.0

    def render(self) -> str:
        return generate_latest(self.registry).decode()
