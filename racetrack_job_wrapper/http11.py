"""HTTP/1.1 request framing (RFC 9112): the request line, header fields, and the body's length or chunks.

Strict on purpose: whatever another parser in front of the server could read differently (a
bare LF, obsolete line folding, Content-Length beside Transfer-Encoding, a loose chunk size) is
refused, so no second request can be smuggled inside the first. Every refusal is an `HTTPError`
with `close=True` and its `rejected` reason. The functions work on any `Reader`, so each rule is
testable from bytes; sockets, timeouts and answers belong to the server.
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import NamedTuple, Protocol

from racetrack_job_wrapper.messages import Headers, HTTPError

CONTINUE = b'HTTP/1.1 100 Continue\r\n\r\n'
MIN_BODY_RATE = 64 * 1024  # bytes/s a slow client must sustain once its body has started
MAX_CHUNK_LINE = 1024  # a chunk size line with its extensions
_READ_SIZE = 1 << 16  # a body is read in pieces, so a large Content-Length reserves no memory up front

_TOKEN = re.compile(rb'[!#$%&\'*+\-.^_`|~0-9A-Za-z]+')
_HEX = re.compile(rb'[0-9A-Fa-f]+')
_VERSION = re.compile(rb'HTTP/\d\.\d')
# An origin-form target: a path of visible ASCII characters (one regex pass instead of a byte loop).
_TARGET = re.compile(rb'/[\x21-\x7e]*')
# A block of header lines that every per-line rule of `_read_fields` accepts: token names, values
# without control characters (HTAB allowed), each line ending with CRLF. What it does not match
# goes through the line-by-line reading, which words the refusal.
_FIELD_LINES = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
# Control characters other than HTAB are not allowed in a field value (RFC 9110 section 5.5).
_FIELD_CONTROL = re.compile(rb'[\x00-\x08\x0a-\x1f\x7f]')
# Host = uri-host [":" port] (RFC 9110 section 7.2, RFC 3986 section 3.2.2): a non-empty reg-name
# (IPv4 is one) or a bracketed IP literal, which `_check_host` then parses. Written so that no
# text can match two ways: a long value that fails costs linear time.
_REG_NAME_RUN = r"[-.~!$&'()*+,;=_0-9A-Za-z]*"
_HOST = re.compile(
    rf'(?:\[(?P<ip_literal>[0-9A-Fa-f:.]+)\]|(?=[^:]){_REG_NAME_RUN}(?:%[0-9A-Fa-f]{{2}}{_REG_NAME_RUN})*)'
    r'(?::[0-9]*)?'
)


class Reader(Protocol):
    """A connection's buffered input, as `io.BufferedReader` offers it.

    Every read that has to wait for bytes raises TimeoutError once `deadline` (a
    `time.monotonic()` value) has passed; a read returns short only when the peer has closed.
    """

    deadline: float

    def readline(self, size: int = -1, /) -> bytes: ...

    def read1(self, size: int = -1, /) -> bytes: ...

    def read(self, size: int = -1, /) -> bytes: ...

    def peek(self, size: int = 0, /) -> bytes: ...


class Limits(Protocol):
    """The bounds framing enforces (`settings.Limits` carries them)."""

    @property
    def max_request_line_bytes(self) -> int: ...

    @property
    def max_header_bytes(self) -> int: ...

    @property
    def max_header_fields(self) -> int: ...

    @property
    def max_body_bytes(self) -> int: ...


class IncompleteRequest(Exception):
    """The connection ended in the middle of a request: there is nobody to answer."""


class Head(NamedTuple):
    """A request's header fields and what they decide about the connection and the body."""

    headers: Headers
    keep_alive: bool
    content_length: int  # 0 when there is no body, or when it is chunked
    chunked: bool
    expect_continue: bool  # the client waits for `CONTINUE` before it sends the body


def read_request_line(reader: Reader, limits: Limits, deadline: float) -> tuple[str, str, str]:
    """Read and check the request line: (method, target, version 'HTTP/1.1' or 'HTTP/1.0').

    One empty line before it is skipped (RFC 9112 section 2.2). Raises HTTPError (400, 408,
    414, 505) or IncompleteRequest.
    """
    size = limits.max_request_line_bytes + 1
    reader.deadline = deadline
    try:
        line = reader.readline(size)
        if line == b'\r\n':
            line = reader.readline(size)
    except TimeoutError:
        raise _timeout() from None
    if len(line) > limits.max_request_line_bytes:
        raise HTTPError(
            414,
            f'request line is longer than {limits.max_request_line_bytes} bytes',
            error_type='URITooLong',
            close=True,
            rejected='uri_too_long',
        )
    if not line.endswith(b'\n'):
        raise IncompleteRequest()
    if not line.endswith(b'\r\n'):
        raise _bad_request('request line must end with CRLF')
    parts = line[:-2].split(b' ')
    if len(parts) != 3:
        raise _bad_request('malformed request line: expected "METHOD target HTTP/1.x"')
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise _bad_request('malformed request method')
    if version not in (b'HTTP/1.1', b'HTTP/1.0'):
        if _VERSION.fullmatch(version):
            raise HTTPError(505, 'only HTTP/1.0 and HTTP/1.1 are supported', close=True, rejected='http_version')
        raise _bad_request('only HTTP/1.0 and HTTP/1.1 are supported')
    # Origin form only: this server is nobody's proxy, and an absolute URI would be a second
    # source of the host beside the Host header.
    if not _TARGET.fullmatch(target):
        raise _bad_request('request target must be an absolute path of visible ASCII characters')
    return method.decode('ascii'), target.decode('ascii'), version.decode('ascii')


