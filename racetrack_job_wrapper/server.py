"""The HTTP server: a ThreadingHTTPServer subclass with bounded parsing, keep-alive and graceful drain.

Only this module touches sockets. The handler reads the whole request (line, headers, body)
under limits before any route sees it, so every response path leaves the connection clean
for the next keep-alive request; a request it cannot read whole is answered and closed.
"""
from __future__ import annotations

import io
import logging
import math
import re
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Iterator, Protocol

from racetrack_job_wrapper.messages import ClientDisconnected, Headers, HTTPError, Request, Response, encode_json, http_error_response

logger = logging.getLogger(__name__)

_TOKEN = re.compile(rb'[!#$%&\'*+\-.^_`|~0-9A-Za-z]+')
_BODYLESS_STATUSES = frozenset({204, 304})
_MIN_BODY_RATE = 64 * 1024  # bytes/s a slow client must sustain once its body has started
_HEX = re.compile(rb'[0-9A-Fa-f]+')
# Control characters other than HTAB are not allowed in a field value (RFC 9110 section 5.5).
_FIELD_CONTROL = re.compile(rb'[\x00-\x08\x0a-\x1f\x7f]')
_MAX_CHUNK_LINE = 1024      # a chunk size line with its extensions
_LINGER_SECONDS = 1.0       # after an error that closes, unread input is discarded this long ...
_LINGER_BYTES = 1 << 20     # ... or up to this much, so the client can read the answer before the close
# On a drain, a keep-alive connection that was busy this recently is likely to carry another
# request any moment; closing it now would race that request, so it gets this long to send it.
_DRAIN_IDLE_WINDOW = 0.5


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what one client can make the server hold; every field is configurable."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_request_line_bytes: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    max_header_fields: int = 100
    head_timeout: float = 30.0     # seconds for the whole request line and headers
    idle_timeout: float = 60.0     # seconds an idle keep-alive connection is kept
    max_connections: int = 1000
    grace_period: float = 30.0     # seconds in-flight requests get on shutdown


class RequestObserver(Protocol):
    """Told about every answered request (access log, server-wide metrics)."""

    def request_started(self) -> None: ...

    def request_received(self, request: Request) -> list[tuple[str, str]]:
        """Called before the app sees a request; returns headers to add to its response."""

    def connection_refused(self, reason: str) -> None: ...

    def request_finished(self, request: Request | None, method: str, target: str, status: int,
                         sent: int, seconds: float) -> None: ...


class AppLike(Protocol):
    """Anything with `handle(Request) -> Response`."""

    def handle(self, request: Request) -> Response: ...


class _Close(Exception):
    """Stop reading this connection (after an answer, or with none when nothing can be said)."""


