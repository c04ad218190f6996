"""Log configuration: level from LOG_LEVEL, text or JSON lines, and request fields on every record."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, TextIO

from racetrack_job_wrapper.settings import ObservabilitySettings
from racetrack_job_wrapper.tracing import CURRENT_TRACE, RequestTrace

logger = logging.getLogger(__name__)

# The logger the existing implementation's job samples log to, at DEBUG there; kept so unless LOG_LEVEL is set.
JOB_LOGGER = 'racetrack'
LEVELS = {
    'debug': logging.DEBUG,
    'info': logging.INFO,
    'warn': logging.WARNING,
    'warning': logging.WARNING,
    'error': logging.ERROR,
    'critical': logging.CRITICAL,
}
# The names --log-level offers (LOG_LEVEL also takes `warn` and `critical`).
LOG_LEVELS = ('debug', 'info', 'warning', 'error')
# Record attributes the request filter adds, in the order text lines show them.
REQUEST_FIELDS = ('tracing_id', 'caller_name', 'traceparent', 'tracestate')
_COLORS = {
    logging.DEBUG: '\033[0;32m',
    logging.INFO: '\033[0;34m',
    logging.WARNING: '\033[0;33m',
    logging.ERROR: '\033[1;31m',
    logging.CRITICAL: '\033[1;31m',
}
_SHORT_NAMES = {logging.WARNING: 'WARN', logging.CRITICAL: 'CRIT'}
# Attributes every LogRecord has; anything else on a record came from `extra=` and goes into JSON lines.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord('', 0, '', 0, '', (), None).__dict__) | {
    'message',
    'asctime',
    'taskName',
    *REQUEST_FIELDS,
}


# With several worker processes every line names the process that wrote it.
_show_pid = False


def show_pid_in_lines() -> None:
    """From now on, text lines carry `[pid]` and JSON lines a `pid` field (set before forking workers)."""
    global _show_pid
    _show_pid = True


class RequestContextFilter(logging.Filter):
    """Adds the current request's tracing id (and caller name, W3C trace context) to each record.

    It reads a context variable, so records from the request's thread, from its event loop task,
    and from threads the job starts with the request's context (`asyncio.to_thread`,
    `contextvars.copy_context().run`) all carry the fields. Never drops a record.
    """

    def __init__(self, caller_name: bool = False):
        super().__init__()
        self.caller_name = caller_name

    def filter(self, record: logging.LogRecord) -> bool:
        trace = CURRENT_TRACE.get()
        if trace is not None:
            add_request_fields(record, trace, self.caller_name)
        return True


def add_request_fields(record: logging.LogRecord, trace: RequestTrace, caller_name: bool) -> None:
    """Put a request's tracing id (and caller name, W3C trace context) on a record, keeping fields it has."""
    fields = record.__dict__
    fields.setdefault('tracing_id', trace.tracing_id)
    if caller_name and trace.caller_name:
        fields.setdefault('caller_name', trace.caller_name)
    if trace.traceparent:
        fields.setdefault('traceparent', trace.traceparent)
        if trace.tracestate:
            fields.setdefault('tracestate', trace.tracestate)


class TextFormatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z INFO logger: message tracing_id=...`; level names colored when asked."""

    def __init__(self, color: bool = False):
        super().__init__()
        self._levels = {level: _level_name(level, color) for level in _COLORS}
        self._clock = _UtcClock(3)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        level = self._levels.get(record.levelno) or record.levelname
        process = f' [{record.process}]' if _show_pid else ''
        line = f'{self._clock.format(record.created)} {level}{process} {record.name}: {record.message}'
        fields = record.__dict__
        for name in REQUEST_FIELDS:
            value = fields.get(name)
            if value:
                line += f' {name}={value}'
        extra = _traceback_text(self, record)
        return f'{line}\n{extra}' if extra else line


class StructuredFormatter(logging.Formatter):
    """One JSON object per line: time, lvl, msg, logger, the request fields, `extra=` fields, exc_info."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _UtcClock(6)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            'time': self._clock.format(record.created),
            'lvl': record.levelname,
            'msg': record.getMessage(),
            'logger': record.name,
        }
        if _show_pid:
            line['pid'] = record.process
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES or (name in REQUEST_FIELDS and value):
                line[name] = value
        if record.exc_info or record.exc_text:
            line['exc_info'] = _traceback_text(self, record, stack=False)
        if record.stack_info:
            line['stack_info'] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _level_name(level: int, color: bool) -> str:
    name = _SHORT_NAMES.get(level) or logging.getLevelName(level)
    return f'{_COLORS[level]}{name:<5}\033[0m' if color else f'{name:<5}'


class _UtcClock:
    """Formats record times as `2024-05-01T12:00:00.123Z`; the date and time part once per second."""

    def __init__(self, digits: int):
        self._digits = digits
        self._second: tuple[int, str] = (-1, '')  # replaced whole, so threads never see half of it

    def format(self, created: float) -> str:
        seconds = int(created)
        second = self._second
        if second[0] != seconds:
            moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
            second = self._second = (seconds, moment.strftime('%Y-%m-%dT%H:%M:%S'))
        micros = int((created - seconds) * 1_000_000)
        if self._digits == 3:
            return f'{second[1]}.{micros // 1000:03d}Z'
        return f'{second[1]}.{micros:06d}Z'


def _traceback_text(formatter: logging.Formatter, record: logging.LogRecord, stack: bool = True) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)  # cached on the record, as logging does
    parts = [record.exc_text] if record.exc_text else []
    if stack and record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return '\n'.join(parts)


class JobLogHandler(logging.StreamHandler[TextIO]):
    """The root handler the server installs; told apart from handlers a job or embedding program adds.

    The logging thread only formats the line and queues it; one writer thread writes the queue
    to the stream, one write and one flush per batch, every `FLUSH_INTERVAL` seconds, and at once
    for warnings, errors and every line on a terminal. No other thread writes: a write blocks
    for as long as the stream does not drain (standard error piped to a reader that stopped
    reading), and on a buffered stream any write may be the one that reaches the pipe, so a
    request thread that wrote could hang. (A non-blocking descriptor would change standard
    error for every other writer of it, child processes included, and turn a full pipe into
    half-written lines.) While the writer is stuck the queue fills up to `MAX_PENDING_CHARS`;
    later lines are dropped and counted through `on_drop`, so neither requests nor memory wait
    for the stream. `flush()` (run by `logging.shutdown()` at exit) waits for the queue to be
    written, at most `FLUSH_TIMEOUT` seconds.

    Lines leave in the order of their records' times: before each batch the writer takes the
    lines waiting in other queues (`drain_before_writing`: the access log's) and sorts the batch.

    Thread-safe: the queue is guarded by the handler's lock, which `handle()` holds around `emit()`.
    """

    FLUSH_INTERVAL = 0.1
    # About a second of access lines at the server's top rate (5,000 requests/s of ~200 characters):
    # a stream that has not taken that much is stuck, and holding more would only grow memory.
    MAX_PENDING_CHARS = 1 << 20
    FLUSH_TIMEOUT = 5.0

    def __init__(self, stream: TextIO | None = None):
        super().__init__(stream)
        self.on_drop: Callable[[int], None] | None = None  # told how many lines were dropped
        self.sources: list[weakref.WeakMethod[Callable[[], None]]] = []  # see drain_before_writing
        self._pending: list[tuple[float, str]] = []  # (record time, line)
        self._pending_chars = 0
        self._queued = 0  # lines queued since the start
        self._written = 0  # lines the writer is done with (written, or lost to a stream error)
        self._done = threading.Condition(self.lock)
        self._writer = Ticker(self.FLUSH_INTERVAL, self._write_pending, 'log-writer')
        self._interactive = _is_tty(self.stream)
        _HANDLERS.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the line for the writer thread, or drop it when the queue is full; never writes."""
        try:
            line = self.format(record) + self.terminator
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return
        if self._pending_chars + len(line) > self.MAX_PENDING_CHARS:
            self._dropped(1)
            return
        self._pending.append((record.created, line))
        self._pending_chars += len(line)
        self._queued += 1
        self._writer.ensure_running()
        if record.levelno >= logging.WARNING or self._interactive:
            self._writer.wake()

    def flush(self) -> None:
        """Have every line queued so far written; waits at most `FLUSH_TIMEOUT` seconds (the stream may be stuck)."""
        with self._done:
            queued = self._queued
            if self._written < queued:
                self._writer.ensure_running()
                self._writer.wake()
                self._done.wait_for(lambda: self._written >= queued, self.FLUSH_TIMEOUT)

    def forget_pending(self) -> None:
        """Drop the queued lines (in a forked child: they are the parent's to write)."""
        self._pending, self._pending_chars = [], 0
        self._queued = self._written

    def _write_pending(self) -> None:
        for source in self.sources[:]:
            drain = source()
            if drain is None:
                self.sources.remove(source)
            else:
                drain()
        with self._done:
            lines = self._pending
            self._pending, self._pending_chars = [], 0
        if lines:
            lines.sort(key=lambda item: item[0])  # stable: lines of one moment keep their order
            try:
                self.stream.write(''.join(line for _, line in lines))
                self.stream.flush()
            except (OSError, ValueError):  # the stream was closed, or its reader went away
                self._dropped(len(lines))
            with self._done:
                self._written += len(lines)
                self._done.notify_all()

    def _dropped(self, count: int) -> None:
        if self.on_drop is not None:
            self.on_drop(count)


_HANDLERS: weakref.WeakSet[JobLogHandler] = weakref.WeakSet()


def _forget_parents_lines() -> None:
    for handler in _HANDLERS:
        handler.forget_pending()


os.register_at_fork(after_in_child=_forget_parents_lines)


def report_dropped_lines(callback: Callable[[int], None]) -> None:
    """Have the server's handler on the root logger tell `callback` how many lines it drops."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, JobLogHandler):
            handler.on_drop = callback


def drain_before_writing(drain: Callable[[], None]) -> None:
    """Have the server's handler call `drain` (a bound method, held weakly) before writing each batch.

    `drain` passes another queue's records to the logging handlers, so that their lines join the
    batch and are written in time order with the rest.
    """
    for handler in logging.getLogger().handlers:
        if isinstance(handler, JobLogHandler):
            handler.sources.append(weakref.WeakMethod(drain))


def flush_logs() -> None:
    """Write what the server's handlers have queued (before a fork, so no child inherits it)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, JobLogHandler):
            handler.flush()


class Ticker:
    """Calls `action` every `interval` seconds, or at once when woken, from a daemon thread.

    `ensure_running()` is called for every log line, so it is one attribute test once the
    thread runs (`Thread.is_alive()` took a lock and cost a microsecond per line). The thread
    clears it when an action raises and ends it, and a forked worker, which inherits the
    object but not the thread, has it cleared at the fork: either way the next call starts
    a new thread.
    """

    def __init__(self, interval: float, action: Callable[[], None], name: str):
        self._interval = interval
        self._action = action
        self._name = name
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        _TICKERS.add(self)

    def ensure_running(self) -> None:
        """Start the thread unless it runs in this process."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def wake(self) -> None:
        """Run the action now rather than at the next tick."""
        self._wake.set()

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self._interval)
                self._wake.clear()  # before the action, so a wake during it is not lost
                self._action()
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _forget_thread(self) -> None:
        """In a forked child: the thread stayed in the parent (and so may a holder of the lock)."""
        self._thread = None
        self._lock = threading.Lock()


_TICKERS: weakref.WeakSet[Ticker] = weakref.WeakSet()


def _forget_tickers_threads() -> None:
    for ticker in _TICKERS:
        ticker._forget_thread()


os.register_at_fork(after_in_child=_forget_tickers_threads)


def _stderr_stream() -> TextIO:
    """Standard error, block-buffered when it is not a terminal, so batched lines leave in one write.

    Reconfiguring `sys.stderr` itself (rather than opening a second stream on its descriptor)
    keeps every writer of standard error, tracebacks and warnings included, in one buffer, so
    their lines never cut into each other; log lines join it from `JobLogHandler`'s writer thread.
    """
    stream = sys.stderr
    if not _is_tty(stream) and hasattr(stream, 'reconfigure'):
        stream.reconfigure(line_buffering=False, write_through=False)
    return stream


def build_handler(settings: ObservabilitySettings, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) with the formatter the settings ask for and the request filter."""
    stream = stream if stream is not None else _stderr_stream()
    handler = JobLogHandler(stream)
    handler.setFormatter(_formatter(settings, stream))
    handler.addFilter(RequestContextFilter(settings.log_caller_name))
    return handler


def configure_logs(
    log_level: str | None = None, settings: ObservabilitySettings | None = None, stream: TextIO | None = None
) -> None:
    """Set up the root logger: level, formatter and request filter, with one handler however often called.

    A later call re-applies the settings to the handler installed earlier, except a formatter
    the job put there itself, which it keeps. When the root logger already has other handlers
    (the program embedding the server set up logging first), those are kept with their
    formatters and only get the request filter.

    Without a level (LOG_LEVEL unset) the root logger is at INFO and `JOB_LOGGER`
    ('racetrack' and its children) at DEBUG, so a job's debug lines there show while
    libraries' debug lines stay hidden; a level given applies to every logger.
    """
    settings = settings if settings is not None else ObservabilitySettings.from_environ()
    level_name = (log_level or settings.log_level).strip().lower()
    level = LEVELS.get(level_name or 'info')
    root = logging.getLogger()
    root.setLevel(level if level is not None else logging.INFO)
    logging.getLogger(JOB_LOGGER).setLevel(logging.NOTSET if level_name else logging.DEBUG)
    ours = [handler for handler in root.handlers if isinstance(handler, JobLogHandler)]
    if ours:
        for handler in ours:
            if type(handler.formatter) in (TextFormatter, StructuredFormatter):
                handler.setFormatter(_formatter(settings, handler.stream))
            _set_filter(handler, settings)
    elif root.handlers:
        for other in root.handlers:
            _set_filter(other, settings)
    else:
        root.addHandler(build_handler(settings, stream))
    if level is None:
        logger.warning('LOG_LEVEL %r is not one of debug, info, warn, error; using info', level_name)


def _formatter(settings: ObservabilitySettings, stream: TextIO) -> logging.Formatter:
    return StructuredFormatter() if settings.structured_logs else TextFormatter(color=_is_tty(stream))


def _set_filter(handler: logging.Handler, settings: ObservabilitySettings) -> None:
    for existing in handler.filters:
        if isinstance(existing, RequestContextFilter):
            existing.caller_name = settings.log_caller_name
            return
    handler.addFilter(RequestContextFilter(settings.log_caller_name))


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