def read_head(reader: Reader, version: str, limits: Limits, deadline: float) -> Head:
    """Read the header fields and decide the connection's and the body's framing from them.

    The body's length is checked here, before any of it is read, so a body over the limit is
    refused before the client is told to send it. Raises HTTPError (400, 408, 413, 431, 501)
    or IncompleteRequest.
    """
    headers = Headers(_read_fields(reader, limits, deadline))
    connection = (headers.get('Connection') or '').lower()
    keep_alive = 'close' not in connection if version == 'HTTP/1.1' else 'keep-alive' in connection
    hosts = headers.get_all('Host')
    if len(hosts) > 1:
        raise _bad_request('more than one Host header')
    if version == 'HTTP/1.1' and not hosts:
        raise _bad_request('HTTP/1.1 request without a Host header')
    if hosts:
        _check_host(hosts[0])
    lengths = headers.get_all('Content-Length')
    encoding = headers.get('Transfer-Encoding')
    if encoding is not None:
        if lengths:
            raise _bad_request('Content-Length and Transfer-Encoding together are not accepted')
        if encoding.strip().lower() != 'chunked':
            raise HTTPError(
                501,
                f'Transfer-Encoding {encoding!r} is not supported; only chunked is',
                close=True,
                rejected='not_implemented',
            )
        chunked, length = True, 0
        # An HTTP/1.0 sender may not frame by Transfer-Encoding and have kept part of the message
        # back, so the framing may be faulty: the connection ends with the response (RFC 9112 section 6.1).
        keep_alive = keep_alive and version == 'HTTP/1.1'
    else:
        chunked, length = False, _content_length(lengths, limits.max_body_bytes) if lengths else 0
    # An HTTP/1.0 client cannot be waiting for a 100 (RFC 9110 section 10.1.1), and a request
    # without a body has nothing to wait for.
    expect_continue = (
        (chunked or length > 0) and version == 'HTTP/1.1' and (headers.get('Expect') or '').lower() == '100-continue'
    )
    return Head(headers, keep_alive, length, chunked, expect_continue)


def read_body(reader: Reader, head: Head, limits: Limits, timeout: float) -> bytes:
    """Read the body `head` announced: `timeout` seconds from now, plus a second per `MIN_BODY_RATE` bytes.

    Trailer fields of a chunked body are checked like header fields, then dropped. Raises
    HTTPError (400, 408, 413) or IncompleteRequest.
    """
    if not head.chunked and not head.content_length:
        return b''
    deadline = time.monotonic() + timeout
    try:
        if not head.chunked:
            return _read_exact(reader, head.content_length, deadline + head.content_length / MIN_BODY_RATE)
        return _read_chunked(reader, limits, deadline)
    except TimeoutError:
        raise _timeout() from None


def _timeout() -> HTTPError:
    return HTTPError(
        408, 'the request was not received in time', error_type='RequestTimeout', close=True, rejected='timeout'
    )


def _bad_request(detail: str) -> HTTPError:
    return HTTPError(400, detail, error_type='BadRequest', close=True, rejected='bad_request')


def _headers_too_large(detail: str) -> HTTPError:
    return HTTPError(431, detail, error_type='RequestHeaderFieldsTooLarge', close=True, rejected='headers_too_large')


def _read_fields(reader: Reader, limits: Limits, deadline: float) -> list[tuple[str, str]]:
    """Header (or trailer) fields up to the empty line, strictly checked; trailers count against the same limits."""
    reader.deadline = deadline
    try:
        buffered = _buffered_fields(reader, limits)
        if buffered is not None:
            return buffered
        fields: list[tuple[str, str]] = []
        budget = limits.max_header_bytes
        while True:
            line = reader.readline(budget + 1)
            budget -= len(line)
            if budget < 0:
                raise _headers_too_large(f'request headers exceed {limits.max_header_bytes} bytes')
            if not line.endswith(b'\n'):
                raise IncompleteRequest()
            if not line.endswith(b'\r\n'):
                raise _bad_request('header lines must end with CRLF')
            if line == b'\r\n':
                return fields
            if line[0] in b' \t':
                raise _bad_request('obsolete header line folding is not accepted')
            name, colon, value = line[:-2].partition(b':')
            if not colon or not _TOKEN.fullmatch(name):
                raise _bad_request('malformed header line: expected "Name: value"')
            if _FIELD_CONTROL.search(value):
                raise _bad_request(f'header {name.decode()} contains a control character')
            if len(fields) >= limits.max_header_fields:
                raise _headers_too_large(f'more than {limits.max_header_fields} header fields')
            fields.append((name.decode('ascii'), value.strip(b' \t').decode('latin-1')))
    except TimeoutError:
        raise _timeout() from None


