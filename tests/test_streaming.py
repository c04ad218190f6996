"""Streamed results over real sockets: NDJSON and Server-Sent Events, item by item, errors, disconnects."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import unittest
from collections.abc import AsyncIterator, Iterable, Iterator

from racetrack_job_wrapper.streaming import streamed_item_type
from tests.support import ServerTestCase, wait_until


class TokenJob:
    """Yields tokens; the second waits for the test to release it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.produced: list[str] = []
        self.closed = threading.Event()

    def perform(self, count: int = 3, fail_at: int = -1, gated: bool = False) -> Iterator[str]:
        """Tokens one by one."""
        try:
            for index in range(count):
                if index == fail_at:
                    raise ValueError(f'token {index} cannot be made')
                if gated and index == 1:
                    self.release.wait(10)
                token = f't{index}'
                self.produced.append(token)
                yield token
        finally:
            self.closed.set()

    async def numbers(self, count: int = 3) -> AsyncIterator[int]:
        for index in range(count):
            await asyncio.sleep(0.01)
            yield index

    def auxiliary_endpoints(self) -> dict:
        return {'/numbers': self.numbers}


def open_stream(port: int, body: dict, accept: str = 'application/x-ndjson', path: str = '/api/v1/perform'):
    data = json.dumps(body).encode()
    sock = socket.create_connection(('127.0.0.1', port), timeout=10)
    sock.sendall(
        f'POST {path} HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\nContent-Length: {len(data)}\r\n\r\n'.encode() + data
    )
    return sock


def read_until(sock: socket.socket, marker: bytes, buffer: bytes = b'') -> bytes:
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    return buffer


def dechunk(raw: bytes) -> bytes:
    head, _, rest = raw.partition(b'\r\n\r\n')
    body = b''
    while rest:
        size_line, _, rest = rest.partition(b'\r\n')
        size = int(size_line, 16)
        if size == 0:
            break
        body += rest[:size]
        rest = rest[size + 2 :]
    return body


