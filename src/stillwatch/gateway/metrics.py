"""Prometheus metrics with low-cardinality labels only (no account, key or IP labels)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stillwatch.events import ACTIONS

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "stillwatch_requests",
            "Requests by endpoint and action",
            ["endpoint", "action"],
            registry=r,
        )
        self._requests = {(e, a): self.requests.labels(e, a) for e in ENDPOINTS for a in ACTIONS}
        self.duration = Histogram(
            "stillwatch_request_duration_seconds",
            "Time from request to last byte",
            ["endpoint"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60),
            registry=r,
        )
        self._duration = {e: self.duration.labels(e) for e in ENDPOINTS}
        self.upstream_errors = Counter(
            "stillwatch_upstream_errors", "Upstream failures by kind", ["kind"], registry=r
        )
        self.decisions = Counter(
            "stillwatch_decisions", "Detector decisions by action", ["action", "mode"], registry=r
        )
        self._decisions = {
            (a, m): self.decisions.labels(a, m) for a in ACTIONS for m in ("enforce", "shadow")
        }
        self.decision_timeouts = Counter(
            "stillwatch_decision_timeouts",
            "Decisions skipped past the budget (failed open)",
            registry=r,
        )
        self.decision_errors = Counter(
            "stillwatch_decision_errors", "Detector errors (failed open)", registry=r
        )
        self.limiter_errors = Counter(
            "stillwatch_limiter_errors", "Limiter storage unreachable", registry=r
        )
        self.tokens = Counter("stillwatch_tokens", "Tokens served", ["kind"], registry=r)

    def count(self, endpoint: str, action: str, seconds: float) -> None:
        child = self._requests.get((endpoint, action))
        if child is not None:
            child.inc()
            self._duration[endpoint].observe(seconds)

    def decided(self, action: str, mode: str) -> None:
        child = self._decisions.get((action, mode))
        if child is not None:
            child.inc()

    def add_gauge(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        Gauge(name, doc, registry=self.registry).set_function(fn)

    def render(self) -> bytes:
        return generate_latest(self.registry)
