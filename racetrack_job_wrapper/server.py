"""The HTTP server: a ThreadingHTTPServer subclass with bounded reads, keep-alive and graceful drain.

Only this module touches sockets. The handler reads the whole request (line, headers, body,
framed by `http11`) under limits before any route sees it, so every response path leaves the
connection clean for the next keep-alive request; a request it cannot read whole is answered
and closed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import math
import os
import resource
import select
import socket
import struct
import threading
import time
import typing
import weakref
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from racetrack_job_wrapper import http11
from racetrack_job_wrapper.messages import (
    ClientDisconnected,
    HTTPError,
    Request,
    Response,
    encode_json,
    http_error_response,
)
from racetrack_job_wrapper.settings import Limits

logger = logging.getLogger(__name__)

_BODYLESS_STATUSES = frozenset({204, 304})
# After an error that closes, what the client still sends is discarded before the close, as
# closing with unread input resets the connection and the answer can be lost unread. An ordinary
# client (http.client, requests) reads nothing until it has sent its whole body, so a body refused
# with 413 must be let in to its end: up to twice `max_body_bytes` (at least 128 MiB), so that a
# client somewhat over the limit reads its 413, for as long as it keeps coming at a network's pace
# (a second, plus one per 8 MiB, i.e. 67 Mbit/s). A trickle is cut after about a second, and at
# the default limit no client holds its thread longer than 17 s; past either bound it is reset.
_LINGER_SECONDS = 1.0
_LINGER_RATE = 8 << 20  # bytes/s
_LINGER_BYTES = 128 << 20  # the least that is discarded, however low max_body_bytes is
# On a drain, a keep-alive connection that was busy this recently is likely to carry another
# request any moment; closing it now would race that request, so it gets this long to send it.
_DRAIN_IDLE_WINDOW = 0.5
# What the connection cap leaves of RLIMIT_NOFILE. A connection holds its socket and, while a
# response streams a file (static files), that file. The process needs a few of its own: stdio,
# the listener, the selector, the reserve below, --workers' metric files (one per metric kind),
# log files; the rest of the 32 is left to the files the job itself opens.
_DESCRIPTORS_PER_CONNECTION = 2
_PROCESS_DESCRIPTORS = 32
# With no descriptor to refuse a waiting connection on, accept fails at once for as long as it
# waits: the accept loop pauses this long instead of spinning.
_ACCEPT_BACKOFF = 0.1
# Resource exhaustion is logged at most once per this many seconds, not once per connection.
_WARNING_INTERVAL = 10.0
# At the connection cap, a new connection takes the place of the one that has waited longest
# for its request (idle, or still sending its head) once that one's thread has let it go; the
# accept loop waits at most this long for it.
_EVICTION_WAIT = 0.1


class RequestObserver(Protocol):
    """Told about every answered request (access log, server-wide metrics)."""

    def request_started(self) -> None: ...

    def request_received(self, request: Request) -> list[tuple[str, str]]:
        """Called before the app sees a request; returns headers to add to its response."""

    def connection_refused(self, reason: str) -> None: ...

    def request_finished(
        self,
        request: Request | None,
        method: str,
        target: str,
        status: int,
        sent: int,
        seconds: float,
        rejected: str | None = None,
    ) -> None:
        """Called once a request is over; `rejected` is the reason when it was refused before a `Request` existed."""


class AppLike(Protocol):
    """Anything with `handle(Request) -> Response`."""

    def handle(self, request: Request) -> Response: ...


class JobServer(ThreadingHTTPServer):
    """ThreadingHTTPServer serving one `app` (swappable while running) with limits and a graceful drain."""

    daemon_threads = True
    request_queue_size = 1024  # the stock 5 overflows under a burst of connections
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        app: AppLike,
        limits: Limits | None = None,
        observer: RequestObserver | None = None,
        bind_and_activate: bool = True,
        listener: socket.socket | None = None,
    ):
        self.app = app
        self.limits = limits if limits is not None else Limits()
        self.observer = observer
        self.draining = False
        # False from a shutdown's first moment: each response then says `Connection: close`, so a
        # keep-alive client's next request opens a connection the load balancer sends elsewhere.
        self.keep_alive = True
        self._drain_deadline = math.inf
        # Every bytes response's first send passes this lock: see RequestHandler._send_body.
        self.send_turn = threading.Lock()
        self._handlers: set[RequestHandler] = set()
        # Counted when accepted, not when the thread starts, so a burst cannot overshoot the cap
        # and a drain never misses a connection whose thread has not run yet.
        self._connections = 0
        self._per_client: dict[str, int] = {}  # connections by client address, with max_client_connections
        self._handlers_lock = threading.Lock()
        self._idle = threading.Condition(self._handlers_lock)
        self.connection_cap, self._full_message = _connection_cap(self.limits.max_connections)
        # Held open to be closed when accept runs out of descriptors: the one it frees lets a
        # waiting connection be accepted and refused at once, instead of hanging in the backlog.
        self._reserve: int | None = _open_reserve()
        self._warned: dict[str, float] = {}
        self._unwarned: dict[str, int] = {}
        if listener is None:
            self.address_family = address_family(*address)
            super().__init__(address, RequestHandler, bind_and_activate)
        else:
            super().__init__(listener.getsockname()[:2], RequestHandler, bind_and_activate=False)
            self.socket.close()
            self.socket = listener

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a thread for the connection, or refuse it with 503 when no place is free or no thread starts.

        At `connection_cap` (or a client address's `max_client_connections`), the connection that
        has waited longest for a request of its own is closed to make the place: a client that
        opens connections and sends nothing (or sends its head a byte at a time) cannot keep
        others out, however fast it reconnects. A connection with a request in progress is never
        closed, so past the cap with none waiting the answer is 503. While draining, a connection
        still accepted is served one request with `Connection: close`.
        """
        address = str(client_address[0]) if client_address else ''
        refusal = self._admit(address)
        if refusal is not None:
            self._refuse_connection(request, refusal, 'connection_limit')
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError as e:  # can't start new thread: out of memory or of the process's thread limit
            self._forget_connection(address)
            self._warn('threads', 'cannot start a connection thread (%s): connections get 503', e)
            self._refuse_connection(request, 'no thread to serve the connection', 'connection_limit')
        except BaseException:
            self._forget_connection(address)
            raise

    def _admit(self, address: str) -> str | None:
        """Count a new connection from `address`, making a place for it if needed; the refusal message if none."""
        per_client = self.limits.max_client_connections
        with self._handlers_lock:
            client_full = per_client and self._per_client.get(address, 0) >= per_client
            if client_full and not self._make_room(lambda: self._per_client.get(address, 0) < per_client, address):
                return f'too many connections from {address} (max_client_connections is {per_client})'
            full = self._connections >= self.connection_cap
            if full and not self._make_room(lambda: self._connections < self.connection_cap):
                return self._full_message
            self._connections += 1
            if per_client:
                self._per_client[address] = self._per_client.get(address, 0) + 1
        return None

    def _make_room(self, has_room: Callable[[], bool], address: str | None = None) -> bool:
        """Close the connection (of `address`, if given) waiting longest for a request; wait for its place.

        Called holding `_handlers_lock`; False when no connection is waiting or none let go in time.
        """
        waiting = [
            handler
            for handler in self._handlers
            if handler.waiting_since is not None and (address is None or handler.client_address[0] == address)
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda handler: typing.cast(float, handler.waiting_since))
        oldest.evict()
        if self.observer is not None:
            self.observer.connection_refused('evicted')
        deadline = time.monotonic() + _EVICTION_WAIT
        while not has_room():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._idle.wait(remaining)
        return True

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept a connection; out of descriptors, refuse one waiting connection (or pause) and raise."""
        try:
            return self.socket.accept()
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                self._refuse_without_descriptors(e)
            raise  # socketserver skips an accept that raised OSError

    def _refuse_without_descriptors(self, error: OSError) -> None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        message = 'out of file descriptors (%s; the limit is %d): connections get 503'
        self._warn('descriptors', message, error, soft_limit)
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
            with contextlib.suppress(OSError):  # gone, or another worker or thread took it first
                request, _ = self.socket.accept()
                self._refuse_connection(request, 'out of file descriptors', 'connection_limit')
            self._reserve = _open_reserve()
        if self._reserve is None:  # taken by another thread: nothing to refuse on until some close
            time.sleep(_ACCEPT_BACKOFF)
            self._reserve = _open_reserve()

    def _refuse_connection(self, request: socket.socket, message: str, reason: str) -> None:
        _refuse(request, 503, message)
        if self.observer is not None:
            self.observer.connection_refused(reason)
        self.shutdown_request(request)

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        """Log a warning about `kind` unless one was logged in the last `_WARNING_INTERVAL` seconds."""
        now = time.monotonic()
        if now - self._warned.get(kind, -math.inf) < _WARNING_INTERVAL:
            self._unwarned[kind] = self._unwarned.get(kind, 0) + 1
            return
        self._warned[kind] = now
        suppressed = self._unwarned.pop(kind, 0)
        logger.warning(message + (f' ({suppressed} more since the last message)' if suppressed else ''), *args)

    def server_close(self) -> None:
        super().server_close()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection in its own thread; it stops counting towards the cap when it ends."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget_connection(str(client_address[0]) if client_address else '')

    def _forget_connection(self, address: str) -> None:
        with self._handlers_lock:
            self._connections -= 1
            count = self._per_client.pop(address, 0) - 1
            if count > 0:
                self._per_client[address] = count
            self._idle.notify_all()

    def connection_count(self) -> int:
        """Connections accepted and not yet closed."""
        with self._handlers_lock:
            return self._connections

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log an unexpected error of one connection; the server keeps serving."""
        logger.exception('connection from %s failed', client_address[0] if client_address else '?')

    def track(self, handler: RequestHandler, active: bool) -> None:
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
        self._drain_deadline = min(self._drain_deadline, time.monotonic() + grace)
        self.draining = True
        self.keep_alive = False
        self.shutdown()  # stops serve_forever's accept loop
        waiting = self._take_backlog()
        self.socket.close()  # new connections are refused by the kernel from here on
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
                remaining = self._drain_deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(min(remaining, 0.05))
            cut = [handler.describe() for handler in self._handlers if handler.busy]
        if cut:
            logger.error('grace period of %.1fs over; %d request(s) cut: %s', grace, len(cut), '; '.join(cut))
            return False
        return True

    def cut_short(self) -> None:
        """End a drain now (a second Ctrl-C): the requests still running are logged as cut."""
        with self._handlers_lock:
            self._drain_deadline = -math.inf
            self._idle.notify_all()

    def _take_backlog(self) -> list[tuple[socket.socket, Any]]:
        """The connections waiting in the kernel's listen queue, taken without blocking.

        Only accepted here, served after the listening socket is closed: starting threads in
        this loop would let clients that reconnect at once keep the queue from ever emptying.
        """
        self.socket.setblocking(False)
        taken: list[tuple[socket.socket, Any]] = []
        while len(taken) < self.request_queue_size:
            try:
                request, client_address = self.socket.accept()
            except OSError:  # BlockingIOError once the queue is empty
                break
            request.setblocking(True)
            taken.append((request, client_address))
        return taken


