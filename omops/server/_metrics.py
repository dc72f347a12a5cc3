"""Prometheus metrics (text format 0.0.4), kept per server process.

Every series has a bounded set of labels: methods outside the standard ones
count as ``OTHER``, routes are templates (``unmatched`` for the rest), and
per-model series exist only for predictions that were answered. Per-model
series carry their bucket, and a caller sees only those of buckets it may read.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Metrics", "MetricsMiddleware"]

#: Request methods counted by name; any other is counted as "OTHER".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**labels: str) -> str:
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}"


class Metrics:
    """Counters of requests, latency and predictions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_buckets: dict[tuple[str, str], list[int]] = defaultdict(
            lambda: [0] * len(_BUCKETS)
        )
        self.latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.latency_count: dict[tuple[str, str], int] = defaultdict(int)
        self.predictions: dict[tuple[str | None, str], int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"  # a client may send any token
        with self._lock:
            self.requests[(method, route, status)] += 1
            key = (method, route)
            counts = self.latency_buckets[key]
            for i, bound in enumerate(_BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.latency_sum[key] += seconds
            self.latency_count[key] += 1

    def predicted(self, model: str, rows: int, *, bucket: str | None = None) -> None:
        """Count ``rows`` predicted by ``model`` in ``bucket``.

        Without a bucket the series has no bucket label and only viewers who
        may read every bucket see it.
        """
        with self._lock:
            self.predictions[(bucket, model)] += rows

    def render(
        self,
        visible: Callable[[str], bool] | None = None,
        caches: Mapping[str, int] | None = None,
    ) -> str:
        """The text format; per-model series only of buckets where ``visible(bucket)``.

        ``visible=None`` shows every series. ``caches``: entries per server cache.
        """
        lines = [
            "# HELP omops_http_requests_total HTTP requests by method, route and status.",
            "# TYPE omops_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(
                    f"omops_http_requests_total{_labels(method=method, route=route, status=str(status))} {n}"
                )
            lines += [
                "# HELP omops_http_request_duration_seconds Request latency.",
                "# TYPE omops_http_request_duration_seconds histogram",
            ]
            for (method, route), counts in sorted(self.latency_buckets.items()):
                for bound, n in zip(_BUCKETS, counts, strict=True):
                    labels = _labels(method=method, route=route, le=str(bound))
                    lines.append(f"omops_http_request_duration_seconds_bucket{labels} {n}")
                inf = _labels(method=method, route=route, le="+Inf")
                count = self.latency_count[(method, route)]
                lines.append(f"omops_http_request_duration_seconds_bucket{inf} {count}")
                base = _labels(method=method, route=route)
                lines.append(
                    f"omops_http_request_duration_seconds_sum{base} {self.latency_sum[(method, route)]:.6f}"
                )
                lines.append(f"omops_http_request_duration_seconds_count{base} {count}")
            lines += [
                "# HELP omops_predictions_total Rows predicted, by bucket and model.",
                "# TYPE omops_predictions_total counter",
            ]
            for (bucket, model), n in sorted(
                self.predictions.items(), key=lambda item: (item[0][0] or "", item[0][1])
            ):
                if bucket is None:
                    if visible is None:
                        lines.append(f"omops_predictions_total{_labels(model=model)} {n}")
                elif visible is None or visible(bucket):
                    labels = _labels(bucket=bucket, model=model)
                    lines.append(f"omops_predictions_total{labels} {n}")
        if caches:
            lines += [
                "# HELP omops_server_cache_entries Entries in each bounded server cache.",
                "# TYPE omops_server_cache_entries gauge",
            ]
            for name, size in sorted(caches.items()):
                lines.append(f"omops_server_cache_entries{_labels(cache=name)} {size}")
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Pure ASGI: times each HTTP request and counts it by its route template."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - start)