class StreamingTest(ServerTestCase):
    def test_each_item_is_sent_as_it_is_produced(self):
        job = TokenJob()
        running = self.start(job)
        with open_stream(running.port, {'gated': True}) as sock:
            first = read_until(sock, b't0')
            head = first.split(b'\r\n\r\n')[0].decode()
            self.assertIn('HTTP/1.1 200 OK', head)
            self.assertIn('Content-Type: application/x-ndjson', head)
            self.assertIn('Transfer-Encoding: chunked', head)
            self.assertEqual(job.produced, ['t0'])  # the first token arrived; the second does not exist yet
            job.release.set()
            raw = read_until(sock, b'0\r\n\r\n', first)
        self.assertEqual(dechunk(raw), b'"t0"\n"t1"\n"t2"\n')

    def test_server_sent_events_when_asked(self):
        job = TokenJob()
        running = self.start(job)
        with open_stream(running.port, {'count': 2}, accept='text/event-stream') as sock:
            raw = read_until(sock, b'0\r\n\r\n')
        self.assertIn(b'Content-Type: text/event-stream', raw)
        self.assertEqual(dechunk(raw), b'data: "t0"\n\ndata: "t1"\n\n')

    def test_an_error_part_way_ends_the_stream_with_an_error_item_and_is_logged(self):
        job = TokenJob()
        running = self.start(job)
        with self.assertLogs('racetrack_job_wrapper.streaming', 'ERROR') as logs:
            with open_stream(running.port, {'count': 3, 'fail_at': 1}) as sock:
                raw = read_until(sock, b'0\r\n\r\n')
            with open_stream(running.port, {'count': 3, 'fail_at': 1}, accept='text/event-stream') as sock:
                events = read_until(sock, b'0\r\n\r\n')
        lines = dechunk(raw).splitlines()
        self.assertEqual(lines[0], b'"t0"')
        self.assertEqual(json.loads(lines[1]), {'error': 'token 1 cannot be made', 'type': 'ValueError'})
        self.assertIn(
            b'event: error\ndata: {"error":"token 1 cannot be made","type":"ValueError"}\n\n', dechunk(events)
        )
        self.assertIn('/perform failed while streaming its result', logs.output[0])
        value = running.runner.registry.get_sample_value
        self.assertTrue(wait_until(lambda: value('request_internal_errors_total', {'endpoint': '/perform'}) == 2))

    def test_a_client_that_leaves_closes_the_generator(self):
        job = TokenJob()
        running = self.start(job)
        sock = open_stream(running.port, {'count': 1000, 'gated': True})
        read_until(sock, b't0')
        sock.close()
        job.release.set()
        self.assertTrue(job.closed.wait(10))  # its finally ran
        self.assertLess(len(job.produced), 1000)
        value = running.runner.registry.get_sample_value
        self.assertTrue(wait_until(lambda: value('request_calls_running') == 0))

    def test_the_call_holds_its_place_until_the_last_item(self):
        job = TokenJob()
        running = self.start(job, {'jobtype_extra': {'max_concurrency': 1}})
        value = running.runner.registry.get_sample_value
        with open_stream(running.port, {'gated': True}) as sock:
            first = read_until(sock, b't0')
            self.assertEqual(value('request_calls_running'), 1)
            job.release.set()
            read_until(sock, b'0\r\n\r\n', first)
        self.assertTrue(wait_until(lambda: value('request_calls_running') == 0))
        self.assertEqual(value('request_duration_count', {'endpoint': '/perform'}), 1)

    def test_an_async_generator_streams(self):
        running = self.start(TokenJob())
        with open_stream(running.port, {'count': 3}, path='/api/v1/numbers') as sock:
            raw = read_until(sock, b'0\r\n\r\n')
        self.assertEqual(dechunk(raw), b'0\n1\n2\n')

    def test_without_asking_for_a_stream_the_items_come_as_one_list(self):
        # As racetrack-job-runner answers a generator (FastAPI's encoder makes it a list).
        job = TokenJob()
        client = self.serve(job)
        response = client.post('/api/v1/perform', {'count': 3})
        self.assertEqual((response.status, response.json()), (200, ['t0', 't1', 't2']))
        self.assertEqual(response.headers['content-type'], 'application/json')
        self.assertTrue(job.closed.is_set())
        self.assertEqual(client.post('/api/v1/numbers', {'count': 3}).json(), [0, 1, 2])
        refused = client.post('/api/v1/perform', {'count': 3, 'fail_at': 1})
        self.assertEqual(refused.json(), {'error': 'token 1 cannot be made', 'type': 'ValueError'})
        self.assertEqual(refused.status, 400)

    def test_a_stream_past_its_deadline_ends_with_a_timeout_item(self):
        class Slow:
            def perform(self) -> Iterator[int]:
                for index in range(100):
                    time.sleep(0.1)
                    yield index

        running = self.start(Slow(), request_timeout=0.35)
        with open_stream(running.port, {}) as sock:
            raw = read_until(sock, b'0\r\n\r\n')
        lines = dechunk(raw).splitlines()
        self.assertLess(len(lines), 10)
        self.assertEqual(json.loads(lines[-1])['type'], 'Timeout')

    def test_an_iterable_annotation_is_no_stream(self):
        self.assertIsNone(streamed_item_type(Iterable[int]))
        self.assertIsNone(streamed_item_type(list[int]))
        self.assertIs(streamed_item_type(Iterator[int]), int)
        self.assertIs(streamed_item_type(AsyncIterator[str]), str)

    def test_openapi_describes_the_streamed_item_type(self):
        client = self.serve(TokenJob())
        document = client.get('/openapi.json').json()
        content = document['paths']['/api/v1/perform']['post']['responses']['200']['content']
        self.assertEqual(content['application/x-ndjson']['schema'], {'type': 'string'})
        self.assertIn('text/event-stream', content)
        self.assertEqual(content['application/json']['schema'], {'type': 'array', 'items': {'type': 'string'}})
        numbers = document['paths']['/api/v1/numbers']['post']['responses']['200']['content']
        self.assertEqual(numbers['application/x-ndjson']['schema'], {'type': 'integer'})


if __name__ == '__main__':
    unittest.main()