def address_family(host: str, port: int) -> socket.AddressFamily:
    """AF_INET or AF_INET6, as `host` (an address or a name) resolves; OSError (socket.gaierror) if it does not."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]


def listen_url(host: str, port: int) -> str:
    """`http://host:port`, an IPv6 address in brackets, for the log."""
    return f'http://[{host}]:{port}' if ':' in host else f'http://{host}:{port}'


def exit_unable_to_listen(host: str, port: int, error: OSError) -> typing.NoReturn:
    """Log in one line why `host:port` cannot be listened on (taken, not this machine's, no such name); exit 1."""
    reason = os.strerror(error.errno) if isinstance(error.errno, int) and error.errno > 0 else str(error)
    logger.error('cannot listen on %s: %s', listen_url(host, port), reason)
    raise SystemExit(1) from None


def shared_listener(address: tuple[str, int]) -> socket.socket:
    """A bound, listening socket for several worker processes to accept from (`JobServer(listener=...)`)."""
    family = address_family(*address)
    sock = socket.create_server(address, family=family, backlog=JobServer.request_queue_size)
    # Every worker wakes for a new connection and only one wins the accept; the others must
    # get EAGAIN (which socketserver ignores) instead of blocking their serve loop.
    sock.setblocking(False)
    return sock


def _connection_cap(max_connections: int) -> tuple[int, str]:
    """`max_connections`, lowered to what RLIMIT_NOFILE leaves room for, and the 503 message past it."""
    soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    fitting = max(1, (soft_limit - _PROCESS_DESCRIPTORS) // _DESCRIPTORS_PER_CONNECTION)
    if soft_limit == resource.RLIM_INFINITY or fitting >= max_connections:
        return max_connections, f'too many connections (max_connections is {max_connections})'
    logger.warning(
        'at most %d connections, not max_connections %d: the open file limit (ulimit -n) is %d',
        fitting,
        max_connections,
        soft_limit,
    )
    return fitting, f'too many connections ({fitting}, as the open file limit is {soft_limit})'


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def _refuse(sock: socket.socket, status: int, reason: str) -> None:
    body = encode_json({'error': reason, 'type': HTTPStatus(status).phrase.replace(' ', '')})
    head = (
        f'HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n'
        f'Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n'
    )
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
    """The connection's raw reads, each bounded by the time left until its `_Input`'s deadline (kernel SO_RCVTIMEO).

    The socket stays in blocking mode, so a read is one `recv`: a Python socket timeout would
    add a `poll` before every `recv` and an `ioctl` per `settimeout`, each a GIL hand-off that
    costs dearly with many connection threads. The timeout is armed only when a read reaches
    the socket (most header lines and bodies come from the buffer) and only when it changes;
    rounding it up to 0.1 s keeps it unchanged across keep-alive requests, and lets a deadline
    be overrun by at most that much.
    """

    def __init__(self, sock: socket.socket, owner: weakref.ref[_Input]):
        super().__init__()
        self._sock = sock
        # Weak, as the owner holds this reader: no reference cycle for the garbage collector to find.
        self._owner = owner
        self._armed = 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        owner = self._owner()
        deadline = owner.deadline if owner is not None else 0.0  # no owner: nobody is reading
        timeout = math.ceil((deadline - time.monotonic()) * 10) / 10
        if timeout <= 0:
            raise TimeoutError('read deadline passed')
        if timeout != self._armed:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            self._armed = timeout
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:  # what an expired SO_RCVTIMEO raises on a blocking socket
            raise TimeoutError('read timed out') from None


class _Input(io.BufferedReader):
    """The connection's buffered input, an `http11.Reader`: `deadline` bounds each read that reaches the socket.

    A plain attribute the raw reader looks up, not a property passing it on: it is set several
    times per request, and reaches the socket about once.
    """

    def __init__(self, sock: socket.socket):
        self.deadline = math.inf
        super().__init__(_DeadlineReader(sock, weakref.ref(self)))


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
        # Since when this connection waits for a request of its own: idle, or receiving the head.
        # None while a request is read past its head or answered; such a connection is never evicted.
        self.waiting_since: float | None = self.last_active
        self._unread_input = False
        self._current = ''
        self._started = 0.0
        host, port = self.server.server_address[:2]
        self._server_address = (str(host), port)  # a TCP server's: the host is text
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Blocking mode with kernel timeouts instead of Python's socket timeout (see _DeadlineReader);
        # a client that stops reading our response is dropped after the idle timeout.
        self.connection.settimeout(None)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.server.limits.idle_timeout))
        self.rfile.close()
        self._input = _Input(self.connection)
        self.rfile = self._input
        self.server.track(self, True)

    def finish(self) -> None:
        self.server.track(self, False)
        with contextlib.suppress(OSError):
            super().finish()

    def interrupt(self) -> None:
        """Wake an idle connection blocked waiting for its next request, so it closes."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RD)

    def evict(self) -> None:
        """Close this connection, waiting for a request, to make room for another (called under the handlers' lock)."""
        self.waiting_since = None  # evicted once
        self.interrupt()

    def describe(self) -> str:
        """What this connection is doing, for logs about cut requests."""
        return f'{self._current} from {self.client_address[0]} for {time.monotonic() - self._started:.1f}s'

    def handle(self) -> None:
        try:
            while self._serve_one():
                pass
            if self._unread_input:
                self._linger()
        except (http11.IncompleteRequest, ConnectionError, TimeoutError):
            pass
        except OSError as e:
            logger.debug('connection from %s ended: %s', self.client_address[0], e)

    # -- one request ------------------------------------------------------------------------

    def _serve_one(self) -> bool:
        """Read, answer and log one request; False when the connection must close."""
        limits = self.server.limits
        reader = self._input
        reader.deadline = time.monotonic() + limits.idle_timeout
        if not reader.peek(1):
            return False  # closed while idle (by the client, or by a drain)
        self.busy = True
        self._started = time.monotonic()
        observer = self.server.observer
        if observer is not None:
            observer.request_started()
        request: Request | None = None
        method, target, status, sent, rejected = '-', '-', 0, 0, None
        try:
            try:
                # One deadline for the whole head from its first byte, each read bounded by what
                # is left of it, so a byte now and then cannot keep a thread forever.
                head_deadline = self._started + limits.head_timeout
                method, target, version = http11.read_request_line(reader, limits, head_deadline)
                self._current = f'{method} {target}'
                head = http11.read_head(reader, version, limits, head_deadline)
                self.waiting_since = None
                if head.expect_continue:
                    self.connection.sendall(http11.CONTINUE)
                body = http11.read_body(reader, head, limits, limits.head_timeout)
            except HTTPError as e:
                status, sent = self._send_error(e, method)
                rejected = e.rejected
                return False
            path, _, query = target.partition('?')
            request = Request(
                method,
                path,
                query,
                head.headers,
                body,
                self.client_address,
                raw_path=path,
                http_version=version,
                server=self._server_address,
                is_disconnected=self._is_disconnected,
            )
            extra_headers = observer.request_received(request) if observer is not None else ()
            try:
                response = self.server.app.handle(request)
            except ClientDisconnected:
                status = 499  # the client left while its call waited; nobody to answer
                return False
            response.headers.extend(extra_headers)
            keep_alive = head.keep_alive and not response.close and self.server.keep_alive
            status = response.status
            if keep_alive:
                # Waiting for the next request from here: an eviction only stops reading, so
                # this response is still sent in full.
                self.waiting_since = time.monotonic()
            sent = self._send(response, method, version, keep_alive)
            return keep_alive
        finally:
            self.busy = False
            self.last_active = time.monotonic()
            if observer is not None:
                observer.request_finished(
                    request, method, target, status, sent, time.monotonic() - self._started, rejected
                )

    def _is_disconnected(self) -> bool:
        """True when the client has closed its end (checked while a request waits in a queue)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
            return not peeked
        except (OSError, ValueError):
            return True

    # -- writing ------------------------------------------------------------------------------

    def _send_error(self, error: HTTPError, method: str) -> tuple[int, int]:
        """Answer a request that could not be read whole, then close without a reset.

        `method` is '-' when the request line could not be read; a HEAD is answered without a body.
        """
        response = http_error_response(error)
        try:
            sent = self._send(response, method, 'HTTP/1.1', keep_alive=False)
        except OSError:
            return error.status, 0
        self._unread_input = True  # lingered over once the request is logged and counted
        return error.status, sent

    def _linger(self) -> None:
        """Half-close, and discard what the client still sends for a moment (RFC 9112 section 9.6).

        Closing with unread input makes the kernel reset the connection, and a client still
        sending its body may then lose the answer before reading it. Bounded in time and bytes.
        """
        started = time.monotonic()
        discarded = 0
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while discarded < max(_LINGER_BYTES, 2 * self.server.limits.max_body_bytes):
                self._input.deadline = started + _LINGER_SECONDS + discarded / _LINGER_RATE
                data = self._input.read1(65536)
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
