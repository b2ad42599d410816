"""Prometheus metrics of the reward service, in a registry of its own (one per app)."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Latency buckets up to minutes: a 128K-token prompt on a small GPU takes that long.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """Requests by endpoint and status, latency, tokens, queue depth and batch size."""

    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "longrm_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "longrm_request_latency_seconds",
            "Time from request to response, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "longrm_tokens",
            "Tokens received (prompt: prompts and responses to score) and generated.",
            ["endpoint", "kind"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "longrm_queue_depth", "Requests waiting for the model.", registry=self.registry
        )
        self.queue_depth.set_function(lambda: float(queue_depth()))
        self.batch_size = Histogram(
            "longrm_batch_size",
            "Model calls per batch the worker ran.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )


class RequestMetrics:
    """ASGI middleware: counts requests by endpoint and status and times them.

    `endpoints()` returns the paths counted by name (the app's routes); any other path counts as
    "other". A request whose client left before an answer was sent counts as status 499.
    """

    def __init__(
        self, app: ASGIApp, metrics: ServeMetrics, endpoints: Callable[[], Collection[str]]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope.get("path", "")
        endpoint = path if path in self.endpoints() else "other"
        status = 499

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = 500
            raise
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
