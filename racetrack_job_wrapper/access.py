"""Server-wide request accounting: the request's trace, the access log line, the `commons_*` metrics."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from racetrack_job_wrapper.logs import Ticker, add_request_fields, drain_before_writing, report_dropped_lines
from racetrack_job_wrapper.messages import Request
from racetrack_job_wrapper.metrics import JobMetrics
from racetrack_job_wrapper.routing import METRICS_PATH, PROBE_PATHS
from racetrack_job_wrapper.settings import ObservabilitySettings
from racetrack_job_wrapper.tracing import CURRENT_TRACE, ActiveRequests, TraceReader

logger = logging.getLogger('racetrack_job_wrapper.access')

# Successful GETs of these paths are not logged: probes and scrapes would drown everything else.
QUIET_PATHS = frozenset({*PROBE_PATHS, METRICS_PATH})
ACCESS_FORMAT = '%s %s %d %.1fms %dB'  # method, target, status, milliseconds, bytes sent


class AccessObserver:
    """Told by the server about every request: traces it, counts it, logs one line for it.

    Thread-safe: the only per-request state lives in the serving thread's context.
    """

    def __init__(
        self, metrics: JobMetrics, settings: ObservabilitySettings | None = None, active: ActiveRequests | None = None
    ):
        self._metrics = metrics
        settings = settings if settings is not None else ObservabilitySettings()
        self._reader = TraceReader(settings)
        self._tracing_header = settings.tracing_header
        self.active = active if active is not None else ActiveRequests()
        self.access_log = AccessLog(logger, settings.log_caller_name, metrics.log_lines_dropped.inc)
        report_dropped_lines(metrics.log_lines_dropped.inc)
        drain_before_writing(self.access_log.flush)

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

    def request_finished(
        self,
        request: Request | None,
        method: str,
        target: str,
        status: int,
        sent: int,
        seconds: float,
        rejected: str | None = None,
    ) -> None:
        """Count and log an answered request, then forget its trace.

        `rejected` is the reason the server refused a request it could not read (limits, malformed HTTP).
        """
        metrics = self._metrics
        metrics.commons_requests_done.inc()
        metrics.commons_request_duration.observe(seconds)
        if status >= 500:
            metrics.commons_internal_server_errors.inc()
        if request is not None and request.rejected is not None:
            rejected = request.rejected  # refused by the app before any job code: a token, the queue
        if rejected is not None:
            metrics.count_rejected(rejected)
        elif request is not None and status < 400 and method in ('GET', 'HEAD'):
            route = request.route
            if route is not None and route.path in QUIET_PATHS:
                self._forget(request)
                return
        if logger.isEnabledFor(logging.INFO):
            client = request.client[0] if request is not None and request.client else None
            self.access_log.write(method, target, status, seconds * 1000, sent, client)
        if request is not None:
            self._forget(request)

    def _forget(self, request: Request) -> None:
        CURRENT_TRACE.set(None)
        self.active.end()


# What logging measures `relativeCreated` from (the time it was imported), as LogRecord.__init__ does.
_LOGGING_STARTED: float = getattr(logging, '_startTime', time.time())


class AccessLog:
    """Access lines handed from request threads to one writer thread.

    A request thread only builds the record and appends it to a deque (atomic, no lock); the
    writer passes records to the logging handlers every `INTERVAL` seconds. With many threads
    answering at once, writing in the request threads made them queue on the log handler's
    lock (measured: 53 us of CPU per request at 16 connections, against 7 us uncontended).
    Lines reach the log at most `INTERVAL` seconds late, with the time of the request. While
    the handlers do not keep up, at most `MAX_PENDING` lines wait; later ones are dropped and
    counted through `on_drop`, so a request thread never waits for the log.
    """

    INTERVAL = 0.05
    # Two seconds of lines at the server's top rate (about 5,000 requests/s), about 6 MB of records:
    # enough for a slow moment of the handlers; past it they are stuck, and more would only grow memory.
    MAX_PENDING = 10_000

    def __init__(self, target: logging.Logger, caller_name: bool, on_drop: Callable[[int], None]):
        self._logger = target
        self._caller_name = caller_name
        self._on_drop = on_drop
        self._pending: deque[logging.LogRecord] = deque()
        self._writer = Ticker(self.INTERVAL, self._write_pending, 'access-log')
        self._lock = threading.Lock()  # taken only to flush
        # Every access record has the same source, level and format: they are made once, here, by
        # logging itself, and each line copies them and sets its own time, thread and values
        # (LogRecord.__init__ per line cost 4 us of the request path, mostly on what never changes).
        self._template = logging.LogRecord(target.name, logging.INFO, __file__, 0, ACCESS_FORMAT, (), None).__dict__

    def write(self, method: str, target: str, status: int, ms: float, sent: int, client: str | None) -> None:
        """Queue one access line with the current request's fields, or drop it when the queue is full."""
        if len(self._pending) >= self.MAX_PENDING:  # unlocked: racing threads may pass it by a line each
            self._on_drop(1)
            return
        # A ready record: the caller's file and line (what `logger.info` walks frames for) say
        # nothing about an access line. Its parts are fields too, for JSON lines.
        record = logging.LogRecord.__new__(logging.LogRecord)
        fields = record.__dict__
        fields.update(self._template)
        created = time.time()
        fields.update(
            created=created,
            msecs=int((created - int(created)) * 1000) + 0.0,
            relativeCreated=(created - _LOGGING_STARTED) * 1000,
            args=(method, target, status, ms, sent),
            method=method,
            path=target,
            status=status,
            duration_ms=round(ms, 3),
            bytes=sent,
        )
        if self._template['thread'] is not None:  # logging.logThreads
            fields['thread'] = threading.get_ident()
            fields['threadName'] = threading.current_thread().name
        if self._template['process'] is not None:  # logging.logProcesses; a worker is a fork of its parent
            fields['process'] = os.getpid()
        if client is not None:
            fields['client'] = client
        trace = CURRENT_TRACE.get()
        if trace is not None:
            add_request_fields(record, trace, self._caller_name)
        self._pending.append(record)
        self._writer.ensure_running()

    def flush(self) -> None:
        """Pass every queued line to the handlers now."""
        with self._lock:
            pending = self._pending
            handle = self._logger.handle
            while pending:
                handle(pending.popleft())

    def _write_pending(self) -> None:
        if self._pending:
            self.flush()
