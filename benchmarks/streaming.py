"""Streaming overhead, run by hand: items/s of a streamed generator against the same items as one JSON list.

A job serves 10,000 small items (`{"i": n, "token": "..."}`) two ways: `perform` yields them
(asked for JSON lines: chunked, one chunk per item) and `/whole` returns them as a list. Over one
keep-alive connection the script times whole answers (items/s) and the time to the first
byte of the body, 3 interleaved rounds of 10 requests, and prints medians and the ratio.

    python benchmarks/streaming.py [--items N]
"""

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import probes

JOB = """
from collections.abc import Iterator


class Job:
    def perform(self, count: int = 10000) -> Iterator[dict]:
        for index in range(count):
            yield {'i': index, 'token': 'lorem'}

    def whole(self, count: int = 10000) -> list:
        return [{'i': index, 'token': 'lorem'} for index in range(count)]

    def auxiliary_endpoints(self) -> dict:
        return {'/whole': self.whole}
"""
REPO = Path(__file__).resolve().parent.parent


def timed(connection: http.client.HTTPConnection, path: str, items: int) -> tuple[float, float, int]:
    """Seconds to the first body byte, seconds to the whole answer, and bytes read."""
    body = json.dumps({'count': items})
    started = time.perf_counter()
    accept = 'application/x-ndjson' if path.endswith('/perform') else 'application/json'
    connection.request('POST', path, body, {'Content-Type': 'application/json', 'Accept': accept})
    response = connection.getresponse()
    first = response.read(1)
    first_byte = time.perf_counter() - started
    rest = response.read()
    return first_byte, time.perf_counter() - started, len(first) + len(rest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--items', type=int, default=10_000)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--requests', type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='streaming-') as tmp:
        (Path(tmp) / 'job.py').write_text(JOB)
        port = probes.free_port()
        argv = [sys.executable, '-m', 'racetrack_job_wrapper', 'job.py:Job', '--port', str(port)]
        server = probes.start_server(argv, port, Path(tmp) / 'server.log', Path(tmp), env={'PYTHONPATH': str(REPO)})
        try:
            probes.wait_ready(server)
            connection = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
            results: dict[str, list[tuple[float, float, int]]] = {'/api/v1/perform': [], '/api/v1/whole': []}
            for path in results:  # warm up
                timed(connection, path, args.items)
            for _ in range(args.rounds):
                for path, runs in results.items():
                    runs.extend(timed(connection, path, args.items) for _ in range(args.requests))
            connection.close()
        finally:
            server.stop()
    summary = {}
    for path, runs in results.items():
        first = statistics.median(run[0] for run in runs) * 1000
        whole = statistics.median(run[1] for run in runs)
        summary[path] = (first, args.items / whole, runs[0][2])
        print(f'{path}: first byte {first:.2f} ms, {args.items / whole:,.0f} items/s, {runs[0][2]:,} bytes')
    streamed, listed = summary['/api/v1/perform'], summary['/api/v1/whole']
    print(f'streamed/list: items/s {streamed[1] / listed[1]:.2f}x, time to first byte {streamed[0] / listed[0]:.3f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
