"""Out of file descriptors or threads, the server refuses promptly with 503, stays idle, logs once and recovers."""

from __future__ import annotations

import functools
import os
import resource
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

from tests.support import ProcessJob, RawConnection, ServerTestCase

DESCRIPTOR_LIMIT = 128
HELD = 200  # more than the descriptor limit lets the child accept
# A job that can take every descriptor left for a while, as a leak or a slow-read attack on static files would.
HOG_JOB = """
import os
import threading


class Hog:
    def perform(self, seconds: float = 0.0):
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        threading.Timer(seconds, lambda: [os.close(fd) for fd in held]).start()
        return len(held)
"""


class Echo:
    def perform(self, **kwargs):
        return kwargs


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')  # utime + stime


class DescriptorLimitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = HELD + 256  # the held sockets, and the test process's own
        if soft != resource.RLIM_INFINITY and soft < needed:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))

    def setUp(self):
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', str(tmp)]))
        (tmp / 'hog.py').write_text(textwrap.dedent(HOG_JOB))
        popen = functools.partial(subprocess.Popen, preexec_fn=_limit_descriptors)
        with mock.patch('subprocess.Popen', popen):
            self.job = ProcessJob(['hog.py:Hog'], cwd=tmp)
        self.addCleanup(self.job.stop)
        self.job.wait_ready()
        self.held: list[socket.socket] = []
        self.addCleanup(self.release)

    def hold_connections(self) -> None:
        self.held += [socket.create_connection(('127.0.0.1', self.job.port), timeout=5) for _ in range(HELD)]

    def hold_requests_in_progress(self) -> None:
        """`HELD` connections, each accepted one with a request in progress (so never evicted), or refused."""
        self.hold_connections()
        head = b'POST /api/v1/perform HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n'
        for sock in self.held:
            sock.sendall(head)
        for sock in self.held:  # answered, each: 100 Continue once its head is read, or 503
            self.assertTrue(sock.recv(12).startswith(b'HTTP/1.1 '))

    def release(self) -> None:
        for sock in self.held:
            sock.close()
        self.held.clear()

    def assert_refused_promptly(self, error: str) -> None:
        started = time.monotonic()
        with RawConnection(self.job.port, timeout=2) as conn:
            conn.send(b'GET /ready HTTP/1.1\r\nHost: t\r\n\r\n')
            response = conn.read_response()
            self.assertLess(time.monotonic() - started, 1.0)
            self.assertEqual(response.status, 503)
            self.assertEqual(response.headers['retry-after'], '1')
            self.assertEqual(response.json(), {'error': error, 'type': 'ServiceUnavailable'})
            self.assertTrue(conn.closed_by_server())

    def assert_idle(self) -> None:
        before = _cpu_seconds(self.job.process.pid)
        time.sleep(2)
        self.assertLess(_cpu_seconds(self.job.process.pid) - before, 0.5)  # a quarter of a core at most

    def assert_serves_within(self, seconds: float) -> None:
        client = self.job.client()
        deadline = time.monotonic() + seconds
        while client.get('/ready').status != 200:
            self.assertLess(time.monotonic(), deadline, 'not serving again in time')
            time.sleep(0.05)

    def log_lines(self, text: str) -> int:
        return sum(text in line for line in self.job.read_output().splitlines())

    def test_the_connection_cap_fits_the_descriptor_limit(self):
        cap = (DESCRIPTOR_LIMIT - 32) // 2
        self.hold_requests_in_progress()
        self.assert_refused_promptly(f'too many connections ({cap}, as the open file limit is {DESCRIPTOR_LIMIT})')
        self.assert_idle()
        self.assertEqual(self.log_lines(f'at most {cap} connections, not max_connections 1000'), 1)
        self.release()
        self.assert_serves_within(2)

    def test_out_of_descriptors_refuses_on_the_reserve_descriptor(self):
        self.assertGreater(self.job.client().post('/api/v1/perform', {'seconds': 3.5}).json(), 0)
        self.hold_connections()
        self.assert_refused_promptly('out of file descriptors')
        self.assert_idle()
        self.release()
        message = f'out of file descriptors ([Errno 24] Too many open files; the limit is {DESCRIPTOR_LIMIT})'
        self.assertEqual(self.log_lines(message), 1)
        time.sleep(1)  # the hog lets its descriptors go about now
        self.assert_serves_within(2)


class ThreadStartFailureTest(ServerTestCase):
    def test_a_connection_without_a_thread_gets_503_and_the_next_is_served(self):
        running = self.start(Echo)
        start = threading.Thread.start
        failures = [RuntimeError("can't start new thread")] * 2

        def failing_start(thread: threading.Thread) -> None:
            if failures and getattr(thread, '_target', None) == running.runner.server.process_request_thread:
                raise failures.pop()
            start(thread)

        with (
            mock.patch.object(threading.Thread, 'start', failing_start),
            self.assertLogs('racetrack_job_wrapper.server', 'WARNING') as logs,
        ):
            for _ in failures[:]:
                with RawConnection(running.port, timeout=5) as conn:
                    conn.send(b'GET /ready HTTP/1.1\r\nHost: t\r\n\r\n')
                    response = conn.read_response()
                    self.assertEqual(response.status, 503)
                    self.assertEqual(response.headers['retry-after'], '1')
                    self.assertTrue(conn.closed_by_server())
            self.assertEqual(running.client().get('/ready').status, 200)
        self.assertEqual(len(logs.records), 1)  # rate-limited: one line for both
        self.assertIn("cannot start a connection thread (can't start new thread)", logs.output[0])
        value = running.runner.registry.get_sample_value
        self.assertEqual(value('requests_rejected_total', {'reason': 'connection_limit'}), 2)
        self.assertEqual(running.runner.server.connection_count(), 1)  # the client above, still open


if __name__ == '__main__':
    unittest.main()
