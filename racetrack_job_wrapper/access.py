"""Server-wide request accounting: the access log line and the `commons_*` metrics."""
from __future__ import annotations

import logging

from racetrack_job_wrapper.messages import Request
from racetrack_job_wrapper.metrics import JobMetrics

logger = logging.getLogger('racetrack_job_wrapper.access')


class AccessObserver:
    """Counts every request and logs one line for each, except successful probes and scrapes."""

    def __init__(self, metrics: JobMetrics):
        self._metrics = metrics

    def request_started(self) -> None:
        """Count a request as received."""
        self._metrics.commons_requests_started.inc()

    def request_finished(self, request: Request | None, method: str, target: str, status: int,
                         sent: int, seconds: float) -> None:
        """Count and log an answered request."""
        metrics = self._metrics
        metrics.commons_requests_done.inc()
        metrics.commons_request_duration.observe(seconds)
        if status >= 500:
            metrics.commons_internal_server_errors.inc()
        route = request.state.get('route') if request is not None else None
        if route is not None and route.internal and status < 400 and method in ('GET', 'HEAD'):
            return
        if logger.isEnabledFor(logging.INFO):
            logger.info('%s %s %d %.1fms %dB', method, target, status, seconds * 1000, sent)
