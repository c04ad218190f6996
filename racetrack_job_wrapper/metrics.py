"""Prometheus metrics of one server: job calls, every request, the concurrency queue."""
from __future__ import annotations

import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from racetrack_job_wrapper.messages import Request, Response
from racetrack_job_wrapper.routing import Route

# The existing implementation's buckets, 1 ms .. 1000 s, so dashboards keep their meaning.
DURATION_BUCKETS = (.001, .0025, .005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5,
                    10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, float('inf'))


class JobMetrics:
    """The metric objects of one server, registered on `registry` (the default registry by default)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.registry = registry
        self.requests_started = Counter(
            'requests_started', 'Job calls started (may not be finished yet)', registry=registry)
        self.requests_done = Counter(
            'requests_done', 'Job calls finished, successfully or not', registry=registry)
        self.endpoint_requests_started = Counter(
            'endpoint_requests_started', 'Job calls started, by endpoint', ['endpoint'], registry=registry)
        self.request_duration = Histogram(
            'request_duration', 'Duration of job calls in seconds, queue wait excluded', ['endpoint'],
            buckets=DURATION_BUCKETS, registry=registry)
        self.request_internal_errors = Counter(
            'request_internal_errors', 'Job calls that ended in an error, by endpoint', ['endpoint'],
            registry=registry)
        self.last_call_timestamp = Gauge(
            'last_call_timestamp', 'Unix time of the last job call', registry=registry)
        self.calls_running = Gauge(
            'request_calls_running', 'Job calls executing now', registry=registry)
        self.calls_queued = Gauge(
            'request_calls_queued', 'Job calls waiting in the concurrency queue', registry=registry)
        self.queue_wait = Histogram(
            'request_queue_wait_seconds', 'Time job calls waited in the concurrency queue',
            buckets=DURATION_BUCKETS, registry=registry)
        self.requests_rejected = Counter(
            'requests_rejected', 'Requests refused before reaching job code, by reason', ['reason'],
            registry=registry)
        self.commons_requests_started = Counter(
            'commons_requests_started', 'HTTP requests received', registry=registry)
        self.commons_requests_done = Counter(
            'commons_requests_done', 'HTTP requests answered', registry=registry)
        self.commons_request_duration = Histogram(
            'commons_request_duration', 'Duration of HTTP requests in seconds',
            buckets=DURATION_BUCKETS, registry=registry)
        self.commons_internal_server_errors = Counter(
            'commons_internal_server_errors', 'HTTP requests answered with a 5xx status', registry=registry)

    def endpoint(self, label: str) -> 'EndpointMetrics':
        """Label children for one endpoint, resolved once at start-up."""
        return EndpointMetrics(self, label)


class EndpointMetrics:
    """The per-endpoint children, so the request path does no `labels()` look-ups."""

    __slots__ = ('_metrics', '_started', '_duration', '_errors')

    def __init__(self, metrics: JobMetrics, label: str):
        self._metrics = metrics
        self._started = metrics.endpoint_requests_started.labels(endpoint=label)
        self._duration = metrics.request_duration.labels(endpoint=label)
        self._errors = metrics.request_internal_errors.labels(endpoint=label)

    def call_started(self) -> None:
        """Count a job call as started."""
        self._metrics.requests_started.inc()
        self._started.inc()

    def call_finished(self, seconds: float, failed: bool) -> None:
        """Record a finished job call."""
        metrics = self._metrics
        self._duration.observe(seconds)
        if failed:
            self._errors.inc()
        metrics.requests_done.inc()
        metrics.last_call_timestamp.set(time.time())


def metrics_route(registry: CollectorRegistry) -> Route:
    """`GET /metrics`: Prometheus text, or OpenMetrics when the scraper's `Accept` asks for it."""
    def scrape(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get('Accept') or '')
        return Response(encoder(registry), 200, content_type)

    return Route('/metrics', {'GET': scrape}, 'metrics', internal=True)
