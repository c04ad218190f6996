"""HTTP/1.1 framing from bytes: every request line, header, length and chunk rule, without a socket."""

from __future__ import annotations

import contextlib
import io
import math
import time
import unittest
from collections.abc import Iterator

from racetrack_job_wrapper import http11
from racetrack_job_wrapper.http11 import IncompleteRequest
from racetrack_job_wrapper.messages import HTTPError
from racetrack_job_wrapper.settings import Limits

LIMITS = Limits()
HOST = b'Host: t\r\n'


class BytesReader(io.BufferedReader):
    """An `http11.Reader` over fixed bytes; past its deadline every read raises TimeoutError, as a socket's would."""

    def __init__(self, data: bytes, piece: int | None = None):
        super().__init__(_Pieces(data, piece or len(data) or 1))
        self.deadline = math.inf

    def readline(self, size: int | None = -1, /) -> bytes:
        self._check_deadline()
        return super().readline(size)

    def read1(self, size: int = -1, /) -> bytes:
        self._check_deadline()
        return super().read1(size)

    def read(self, size: int | None = -1, /) -> bytes:
        self._check_deadline()
        return super().read(size)

    def peek(self, size: int = 0, /) -> bytes:
        self._check_deadline()
        return super().peek(size)

    def rest(self) -> bytes:
        """What the framing left unread (the next pipelined request)."""
        return super().read()

    def _check_deadline(self) -> None:
        if time.monotonic() >= self.deadline:
            raise TimeoutError('deadline passed')


