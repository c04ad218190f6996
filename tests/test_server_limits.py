"""Hostile and malformed input over raw sockets: every limit answers at once, and the server keeps serving."""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import tempfile
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

from racetrack_job_wrapper import server
from racetrack_job_wrapper.settings import JobSettings, Limits, ServerOptions, apply_options
from tests.support import ProcessJob, RawConnection, ServerTestCase, raw_exchange, wait_until

MiB = 1024 * 1024
PERFORM = b'POST /api/v1/perform HTTP/1.1\r\nHost: t\r\n'


class EchoJob:
    def perform(self, **kwargs):
        """Return the arguments."""
        return kwargs


def post(body: bytes, extra: bytes = b'') -> bytes:
    return PERFORM + extra + b'Content-Length: %d\r\n\r\n' % len(body) + body


class LimitsTestCase(ServerTestCase):
    """Serves EchoJob; `assertStillServes` proves the server answers a normal perform afterwards."""

    def setUp(self):
        self.running = None

    def start_echo(self, **limits):
        self.running = self.start(EchoJob, **limits)
        return self.running

    def assertStillServes(self):
        with RawConnection(self.running.port) as conn:
            conn.send(post(b'{"x": 1}'))
            response = conn.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json(), {'x': 1})

    def assertConnectionsEnd(self, within: float = 5):
        deadline = time.monotonic() + within
        while self.running.runner.server.connection_count() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(self.running.runner.server.connection_count(), 0)

    def assertAnswered(self, request: bytes, status: int, error_part: str, close: bool = True):
        """One raw request gets `status` with an error naming `error_part`, then a close (or not)."""
        with RawConnection(self.running.port, timeout=5) as conn:
            conn.send(request)
            response = conn.read_response()
            self.assertEqual(response.status, status, response.body)
            body = response.json()
            self.assertEqual(set(body), {'error', 'type'})
            self.assertIn(error_part, body['error'])
            if close:
                self.assertEqual(response.headers['connection'], 'close')
                self.assertTrue(conn.closed_by_server())
        self.assertStillServes()
        return body