class JobServer(ThreadingHTTPServer):
    """ThreadingHTTPServer serving one `app` (swappable while running) with limits and a graceful drain."""

    daemon_threads = True
    request_queue_size = 1024   # the stock 5 overflows under a burst of connections
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: AppLike, limits: ServerLimits = ServerLimits(),
                 observer: RequestObserver | None = None, bind_and_activate: bool = True,
                 listener: socket.socket | None = None):
        self.app = app
        self.limits = limits
        self.observer = observer
        self.draining = False
        # Every bytes response's first send passes this lock: see RequestHandler._send_body.
        self.send_turn = threading.Lock()
        self._handlers: set[RequestHandler] = set()
        # Counted when accepted, not when the thread starts, so a burst cannot overshoot the cap
        # and a drain never misses a connection whose thread has not run yet.
        self._connections = 0
        self._handlers_lock = threading.Lock()
        self._idle = threading.Condition(self._handlers_lock)
        if listener is None:
            super().__init__(address, RequestHandler, bind_and_activate)
        else:
            super().__init__(listener.getsockname()[:2], RequestHandler, bind_and_activate=False)
            self.socket.close()
            self.socket = listener

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a thread for the connection, or refuse it with 503 past `max_connections`.

        While draining, a connection still accepted is served one request with `Connection: close`.
        """
        with self._handlers_lock:
            full = self._connections >= self.limits.max_connections
            if not full:
                self._connections += 1
        if full:
            _refuse(request, 503, f'too many connections (max_connections is {self.limits.max_connections})')
            if self.observer is not None:
                self.observer.connection_refused('connection_limit')
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget_connection()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection in its own thread; it stops counting towards the cap when it ends."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget_connection()

    def _forget_connection(self) -> None:
        with self._handlers_lock:
            self._connections -= 1
            self._idle.notify_all()

    def connection_count(self) -> int:
        """Connections accepted and not yet closed."""
        with self._handlers_lock:
            return self._connections

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log an unexpected error of one connection; the server keeps serving."""
        logger.exception('connection from %s failed', client_address[0] if client_address else '?')

    def track(self, handler: 'RequestHandler', active: bool) -> None:
        """Register or forget a connection handler."""
        with self._handlers_lock:
            if active:
                self._handlers.add(handler)
            else:
                self._handlers.discard(handler)
                self._idle.notify_all()

    def drain(self, grace_period: float | None = None) -> bool:
        """Stop accepting, let in-flight requests finish, close idle connections.

        Connections the kernel already accepted (the listen backlog) are taken and their first
        request, if it arrives, is answered with `Connection: close`; connections made after
        that are refused by the kernel. Must be called from a thread other than the one running
        `serve_forever`. Returns True when every request read finished within the grace period.
        """
        grace = self.limits.grace_period if grace_period is None else grace_period
        deadline = time.monotonic() + grace
        self.draining = True     # from here every response says Connection: close
        self.shutdown()          # stops serve_forever's accept loop
        waiting = self._take_backlog()
        self.socket.close()      # new connections are refused by the kernel from here on
        for request, client_address in waiting:
            self.process_request(request, client_address)
        with self._handlers_lock:
            while True:
                now = time.monotonic()
                for handler in list(self._handlers):
                    if not handler.busy and now - handler.last_active >= _DRAIN_IDLE_WINDOW:
                        handler.interrupt()
                if not self._connections:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(min(remaining, 0.05))
            cut = [handler.describe() for handler in self._handlers if handler.busy]
        if cut:
            logger.error('grace period of %.1fs over; %d request(s) cut: %s', grace, len(cut), '; '.join(cut))
            return False
        return True

    def _take_backlog(self) -> list[tuple[socket.socket, Any]]:
        """The connections waiting in the kernel's listen queue, taken without blocking.

        Only accepted here, served after the listening socket is closed: starting threads in
        this loop would let clients that reconnect at once keep the queue from ever emptying.
        """
        self.socket.setblocking(False)
        taken = []
        while len(taken) < self.request_queue_size:
            try:
                request, client_address = self.socket.accept()
            except OSError:  # BlockingIOError once the queue is empty
                break
            request.setblocking(True)
            taken.append((request, client_address))
        return taken


def shared_listener(address: tuple[str, int]) -> socket.socket:
    """A bound, listening socket for several worker processes to accept from (`JobServer(listener=...)`)."""
    sock = socket.create_server(address, backlog=JobServer.request_queue_size)
    # Every worker wakes for a new connection and only one wins the accept; the others must
    # get EAGAIN (which socketserver ignores) instead of blocking their serve loop.
    sock.setblocking(False)
    return sock


def _refuse(sock: socket.socket, status: int, reason: str) -> None:
    body = encode_json({'error': reason, 'type': HTTPStatus(status).phrase.replace(' ', '')})
    head = (f'HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n'
            f'Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n')
    try:
        sock.settimeout(1.0)
        sock.sendall(head.encode('latin-1') + body)
        # Closing with unread input makes the kernel send a reset, which can destroy the answer
        # before the client reads it; take whatever has already arrived (without waiting) first.
        sock.setblocking(False)
        for _ in range(16):
            if not sock.recv(65536):
                break
    except OSError:
        pass


class _DeadlineReader(io.RawIOBase):
    """The connection's raw reads, each bounded by the time left until `deadline` (kernel SO_RCVTIMEO).

    The socket stays in blocking mode, so a read is one `recv`: a Python socket timeout would
    add a `poll` before every `recv` and an `ioctl` per `settimeout`, each a GIL hand-off that
    costs dearly with many connection threads. The timeout is armed only when a read reaches
    the socket (most header lines and bodies come from the buffer) and only when it changes;
    rounding it up to 0.1 s keeps it unchanged across keep-alive requests, and lets a deadline
    be overrun by at most that much.
    """

    def __init__(self, sock: socket.socket):
        super().__init__()
        self._sock = sock
        self.deadline = math.inf
        self._armed = 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        timeout = math.ceil((self.deadline - time.monotonic()) * 10) / 10
        if timeout <= 0:
            raise TimeoutError('read deadline passed')
        if timeout != self._armed:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            self._armed = timeout
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:  # what an expired SO_RCVTIMEO raises on a blocking socket
            raise TimeoutError('read timed out') from None


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack('ll', whole, int((seconds - whole) * 1_000_000))


