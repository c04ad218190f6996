"""Read deadlines over real sockets: idle keep-alive connections, slow heads, stalled bodies."""

from __future__ import annotations

import socket
import time
import unittest

from tests.support import ServerTestCase

REQUEST = b'POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}'
TIMED_OUT = (
    b'HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n'
    b'Content-Length: 72\r\nConnection: close\r\n\r\n'
    b'{"error":"the request was not received in time","type":"RequestTimeout"}'
)


class EchoJob:
    def perform(self) -> str:
        return 'ok'


class DeadlineTest(ServerTestCase):
    def connect(self, **limits: float) -> socket.socket:
        running = self.start(EchoJob, **limits)
        sock = socket.create_connection(('127.0.0.1', running.port), timeout=10)
        self.addCleanup(sock.close)
        return sock

    def read_until_close(self, sock: socket.socket) -> tuple[bytes, float]:
        """Everything the server sends until it closes, and seconds until the close."""
        started = time.monotonic()
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b''.join(chunks), time.monotonic() - started
            chunks.append(chunk)

    def test_idle_connection_is_closed_after_idle_timeout_and_serves_until_then(self):
        sock = self.connect(idle_timeout=0.6)
        for _ in range(3):  # the timeout is re-armed for every request, not spent by them
            sock.sendall(REQUEST)
            self.assertTrue(sock.recv(65536).startswith(b'HTTP/1.1 200 OK\r\n'))
            time.sleep(0.3)
        data, seconds = self.read_until_close(sock)
        self.assertEqual(data, b'')
        self.assertGreater(seconds, 0.2)
        self.assertLess(seconds, 0.6 + 0.5)

    def test_head_sent_too_slowly_is_cut_at_its_deadline(self):
        sock = self.connect(head_timeout=0.5)
        started = time.monotonic()
        sock.sendall(b'POST /api/v1/perform HTTP/1.1\r\n')
        sock.settimeout(0.15)
        data = b''
        while time.monotonic() - started < 3:
            try:
                sock.sendall(b'X-Slow: 1\r\n')
                data = sock.recv(65536)
                break  # the server answered or closed
            except TimeoutError:
                continue
            except OSError:
                break
        self.assertEqual(data, TIMED_OUT)  # answered, then closed
        self.assertLess(time.monotonic() - started, 0.5 + 0.5)

    def test_stalled_body_closes_the_connection_at_its_deadline(self):
        sock = self.connect(head_timeout=0.5)
        started = time.monotonic()
        sock.sendall(b'POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"')
        data, _ = self.read_until_close(sock)
        self.assertEqual(data, TIMED_OUT)
        self.assertLess(time.monotonic() - started, 0.5 + 0.5)


if __name__ == '__main__':
    unittest.main()
