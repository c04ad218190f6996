"""Prometheus metrics of one server: job calls, every request, the concurrency queue, the job's own gauges."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from racetrack_job_wrapper import __version__
from racetrack_job_wrapper.messages import Request, Response
from racetrack_job_wrapper.routing import METRICS_PATH, Route

logger = logging.getLogger(__name__)

# The existing implementation's buckets, 1 ms .. 1000 s, so dashboards keep their meaning.
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    25.0,
    50.0,
    75.0,
    100.0,
    250.0,
    500.0,
    750.0,
    1000.0,
    float('inf'),
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, float('inf'))
# Every `reason` of requests_rejected_total, as the refusals name it (`HTTPError.rejected`, or the
# server for a refused connection). Their children are made at start-up, so they show as 0 before
# the first refusal and cost no look-up when counted.
REJECTION_REASONS = (
    'bad_request',  # malformed HTTP: request line, headers, framing
    'unauthorized',  # JOB_AUTH_TOKENS: no token or a wrong one
    'timeout',  # request line, headers or body not received in time; a call past its deadline (504)
    'body_too_large',  # max_body_bytes
    'uri_too_long',  # max_request_line_bytes
    'queue_full',  # max_concurrency_queue
    'deadline',  # 429: the estimated wait for a place ends past the call's deadline
    'headers_too_large',  # max_header_bytes, max_header_fields
    'not_implemented',  # a Transfer-Encoding other than chunked
    'http_version',  # neither HTTP/1.0 nor HTTP/1.1
    'connection_limit',  # 503 before any request is read: max_connections, max_client_connections, no descriptor
    'evicted',  # at a connection cap: the connection waiting longest for a request, closed to make room
    'shutting_down',  # 503 before any request is read
)
_METRIC_NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
_LABEL_NAME = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')


class JobMetrics:
    """The metric objects of one server, registered on `registry` (the default registry by default).

    Gauges carry a `multiprocess_mode`, used only with `--workers` above 1: how the values of
    the worker processes combine into one (ignored by a single process).
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY, job_name: str = 'job', job_version: str = 'latest'):
        self.registry = registry
        self.requests_started = Counter(
            'requests_started', 'Job calls started (may not be finished yet)', registry=registry
        )
        self.requests_done = Counter('requests_done', 'Job calls finished, successfully or not', registry=registry)
        self.endpoint_requests_started = Counter(
            'endpoint_requests_started', 'Job calls started, by endpoint', ['endpoint'], registry=registry
        )
        self.request_duration = Histogram(
            'request_duration',
            'Duration of job calls in seconds, queue wait excluded',
            ['endpoint'],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.request_internal_errors = Counter(
            'request_internal_errors', 'Job calls that ended in an error, by endpoint', ['endpoint'], registry=registry
        )
        self.request_timeouts = Counter(
            'request_timeouts', 'Job calls answered 504 at their deadline, by endpoint', ['endpoint'], registry=registry
        )
        self.request_overrun = Histogram(
            'request_overrun_seconds',
            'How long job calls ran past their deadline, by endpoint',
            ['endpoint'],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.last_call_timestamp = Gauge(
            'last_call_timestamp', 'Unix time of the last job call', registry=registry, multiprocess_mode='max'
        )
        self.calls_running = Gauge(
            'request_calls_running', 'Job calls executing now', registry=registry, multiprocess_mode='livesum'
        )
        self.calls_queued = Gauge(
            'request_calls_queued',
            'Job calls waiting in the concurrency queue',
            registry=registry,
            multiprocess_mode='livesum',
        )
        self.queue_wait = Histogram(
            'request_queue_wait_seconds',
            'Time job calls waited in the concurrency queue',
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            'batch_size',
            'Calls grouped into each perform_batch() call',
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.async_call_queue = Histogram(
            'async_call_queue_seconds',
            'Time async calls waited in the store from accepted to running',
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.requests_rejected = Counter(
            'requests_rejected', 'Requests refused before reaching job code, by reason', ['reason'], registry=registry
        )
        self.commons_requests_started = Counter('commons_requests_started', 'HTTP requests received', registry=registry)
        self.commons_requests_done = Counter('commons_requests_done', 'HTTP requests answered', registry=registry)
        self.commons_request_duration = Histogram(
            'commons_request_duration',
            'Duration of HTTP requests in seconds',
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.commons_internal_server_errors = Counter(
            'commons_internal_server_errors', 'HTTP requests answered with a 5xx status', registry=registry
        )
        self.log_lines_dropped = Counter(
            'log_lines_dropped', 'Log lines dropped because the log stream did not keep up', registry=registry
        )
        self.info = Info('racetrack_job', 'The job served and the version of the server library', registry=registry)
        self.info.info({'job_name': job_name, 'job_version': job_version, 'wrapper_version': __version__})
        self._rejected: dict[str, Any] = {
            reason: self.requests_rejected.labels(reason=reason) for reason in REJECTION_REASONS
        }

    def count_rejected(self, reason: str) -> None:
        """Count a request (or connection) refused before job code, by its reason word."""
        child = self._rejected.get(reason)
        if child is None:  # a reason not listed above: its child is made now
            child = self.requests_rejected.labels(reason=reason)
        child.inc()

    def endpoint(self, label: str) -> EndpointMetrics:
        """Label children for one endpoint, resolved once at start-up."""
        return EndpointMetrics(self, label)


class EndpointMetrics:
    """The per-endpoint children, so the request path does no `labels()` look-ups."""

    __slots__ = ('_metrics', '_started', '_duration', '_errors', '_timeouts', '_overrun')

    def __init__(self, metrics: JobMetrics, label: str):
        self._metrics = metrics
        self._started = metrics.endpoint_requests_started.labels(endpoint=label)
        self._duration = metrics.request_duration.labels(endpoint=label)
        self._errors = metrics.request_internal_errors.labels(endpoint=label)
        self._timeouts = metrics.request_timeouts.labels(endpoint=label)
        self._overrun = metrics.request_overrun.labels(endpoint=label)

    def timed_out(self) -> None:
        """Count a call answered 504 at its deadline."""
        self._timeouts.inc()

    def overran(self, seconds: float) -> None:
        """Record how long a call went on past its deadline (0 when cancelling stopped it in time)."""
        self._overrun.observe(seconds)

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


class JobGaugeCollector:
    """Exports the job's `metrics()` list as gauges at scrape time.

    Each entry is a dict with `name` and `value`, optional `description` and `labels`. A `None`
    value is skipped quietly; an entry that cannot be exported, or an exception inside `metrics()`,
    is logged and skipped, and the scrape goes on with everything else.
    """

    def __init__(self, metrics_function: Callable[[], Any], reserved_names: frozenset[str] = frozenset()):
        self._metrics_function = metrics_function
        self._reserved = reserved_names

    def describe(self) -> list[Metric]:
        """Nothing: registering must not call the job, so its names are checked at each scrape instead."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The job's gauges as they are now; never raises."""
        try:
            entries = self._metrics_function()
        except Exception:
            logger.exception('metrics() of the job raised; its metrics are left out of this scrape')
            return
        if entries is None:
            return
        if not isinstance(entries, (list, tuple)):
            logger.error('metrics() of the job must return a list of dicts, got %s', type(entries).__name__)
            return
        families: dict[str, tuple[GaugeMetricFamily, tuple[str, ...], set[tuple[str, ...]]]] = {}
        for index, entry in enumerate(entries):
            try:
                sample = self._sample(entry)
            except ValueError as e:
                logger.error('metrics() entry #%d is skipped: %s', index, e)
                continue
            if sample is None:
                continue
            name, description, labels, value = sample
            label_names = tuple(sorted(labels))
            label_values = tuple(labels[key] for key in label_names)
            if name not in families:
                families[name] = (GaugeMetricFamily(name, description, labels=label_names), label_names, set())
            family, expected_names, seen = families[name]
            if label_names != expected_names:
                logger.error(
                    'metrics() entry #%d is skipped: metric %r has labels %s here but %s in an earlier entry',
                    index,
                    name,
                    list(label_names),
                    list(expected_names),
                )
                continue
            if label_values in seen:
                logger.error(
                    'metrics() entry #%d is skipped: metric %r with labels %s is listed twice', index, name, labels
                )
                continue
            seen.add(label_values)
            family.add_metric(list(label_values), value)
        for family, _, _ in families.values():
            yield family

    def _sample(self, entry: Any) -> tuple[str, str, dict[str, str], float] | None:
        """(name, description, labels, value) of one entry, None for a `None` value; ValueError says why not."""
        if not isinstance(entry, dict):
            raise ValueError(f'expected a dict with "name" and "value", got {type(entry).__name__}')
        name = entry.get('name')
        if not name:
            raise ValueError(f'"name" field is missing: {entry!r}')
        if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
            raise ValueError(f'{name!r} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)')
        if name in self._reserved:
            raise ValueError(f'metric {name!r} collides with a metric the server exports')
        if 'value' not in entry:
            raise ValueError(f'"value" field is missing for metric {name!r}')
        value = entry['value']
        if value is None:
            return None
        if not isinstance(value, (int, float)) or isinstance(value, complex):
            raise ValueError(f'value of metric {name!r} must be a number, got {type(value).__name__} {value!r}')
        labels = entry.get('labels') or {}
        if not isinstance(labels, dict):
            raise ValueError(f'labels of metric {name!r} must be a dict, got {type(labels).__name__}')
        for key in labels:
            if not isinstance(key, str) or not _LABEL_NAME.fullmatch(key) or key.startswith('__'):
                raise ValueError(f'{key!r} is not a valid label name for metric {name!r}')
        description = entry.get('description')
        return (
            name,
            '' if description is None else str(description),
            {key: str(label) for key, label in labels.items()},
            float(value),
        )


def register_job_metrics(registry: CollectorRegistry, entrypoint: object) -> JobGaugeCollector | None:
    """Export the job's `metrics()` through `registry`, if the job has that method."""
    metrics_function = getattr(entrypoint, 'metrics', None)
    if not callable(metrics_function):
        return None
    reserved = set()
    for family in registry.collect():
        reserved.add(family.name)
        reserved.update(sample.name for sample in family.samples)
    collector = JobGaugeCollector(metrics_function, frozenset(reserved))
    registry.register(collector)
    return collector


def metrics_route(registry: CollectorRegistry) -> Route:
    """`GET /metrics`: Prometheus text, or OpenMetrics when the scraper's `Accept` asks for it."""

    def scrape(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get('Accept') or '')
        return Response(encoder(registry), 200, content_type)

    return Route(METRICS_PATH, {'GET': scrape}, f'the built-in {METRICS_PATH}')
