"""Server metrics kept in memory and rendered in the Prometheus text exposition format.

Written by hand rather than with `prometheus_client` so that each app owns its registry (several
apps in one process, as in tests, do not share counters) and serving needs no extra dependency.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
Labels = tuple[tuple[str, str], ...]


def _labels(labels: Mapping[str, str] | None) -> Labels:
    return tuple(sorted((labels or {}).items()))


def _render_labels(labels: Labels, extra: Iterable[tuple[str, str]] = ()) -> str:
    pairs = list(labels) + list(extra)
    if not pairs:
        return ""
    escaped = (f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    """Cumulative buckets, sum and count per label set, as Prometheus histograms define them."""

    def __init__(self, buckets: Sequence[float]) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError(f"histogram buckets must be non-empty and increasing, got {buckets}")
        self.buckets = tuple(buckets)
        self.series: dict[Labels, list[float]] = {}  # counts per bucket, then +Inf, sum

    def observe(self, value: float, labels: Labels) -> None:
        row = self.series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                row[i] += 1
        row[-2] += 1
        row[-1] += value

    def lines(self, name: str) -> list[str]:
        out = []
        for labels, row in sorted(self.series.items()):
            for bound, count in zip(self.buckets, row, strict=False):
                le = _render_labels(labels, [("le", _number(bound))])
                out.append(f"{name}_bucket{le} {_number(count)}")
            out.append(
                f"{name}_bucket{_render_labels(labels, [('le', '+Inf')])} {_number(row[-2])}"
            )
            out.append(f"{name}_sum{_render_labels(labels)} {_number(row[-1])}")
            out.append(f"{name}_count{_render_labels(labels)} {_number(row[-2])}")
        return out


class ServerMetrics:
    """Counters, gauges and histograms of the chat server; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, Histogram] = {
            "ragkit_chat_latency_seconds": Histogram(LATENCY_BUCKETS),
            "ragkit_time_to_first_token_seconds": Histogram(LATENCY_BUCKETS),
        }
        self._help = {
            "ragkit_http_requests_total": "HTTP requests answered, by path and status.",
            "ragkit_http_errors_total": "HTTP responses with status 400 or above, by status.",
            "ragkit_chat_requests_total": "Chat completions accepted, by model and streaming.",
            "ragkit_chat_latency_seconds": "Chat completion time from arrival to last byte.",
            "ragkit_time_to_first_token_seconds": "Time from arrival to the first answer text.",
            "ragkit_prompt_tokens_total": "Prompt tokens of finished chat completions.",
            "ragkit_cached_prompt_tokens_total": "Prompt tokens reused from the KV cache.",
            "ragkit_completion_tokens_total": "Generated tokens of finished chat completions.",
            "ragkit_cached_token_ratio": "Cached prompt tokens over all prompt tokens so far.",
            "ragkit_queue_depth": "Requests waiting for a generator, by generator.",
            "ragkit_generations_in_progress": "Generations running now.",
            "ragkit_client_disconnects_total": "Generations stopped because the client left.",
        }
        self._types = {
            "ragkit_chat_latency_seconds": "histogram",
            "ragkit_time_to_first_token_seconds": "histogram",
            "ragkit_cached_token_ratio": "gauge",
            "ragkit_queue_depth": "gauge",
            "ragkit_generations_in_progress": "gauge",
        }

    def inc(self, name: str, labels: Mapping[str, str] | None = None, value: float = 1.0) -> None:
        with self._lock:
            series = self._counters.setdefault(name, {})
            key = _labels(labels)
            series[key] = series.get(key, 0.0) + value

    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        with self._lock:
            self._gauges.setdefault(name, {})[_labels(labels)] = value

    def add_gauge(self, name: str, delta: float, labels: Mapping[str, str] | None = None) -> None:
        with self._lock:
            series = self._gauges.setdefault(name, {})
            key = _labels(labels)
            series[key] = series.get(key, 0.0) + delta

    def observe(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        with self._lock:
            self._histograms[name].observe(value, _labels(labels))

    def record_response(self, path: str, status: int) -> None:
        self.inc("ragkit_http_requests_total", {"path": path, "status": str(status)})
        if status >= 400:
            self.inc("ragkit_http_errors_total", {"status": str(status)})

    def record_usage(self, prompt: int, cached: int, completion: int) -> None:
        with self._lock:
            for name, value in (
                ("ragkit_prompt_tokens_total", prompt),
                ("ragkit_cached_prompt_tokens_total", cached),
                ("ragkit_completion_tokens_total", completion),
            ):
                series = self._counters.setdefault(name, {})
                series[()] = series.get((), 0.0) + value

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The current value of a counter or gauge (0 when never set)."""
        with self._lock:
            key = _labels(labels)
            for family in (self._counters, self._gauges):
                if name in family and key in family[name]:
                    return family[name][key]
        return 0.0

    def render(self) -> str:
        with self._lock:
            prompt = self._counters.get("ragkit_prompt_tokens_total", {}).get((), 0.0)
            cached = self._counters.get("ragkit_cached_prompt_tokens_total", {}).get((), 0.0)
            self._gauges["ragkit_cached_token_ratio"] = {(): cached / prompt if prompt else 0.0}
            self._gauges.setdefault("ragkit_generations_in_progress", {(): 0.0})
            self._gauges.setdefault("ragkit_queue_depth", {})
            lines: list[str] = []
            names = sorted(set(self._counters) | set(self._gauges) | set(self._histograms))
            for name in names:
                kind = self._types.get(name, "counter")
                lines.append(f"# HELP {name} {self._help.get(name, name)}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "histogram":
                    lines.extend(self._histograms[name].lines(name))
                    continue
                family = self._gauges if kind == "gauge" else self._counters
                for labels, value in sorted(family.get(name, {}).items()):
                    lines.append(f"{name}{_render_labels(labels)} {_number(value)}")
            return "\n".join(lines) + "\n"
