"""Server-wide request accounting: the request's trace, the access log line, the `commons_*` metrics."""
from __future__ import annotations

import logging

from racetrack_job_wrapper.messages import Request
from racetrack_job_wrapper.metrics import JobMetrics
from racetrack_job_wrapper.observability import ObservabilitySettings
from racetrack_job_wrapper.tracing import CURRENT_TRACE, ActiveRequests, TraceReader

logger = logging.getLogger('racetrack_job_wrapper.access')

# Successful GETs of these paths are not logged: probes and scrapes would drown everything else.
QUIET_PATHS = frozenset({'/live', '/ready', '/health', '/metrics'})
ACCESS_FORMAT = '%s %s %d %.1fms %dB'  # method, target, status, milliseconds, bytes sent


class AccessObserver:
    """Told by the server about every request: traces it, counts it, logs one line for it.

    Thread-safe: the only per-request state lives in the serving thread's context.
    """

    def __init__(self, metrics: JobMetrics, settings: ObservabilitySettings | None = None,
                 active: ActiveRequests | None = None):
        self._metrics = metrics
        settings = settings if settings is not None else ObservabilitySettings()
        self._reader = TraceReader(settings)
        self._tracing_header = settings.tracing_header
        self.active = active if active is not None else ActiveRequests()

    def request_started(self) -> None:
        """Count a request as received (its first line has arrived)."""
        self._metrics.commons_requests_started.inc()

    def request_received(self, request: Request) -> list[tuple[str, str]]:
        """Make the request's trace current in this thread; returns headers to add to its response."""
        trace = self._reader.read(request)
        CURRENT_TRACE.set(trace)
        self.active.begin(trace)
        return [(self._tracing_header, trace.tracing_id)]

    def connection_refused(self, reason: str) -> None:
        """Count a connection turned away before any request was read: 'connection_limit' or 'shutting_down'."""
        self._metrics.count_rejected(reason)

    def request_finished(self, request: Request | None, method: str, target: str, status: int,
                         sent: int, seconds: float) -> None:
        """Count and log an answered request, then forget its trace."""
        metrics = self._metrics
        metrics.commons_requests_done.inc()
        metrics.commons_request_duration.observe(seconds)
        if status >= 500:
            metrics.commons_internal_server_errors.inc()
        if request is None:
            if status >= 400:
                metrics.count_rejected(status)  # the server refused to read it: limits or malformed HTTP
        elif status < 400:
            if method in ('GET', 'HEAD'):
                route = request.state.get('route')
                if route is not None and route.path in QUIET_PATHS:
                    self._forget(request)
                    return
        elif status in (401, 403) and 'route' not in request.state:
            metrics.count_rejected(status)  # access control answers before routing; no route means it refused
        if logger.isEnabledFor(logging.INFO):
            # Handed over as a ready record: the caller's file and line (what `logger.info` spends a
            # frame walk on) say nothing about an access line.
            logger.handle(logging.LogRecord(logger.name, logging.INFO, __file__, 0, ACCESS_FORMAT,
                                            (method, target, status, seconds * 1000, sent), None))
        if request is not None:
            self._forget(request)

    def _forget(self, request: Request) -> None:
        CURRENT_TRACE.set(None)
        self.active.end()