class RequestHandler(BaseHTTPRequestHandler):
    """Reads requests with bounded size and time, hands them to the app, writes each response in one send."""

    server: JobServer
    protocol_version = 'HTTP/1.1'
    server_version = 'racetrack-job-wrapper'
    sys_version = ''

    def setup(self) -> None:
        super().setup()
        self.busy = False
        self.last_active = time.monotonic()
        self._unread_input = False
        self._current = ''
        self._started = 0.0
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Blocking mode with kernel timeouts instead of Python's socket timeout (see _DeadlineReader);
        # a client that stops reading our response is dropped after the idle timeout.
        self.connection.settimeout(None)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.server.limits.idle_timeout))
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)
        self.server.track(self, True)

    def finish(self) -> None:
        self.server.track(self, False)
        try:
            super().finish()
        except OSError:
            pass

    def interrupt(self) -> None:
        """Wake an idle connection blocked waiting for its next request, so it closes."""
        try:
            self.connection.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def describe(self) -> str:
        """What this connection is doing, for logs about cut requests."""
        return f'{self._current} from {self.client_address[0]} for {time.monotonic() - self._started:.1f}s'

    def handle(self) -> None:
        try:
            while self._serve_one():
                pass
            if self._unread_input:
                self._linger()
        except (_Close, ConnectionError, TimeoutError, socket.timeout):
            pass
        except OSError as e:
            logger.debug('connection from %s ended: %s', self.client_address[0], e)

    # -- one request ------------------------------------------------------------------------

    def _serve_one(self) -> bool:
        """Read, answer and log one request; False when the connection must close."""
        limits = self.server.limits
        self._reader.deadline = time.monotonic() + limits.idle_timeout
        if not self.rfile.peek(1):
            return False  # closed while idle (by the client, or by a drain)
        self.busy = True
        self._started = time.monotonic()
        observer = self.server.observer
        if observer is not None:
            observer.request_started()
        request: Request | None = None
        method, target, status, sent = '-', '-', 0, 0
        try:
            try:
                # One deadline for the whole head from its first byte, each read bounded by what
                # is left of it, so a byte now and then cannot keep a thread forever.
                self._reader.deadline = self._started + limits.head_timeout
                line = self.rfile.readline(limits.max_request_line_bytes + 1)
                if line == b'\r\n':  # RFC 9112 section 2.2: ignore an empty line before a request
                    line = self.rfile.readline(limits.max_request_line_bytes + 1)
                method, target, version = self._parse_request_line(line)
                self._current = f'{method} {target}'
                request, keep_alive = self._read_request(method, target, version)
            except TimeoutError:
                status, sent = self._send_error(HTTPError(
                    408, 'the request was not received in time', error_type='RequestTimeout', close=True))
                return False
            except HTTPError as e:
                status, sent = self._send_error(e)
                return False
            extra_headers = observer.request_received(request) if observer is not None else ()
            try:
                response = self.server.app.handle(request)
            except ClientDisconnected:
                status = 499  # the client left while its call waited; nobody to answer
                return False
            response.headers.extend(extra_headers)
            keep_alive = keep_alive and not response.close and not self.server.draining
            status = response.status
            sent = self._send(response, method, version, keep_alive)
            return keep_alive
        finally:
            self.busy = False
            self.last_active = time.monotonic()
            if observer is not None:
                observer.request_finished(request, method, target, status, sent,
                                          time.monotonic() - self._started)

    def _parse_request_line(self, line: bytes) -> tuple[str, str, str]:
        limits = self.server.limits
        if len(line) > limits.max_request_line_bytes:
            raise HTTPError(414, f'request line is longer than {limits.max_request_line_bytes} bytes',
                            error_type='URITooLong', close=True)
        if not line.endswith(b'\n'):
            raise _Close()  # the connection ended mid-line: nobody to answer
        if not line.endswith(b'\r\n'):
            raise HTTPError(400, 'request line must end with CRLF', error_type='BadRequest', close=True)
        parts = line[:-2].split(b' ')
        if len(parts) != 3:
            raise HTTPError(400, 'malformed request line: expected "METHOD target HTTP/1.x"',
                            error_type='BadRequest', close=True)
        method, target, version = parts
        if not _TOKEN.fullmatch(method):
            raise HTTPError(400, 'malformed request method', error_type='BadRequest', close=True)
        if version not in (b'HTTP/1.1', b'HTTP/1.0'):
            status = 505 if re.fullmatch(rb'HTTP/\d\.\d', version) else 400
            raise HTTPError(status, 'only HTTP/1.0 and HTTP/1.1 are supported', close=True)
        if not target.startswith(b'/') or any(byte <= 0x20 or byte >= 0x7f for byte in target):
            raise HTTPError(400, 'request target must be an absolute path of visible ASCII characters',
                            error_type='BadRequest', close=True)
        return method.decode('ascii'), target.decode('ascii'), version.decode('ascii')

    def _read_request(self, method: str, target: str, version: str) -> tuple[Request, bool]:
        deadline = self._started + self.server.limits.head_timeout
        headers = self._read_headers(deadline)
        connection = (headers.get('Connection') or '').lower()
        if version == 'HTTP/1.1':
            keep_alive = 'close' not in connection
        else:
            keep_alive = 'keep-alive' in connection
        hosts = headers.get_all('Host')
        if len(hosts) > 1:
            raise HTTPError(400, 'more than one Host header', error_type='BadRequest', close=True)
        if version == 'HTTP/1.1' and not hosts:
            raise HTTPError(400, 'HTTP/1.1 request without a Host header', error_type='BadRequest', close=True)
        body = self._read_body(headers)
        path, _, query = target.partition('?')
        request = Request(method, path, query, headers, body, self.client_address, raw_path=path,
                          http_version=version, server=self.server.server_address[:2],
                          is_disconnected=self._is_disconnected)
        return request, keep_alive

    def _read_headers(self, deadline: float) -> Headers:
        fields: list[tuple[str, str]] = []
        limits = self.server.limits
        for name, value in self._read_fields(deadline, limits.max_header_bytes):
            if len(fields) >= limits.max_header_fields:
                raise HTTPError(431, f'more than {limits.max_header_fields} header fields',
                                error_type='RequestHeaderFieldsTooLarge', close=True)
            fields.append((name, value))
        return Headers(fields)

    def _read_fields(self, deadline: float, budget: int) -> Iterator[tuple[str, str]]:
        """Header (or trailer) fields up to the empty line, `budget` bytes in all, strictly checked."""
        while True:
            self._settimeout(deadline)
            line = self.rfile.readline(budget + 1)
            budget -= len(line)
            if budget < 0:
                raise HTTPError(431, f'request headers exceed {self.server.limits.max_header_bytes} bytes',
                                error_type='RequestHeaderFieldsTooLarge', close=True)
            if not line.endswith(b'\n'):
                raise _Close()  # the connection ended mid-line
            if not line.endswith(b'\r\n'):
                raise HTTPError(400, 'header lines must end with CRLF', error_type='BadRequest', close=True)
            if line == b'\r\n':
                return
            if line[0] in b' \t':
                raise HTTPError(400, 'obsolete header line folding is not accepted', error_type='BadRequest',
                                close=True)
            name, colon, value = line[:-2].partition(b':')
            if not colon or not _TOKEN.fullmatch(name):
                raise HTTPError(400, 'malformed header line: expected "Name: value"', error_type='BadRequest',
                                close=True)
            if _FIELD_CONTROL.search(value):
                raise HTTPError(400, f'header {name.decode()} contains a control character',
                                error_type='BadRequest', close=True)
            yield name.decode('ascii'), value.strip(b' \t').decode('latin-1')

    def _read_body(self, headers: Headers) -> bytes:
        limits = self.server.limits
        lengths = headers.get_all('Content-Length')
        encoding = headers.get('Transfer-Encoding')
        if encoding is not None and lengths:
            raise HTTPError(400, 'Content-Length and Transfer-Encoding together are not accepted',
                            error_type='BadRequest', close=True)
        if encoding is not None:
            if encoding.strip().lower() != 'chunked':
                raise HTTPError(501, f'Transfer-Encoding {encoding!r} is not supported; only chunked is',
                                close=True)
            self._continue(headers)
            return self._read_chunked(time.monotonic() + limits.head_timeout)
        if not lengths:
            return b''
        values = {value.strip() for field in lengths for value in field.split(',')}
        if len(values) != 1:
            raise HTTPError(400, 'conflicting Content-Length values', error_type='BadRequest', close=True)
        text = values.pop()
        if not text.isdigit() or not text.isascii():
            raise HTTPError(400, f'invalid Content-Length {text[:40]!r}: expected a non-negative integer',
                            error_type='BadRequest', close=True)
        # A length with more digits than any limit needs is too large whatever it says; checked
        # before int(), which refuses strings of thousands of digits.
        length = int(text) if len(text) <= 18 else limits.max_body_bytes + 1
        if length > limits.max_body_bytes:
            size = f'{length} bytes' if len(text) <= 18 else f'{len(text)} digits'
            raise HTTPError(413, f'request body of {size} exceeds the limit of {limits.max_body_bytes} bytes',
                            error_type='ContentTooLarge', close=True)
        if length == 0:
            return b''
        self._continue(headers)
        return self._read_exact(length, time.monotonic() + limits.head_timeout + length / _MIN_BODY_RATE)

    def _read_exact(self, length: int, deadline: float) -> bytes:
        chunks = []
        remaining = length
        while remaining:
            self._settimeout(deadline)
            chunk = self.rfile.read1(min(remaining, 1 << 16))
            if not chunk:
                raise _Close()  # the client went away mid-body: nobody to answer
            chunks.append(chunk)
            remaining -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b''.join(chunks)

    def _read_chunked(self, deadline: float) -> bytes:
        limits = self.server.limits
        chunks: list[bytes] = []
        total = 0
        while True:
            self._settimeout(deadline)
            line = self.rfile.readline(_MAX_CHUNK_LINE + 1)
            if not line.endswith(b'\n') and len(line) <= _MAX_CHUNK_LINE:
                raise _Close()  # the connection ended mid-line
            if not line.endswith(b'\r\n'):
                raise HTTPError(400, 'malformed chunk size line', error_type='BadRequest', close=True)
            size_text, semicolon, _ = line[:-2].partition(b';')
            if semicolon:
                size_text = size_text.rstrip(b' \t')
            # Strict hex only: int(..., 16) would also take '0x10', '1_0' and surrounding spaces,
            # which another parser in front of this one may read differently.
            if not _HEX.fullmatch(size_text):
                raise HTTPError(400, f'malformed chunk size {size_text[:20].decode("latin-1")!r}',
                                error_type='BadRequest', close=True)
            size = int(size_text, 16) if len(size_text) <= 16 else limits.max_body_bytes + 1
            if size == 0:
                break
            total += size
            if total > limits.max_body_bytes:
                raise HTTPError(413, f'chunked request body exceeds the limit of {limits.max_body_bytes} bytes',
                                error_type='ContentTooLarge', close=True)
            deadline += size / _MIN_BODY_RATE
            chunks.append(self._read_exact(size, deadline))
            if self._read_exact(2, deadline) != b'\r\n':
                raise HTTPError(400, 'chunk data not followed by CRLF', error_type='BadRequest', close=True)
        for _ in self._read_fields(deadline, limits.max_header_bytes):
            pass  # trailer fields are checked like headers, then ignored
        return b''.join(chunks)

    def _continue(self, headers: Headers) -> None:
        if (headers.get('Expect') or '').lower() == '100-continue':
            self.connection.sendall(b'HTTP/1.1 100 Continue\r\n\r\n')

    def _settimeout(self, deadline: float) -> None:
        """Bound the coming reads by `deadline`; 408 if it has passed already."""
        if deadline <= time.monotonic():
            raise HTTPError(408, 'the request was not received in time', error_type='RequestTimeout', close=True)
        self._reader.deadline = deadline

    def _is_disconnected(self) -> bool:
        """True when the client has closed its end (checked while a request waits in a queue)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b''
        except (OSError, ValueError):
            return True

    # -- writing ------------------------------------------------------------------------------

    def _send_error(self, error: HTTPError) -> tuple[int, int]:
        """Answer a request that could not be read whole, then close without a reset."""
        response = http_error_response(error)
        try:
            sent = self._send(response, 'GET', 'HTTP/1.1', keep_alive=False)
        except OSError:
            return error.status, 0
        self._unread_input = True  # lingered over once the request is logged and counted
        return error.status, sent

    def _linger(self) -> None:
        """Half-close, and discard what the client still sends for a moment (RFC 9112 section 9.6).

        Closing with unread input makes the kernel reset the connection, and a client still
        sending its body may then lose the answer before reading it. Bounded in time and bytes.
        """
        self._reader.deadline = time.monotonic() + _LINGER_SECONDS
        discarded = 0
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while discarded < _LINGER_BYTES:
                data = self.rfile.read1(65536)
                if not data:
                    return
                discarded += len(data)
        except OSError:  # TimeoutError at the deadline, or the client reset the connection
            pass

    def _send(self, response: Response, method: str, version: str, keep_alive: bool) -> int:
        """Write status line, headers and body; bytes bodies go out in one `sendall`. Returns bytes sent."""
        status = response.status
        has_body = method != 'HEAD' and status not in _BODYLESS_STATUSES and status >= 200
        stream = response.stream
        chunked = stream is not None and response.content_length is None and version == 'HTTP/1.1'
        if stream is not None and response.content_length is None and not chunked:
            keep_alive = False  # an HTTP/1.0 client learns the end of the body from the close
        lines = [f'HTTP/1.1 {status} {_phrase(status)}\r\n']
        lines += [f'{name}: {value}\r\n' for name, value in response.headers]
        if status not in _BODYLESS_STATUSES:
            if chunked:
                lines.append('Transfer-Encoding: chunked\r\n')
            elif response.content_length is not None:
                lines.append(f'Content-Length: {response.content_length}\r\n')
        lines.append('Connection: keep-alive\r\n\r\n' if keep_alive else 'Connection: close\r\n\r\n')
        head = ''.join(lines).encode('latin-1')
        if stream is None:
            data = head + response.body if has_body else head
            self._send_body(data)
            return len(data)
        return self._send_stream(head, stream, chunked, has_body)

    def _send_body(self, data: bytes) -> None:
        """Send a whole response, its first send taking a turn under the server's `send_turn` lock.

        With dozens of threads, CPython hands the GIL to whichever thread wakes first, so some
        connections starve: p99 at 64 connections was 600-800 ms. Holding one lock across the
        send system call (which releases the GIL) makes the threads take turns in the lock's
        FIFO order: p99 40 ms, and 10% more requests per second from fewer GIL hand-offs. The
        send under the lock never blocks (MSG_DONTWAIT), so a slow reader cannot hold the turn:
        what its socket buffer does not take goes out after the lock is released.
        """
        with self.server.send_turn:
            try:
                sent = self.connection.send(data, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
        if sent < len(data):
            self.connection.sendall(memoryview(data)[sent:])

    def _send_stream(self, head: bytes, stream: Iterable[bytes], chunked: bool, has_body: bool = True) -> int:
        sent = 0
        pending = head
        try:
            # A body-less answer (HEAD, 304) still closes the stream, as WSGI iterables require.
            for chunk in stream if has_body else ():
                if not chunk:
                    continue
                data = b'%x\r\n%s\r\n' % (len(chunk), chunk) if chunked else chunk
                self.connection.sendall(pending + data)
                sent += len(pending) + len(data)
                pending = b''
            tail = pending + (b'0\r\n\r\n' if chunked else b'')
            if tail:
                self.connection.sendall(tail)
                sent += len(tail)
        finally:
            close = getattr(stream, 'close', None)
            if close is not None:
                close()
        return sent

    def log_message(self, format: str, *args: Any) -> None:
        """Silence BaseHTTPRequestHandler's stderr lines; access logs go through the observer."""


# Looked up per response: a dict, not an Enum call.
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def _phrase(status: int) -> str:
    return _PHRASES.get(status, 'Unknown')