class BodyLimitTest(LimitsTestCase):
    def test_content_length_over_the_default_limit_is_413_before_any_body(self):
        self.start_echo()
        started = time.monotonic()
        body = self.assertAnswered(
            PERFORM + b'Content-Length: 10737418240\r\n\r\n',
            413,
            'request body of 10737418240 bytes exceeds the limit of 67108864 bytes',
        )
        self.assertEqual(body['type'], 'ContentTooLarge')
        self.assertLess(time.monotonic() - started, 3)

    def test_content_length_of_thousands_of_digits_is_413(self):
        self.start_echo()
        self.assertAnswered(
            PERFORM + b'Content-Length: ' + b'9' * 5000 + b'\r\n\r\n',
            413,
            'request body of 5000 digits exceeds the limit of 67108864 bytes',
        )

    def test_body_at_the_limit_is_accepted_and_one_byte_more_is_not(self):
        self.start_echo(max_body_bytes=1000)
        body = b'{"x": "' + b'a' * 991 + b'"}'
        self.assertEqual(len(body), 1000)
        with RawConnection(self.running.port) as conn:
            conn.send(post(body))
            self.assertEqual(conn.read_response().status, 200)
        self.assertAnswered(post(body + b' '), 413, 'request body of 1001 bytes exceeds the limit of 1000 bytes')

    def test_client_still_sending_a_large_body_reads_the_413(self):
        self.start_echo(max_body_bytes=1000)
        with RawConnection(self.running.port) as conn:
            conn.send(PERFORM + b'Content-Length: 200000000\r\n\r\n' + b' ' * 100_000)
            response = conn.read_response()
            self.assertEqual(response.status, 413)
            self.assertEqual(response.headers['connection'], 'close')
        self.assertStillServes()

    def test_http_client_sending_its_whole_body_over_the_limit_reads_the_413(self):
        # http.client reads nothing until its body is sent: the server must take it all before the close.
        self.start_echo(max_body_bytes=MiB)
        for size in (MiB + 1, 3 * MiB, 16 * MiB):
            with self.subTest(size=size):
                connection = http.client.HTTPConnection('127.0.0.1', self.running.port, timeout=10)
                try:
                    connection.request('POST', '/api/v1/perform', body=b' ' * size)
                    response = connection.getresponse()
                    self.assertEqual((response.status, response.getheader('Connection')), (413, 'close'))
                    self.assertIn(b'exceeds the limit of 1048576 bytes', response.read())
                finally:
                    connection.close()
        self.assertStillServes()

    def test_others_are_served_while_a_refused_body_is_discarded(self):
        self.start_echo(max_body_bytes=1000)
        with RawConnection(self.running.port) as conn:
            conn.send(PERFORM + b'Content-Length: 200000000\r\n\r\n' + b' ' * 100_000)
            self.assertEqual(conn.read_response().status, 413)
            started = time.monotonic()
            self.assertStillServes()
            conn.send(b' ' * 1_000_000)  # still taken, not reset
            self.assertStillServes()
            self.assertLess(time.monotonic() - started, 2)
        self.assertConnectionsEnd()

    def test_discarding_a_refused_body_is_bounded_in_time_and_bytes(self):
        self.start_echo(max_body_bytes=1000)
        with RawConnection(self.running.port) as idle:
            idle.send(PERFORM + b'Content-Length: 2000\r\n\r\n')  # and then nothing, nor a close
            self.assertEqual(idle.read_response().status, 413)
            self.assertConnectionsEnd(within=3)
        with mock.patch.object(server, '_LINGER_BYTES', MiB), RawConnection(self.running.port) as endless:
            endless.send(PERFORM + b'Content-Length: 200000000\r\n\r\n')
            self.assertEqual(endless.read_response().status, 413)
            with self.assertRaises(OSError):  # reset once a MiB was discarded
                for _ in range(100):
                    endless.send(b' ' * MiB)
            self.assertConnectionsEnd(within=3)

    def test_the_discarded_bytes_follow_a_higher_max_body_bytes(self):
        self.start_echo(max_body_bytes=MiB)
        with mock.patch.object(server, '_LINGER_BYTES', MiB), RawConnection(self.running.port) as conn:
            conn.send(PERFORM + b'Content-Length: 200000000\r\n\r\n' + b' ' * (MiB + 1))
            self.assertEqual(conn.read_response().status, 413)
            conn.send(b' ' * (MiB // 2))  # still taken: up to twice max_body_bytes are discarded
            with self.assertRaises(OSError):
                for _ in range(100):
                    conn.send(b' ' * MiB)

    def test_chunked_body_with_extensions_and_trailers(self):
        self.start_echo()
        request = (
            PERFORM + b'Transfer-Encoding: chunked\r\n\r\n'
            b'4;name=value\r\n{"x"\r\n'
            b'5 ;ext\r\n: [1,\r\n'
            b'A\r\n 2], "y":3\r\n'
            b'1\r\n}\r\n'
            b'0\r\nTrailer-Field: yes\r\n\r\n'
        )
        with RawConnection(self.running.port) as conn:
            conn.send(request + post(b'{"again": true}'))
            first = conn.read_response()
            second = conn.read_response()
        self.assertEqual((first.status, first.json()), (200, {'x': [1, 2], 'y': 3}))
        self.assertEqual((second.status, second.json()), (200, {'again': True}))

    def test_chunked_body_growing_past_the_limit_is_cut_with_413(self):
        self.start_echo(max_body_bytes=1000)
        request = PERFORM + b'Transfer-Encoding: chunked\r\n\r\n' + b'258\r\n' + b' ' * 600 + b'\r\n258\r\n'
        self.assertAnswered(request, 413, 'chunked request body exceeds the limit of 1000 bytes')

    def test_chunk_size_of_many_digits_is_413(self):
        self.start_echo()
        self.assertAnswered(
            PERFORM + b'Transfer-Encoding: chunked\r\n\r\n' + b'f' * 40 + b'\r\n',
            413,
            'chunked request body exceeds the limit of 67108864 bytes',
        )

    def test_malformed_chunks_are_400(self):
        self.start_echo()
        cases = {
            b'0x5\r\nhello\r\n0\r\n\r\n': "malformed chunk size '0x5'",
            b'-5\r\nhello\r\n0\r\n\r\n': "malformed chunk size '-5'",
            b' 5\r\nhello\r\n0\r\n\r\n': "malformed chunk size ' 5'",
            b'1_0\r\nhello\r\n0\r\n\r\n': "malformed chunk size '1_0'",
            b'zz\r\n': "malformed chunk size 'zz'",
            b'\r\n': "malformed chunk size ''",
            b'5\nhello\r\n0\r\n\r\n': 'malformed chunk size line',
            b'5\r\nhelloXX0\r\n\r\n': 'chunk data not followed by CRLF',
            b'5\r\nhello\r\n0\r\nbad trailer\r\n\r\n': 'malformed header line',
        }
        for chunks, message in cases.items():
            with self.subTest(chunks=chunks):
                self.assertAnswered(PERFORM + b'Transfer-Encoding: chunked\r\n\r\n' + chunks, 400, message)

    def test_unsupported_transfer_encoding_is_501(self):
        self.start_echo()
        self.assertAnswered(
            PERFORM + b'Transfer-Encoding: gzip, chunked\r\n\r\n',
            501,
            "Transfer-Encoding 'gzip, chunked' is not supported",
        )

    def test_expect_100_continue(self):
        self.start_echo()
        with RawConnection(self.running.port) as conn:
            conn.send(PERFORM + b'Expect: 100-continue\r\nContent-Length: 8\r\n\r\n')
            interim = conn.read_response()
            self.assertEqual(interim.status, 100)
            conn.send(b'{"x": 2}')
            final = conn.read_response()
        self.assertEqual((final.status, final.json()), (200, {'x': 2}))

    def test_expect_100_continue_with_too_large_body_gets_413_and_no_100(self):
        self.start_echo(max_body_bytes=10)
        with RawConnection(self.running.port) as conn:
            conn.send(PERFORM + b'Expect: 100-continue\r\nContent-Length: 11\r\n\r\n')
            self.assertEqual(conn.read_response().status, 413)

    def test_client_closing_mid_body_costs_nothing(self):
        self.start_echo()
        for _ in range(3):
            with RawConnection(self.running.port) as conn:
                conn.send(PERFORM + b'Content-Length: 100\r\n\r\n{"x": ')
        self.assertStillServes()
        self.assertConnectionsEnd()


class SmugglingTest(LimitsTestCase):
    def test_ambiguous_lengths_are_400_and_close(self):
        self.start_echo()
        cases = {
            b'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n': (
                'Content-Length and Transfer-Encoding together are not accepted'
            ),
            b'Transfer-Encoding: chunked\r\nContent-Length: 5\r\n': (
                'Content-Length and Transfer-Encoding together are not accepted'
            ),
            b'Content-Length: 5\r\nContent-Length: 6\r\n': 'conflicting Content-Length values',
            b'Content-Length: 5, 6\r\n': 'conflicting Content-Length values',
            b'Content-Length: -5\r\n': "invalid Content-Length '-5'",
            b'Content-Length: +5\r\n': "invalid Content-Length '+5'",
            b'Content-Length: 0x5\r\n': "invalid Content-Length '0x5'",
            b'Content-Length: five\r\n': "invalid Content-Length 'five'",
            b'Content-Length: \r\n': "invalid Content-Length ''",
            b'Content-Length: \xd9\xa5\r\n': 'invalid Content-Length',
        }
        for headers, message in cases.items():
            with self.subTest(headers=headers):
                self.assertAnswered(PERFORM + headers + b'\r\n{"x":1}', 400, message)

    def test_repeated_equal_content_length_is_one_length(self):
        self.start_echo()
        with RawConnection(self.running.port) as conn:
            conn.send(PERFORM + b'Content-Length: 8\r\nContent-Length: 8\r\n\r\n{"x": 3}')
            self.assertEqual(conn.read_response().json(), {'x': 3})

    def test_two_host_headers_are_400(self):
        self.start_echo()
        self.assertAnswered(b'GET /ready HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400, 'more than one Host header')

    def test_http11_without_host_is_400(self):
        self.start_echo()
        self.assertAnswered(b'GET /ready HTTP/1.1\r\n\r\n', 400, 'HTTP/1.1 request without a Host header')

    def test_invalid_host_is_400(self):
        self.start_echo()
        for version in (b'HTTP/1.1', b'HTTP/1.0'):
            for host in (b'a b', b'user@evil', b'evil/x', b'', b'[::1'):
                with self.subTest(version=version, host=host):
                    request = b'GET /ready %s\r\nHost: %s\r\n\r\n' % (version, host)
                    self.assertAnswered(request, 400, f'invalid Host header {host.decode()!r}')

    def test_valid_hosts_are_served(self):
        self.start_echo()
        for host in (b't', b'job.example:7000', b'10.0.0.1:80', b'[::1]:8080'):
            with self.subTest(host=host), RawConnection(self.running.port) as conn:
                conn.send(b'GET /ready HTTP/1.1\r\nHost: %s\r\n\r\n' % host)
                self.assertEqual(conn.read_response().status, 200)

    def test_chunked_http10_request_is_answered_and_closed(self):
        self.start_echo()
        request = (
            b'POST /api/v1/perform HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n'
            b'8\r\n{"x": 1}\r\n0\r\n\r\n'
        )
        with RawConnection(self.running.port) as conn:
            conn.send(request + post(b'{"x": 2}'))  # the second request is never read
            response = conn.read_response()
            self.assertEqual((response.status, response.json()), (200, {'x': 1}))
            self.assertEqual(response.headers['connection'], 'close')
            self.assertTrue(conn.closed_by_server())
            with self.assertRaises(EOFError):
                conn.read_response()
        self.assertStillServes()


class RequestLineTest(LimitsTestCase):
    def test_request_line_over_8_kib_is_414(self):
        self.start_echo()
        self.assertEqual(Limits().max_request_line_bytes, 8192)
        target = b'/ready?' + b'a' * 8200
        body = self.assertAnswered(
            b'GET ' + target + b' HTTP/1.1\r\nHost: t\r\n\r\n', 414, 'request line is longer than 8192 bytes'
        )
        self.assertEqual(body['type'], 'URITooLong')

    def test_request_line_at_the_limit_is_served(self):
        self.start_echo(max_request_line_bytes=100)
        line = b'GET /ready?' + b'a' * 78 + b' HTTP/1.1\r\n'
        self.assertEqual(len(line), 100)
        with RawConnection(self.running.port) as conn:
            conn.send(line + b'Host: t\r\n\r\n')
            self.assertEqual(conn.read_response().status, 200)
        self.assertAnswered(
            b'GET /ready?' + b'a' * 79 + b' HTTP/1.1\r\nHost: t\r\n\r\n', 414, 'request line is longer than 100 bytes'
        )

    def test_malformed_request_lines_are_answered_at_once(self):
        self.start_echo()
        cases = {
            b'GET /\r\n': (400, 'malformed request line'),  # HTTP/0.9
            b'GET / HTTP/1.1\n': (400, 'request line must end with CRLF'),  # bare LF
            b'GET  / HTTP/1.1\r\n': (400, 'malformed request line'),
            b'GET / HTTP/1.1 \r\n': (400, 'malformed request line'),
            b'GET / HTTP/2.0\r\n': (505, 'only HTTP/1.0 and HTTP/1.1 are supported'),
            b'GET / http/1.1\r\n': (400, 'only HTTP/1.0 and HTTP/1.1 are supported'),
            b'GET / FOO\r\n': (400, 'only HTTP/1.0 and HTTP/1.1 are supported'),
            b'G\x00T / HTTP/1.1\r\n': (400, 'malformed request method'),
            b'\xff\xfe / HTTP/1.1\r\n': (400, 'malformed request method'),
            b'GET /a\x00b HTTP/1.1\r\n': (400, 'request target must be an absolute path'),
            b'GET /caf\xc3\xa9 HTTP/1.1\r\n': (400, 'request target must be an absolute path'),
            b'GET ready HTTP/1.1\r\n': (400, 'request target must be an absolute path'),
            b'GET http://t/ready HTTP/1.1\r\n': (400, 'request target must be an absolute path'),
            b'\r\n\r\n': (400, 'malformed request line'),
        }
        for line, (status, message) in cases.items():
            with self.subTest(line=line):
                started = time.monotonic()
                self.assertAnswered(line + b'Host: t\r\n\r\n', status, message)
                self.assertLess(time.monotonic() - started, 3)

    def test_one_empty_line_before_a_request_is_ignored(self):
        self.start_echo()
        with RawConnection(self.running.port) as conn:
            conn.send(b'\r\nGET /ready HTTP/1.1\r\nHost: t\r\n\r\n')
            self.assertEqual(conn.read_response().status, 200)

    def test_unknown_method_is_4xx_at_once(self):
        self.start_echo()
        body = self.assertAnswered(
            b'BREW /api/v1/perform HTTP/1.1\r\nHost: t\r\n\r\n',
            405,
            'method BREW is not allowed at /api/v1/perform',
            close=False,
        )
        self.assertEqual(body['type'], 'MethodNotAllowed')
        self.assertAnswered(b'BREW /nowhere HTTP/1.1\r\nHost: t\r\n\r\n', 404, 'no endpoint at /nowhere', close=False)

    def test_invalid_utf8_in_the_path_is_400(self):
        self.start_echo()
        self.assertAnswered(
            b'GET /%ff%fe HTTP/1.1\r\nHost: t\r\n\r\n', 400, 'request path is not valid UTF-8', close=False
        )

    def test_a_head_refused_while_reading_gets_no_body(self):
        self.start_echo()
        cases = {
            400: b'HEAD /ready HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
            431: b'HEAD /ready HTTP/1.1\r\nHost: t\r\nX-Big: ' + b'a' * 70_000 + b'\r\n\r\n',
            413: PERFORM.replace(b'POST', b'HEAD') + b'Content-Length: 10737418240\r\n\r\n',
        }
        for status, request in cases.items():
            with self.subTest(status=status):
                head, _, body = raw_exchange(self.running.port, request).partition(b'\r\n\r\n')
                self.assertTrue(head.startswith(b'HTTP/1.1 %d ' % status), head)
                self.assertIn(b'\r\nConnection: close', head)
                self.assertEqual(body, b'')  # everything after the head, up to the close
                # The headers a GET would get (RFC 9110 section 9.3.2), Content-Length included.
                get_head, _, get_body = raw_exchange(self.running.port, b'GET' + request[4:]).partition(b'\r\n\r\n')
                self.assertEqual(head, get_head)
                self.assertIn(b'\r\nContent-Length: %d\r\n' % len(get_body), head + b'\r\n')
        self.assertStillServes()

    def test_http10_request_is_answered_and_closed(self):
        self.start_echo()
        reply = raw_exchange(self.running.port, b'GET /ready HTTP/1.0\r\n\r\n')
        self.assertTrue(reply.startswith(b'HTTP/1.1 200 OK\r\n'), reply)
        self.assertIn(b'\r\nConnection: close\r\n', reply)
        self.assertTrue(reply.endswith(b'{"ready":true}'), reply)


class HeaderLimitTest(LimitsTestCase):
    def test_more_than_100_fields_is_431_and_100_is_fine(self):
        self.start_echo()
        fields = b''.join(b'X-F%d: v\r\n' % n for n in range(99))
        with RawConnection(self.running.port) as conn:
            conn.send(b'GET /ready HTTP/1.1\r\nHost: t\r\n' + fields + b'\r\n')
            self.assertEqual(conn.read_response().status, 200)
        body = self.assertAnswered(
            b'GET /ready HTTP/1.1\r\nHost: t\r\n' + fields + b'X-Last: v\r\n\r\n', 431, 'more than 100 header fields'
        )
        self.assertEqual(body['type'], 'RequestHeaderFieldsTooLarge')

    def test_ten_thousand_fields_are_431(self):
        self.start_echo()
        fields = b''.join(b'X: %d\r\n' % n for n in range(10_000))
        self.assertAnswered(
            b'GET /ready HTTP/1.1\r\nHost: t\r\n' + fields + b'\r\n', 431, 'more than 100 header fields'
        )

    def test_headers_over_64_kib_are_431(self):
        self.start_echo()
        self.assertAnswered(
            b'GET /ready HTTP/1.1\r\nHost: t\r\nX-Big: ' + b'a' * 70_000 + b'\r\n\r\n',
            431,
            'request headers exceed 65536 bytes',
        )

    def test_one_megabyte_header_is_431(self):
        self.start_echo()
        self.assertAnswered(
            b'GET /ready HTTP/1.1\r\nHost: t\r\nX-Big: ' + b'a' * MiB + b'\r\n\r\n',
            431,
            'request headers exceed 65536 bytes',
        )

    def test_configured_header_limits(self):
        self.start_echo(max_header_bytes=200, max_header_fields=3)
        self.assertAnswered(
            b'GET /ready HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', 431, 'more than 3 header fields'
        )
        self.assertAnswered(
            b'GET /ready HTTP/1.1\r\nHost: t\r\nA: ' + b'a' * 200 + b'\r\n\r\n', 431, 'request headers exceed 200 bytes'
        )

    def test_malformed_header_lines_are_400(self):
        self.start_echo()
        cases = {
            b'X-A: 1\n': 'header lines must end with CRLF',
            b'X-A: 1\r\n  folded\r\n': 'obsolete header line folding is not accepted',
            b'X-A: a\x00b\r\n': 'header X-A contains a control character',
            b'X-A: a\x1bb\r\n': 'header X-A contains a control character',
            b'X-A: a\rb\r\n': 'header X-A contains a control character',
            b'X-A : 1\r\n': 'malformed header line',
            b'no colon\r\n': 'malformed header line',
            b': empty name\r\n': 'malformed header line',
            b'X\xc3\xa9: 1\r\n': 'malformed header line',
        }
        for line, message in cases.items():
            with self.subTest(line=line):
                self.assertAnswered(b'GET /ready HTTP/1.1\r\nHost: t\r\n' + line + b'\r\n', 400, message)

    def test_non_ascii_bytes_in_a_header_value_are_kept_as_latin_1(self):
        self.start_echo()
        with RawConnection(self.running.port) as conn:
            conn.send(b'GET /ready HTTP/1.1\r\nHost: t\r\nX-Name: \xff\xfe\xc3\r\n\r\n')
            self.assertEqual(conn.read_response().status, 200)


class TimeoutTest(LimitsTestCase):
    def test_slow_head_is_cut_by_one_deadline_not_per_byte(self):
        self.start_echo(head_timeout=0.5)
        with RawConnection(self.running.port) as conn:
            started = time.monotonic()
            request = b'GET /ready HTTP/1.1\r\nHost: t\r\nX-Slow: ' + b'a' * 100
            for byte in request:  # a byte every 0.1 s: no single recv ever waits 0.5 s
                conn.send(bytes([byte]))
                if select.select([conn.sock], [], [], 0.1)[0]:
                    break
            elapsed = time.monotonic() - started
            response = conn.read_response()
        self.assertEqual(response.status, 408)
        self.assertEqual(response.json()['type'], 'RequestTimeout')
        self.assertGreater(elapsed, 0.45)
        self.assertLess(elapsed, 1.5)
        self.assertStillServes()

    def test_slow_request_line_is_cut(self):
        self.start_echo(head_timeout=0.5, idle_timeout=30)
        with RawConnection(self.running.port) as conn:
            started = time.monotonic()
            conn.send(b'GET /ready')  # no line end, ever
            self.assertEqual(conn.read_response().status, 408)
            self.assertLess(time.monotonic() - started, 2)

    def test_slow_body_is_cut(self):
        self.start_echo(head_timeout=0.5)
        with RawConnection(self.running.port) as conn:
            started = time.monotonic()
            conn.send(PERFORM + b'Content-Length: 100\r\n\r\n{')
            try:
                for _ in range(30):
                    time.sleep(0.1)
                    conn.send(b' ')
            except OSError:
                pass
            self.assertEqual(conn.read_response().status, 408)
            self.assertLess(time.monotonic() - started, 2)
        self.assertStillServes()

    def test_idle_keep_alive_connection_is_closed(self):
        self.start_echo(idle_timeout=0.5)
        with RawConnection(self.running.port) as conn:
            conn.send(b'GET /ready HTTP/1.1\r\nHost: t\r\n\r\n')
            self.assertEqual(conn.read_response().headers['connection'], 'keep-alive')
            started = time.monotonic()
            self.assertTrue(conn.closed_by_server())
            self.assertLess(time.monotonic() - started, 2)

    def test_connection_that_never_sends_is_closed(self):
        self.start_echo(idle_timeout=0.5)
        with RawConnection(self.running.port) as conn:
            started = time.monotonic()
            self.assertTrue(conn.closed_by_server())
            self.assertLess(time.monotonic() - started, 2)

    def test_slow_reader_gets_the_whole_response_despite_a_short_head_timeout(self):
        class BigJob:
            def perform(self):
                return 'a' * (16 * MiB)

        running = self.start(BigJob, head_timeout=0.3)
        with RawConnection(running.port) as conn:
            conn.send(post(b'{}'))
            time.sleep(1.0)  # past the head deadline, with the response more than the socket buffers hold
            response = conn.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(len(response.body), 16 * MiB + 2)


# A request whose body has not come yet: in progress, so its connection is never evicted.
BODY_PENDING = b'POST /api/v1/perform HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n'
CONTINUE = b'HTTP/1.1 100 Continue\r\n\r\n'


class ConnectionCapTest(LimitsTestCase):
    def hold(self, count: int, data: bytes, source: str = '127.0.0.1') -> list[RawConnection]:
        """`count` connections from `source` that sent `data`, each accepted and counted before the next."""
        held: list[RawConnection] = []
        self.addCleanup(lambda: [conn.close() for conn in held])
        server = self.running.runner.server
        for _ in range(count):
            held.append(RawConnection(self.running.port, source=source))
            held[-1].send(data)
            if data == BODY_PENDING:  # its head read, so it is in progress
                self.assertEqual(held[-1].sock.recv(len(CONTINUE)), CONTINUE)
            elif data.endswith(b'\r\n\r\n'):
                self.assertEqual(held[-1].read_response().status, 200)
            counted = wait_until(lambda expected=len(held): server.connection_count() >= expected)
            self.assertTrue(counted, server.connection_count())
            time.sleep(0.01)  # each one waiting since a moment of its own
        return held

    def test_connections_past_the_cap_with_requests_in_progress_get_503_and_close(self):
        running = self.start_echo(max_connections=3)
        held = self.hold(3, BODY_PENDING)
        with RawConnection(running.port) as extra:
            extra.send(b'GET /ready HTTP/1.1\r\nHost: t\r\n\r\n')
            response = extra.read_response()
            self.assertEqual(response.status, 503)
            self.assertEqual(
                response.json(),
                {'error': 'too many connections (max_connections is 3)', 'type': 'ServiceUnavailable'},
            )
            self.assertEqual(response.headers['connection'], 'close')
            self.assertTrue(extra.closed_by_server())
        for conn in held:  # the requests in progress were left alone
            conn.send(b'{"a": 1}')
            self.assertEqual(conn.read_response().json(), {'a': 1})
        self.assertStillServes()

    def test_at_the_cap_the_longest_idle_connection_makes_room(self):
        running = self.start_echo(max_connections=3)
        held = self.hold(3, b'GET /ready HTTP/1.1\r\nHost: t\r\n\r\n')
        self.assertStillServes()  # a fourth connection: the first held one, idle longest, is closed for it
        self.assertTrue(held[0].closed_by_server())
        for conn in held[1:]:
            conn.send(b'GET /ready HTTP/1.1\r\nHost: t\r\n\r\n')
            self.assertEqual(conn.read_response().status, 200)
        value = running.runner.registry.get_sample_value
        self.assertEqual(value('requests_rejected_total', {'reason': 'evicted'}), 1)
        self.assertEqual(value('requests_rejected_total', {'reason': 'connection_limit'}), 0)

    def test_connections_sending_their_heads_slowly_cannot_keep_others_out(self):
        self.start_echo(max_connections=5)
        slow = self.hold(5, b'POST /api/v1/perform HTTP/1.1\r\nHost: t\r\nX-a: ')
        served = []
        self.addCleanup(lambda: [conn.close() for conn in served])
        for index in range(5):  # each on a new connection kept open, taking the place of the oldest slow one
            served.append(RawConnection(self.running.port))
            served[-1].send(post(json.dumps({'n': index}).encode()))
            self.assertEqual(served[-1].read_response().json(), {'n': index})
        self.assertTrue(all(conn.closed_by_server() for conn in slow))

    def test_a_client_reconnecting_as_fast_as_it_is_cut_off_cannot_keep_others_out(self):
        running = self.start_echo(max_connections=20)
        stop = threading.Event()
        opened = []

        def flood() -> None:
            # Keeps 40 connections trickling their heads, opening a new one whenever one is closed.
            sockets: list[socket.socket] = []
            while not stop.is_set():
                while len(sockets) < 40 and not stop.is_set():
                    try:
                        sock = socket.create_connection(('127.0.0.1', running.port), timeout=5)
                        sock.sendall(b'GET / HTTP/1.1\r\nHost: t\r\n')
                        sock.setblocking(False)
                        sockets.append(sock)
                        opened.append(1)
                    except OSError:
                        pass
                for sock in sockets[:]:
                    try:
                        if sock.recv(65536) == b'':
                            raise ConnectionResetError
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                    sock.close()
                    sockets.remove(sock)
            for sock in sockets:
                sock.close()

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        self.addCleanup(flooder.join, 10)
        self.addCleanup(stop.set)
        self.assertTrue(wait_until(lambda: len(opened) >= 60))  # the cap is full and cutting
        statuses = []
        for index in range(30):
            with RawConnection(running.port) as conn:
                conn.send(post(json.dumps({'n': index}).encode()))
                statuses.append(conn.read_response().status)
        stop.set()
        self.assertEqual(statuses, [200] * 30)

    def test_connections_per_client_address(self):
        running = self.start_echo(max_client_connections=2)
        held = self.hold(2, BODY_PENDING)
        with RawConnection(running.port) as extra:
            extra.send(b'GET /ready HTTP/1.1\r\nHost: t\r\n\r\n')
            response = extra.read_response()
        self.assertEqual(response.status, 503)
        self.assertEqual(response.json()['error'], 'too many connections from 127.0.0.1 (max_client_connections is 2)')
        with RawConnection(running.port, source='127.0.0.2') as other:  # another address is not affected
            other.send(b'GET /ready HTTP/1.1\r\nHost: t\r\n\r\n')
            self.assertEqual(other.read_response().status, 200)
        held[0].send(b'{"a": 1}')
        self.assertEqual(held[0].read_response().json(), {'a': 1})  # now idle: its place can be taken
        self.assertStillServes()
        self.assertTrue(held[0].closed_by_server())

    def test_a_burst_of_connections_cannot_overshoot_the_cap(self):
        running = self.start_echo(max_connections=5)
        sockets = [socket.create_connection(('127.0.0.1', running.port), timeout=5) for _ in range(40)]
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.05)
                count = running.runner.server.connection_count()
                self.assertLessEqual(count, 5)
                if count == 5:
                    break
            self.assertEqual(running.runner.server.connection_count(), 5)
        finally:
            for sock in sockets:
                sock.close()

    def test_pipelined_requests_are_answered_in_order(self):
        self.start_echo()
        with RawConnection(self.running.port) as conn:
            conn.send(post(b'{"n": 1}') + b'GET /ready HTTP/1.1\r\nHost: t\r\n\r\n' + post(b'{"n": 3}'))
            self.assertEqual(conn.read_response().json(), {'n': 1})
            self.assertEqual(conn.read_response().json(), {'ready': True})
            self.assertEqual(conn.read_response().json(), {'n': 3})


class JSONLimitTest(LimitsTestCase):
    def test_deep_nesting_is_400_without_recursion_error(self):
        self.start_echo()
        for depth in (101, 100_000):
            with self.subTest(depth=depth):
                body = b'{"x": ' + b'[' * depth + b']' * depth + b'}'
                self.assertAnswered(
                    post(body), 400, f'JSON nesting is {depth + 1} levels deep, the limit is 100', close=False
                )
        self.assertAnswered(post(b'[' * 200_000), 400, 'JSON nesting is 200000 levels deep', close=False)

    def test_nesting_at_the_limit_is_accepted(self):
        self.start_echo()
        with RawConnection(self.running.port) as conn:
            conn.send(post(b'{"x": ' + b'[' * 99 + b']' * 99 + b'}'))
            response = conn.read_response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body.count(b'['), 99)

    def test_configured_json_depth(self):
        self.start_echo(max_json_depth=3)
        self.assertAnswered(post(b'{"x": [[[1]]]}'), 400, 'JSON nesting is 4 levels deep, the limit is 3', close=False)
        with RawConnection(self.running.port) as conn:
            conn.send(post(b'{"x": [[1]]}'))
            self.assertEqual(conn.read_response().json(), {'x': [[1]]})

    def test_numbers_with_thousands_of_digits_are_400_at_once(self):
        self.start_echo()
        started = time.monotonic()
        self.assertAnswered(
            post(b'{"x": ' + b'7' * 100_000 + b'}'), 400, 'a number has 100000 digits, the limit is 1000', close=False
        )
        self.assertAnswered(
            post(b'{"x": 0.' + b'1' * 5000 + b'e5}'), 400, 'a number has 5002 digits, the limit is 1000', close=False
        )
        self.assertLess(time.monotonic() - started, 3)

    def test_long_digit_strings_and_thousand_digit_numbers_are_fine(self):
        self.start_echo()
        body = json.dumps({'id': '9' * 5000, 'n': int('1' * 1000)}).encode()
        with RawConnection(self.running.port) as conn:
            conn.send(post(body))
            self.assertEqual(conn.read_response().json(), {'id': '9' * 5000, 'n': int('1' * 1000)})

    def test_nan_and_infinity_are_refused(self):
        self.start_echo()
        for constant in ('NaN', 'Infinity', '-Infinity'):
            with self.subTest(constant=constant):
                self.assertAnswered(
                    post(b'{"x": %s}' % constant.encode()), 400, f'{constant} is not valid JSON', close=False
                )

    def test_duplicate_keys_last_wins(self):
        self.start_echo()
        with RawConnection(self.running.port) as conn:
            conn.send(post(b'{"x": 1, "x": 2}'))
            self.assertEqual(conn.read_response().json(), {'x': 2})

    def test_invalid_utf8_body_is_400(self):
        self.start_echo()
        self.assertAnswered(post(b'{"x": "\xff"}'), 400, 'request body is not valid UTF-8', close=False)

    def test_non_finite_result_is_500_naming_the_problem(self):
        class NanJob:
            def perform(self, kind: str = '', x: int = 0):
                if not kind:
                    return {'x': x}
                return {'nan': float('nan'), 'inf': [float('inf')]}[kind]

        self.running = self.start(NanJob)
        for kind, where in (('nan', 'result is nan'), ('inf', 'result[0] is inf')):
            with self.subTest(kind=kind):
                body = self.assertAnswered(post(json.dumps({'kind': kind}).encode()), 500, '', close=False)
                self.assertEqual(
                    body,
                    {
                        'error': f'the result of /perform cannot be returned as JSON: {where}, '
                        'which JSON cannot represent',
                        'type': 'SerializationError',
                    },
                )


class CORSTest(LimitsTestCase):
    PREFLIGHT = (
        b'OPTIONS /api/v1/perform HTTP/1.1\r\nHost: t\r\nOrigin: https://a.example\r\n'
        b'Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n'
    )

    def test_every_origin_by_default(self):
        self.start_echo()
        with RawConnection(self.running.port) as conn:
            conn.send(self.PREFLIGHT)
            preflight = conn.read_response()
            conn.send(post(b'{}', b'Origin: https://a.example\r\n'))
            response = conn.read_response()
        # Any origin may read the answers, but never with the user's credentials.
        self.assertEqual(preflight.status, 200)
        self.assertEqual(preflight.headers['access-control-allow-origin'], '*')
        self.assertEqual(preflight.headers['access-control-allow-methods'], 'OPTIONS, POST')
        self.assertEqual(preflight.headers['access-control-allow-headers'], 'content-type')
        self.assertNotIn('access-control-allow-credentials', preflight.headers)
        self.assertEqual(response.headers['access-control-allow-origin'], '*')
        self.assertNotIn('access-control-allow-credentials', response.headers)

    def test_configured_origins_by_keyword(self):
        self.start_echo(cors_allow_origins=['https://b.example'])
        with RawConnection(self.running.port) as conn:
            conn.send(self.PREFLIGHT)
            preflight = conn.read_response()
            conn.send(post(b'{}', b'Origin: https://a.example\r\n'))
            refused = conn.read_response()
            conn.send(post(b'{}', b'Origin: https://b.example\r\n'))
            allowed = conn.read_response()
        self.assertEqual(preflight.status, 204)
        self.assertNotIn('access-control-allow-origin', preflight.headers)
        self.assertNotIn('access-control-allow-origin', refused.headers)
        self.assertEqual(allowed.headers['access-control-allow-origin'], 'https://b.example')
        self.assertEqual(allowed.headers['access-control-allow-credentials'], 'true')
        self.assertEqual(allowed.headers['vary'], 'Origin')


class ConfigurationTest(LimitsTestCase):
    def test_defaults_are_the_documented_ones(self):
        settings = apply_options(JobSettings(), {})
        self.assertEqual(
            settings.limits,
            Limits(
                max_body_bytes=64 * MiB,
                max_request_line_bytes=8192,
                max_header_bytes=65536,
                max_header_fields=100,
                head_timeout=10.0,
                idle_timeout=60.0,
                max_connections=1000,
                max_client_connections=0,
                max_json_depth=100,
                request_timeout=0.0,
                grace_period=30.0,
                shutdown_delay=0.0,
            ),
        )
        self.assertEqual(settings.cors_allow_origins, ('*',))

    def test_the_keyword_options_are_the_limits_and_the_cors_origins(self):
        self.assertEqual(
            set(ServerOptions.__annotations__), {limit.name for limit in Limits.describe()} | {'cors_allow_origins'}
        )

    def test_the_readme_limits_table_is_the_limits(self):
        readme = (Path(__file__).resolve().parent.parent / 'README.md').read_text(encoding='utf-8')
        rows = re.findall(r'^\| `(\w+)`[^|]*\| (\d+)[^|]*\|', readme, re.MULTILINE)
        table = {name: float(default) for name, default in rows}
        self.assertEqual(
            {limit.name: table.get(limit.name) for limit in Limits.describe()},
            {limit.name: float(limit.default) for limit in Limits.describe()},
        )

    def test_keyword_options_win_over_jobtype_extra_over_defaults(self):
        manifest = {
            'jobtype_extra': {
                'max_body_bytes': 100,
                'head_timeout': 2,
                'max_json_depth': 5,
                'cors_allow_origins': ['https://m.example'],
            }
        }
        settings = apply_options(
            JobSettings.from_manifest(manifest, {}),
            {
                'max_body_bytes': 200,
                'max_json_depth': 7,
                'idle_timeout': None,
                'cors_allow_origins': 'https://k.example',
            },
        )
        limits = settings.limits
        self.assertEqual((limits.max_body_bytes, limits.head_timeout, limits.idle_timeout), (200, 2.0, 60.0))
        self.assertEqual(limits.max_json_depth, 7)
        self.assertEqual(settings.cors_allow_origins, ('https://k.example',))

    def test_bad_options_are_refused_by_name(self):
        with self.assertRaisesRegex(TypeError, r'unknown server option\(s\): max_bodybytes; known: '):
            apply_options(JobSettings(), {'max_bodybytes': 1})
        for name, value, message in (
            ('max_body_bytes', -1, 'max_body_bytes must be a positive integer, got int -1'),
            ('max_body_bytes', 1.5, 'max_body_bytes must be a positive integer, got float 1.5'),
            ('max_header_fields', True, 'max_header_fields must be a positive integer, got bool True'),
            ('max_json_depth', 0, 'max_json_depth must be a positive integer, got int 0'),
            ('head_timeout', float('nan'), 'head_timeout must be a positive number of seconds, got float nan'),
            ('idle_timeout', '5', "idle_timeout must be a positive number of seconds, got str '5'"),
            ('cors_allow_origins', ['ftp://x y'], 'cors_allow_origins entries must be'),
        ):
            with self.subTest(name=name, value=value):
                with self.assertRaises(ValueError) as raised:
                    apply_options(JobSettings(), {name: value})
                self.assertIn(message, str(raised.exception))

    def test_jobtype_extra_limits_reach_the_server(self):
        self.running = self.start(
            EchoJob,
            {
                'jobtype_extra': {
                    'max_body_bytes': 20,
                    'max_json_depth': 2,
                    'max_header_fields': 3,
                    'cors_allow_origins': ['https://y.example'],
                }
            },
        )
        self.assertAnswered(post(b'{"x": "' + b'a' * 20 + b'"}'), 413, 'exceeds the limit of 20 bytes')
        self.assertAnswered(post(b'{"x": [[1]]}'), 400, 'JSON nesting is 3 levels deep, the limit is 2', close=False)
        self.assertAnswered(
            b'GET /ready HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', 431, 'more than 3 header fields'
        )
        with RawConnection(self.running.port) as conn:
            conn.send(post(b'{}', b'Origin: https://y.example\r\n'))
            self.assertEqual(conn.read_response().headers['access-control-allow-origin'], 'https://y.example')

    def test_command_line_flags_reach_the_server(self):
        tmp = Path(tempfile.mkdtemp())
        (tmp / 'echo.py').write_text('class Echo:\n    def perform(self, **kwargs):\n        return kwargs\n')
        job = ProcessJob(
            [
                'echo.py:Echo',
                '--max-body-bytes',
                '30',
                '--max-json-depth',
                '2',
                '--max-header-fields',
                '3',
                '--max-header-bytes',
                '300',
                '--max-request-line-bytes',
                '64',
                '--head-timeout',
                '0.5',
                '--idle-timeout',
                '0.7',
                '--max-connections',
                '50',
                '--grace-period',
                '3',
                '--cors-allow-origin',
                'https://z.example',
            ],
            cwd=tmp,
        )
        self.addCleanup(job.stop)
        job.wait_ready()
        self.running = job
        self.assertAnswered(post(b'{"x": "' + b'a' * 30 + b'"}'), 413, 'exceeds the limit of 30 bytes')
        self.assertAnswered(post(b'{"x": [[1]]}'), 400, 'JSON nesting is 3 levels deep, the limit is 2', close=False)
        self.assertAnswered(
            b'GET /ready HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', 431, 'more than 3 header fields'
        )
        self.assertAnswered(
            b'GET /ready HTTP/1.1\r\nHost: t\r\nA: ' + b'a' * 300 + b'\r\n\r\n', 431, 'request headers exceed 300 bytes'
        )
        self.assertAnswered(
            b'GET /ready?' + b'a' * 60 + b' HTTP/1.1\r\nHost: t\r\n\r\n', 414, 'request line is longer than 64 bytes'
        )
        with RawConnection(job.port) as conn:
            conn.send(post(b'{}', b'Origin: https://z.example\r\n'))
            self.assertEqual(conn.read_response().headers['access-control-allow-origin'], 'https://z.example')
            started = time.monotonic()
            self.assertTrue(conn.closed_by_server())  # idle timeout 0.7 s
            self.assertLess(time.monotonic() - started, 3)
        with RawConnection(job.port) as conn:
            conn.send(b'GET /ready HTTP/1.1\r\n')
            self.assertEqual(conn.read_response().status, 408)  # head timeout 0.5 s


if __name__ == '__main__':
    unittest.main()