def _buffered_fields(reader: Reader, limits: Limits) -> list[tuple[str, str]] | None:
    """The fields, when all of them and the empty line are already buffered and pass every rule; else None.

    The common case, in a few passes over the bytes instead of a `readline` and checks per line.
    None consumes nothing, and the line-by-line reading then gives the same answer (or refusal).
    """
    buffered = reader.peek(1)
    if buffered.startswith(b'\r\n') and limits.max_header_bytes >= 2:
        reader.read(2)
        return []
    end = buffered.find(b'\r\n\r\n') + 2  # the end of the last field line
    if end < 2 or end + 2 > limits.max_header_bytes or not _FIELD_LINES.fullmatch(buffered, 0, end):
        return None
    lines = buffered[: end - 2].split(b'\r\n')
    if len(lines) > limits.max_header_fields:
        return None
    fields = []
    for line in lines:
        name, _, value = line.partition(b':')
        fields.append((name.decode('ascii'), value.strip(b' \t').decode('latin-1')))
    reader.read(end + 2)
    return fields


def _check_host(value: str) -> None:
    """Refuse a Host value that is not uri-host [":" port] with 400.

    An empty uri-host is valid only for a target URI without an authority (RFC 9110 section
    7.2), and this server takes origin-form targets only, whose target URI is an http(s) URI
    with the Host value as its authority, which must not be empty (RFC 9110 section 4.2.1).
    """
    match = _HOST.fullmatch(value)
    if match is None or (match['ip_literal'] is not None and not _is_ipv6(match['ip_literal'])):
        raise _bad_request(f'invalid Host header {value[:100]!r}')


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _content_length(values: list[str], max_body_bytes: int) -> int:
    """The one length that every Content-Length field (and list member) says; else HTTPError (400, 413)."""
    lengths = {value.strip() for field in values for value in field.split(',')}
    if len(lengths) != 1:
        raise _bad_request('conflicting Content-Length values')
    text = lengths.pop()
    if not text.isdigit() or not text.isascii():
        raise _bad_request(f'invalid Content-Length {text[:40]!r}: expected a non-negative integer')
    # A length with more digits than any limit needs is too large whatever it says; checked
    # before int(), which refuses strings of thousands of digits.
    if len(text) > 18:
        raise _body_too_large(f'request body of {len(text)} digits exceeds the limit of {max_body_bytes} bytes')
    length = int(text)
    if length > max_body_bytes:
        raise _body_too_large(f'request body of {length} bytes exceeds the limit of {max_body_bytes} bytes')
    return length


def _body_too_large(detail: str) -> HTTPError:
    return HTTPError(413, detail, error_type='ContentTooLarge', close=True, rejected='body_too_large')


def _read_exact(reader: Reader, length: int, deadline: float) -> bytes:
    reader.deadline = deadline
    chunks = []
    remaining = length
    while remaining:
        chunk = reader.read1(min(remaining, _READ_SIZE))
        if not chunk:
            raise IncompleteRequest()
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b''.join(chunks)


def _read_chunked(reader: Reader, limits: Limits, deadline: float) -> bytes:
    chunks: list[bytes] = []
    total = 0
    reader.deadline = deadline  # from here each `_read_exact` moves it on
    while True:
        line = reader.readline(MAX_CHUNK_LINE + 1)
        if not line.endswith(b'\n') and len(line) <= MAX_CHUNK_LINE:
            raise IncompleteRequest()
        if not line.endswith(b'\r\n'):
            raise _bad_request('malformed chunk size line')
        size_text, semicolon, _ = line[:-2].partition(b';')
        if semicolon:
            size_text = size_text.rstrip(b' \t')  # whitespace before an extension (RFC 9112 section 7.1.1)
        # Strict hex only: int(..., 16) would also take '0x10', '1_0' and surrounding spaces,
        # which another parser in front of this one may read differently.
        if not _HEX.fullmatch(size_text):
            raise _bad_request(f'malformed chunk size {size_text[:20].decode("latin-1")!r}')
        size = int(size_text, 16) if len(size_text) <= 16 else limits.max_body_bytes + 1
        if size == 0:
            break
        total += size
        if total > limits.max_body_bytes:
            raise _body_too_large(f'chunked request body exceeds the limit of {limits.max_body_bytes} bytes')
        deadline += size / MIN_BODY_RATE
        chunks.append(_read_exact(reader, size, deadline))
        if _read_exact(reader, 2, deadline) != b'\r\n':
            raise _bad_request('chunk data not followed by CRLF')
    _read_fields(reader, limits, deadline)
    return b''.join(chunks)
