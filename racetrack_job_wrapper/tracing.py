"""The trace of the request being served: tracing id, caller, W3C trace context, and which thread serves it."""

from __future__ import annotations

import contextvars
import re
import threading
import time
from random import getrandbits

from racetrack_job_wrapper.messages import Request
from racetrack_job_wrapper.settings import ObservabilitySettings

# W3C Trace Context, version 00 (https://www.w3.org/TR/trace-context/#traceparent-header).
_TRACEPARENT = re.compile(r'00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}')


class RequestTrace:
    """What identifies one request in logs, chain calls and thread dumps."""

    __slots__ = ('tracing_id', 'caller_name', 'traceparent', 'tracestate', 'method', 'path', 'started')

    def __init__(
        self,
        tracing_id: str,
        caller_name: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
        method: str = '',
        path: str = '',
        started: float = 0.0,
    ):
        self.tracing_id = tracing_id
        self.caller_name = caller_name
        self.traceparent = traceparent
        self.tracestate = tracestate
        self.method = method
        self.path = path
        self.started = started

    def __repr__(self) -> str:
        return f'RequestTrace({self.method} {self.path} tracing_id={self.tracing_id})'


# Module level, as the contextvars documentation asks: a variable created per server would leak
# a slot in every context. It holds no state of its own; each request's context holds the value.
CURRENT_TRACE: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar(
    'racetrack_request_trace', default=None
)


def current_trace() -> RequestTrace | None:
    """The trace of the request this code runs for, or None outside a request."""
    return CURRENT_TRACE.get()


def new_tracing_id() -> str:
    """A fresh tracing id for a request that came without one, shaped like a random UUID (version 4)."""
    # getrandbits instead of uuid4(): ids need to be unique, not secret, and this skips a syscall
    # and a UUID object on the request path.
    digits = '%032x' % (getrandbits(128) & _UUID_MASK | _UUID_V4_BITS)
    return f'{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}'


_UUID_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_V4_BITS = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


class TraceReader:
    """Reads a request's trace from its headers; header names are resolved once, at start-up."""

    def __init__(self, settings: ObservabilitySettings):
        self.tracing_header = settings.tracing_header
        self.caller_header = settings.caller_header

    def read(self, request: Request) -> RequestTrace:
        """The request's trace; a new tracing id when it carries none, a malformed traceparent dropped."""
        headers = request.headers
        traceparent = headers.get('traceparent')
        tracestate = None
        if traceparent is not None:
            traceparent = traceparent.strip().lower()
            if _TRACEPARENT.fullmatch(traceparent):
                tracestate = headers.get('tracestate')
            else:
                traceparent = None  # the W3C rule: a malformed parent starts a new trace
        return RequestTrace(
            headers.get(self.tracing_header) or new_tracing_id(),
            headers.get(self.caller_header),
            traceparent,
            tracestate,
            request.method,
            request.raw_path,
            time.monotonic(),
        )


class ActiveRequests:
    """The trace each server thread is serving now, for thread dumps. Thread-safe.

    One dict keyed by thread id: each thread writes only its own key, and single dict
    operations are atomic, so no lock is taken on the request path.
    """

    def __init__(self) -> None:
        self._by_thread: dict[int, RequestTrace] = {}

    def begin(self, trace: RequestTrace) -> None:
        """Record that the calling thread serves `trace`."""
        self._by_thread[threading.get_ident()] = trace

    def end(self) -> None:
        """The calling thread is done with its request."""
        self._by_thread.pop(threading.get_ident(), None)

    def snapshot(self) -> dict[int, RequestTrace]:
        """A copy: thread id -> the trace it serves."""
        return dict(self._by_thread)
