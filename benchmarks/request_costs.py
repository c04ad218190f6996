"""What each stage of a trivial perform request costs in one process, beside the floor's equivalents.

One thread, no sockets: the best of 7 runs of 20,000 calls per stage, in microseconds. The
features the floor lacks (metrics, access line, trace, binding and validation) are timed by
themselves, and so are the two ways of reading the request (this server's `http11`, the floor's
`BaseHTTPRequestHandler.parse_request`), which is where this server saves.

    python benchmarks/request_costs.py
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR.parent), str(BENCH_DIR / 'jobs')]

from prometheus_client import CollectorRegistry  # noqa: E402

from racetrack_job_wrapper import http11  # noqa: E402
from racetrack_job_wrapper.logs import configure_logs  # noqa: E402
from racetrack_job_wrapper.messages import Request  # noqa: E402
from racetrack_job_wrapper.settings import JobSettings, Limits, ObservabilitySettings  # noqa: E402
from racetrack_job_wrapper.standalone import JobRunner  # noqa: E402

RAW = (
    b'POST /api/v1/perform HTTP/1.1\r\nHost: 127.0.0.1:7000\r\nContent-Length: 16\r\n'
    b'Content-Type: application/json\r\n\r\n{"a": 1, "b": 2}'
)
CALLS = 20_000
RUNS = 7


class _Reader(io.BufferedReader):
    deadline = 0.0  # what http11 sets on the server's reader


def best_us(function: Callable[[], Any]) -> float:
    """The fastest of RUNS runs of CALLS calls, per call, in microseconds."""
    best = float('inf')
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(CALLS):
            function()
        best = min(best, (time.perf_counter() - started) / CALLS)
    return best * 1e6


def main() -> None:
    """Print the table; the log lines go to /dev/null."""
    with open(os.devnull, 'w') as devnull:
        configure_logs(settings=ObservabilitySettings())
        for handler in logging.getLogger().handlers:
            handler.setStream(devnull)  # type: ignore[attr-defined]  # the server's stream handler
        for name, micros in measure():
            print(f'{name:<60} {micros:7.2f} us')


def measure() -> list[tuple[str, float]]:
    """(stage, microseconds per call) of each stage."""
    import trivial

    runner = JobRunner(lambda: trivial.Job, JobSettings(), registry=CollectorRegistry())
    app, _, _ = runner.build(trivial.Job)
    observer, metrics = runner.observer, runner.metrics
    endpoint = metrics.endpoint('/perform')
    limits = Limits()

    def read() -> tuple[str, str, str, http11.Head, bytes]:
        reader = _Reader(io.BytesIO(RAW))
        deadline = time.monotonic() + 10
        method, target, version = http11.read_request_line(reader, limits, deadline)
        head = http11.read_head(reader, version, limits, deadline)
        return method, target, version, head, http11.read_body(reader, head, limits, 10)

    method, target, version, head, body = read()

    def request() -> Request:
        return Request(
            method, target, '', head.headers, body, ('127.0.0.1', 5555), raw_path=target, http_version=version
        )

    def call_metrics() -> None:
        metrics.commons_requests_started.inc()
        endpoint.call_started()
        endpoint.call_finished(0.0001, False)
        metrics.commons_requests_done.inc()
        metrics.commons_request_duration.observe(0.0002)

    one = request()

    def trace() -> None:
        observer.request_received(one)
        observer._forget(one)

    def access_record() -> None:
        observer.access_log.write('POST', '/api/v1/perform', 200, 0.1, 100, '127.0.0.1')
        observer.access_log._pending.clear()

    invoker = app.router.match('POST', '/api/v1/perform')[1]
    job = trivial.Job()

    class FloorHandler(BaseHTTPRequestHandler):
        def __init__(self) -> None:  # no socket: only the parsing is timed
            pass

    def floor_read() -> bytes:
        handler = FloorHandler()
        handler.rfile = io.BytesIO(RAW)
        handler.raw_requestline = handler.rfile.readline(65537)
        handler.parse_request()
        return handler.rfile.read(int(handler.headers.get('Content-Length')))

    rows = [
        ('metrics of one call (10 prometheus-client updates)', best_us(call_metrics)),
        ('access line: its record, in the request thread', best_us(access_record)),
        ('access line: formatted by logging, in the writer', _formatting_us(observer)),
        ('trace: read, marked on the thread, forgotten', best_us(trace)),
        ('argument binding and validation', best_us(lambda: invoker._arguments(request()))),  # type: ignore[attr-defined]
        ('reading line, headers and body: this server (http11)', best_us(read)),
        ('reading line, headers and body: the floor (email.parser)', best_us(floor_read)),
        ("the floor's json.loads + perform + json.dumps", best_us(lambda: json.dumps(job.perform(**json.loads(body))))),
        ("this server's App.handle (routing to encoding, metrics)", best_us(lambda: app.handle(request()))),
    ]
    return rows


def _formatting_us(observer: Any) -> float:
    """An access record through logging to the log handler's queue (its write is batched by the writer thread)."""
    access = logging.getLogger('racetrack_job_wrapper.access')
    handler = logging.getLogger().handlers[0]
    best = float('inf')
    for _ in range(RUNS):
        for _ in range(1000):
            observer.access_log.write('POST', '/api/v1/perform', 200, 0.1, 100, '127.0.0.1')
        records = list(observer.access_log._pending)
        observer.access_log._pending.clear()
        handler.flush()
        started = time.perf_counter()
        for record in records:
            access.handle(record)
        best = min(best, (time.perf_counter() - started) / len(records))
        handler.flush()
    return best * 1e6


if __name__ == '__main__':
    main()