class _Pieces(io.RawIOBase):
    """Raw bytes handed out at most `piece` at a time, as a socket delivers a slow client's request."""

    def __init__(self, data: bytes, piece: int):
        self._data = memoryview(data)
        self._piece = piece

    def readable(self) -> bool:
        return True

    def readinto(self, buffer):
        size = min(len(buffer), self._piece, len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


def request_line(data: bytes, limits: Limits = LIMITS) -> tuple[str, str, str]:
    return http11.read_request_line(BytesReader(data), limits, math.inf)


def head(fields: bytes, version: str = 'HTTP/1.1', limits: Limits = LIMITS) -> http11.Head:
    return http11.read_head(BytesReader(fields + b'\r\n'), version, limits, math.inf)


def body(fields: bytes, data: bytes, limits: Limits = LIMITS, piece: int | None = None) -> tuple[bytes, bytes]:
    """The body read after `fields`, and what is left after it."""
    reader = BytesReader(fields + b'\r\n' + data, piece)
    parsed = http11.read_head(reader, 'HTTP/1.1', limits, math.inf)
    return http11.read_body(reader, parsed, limits, 30.0), reader.rest()


class FramingTestCase(unittest.TestCase):
    @contextlib.contextmanager
    def assertRefused(self, status: int, reason: str, message: str) -> Iterator[None]:
        """The block raises the closing HTTPError of `status`, with `message` in its detail and `reason` to count."""
        with self.assertRaises(HTTPError) as raised:
            yield
        error = raised.exception
        self.assertEqual((error.status, error.rejected, error.close), (status, reason, True), error.detail)
        self.assertIn(message, error.detail)


class RequestLineTest(FramingTestCase):
    def test_origin_form_requests(self):
        self.assertEqual(request_line(b'GET /a/b?c=1&d HTTP/1.1\r\n'), ('GET', '/a/b?c=1&d', 'HTTP/1.1'))
        self.assertEqual(request_line(b'POST /api/v1/perform HTTP/1.0\r\n'), ('POST', '/api/v1/perform', 'HTTP/1.0'))
        self.assertEqual(request_line(b"M-SEARCH!#$%&'*+.^_`|~ / HTTP/1.1\r\n")[0], "M-SEARCH!#$%&'*+.^_`|~")

    def test_one_empty_line_before_the_request_is_skipped_but_not_two(self):
        self.assertEqual(request_line(b'\r\nGET / HTTP/1.1\r\n')[1], '/')
        with self.assertRefused(400, 'bad_request', 'malformed request line'):
            request_line(b'\r\n\r\nGET / HTTP/1.1\r\n')

    def test_the_rest_of_the_request_is_left_unread(self):
        reader = BytesReader(b'GET / HTTP/1.1\r\nHost: t\r\n\r\n')
        http11.read_request_line(reader, LIMITS, math.inf)
        self.assertEqual(reader.rest(), b'Host: t\r\n\r\n')

    def test_line_length_limit_counts_the_crlf(self):
        limits = Limits(max_request_line_bytes=20)
        line = b'GET /' + b'a' * 4 + b' HTTP/1.1\r\n'
        self.assertEqual(len(line), 20)
        self.assertEqual(request_line(line, limits)[1], '/aaaa')
        with self.assertRefused(414, 'uri_too_long', 'request line is longer than 20 bytes'):
            request_line(b'GET /' + b'a' * 5 + b' HTTP/1.1\r\n', limits)
        with self.assertRefused(414, 'uri_too_long', 'request line is longer than 20 bytes'):
            request_line(b'GET /' + b'a' * 100_000, limits)  # refused without waiting for a line end

    def test_malformed_lines(self):
        cases = {
            b'GET / HTTP/1.1\n': 'request line must end with CRLF',
            b'GET / HTTP/1.1\r\r\n': 'only HTTP/1.0 and HTTP/1.1 are supported',
            b'GET /\r\n': 'malformed request line',  # HTTP/0.9
            b'GET  / HTTP/1.1\r\n': 'malformed request line',
            b'GET / HTTP/1.1 \r\n': 'malformed request line',
            b'GET\t/ HTTP/1.1\r\n': 'malformed request line',
            b'G\x00T / HTTP/1.1\r\n': 'malformed request method',
            b'\xff\xfe / HTTP/1.1\r\n': 'malformed request method',
            b'GE(T / HTTP/1.1\r\n': 'malformed request method',
            b'GET / http/1.1\r\n': 'only HTTP/1.0 and HTTP/1.1 are supported',
            b'GET / HTTP/1.10\r\n': 'only HTTP/1.0 and HTTP/1.1 are supported',
            b'GET / FOO\r\n': 'only HTTP/1.0 and HTTP/1.1 are supported',
            b'GET ready HTTP/1.1\r\n': 'request target must be an absolute path',
            b'GET http://t/ready HTTP/1.1\r\n': 'request target must be an absolute path',
            b'OPTIONS * HTTP/1.1\r\n': 'request target must be an absolute path',
            b'GET /a\x00b HTTP/1.1\r\n': 'request target must be an absolute path',
            b'GET /a\x7fb HTTP/1.1\r\n': 'request target must be an absolute path',
            b'GET /caf\xc3\xa9 HTTP/1.1\r\n': 'request target must be an absolute path',
        }
        for line, message in cases.items():
            with self.subTest(line=line), self.assertRefused(400, 'bad_request', message):
                request_line(line)

    def test_other_http_versions_are_505(self):
        for version in (b'HTTP/2.0', b'HTTP/0.9', b'HTTP/1.2'):
            with self.subTest(version=version), self.assertRefused(505, 'http_version', 'only HTTP/1.0 and HTTP/1.1'):
                request_line(b'GET / ' + version + b'\r\n')

    def test_a_connection_ending_mid_line_has_nobody_to_answer(self):
        for data in (b'', b'GET / HTTP/1.1', b'\r\n'):
            with self.subTest(data=data), self.assertRaises(IncompleteRequest):
                request_line(data)

    def test_a_passed_deadline_is_408(self):
        with self.assertRefused(408, 'timeout', 'the request was not received in time'):
            http11.read_request_line(BytesReader(b'GET / HTTP/1.1\r\n'), LIMITS, time.monotonic() - 1)

    def test_error_types_name_the_refusal(self):
        for data, error_type in (
            (b'GET /\r\n', 'BadRequest'),
            (b'GET / HTTP/2.0\r\n', 'HTTPVersionNotSupported'),
            (b'GET /' + b'a' * 9000 + b' HTTP/1.1\r\n', 'URITooLong'),
        ):
            with self.subTest(error_type=error_type), self.assertRaises(HTTPError) as raised:
                request_line(data)
            self.assertEqual(raised.exception.error_type, error_type)


class HeaderFieldTest(FramingTestCase):
    def test_fields_keep_order_repeats_and_latin_1_values(self):
        parsed = head(HOST + b'X-A:  one \t\r\nx-a: two\r\nX-Name: \xff\xfe\r\nX-Tab: a\tb\r\nX-Empty:\r\n')
        self.assertEqual(
            parsed.headers.items(),
            [('Host', 't'), ('X-A', 'one'), ('x-a', 'two'), ('X-Name', '\xff\xfe'), ('X-Tab', 'a\tb'), ('X-Empty', '')],
        )
        self.assertEqual(parsed.headers.get_all('X-A'), ['one', 'two'])
        self.assertEqual(parsed.headers['x-a'], 'one, two')

    def test_a_head_read_whole_and_one_byte_at_a_time_agree(self):
        # Whole, the head is parsed from the buffer in one pass; a byte at a time, line by line.
        heads = [
            HOST + b'A: 1\r\nB:  two  \r\n',
            HOST + b'X-Name: \xff\r\nX-Tab: a\tb\r\nX-Colon: a:b\r\n',
            HOST + b'A: 1\n',
            HOST + b'A: 1\rB: 2\r\n',
            HOST + b'A: \x01\r\n',
            HOST + b' folded\r\n',
            HOST + b'No colon\r\n',
            HOST + b'A: 1\r\n' * 4,
            HOST + b'X: ' + b'a' * 40 + b'\r\n',
            b'',
        ]
        limits = Limits(max_header_fields=4, max_header_bytes=50)
        for fields in heads:
            outcomes = []
            for piece in (None, 1):
                reader = BytesReader(fields + b'\r\nrest', piece)
                try:
                    parsed = http11.read_head(reader, 'HTTP/1.0', limits, math.inf)
                    outcomes.append((parsed.headers.items(), reader.rest()))
                except HTTPError as e:
                    outcomes.append((e.status, e.detail))
            with self.subTest(fields=fields):
                self.assertEqual(outcomes[0], outcomes[1])

    def test_the_field_count_limit(self):
        limits = Limits(max_header_fields=3)
        self.assertEqual(len(head(HOST + b'A: 1\r\nB: 2\r\n', limits=limits).headers.items()), 3)
        with self.assertRefused(431, 'headers_too_large', 'more than 3 header fields'):
            head(HOST + b'A: 1\r\nB: 2\r\nC: 3\r\n', limits=limits)

    def test_the_byte_limit_counts_every_line_with_the_empty_one(self):
        limits = Limits(max_header_bytes=30)
        fields = HOST + b'X: ' + b'a' * 14 + b'\r\n'  # 9 + 19 bytes, and 2 for the empty line
        self.assertEqual(head(fields, limits=limits).headers['x'], 'a' * 14)
        with self.assertRefused(431, 'headers_too_large', 'request headers exceed 30 bytes'):
            head(HOST + b'X: ' + b'a' * 15 + b'\r\n', limits=limits)
        with self.assertRefused(431, 'headers_too_large', 'request headers exceed 30 bytes'):
            head(HOST + b'X: ' + b'a' * 1_000_000, limits=limits)  # refused without waiting for a line end

    def test_malformed_lines(self):
        cases = {
            b'X-A: 1\n': 'header lines must end with CRLF',
            b'X-A: 1\r\n  folded\r\n': 'obsolete header line folding is not accepted',
            b'X-A: 1\r\n\tfolded\r\n': 'obsolete header line folding is not accepted',
            b' X-A: 1\r\n': 'obsolete header line folding is not accepted',
            b'X-A: a\x00b\r\n': 'header X-A contains a control character',
            b'X-A: a\x1bb\r\n': 'header X-A contains a control character',
            b'X-A: a\rb\r\n': 'header X-A contains a control character',
            b'X-A: a\x7f\r\n': 'header X-A contains a control character',
            b'X-A : 1\r\n': 'malformed header line',
            b'no colon\r\n': 'malformed header line',
            b': empty name\r\n': 'malformed header line',
            b'X\xc3\xa9: 1\r\n': 'malformed header line',
            b'X(A): 1\r\n': 'malformed header line',
        }
        for line, message in cases.items():
            with self.subTest(line=line), self.assertRefused(400, 'bad_request', message):
                head(HOST + line)

    def test_a_bare_lf_ending_the_head_is_400(self):
        with self.assertRefused(400, 'bad_request', 'header lines must end with CRLF'):
            http11.read_head(BytesReader(HOST + b'\n'), 'HTTP/1.1', LIMITS, math.inf)

    def test_a_connection_ending_mid_head_has_nobody_to_answer(self):
        for data in (b'', HOST, HOST + b'X-A: 1'):
            with self.subTest(data=data), self.assertRaises(IncompleteRequest):
                http11.read_head(BytesReader(data), 'HTTP/1.1', LIMITS, math.inf)

    def test_a_passed_deadline_is_408(self):
        with self.assertRefused(408, 'timeout', 'the request was not received in time'):
            http11.read_head(BytesReader(HOST + b'\r\n'), 'HTTP/1.1', LIMITS, time.monotonic() - 1)

    def test_host_rules(self):
        with self.assertRefused(400, 'bad_request', 'more than one Host header'):
            head(b'Host: a\r\nhost: b\r\n')
        with self.assertRefused(400, 'bad_request', 'more than one Host header'):
            head(b'Host: a\r\nHost: a\r\n', 'HTTP/1.0')
        with self.assertRefused(400, 'bad_request', 'HTTP/1.1 request without a Host header'):
            head(b'')
        self.assertEqual(len(head(b'', 'HTTP/1.0').headers), 0)

    def test_a_host_must_be_uri_host_and_optional_port(self):
        valid = [
            'job',
            'job.racetrack.svc:7000',
            '127.0.0.1',
            '127.0.0.1:80',
            '[::1]',
            '[::1]:8080',
            '[::ffff:10.0.0.1]',
            'ex%41mple.com',
            "a-b_c~d.e!$&'()*+,;=",
            'job:',  # port = *DIGIT (RFC 3986 section 3.2.3)
        ]
        for value in valid:
            with self.subTest(value=value):
                self.assertEqual(head(b'Host: %s\r\n' % value.encode()).headers.get('Host'), value)
        invalid = [
            'a b',
            'user@evil',
            'evil/path',
            'a?b',
            'a#b',
            'job:80:80',
            'job:http',
            '%4',
            '%zz',
            '[::1',
            '[1:2]',  # not an IPv6 address
            '[v1.x]',  # IPvFuture names no address this server can have
            '::1',
            '[::1]x',
            'caf\xe9',
            # An http(s) target URI must not have an empty host (RFC 9110 section 4.2.1), and every
            # target this server accepts is an origin-form path of one.
            '',
            ':80',
        ]
        for version in ('HTTP/1.1', 'HTTP/1.0'):
            for value in invalid:
                with (
                    self.subTest(version=version, value=value),
                    self.assertRefused(400, 'bad_request', f'invalid Host header {value!r}'),
                ):
                    head(b'Host: %s\r\n' % value.encode('latin-1'), version)

    def test_keep_alive(self):
        cases = [
            ('HTTP/1.1', b'', True),
            ('HTTP/1.1', b'Connection: close\r\n', False),
            ('HTTP/1.1', b'Connection: Keep-Alive, Close\r\n', False),
            ('HTTP/1.0', b'', False),
            ('HTTP/1.0', b'Connection: keep-alive\r\n', True),
            ('HTTP/1.0', b'Connection: close\r\n', False),
        ]
        for version, fields, keep_alive in cases:
            with self.subTest(version=version, fields=fields):
                self.assertIs(head(HOST + fields, version).keep_alive, keep_alive)

    def test_a_chunked_http10_request_closes_the_connection(self):
        chunked = HOST + b'Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n'
        self.assertIs(head(chunked, 'HTTP/1.1').keep_alive, True)
        parsed = head(chunked, 'HTTP/1.0')
        self.assertEqual((parsed.chunked, parsed.keep_alive), (True, False))


class BodyFramingTest(FramingTestCase):
    def test_no_length_no_body(self):
        parsed = head(HOST)
        self.assertEqual((parsed.content_length, parsed.chunked), (0, False))
        self.assertEqual(body(HOST, b'GET / HTTP/1.1\r\n'), (b'', b'GET / HTTP/1.1\r\n'))

    def test_content_length_reads_exactly_that_much(self):
        self.assertEqual(body(HOST + b'Content-Length: 5\r\n', b'helloGET'), (b'hello', b'GET'))
        self.assertEqual(body(HOST + b'Content-Length: 0\r\n', b'GET'), (b'', b'GET'))
        self.assertEqual(body(HOST + b'Content-Length: 00012\r\n', b'hello, world'), (b'hello, world', b''))

    def test_a_body_arriving_in_pieces_is_read_whole(self):
        data = bytes(range(256)) * 100
        self.assertEqual(body(HOST + b'Content-Length: %d\r\n' % len(data), data, piece=7), (data, b''))
        chunked = b''.join(b'%x\r\n%s\r\n' % (len(part), part) for part in (data[:10_000], data[10_000:]))
        chunked += b'0\r\n\r\n'
        self.assertEqual(body(HOST + b'Transfer-Encoding: chunked\r\n', chunked + b'next', piece=7), (data, b'next'))

    def test_equal_lengths_are_one_length(self):
        for fields in (
            b'Content-Length: 3\r\nContent-Length: 3\r\n',
            b'Content-Length: 3, 3\r\n',
            b'Content-Length: 3,3\r\ncontent-length: 3\r\n',
        ):
            with self.subTest(fields=fields):
                self.assertEqual(head(HOST + fields).content_length, 3)

    def test_differing_lengths_are_400(self):
        for fields in (
            b'Content-Length: 5\r\nContent-Length: 6\r\n',
            b'Content-Length: 5, 6\r\n',
            b'Content-Length: 5\r\nContent-Length: 05\r\n',
            b'Content-Length: 5,\r\n',
        ):
            with self.subTest(fields=fields), self.assertRefused(400, 'bad_request', 'conflicting Content-Length'):
                head(HOST + fields)

    def test_a_length_that_is_not_a_plain_decimal_is_400(self):
        for value in (b'-5', b'+5', b'0x5', b'5.0', b'1e3', b'five', b'', b'5 5', b'1_0', b'\xb2', b'\xd9\xa5'):
            with self.subTest(value=value), self.assertRefused(400, 'bad_request', 'invalid Content-Length'):
                head(HOST + b'Content-Length: ' + value + b'\r\n')

    def test_content_length_beside_transfer_encoding_is_400(self):
        for fields in (
            b'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n',
            b'Transfer-Encoding: chunked\r\nContent-Length: 5\r\n',
            b'Transfer-Encoding: gzip\r\nContent-Length: 0\r\n',
        ):
            with (
                self.subTest(fields=fields),
                self.assertRefused(
                    400, 'bad_request', 'Content-Length and Transfer-Encoding together are not accepted'
                ),
            ):
                head(HOST + fields)

    def test_only_chunked_transfer_encoding(self):
        self.assertTrue(head(HOST + b'Transfer-Encoding:  Chunked \r\n').chunked)
        for value in (b'gzip', b'gzip, chunked', b'chunked, chunked', b'identity', b''):
            with self.subTest(value=value), self.assertRefused(501, 'not_implemented', 'not supported; only chunked'):
                head(HOST + b'Transfer-Encoding: ' + value + b'\r\n')

    def test_a_length_over_the_limit_is_413_before_any_body(self):
        limits = Limits(max_body_bytes=10)
        self.assertEqual(head(HOST + b'Content-Length: 10\r\n', limits=limits).content_length, 10)
        with self.assertRefused(413, 'body_too_large', 'request body of 11 bytes exceeds the limit of 10 bytes'):
            head(HOST + b'Content-Length: 11\r\n', limits=limits)
        with self.assertRefused(413, 'body_too_large', 'request body of 5000 digits exceeds the limit of 10 bytes'):
            head(HOST + b'Content-Length: ' + b'9' * 5000 + b'\r\n', limits=limits)
        with self.assertRefused(413, 'body_too_large', 'request body of 19 digits'):
            head(HOST + b'Content-Length: ' + b'0' * 19 + b'\r\n', limits=limits)

    def test_a_body_cut_short_has_nobody_to_answer(self):
        for fields, data in (
            (b'Content-Length: 10\r\n', b'hello'),
            (b'Transfer-Encoding: chunked\r\n', b'a\r\nhello'),
            (b'Transfer-Encoding: chunked\r\n', b'5\r\nhello\r\n0\r\n'),
            (b'Transfer-Encoding: chunked\r\n', b'5'),
        ):
            with self.subTest(data=data), self.assertRaises(IncompleteRequest):
                body(HOST + fields, data)

    def test_a_body_not_in_time_is_408(self):
        for fields, data in ((b'Content-Length: 5\r\n', b'hello'), (b'Transfer-Encoding: chunked\r\n', b'0\r\n\r\n')):
            reader = BytesReader(HOST + fields + b'\r\n' + data)
            parsed = http11.read_head(reader, 'HTTP/1.1', LIMITS, math.inf)
            with self.subTest(fields=fields), self.assertRefused(408, 'timeout', 'the request was not received'):
                http11.read_body(reader, parsed, LIMITS, -1.0)

    def test_the_body_deadline_grows_with_its_length(self):
        data = b'x' * (http11.MIN_BODY_RATE * 10)
        reader = BytesReader(HOST + b'Content-Length: %d\r\n\r\n' % len(data) + data)
        parsed = http11.read_head(reader, 'HTTP/1.1', LIMITS, math.inf)
        started = time.monotonic()
        http11.read_body(reader, parsed, LIMITS, 2.0)
        self.assertAlmostEqual(reader.deadline - started, 12.0, delta=0.5)


class ChunkedTest(FramingTestCase):
    CHUNKED = HOST + b'Transfer-Encoding: chunked\r\n'

    def test_sizes_extensions_and_trailers(self):
        data = (
            b'4;name=value\r\n{"x"\r\n'
            b'5 ;ext\r\n: [1,\r\n'
            b'a\t;a=1;b="q;uoted"\r\n 2], "y":3\r\n'
            b'01\r\n}\r\n'
            b'0;last\r\nTrailer-Field: yes\r\nOther: 1\r\n\r\n'
        )
        self.assertEqual(body(self.CHUNKED, data + b'GET'), (b'{"x": [1, 2], "y":3}', b'GET'))
        self.assertEqual(body(self.CHUNKED, b'A\r\n0123456789\r\n000\r\n\r\n'), (b'0123456789', b''))

    def test_malformed_chunks_are_400(self):
        cases = {
            b'0x5\r\nhello\r\n0\r\n\r\n': "malformed chunk size '0x5'",
            b'-5\r\nhello\r\n0\r\n\r\n': "malformed chunk size '-5'",
            b'+5\r\nhello\r\n0\r\n\r\n': "malformed chunk size '+5'",
            b' 5\r\nhello\r\n0\r\n\r\n': "malformed chunk size ' 5'",
            b'5 \r\nhello\r\n0\r\n\r\n': "malformed chunk size '5 '",
            b'1_0\r\nhello\r\n0\r\n\r\n': "malformed chunk size '1_0'",
            b'zz\r\n': "malformed chunk size 'zz'",
            b'\r\n': "malformed chunk size ''",
            b';ext\r\n': "malformed chunk size ''",
            b'5\nhello\r\n0\r\n\r\n': 'malformed chunk size line',
            b'5\r\r\nhello\r\n0\r\n\r\n': "malformed chunk size '5\\r'",
            b'5\r\nhelloXX0\r\n\r\n': 'chunk data not followed by CRLF',
            b'5\r\nhello\n0\r\n\r\n': 'chunk data not followed by CRLF',
            b'1;' + b'e' * http11.MAX_CHUNK_LINE + b'\r\n': 'malformed chunk size line',
            b'5\r\nhello\r\n0\r\nbad trailer\r\n\r\n': 'malformed header line',
            b'5\r\nhello\r\n0\r\nX: a\x00b\r\n\r\n': 'header X contains a control character',
            b'5\r\nhello\r\n0\r\n folded\r\n\r\n': 'obsolete header line folding is not accepted',
            b'5\r\nhello\r\n0\r\n\n': 'header lines must end with CRLF',
        }
        for data, message in cases.items():
            with self.subTest(data=data), self.assertRefused(400, 'bad_request', message):
                body(self.CHUNKED, data)

    def test_the_body_limit_counts_every_chunk(self):
        limits = Limits(max_body_bytes=10)
        self.assertEqual(body(self.CHUNKED, b'5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n', limits)[0], b'helloworld')
        with self.assertRefused(413, 'body_too_large', 'chunked request body exceeds the limit of 10 bytes'):
            body(self.CHUNKED, b'5\r\nhello\r\n6\r\n', limits)  # refused before the chunk's data is read
        with self.assertRefused(413, 'body_too_large', 'chunked request body exceeds the limit of 10 bytes'):
            body(self.CHUNKED, b'f' * 40 + b'\r\n', limits)

    def test_trailers_are_bound_by_the_header_limits(self):
        with self.assertRefused(431, 'headers_too_large', 'request headers exceed 30 bytes'):
            body(self.CHUNKED, b'0\r\nX: ' + b'a' * 30 + b'\r\n\r\n', Limits(max_header_bytes=30))
        with self.assertRefused(431, 'headers_too_large', 'more than 2 header fields'):
            body(
                HOST + b'Transfer-Encoding: chunked\r\n',
                b'0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n',
                Limits(max_header_fields=2),
            )


class ContinueTest(FramingTestCase):
    def test_100_continue_only_when_a_body_is_awaited(self):
        cases = [
            (b'Content-Length: 5\r\nExpect: 100-continue\r\n', 'HTTP/1.1', True),
            (b'Content-Length: 5\r\nExpect: 100-Continue\r\n', 'HTTP/1.1', True),
            (b'Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n', 'HTTP/1.1', True),
            (b'Content-Length: 0\r\nExpect: 100-continue\r\n', 'HTTP/1.1', False),
            (b'Expect: 100-continue\r\n', 'HTTP/1.1', False),
            (b'Content-Length: 5\r\n', 'HTTP/1.1', False),
            (b'Content-Length: 5\r\nExpect: something-else\r\n', 'HTTP/1.1', False),
            (b'Content-Length: 5\r\nExpect: 100-continue\r\n', 'HTTP/1.0', False),  # RFC 9110 section 10.1.1
        ]
        for fields, version, expected in cases:
            with self.subTest(fields=fields, version=version):
                self.assertIs(head(HOST + fields, version).expect_continue, expected)

    def test_a_body_over_the_limit_is_refused_instead_of_continued(self):
        with self.assertRefused(413, 'body_too_large', 'exceeds the limit of 10 bytes'):
            head(HOST + b'Content-Length: 11\r\nExpect: 100-continue\r\n', limits=Limits(max_body_bytes=10))

    def test_the_interim_response(self):
        self.assertEqual(http11.CONTINUE, b'HTTP/1.1 100 Continue\r\n\r\n')


if __name__ == '__main__':
    unittest.main()
