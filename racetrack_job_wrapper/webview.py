"""The webview: a job's WSGI or ASGI app mounted at /api/v1/webview/, and its static/ directory.

How the kind of app is told, once at start-up: an ASGI app is an *asynchronous* callable
(an `async def` function or method, an object whose `__call__` is `async def`, anything
`inspect.markcoroutinefunction` marked) or an object wrapped in `ASGIApp(app)`; it is called
as `await app(scope, receive, send)`. Everything else is a WSGI app, called as
`app(environ, start_response)`. Should a WSGI call hand back an awaitable after all (a sync
callable fronting an ASGI app), the request fails with a 500 saying to wrap it in `ASGIApp`.

A WSGI app routes on the full `base_url` (`/pub/job/{name}/{version}/api/v1/webview`), as the
user guide's Flask example does: it always sees `PATH_INFO` as `base_url + '/rest'` and an empty
`SCRIPT_NAME`, whether the request came in under the prefix or at the root.

An ASGI app is mounted as Starlette's `Mount` mounts it (and so as racetrack-job-runner serves
it): `path` and `raw_path` are the whole request path as it arrived, `root_path` is that path up
to and including `/api/v1/webview` (with the prefix and version the request named, or bare at
the root), so a FastAPI app routes on `/` and its links carry the prefix the request used.
"""

from __future__ import annotations

import inspect
import io
import logging
import queue
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from racetrack_job_wrapper.asyncloop import AsyncRunner
from racetrack_job_wrapper.messages import JobDefinitionError, Request, Response, error_response
from racetrack_job_wrapper.routing import Route
from racetrack_job_wrapper.static import MimeGuesser, StaticDirectory

if TYPE_CHECKING:
    import asyncio

logger = logging.getLogger(__name__)

MOUNT = '/webview'
METHODS = ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')
# Connection-level headers belong to the server, never to the app (PEP 3333, "Other HTTP Features").
_HOP_BY_HOP = frozenset(
    {
        'connection',
        'keep-alive',
        'proxy-authenticate',
        'proxy-authorization',
        'te',
        'trailers',
        'transfer-encoding',
        'upgrade',
        'content-length',
    }
)
# The request body reaches the app de-chunked and whole, so these request headers no longer describe it.
_CONSUMED_REQUEST_HEADERS = frozenset({'content-type', 'content-length', 'transfer-encoding'})


class ASGIApp:
    """Marks an app as ASGI when it is not an `async def` callable itself: `return ASGIApp(app)`."""

    def __init__(self, app: Callable[..., Any]):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await self.app(scope, receive, send)


def is_asgi(app: Any) -> bool:
    """True when `app` follows the ASGI calling convention as documented in this module."""
    if isinstance(app, ASGIApp) or inspect.iscoroutinefunction(app):
        return True
    if inspect.isfunction(app) or inspect.ismethod(app):
        return False
    # Every class has `__call__`: its own, or `type.__call__` (never a coroutine function) if it defines none.
    return inspect.iscoroutinefunction(type(app).__call__)


def webview_base_url(name: str, version: str, api_prefix: str) -> str:
    """The `base_url` given to `webview_app()`: `/pub/job/{name}/{version}/api/v1/webview`."""
    return f'/pub/job/{name}/{version}{api_prefix}{MOUNT}'


def create_webview_app(entrypoint: Any, base_url: str) -> Any:
    """Call the job's `webview_app(base_url)`; None when it has none. Raises JobDefinitionError."""
    factory = getattr(entrypoint, 'webview_app', None)
    if factory is None:
        return None
    if not callable(factory):
        raise JobDefinitionError('webview_app must be a method taking base_url')
    try:
        app = factory(base_url)
    except Exception as e:
        raise JobDefinitionError(f'webview_app({base_url!r}) raised {type(e).__name__}: {e}') from e
    if app is not None and not callable(app):
        raise JobDefinitionError(f'webview_app() must return a WSGI or ASGI app, got {type(app).__name__}')
    return app


def webview_routes(
    app: Any,
    base_url: str,
    api_prefix: str,
    *,
    static_dir: Any = None,
    async_runner: AsyncRunner | None = None,
    guesser: MimeGuesser | None = None,
) -> list[Route]:
    """Routes mounting `app` at `{api_prefix}/webview/`, its redirect, and `static_dir` (if a directory)."""
    mount = api_prefix + MOUNT
    if is_asgi(app):
        if async_runner is None:
            raise ValueError('an ASGI webview needs an AsyncRunner')
        bridge: Callable[[Request], Response] = ASGIBridge(app, mount, async_runner)
        logger.info('webview (ASGI) mounted at %s/', mount)
    else:
        bridge = WSGIBridge(app, base_url)
        logger.info('webview (WSGI) mounted at %s/', mount)

    def to_slash(request: Request) -> Response:
        if request.base_path + mount == base_url:
            # The exact base_url the app was given is served as its slash form, as in the existing
            # implementation, so a link to `base_url` itself works.
            request.path, request.raw_path = mount + '/', request.raw_path + '/'
            return bridge(request)
        location = f'{request.base_path}{mount}/' + (f'?{request.query}' if request.query else '')
        # 307 keeps the method and body of a POST.
        return Response(b'', 307, headers={'Location': location})

    owner = f'the webview mounted at {mount}/'
    routes = [
        Route(mount, {method: to_slash for method in METHODS}, owner),
        Route(mount + '/*', {method: bridge for method in METHODS}, owner),
    ]
    if static_dir is not None and static_dir.is_dir():
        directory = StaticDirectory(static_dir, guesser or MimeGuesser())
        routes.append(Route(mount + '/static/*', {'GET': directory.respond}, owner))
        logger.info('webview static directory %s served at %s/static/', static_dir, mount)
    return routes


def _rest(request: Request) -> str:
    return '/' + request.path_params.get('subpath', '')


def _client_host(request: Request) -> str:
    client = request.client
    return str(client[0]) if client else ''


def _server(request: Request) -> tuple[str, int]:
    """(name, port): the Host the client asked for, else the address the server is bound to."""
    bound = request.server
    port = int(bound[1])
    host = request.headers.get('Host')
    if host:
        name = host.rsplit(':', 1)[0] if not host.endswith(']') else host
        return name.strip('[]') or str(bound[0]), port
    return str(bound[0]), port


class _Aborted(ConnectionAbortedError):
    """The app failed after the response began; the server can only close the connection."""


class _LogStream(io.TextIOBase):
    """`wsgi.errors`: what the app writes goes to this module's logger, line by line."""

    def __init__(self) -> None:
        self._pending = ''

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split('\n')
        for line in lines:
            logger.error('webview: %s', line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:  # type: ignore[override]  # typeshed's IOBase takes bytes
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            logger.error('webview: %s', self._pending)
            self._pending = ''


# -- WSGI ---------------------------------------------------------------------------------------


def build_environ(request: Request, path_info: str) -> dict[str, Any]:
    """A PEP 3333 environ for `request`, shaped like wsgiref's, with PATH_INFO `path_info` and no SCRIPT_NAME."""
    server_name, server_port = _server(request)
    content_type = request.headers.get('Content-Type')
    environ: dict[str, Any] = {
        'REQUEST_METHOD': request.method,
        'SCRIPT_NAME': '',
        # PEP 3333 "native strings": the path's UTF-8 bytes, each as one latin-1 character.
        'PATH_INFO': path_info.encode('utf-8').decode('latin-1'),
        'QUERY_STRING': request.query,
        'CONTENT_LENGTH': str(len(request.body)),
        'SERVER_NAME': server_name,
        'SERVER_PORT': str(server_port),
        'SERVER_PROTOCOL': request.http_version,
        'REMOTE_ADDR': _client_host(request),
        'wsgi.version': (1, 0),
        'wsgi.url_scheme': 'http',
        'wsgi.input': io.BytesIO(request.body),
        'wsgi.input_terminated': True,
        'wsgi.errors': _LogStream(),
        'wsgi.multithread': True,
        'wsgi.multiprocess': False,
        'wsgi.run_once': False,
    }
    if content_type is not None:
        environ['CONTENT_TYPE'] = content_type
    if request.client and len(request.client) > 1:
        environ['REMOTE_PORT'] = str(request.client[1])
    for name, value in request.headers.items():
        lowered = name.lower()
        # Names with `_` are dropped: `X_A` and `X-A` would both become HTTP_X_A (header smuggling).
        if lowered in _CONSUMED_REQUEST_HEADERS or '_' in name:
            continue
        key = 'HTTP_' + name.upper().replace('-', '_')
        environ[key] = f'{environ[key]},{value}' if key in environ else value
    return environ


class _WSGIExchange:
    """The state of one WSGI call: `start_response`, `write()`, and whether headers went out."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.content_length: int | None = None
        self.written: list[bytes] = []
        self.headers_sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the traceback cycle, as PEP 3333 asks
        elif self.status is not None:
            raise AssertionError('start_response() called a second time without exc_info')
        self.status, self.headers, self.content_length = _parse_start(status, headers)
        return self.write

    def write(self, data: bytes) -> None:
        """Legacy `write()`: the bytes are held until the app returns, then sent ahead of its iterable."""
        if self.status is None:
            raise AssertionError('write() called before start_response()')
        if not isinstance(data, bytes):
            raise TypeError(f'write() takes bytes, got {type(data).__name__}')
        if data:
            self.headers_sent = True
            self.written.append(data)


def _parse_start(status: Any, headers: Any) -> tuple[int, list[tuple[str, str]], int | None]:
    if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit() or status[3] != ' ':
        raise ValueError(f'WSGI status must be a string like "200 OK", got {status!r}')
    if not isinstance(headers, list):
        raise TypeError(f'WSGI headers must be a list of (name, value) tuples, got {type(headers).__name__}')
    for item in headers:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(part, str) for part in item)):
            raise TypeError(f'WSGI header must be a (str, str) tuple, got {item!r}')
    return (int(status[:3]), *_response_headers(headers, 'WSGI'))


def _response_headers(headers: Iterable[tuple[str, str]], kind: str) -> tuple[list[tuple[str, str]], int | None]:
    """An app's response headers without hop-by-hop ones, and its Content-Length; ValueError if unsafe."""
    kept: list[tuple[str, str]] = []
    content_length = None
    for name, value in headers:
        if any(char in name + value for char in '\r\n\x00') or ':' in name:
            raise ValueError(f'{kind} header {name!r} contains a line break, NUL or colon')
        lowered = name.lower()
        if lowered == 'content-length':
            if not value.strip().isdigit():
                raise ValueError(f'{kind} Content-Length {value!r} is not a number')
            content_length = int(value.strip())
        if lowered not in _HOP_BY_HOP:
            kept.append((name, value))
    return kept, content_length


def _close(result: Any) -> None:
    close = getattr(result, 'close', None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.exception('close() of the webview response failed')


class WSGIBridge:
    """Serves requests through a WSGI app; the response iterable is streamed, not collected.

    `start_response` honours `exc_info`: before the first body byte is committed the app may
    replace status and headers; after that, the exception is re-raised into the app.
    """

    def __init__(self, app: Callable[..., Any], base_url: str):
        self.app = app
        self.base_url = base_url

    def __call__(self, request: Request) -> Response:
        exchange = _WSGIExchange()
        result: Any = None
        try:
            result = self.app(build_environ(request, self.base_url + _rest(request)), exchange.start_response)
            if inspect.isawaitable(result):
                getattr(result, 'close', lambda: None)()  # an unawaited coroutine would warn
                result = None
                raise TypeError(
                    'the webview app returned an awaitable when called as WSGI; '
                    'to serve an ASGI app, return ASGIApp(app) from webview_app()'
                )
            iterator = iter(result)
            first = _first_chunk(iterator)
            if exchange.status is None:
                raise RuntimeError('the webview app returned without calling start_response()')
        except Exception as e:
            _close(result)
            logger.exception('webview app failed on %s %s', request.method, request.raw_path)
            return error_response(500, str(e), type(e).__name__)  # the message alone, as every 500
        exchange.headers_sent = True
        head = exchange.written + ([first] if first else [])
        if first is None and exchange.content_length is None:
            _close(result)  # the whole body is already here
            body = b''.join(head)
            return Response(body, exchange.status, headers=exchange.headers)
        stream = _WSGIStream(head, iterator if first is not None else iter(()), result, request)
        return Response(
            status=exchange.status, headers=exchange.headers, stream=stream, content_length=exchange.content_length
        )


def _first_chunk(iterator: Iterator[Any]) -> bytes | None:
    """The first non-empty chunk (start_response may be called lazily before it), or None at the end."""
    for chunk in iterator:
        if not isinstance(chunk, bytes):
            raise TypeError(f'the webview app yielded {type(chunk).__name__}; WSGI bodies are bytes')
        if chunk:
            return chunk
    return None


class _WSGIStream:
    """The rest of a WSGI response; `close()` reaches the app's iterable, as PEP 3333 requires."""

    def __init__(self, head: list[bytes], iterator: Iterator[Any], result: Any, request: Request):
        self._head = head
        self._iterator = iterator
        self._result = result
        self._label = f'{request.method} {request.raw_path}'

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        self._head = []
        while True:
            try:
                chunk = next(self._iterator)
            except StopIteration:
                return
            except Exception as e:
                logger.exception('webview app failed while streaming %s; closing the connection', self._label)
                raise _Aborted(str(e)) from e
            if not isinstance(chunk, bytes):
                logger.error(
                    'webview app yielded %s while streaming %s; WSGI bodies are bytes',
                    type(chunk).__name__,
                    self._label,
                )
                raise _Aborted('non-bytes chunk')
            yield chunk

    def close(self) -> None:
        """Close the app's iterable."""
        _close(self._result)


# -- ASGI ---------------------------------------------------------------------------------------


def build_scope(request: Request, mount: str) -> dict[str, Any]:
    """An ASGI 3 `http` scope for `request` to an app mounted at `mount` (`/api/v1/webview`).

    `path` is the request's whole (decoded) path, `raw_path` its bytes as sent, and `root_path`
    the mount point under whatever prefix the request used, as Starlette's `Mount` sets them.
    """
    server_name, server_port = _server(request)
    version = request.http_version.removeprefix('HTTP/')
    headers = [
        (name.lower().encode('latin-1'), value.encode('latin-1'))
        for name, value in request.headers.items()
        if name.lower() != 'transfer-encoding'
    ]  # the body arrives de-chunked
    return {
        'type': 'http',
        'asgi': {'version': '3.0', 'spec_version': '2.3'},
        'http_version': version,
        'method': request.method,
        'scheme': 'http',
        'path': request.base_path + request.path,
        'raw_path': request.raw_path.encode('latin-1'),
        'query_string': request.query.encode('latin-1'),
        'root_path': request.base_path + mount,
        # A Mount hands down the server's own root path, here none; Starlette's request.base_url starts there.
        'app_root_path': '',
        'headers': headers,
        'client': (request.client[0], request.client[1]) if request.client and len(request.client) > 1 else None,
        'server': (server_name, server_port),
    }


_DONE = 'done'


class _ASGIChannel:
    """Messages from the app (on the event loop) to the request thread, one at a time.

    `send()` waits until the request thread took the message and asked for the next one, so a
    streaming app never runs ahead of the client by more than one chunk.
    """

    def __init__(self, body: bytes):
        self._body: bytes | None = body
        self._messages: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished: asyncio.Future[None] | None = None
        self._pending_ack: asyncio.Future[None] | None = None
        self.closed = False

    async def run(self, app: Callable[..., Any], scope: dict[str, Any]) -> None:
        import asyncio  # only ASGI webviews pay for the import

        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        try:
            await app(scope, self.receive, self.send)
        except BaseException as e:
            self._messages.put((_DONE, e))
            if not isinstance(e, Exception):
                raise
        else:
            self._messages.put((_DONE, None))

    async def receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {'type': 'http.request', 'body': body, 'more_body': False}
        assert self._finished is not None
        await self._finished
        return {'type': 'http.disconnect'}

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise OSError('the client connection is closed')
        assert self._loop is not None
        ack = self._loop.create_future()
        self._messages.put((message, ack))
        await ack

    def next_message(self) -> tuple[Any, Any]:
        """(message, None) or (_DONE, exception or None); blocks. Acknowledges the previous message."""
        self._acknowledge()
        message, ack = self._messages.get()
        if message != _DONE:
            self._pending_ack = ack
        return message, ack

    def _acknowledge(self, error: BaseException | None = None) -> None:
        ack, self._pending_ack = self._pending_ack, None
        if ack is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, ack, error)

    def finish(self) -> None:
        """The whole response was taken: the app's last `send()` returns normally."""
        self._acknowledge()
        self.close()

    def close(self) -> None:
        """The response is over (or the client left): a pending or later `send()` raises OSError,
        `receive()` answers `http.disconnect`."""
        if self.closed:
            return
        self.closed = True
        self._acknowledge(OSError('the client connection is closed'))
        if self._loop is not None and self._finished is not None:
            self._loop.call_soon_threadsafe(_resolve, self._finished, None)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class ASGIBridge:
    """Serves requests through an ASGI app (`http` scope) on the shared event loop thread.

    The request body is delivered in one `http.request` message; the response is streamed
    chunk by chunk as the app sends it. Lifespan and websocket scopes are not served.
    """

    def __init__(self, app: Callable[..., Any], mount: str, runner: AsyncRunner):
        self.app = app
        self.mount = mount
        self.runner = runner

    def __call__(self, request: Request) -> Response:
        channel = _ASGIChannel(request.body)
        self.runner.submit(channel.run(self.app, build_scope(request, self.mount)))
        try:
            start = self._expect(channel, 'http.response.start')
            status, headers, content_length = _parse_asgi_start(start)
            first = self._expect(channel, 'http.response.body')
            body = _asgi_body(first)
        except Exception as e:
            channel.close()
            logger.error(
                'webview app failed on %s %s', request.method, request.raw_path, exc_info=(type(e), e, e.__traceback__)
            )
            return error_response(500, str(e), type(e).__name__)  # the message alone, as every 500
        if not first.get('more_body', False):
            channel.finish()
            if content_length is None:
                return Response(body, status, headers=headers)
        stream = _ASGIStream(channel, body, bool(first.get('more_body', False)), request)
        return Response(status=status, headers=headers, stream=stream, content_length=content_length)

    @staticmethod
    def _expect(channel: _ASGIChannel, kind: str) -> dict[str, Any]:
        message, error = channel.next_message()
        if message == _DONE:
            if error is not None:
                raise error
            raise RuntimeError(f'the webview app returned without sending {kind}')
        if not isinstance(message, dict) or message.get('type') != kind:
            raise RuntimeError(f'the webview app sent {message!r}; expected {kind}')
        return message


def _parse_asgi_start(message: dict[str, Any]) -> tuple[int, list[tuple[str, str]], int | None]:
    status = message.get('status')
    if not isinstance(status, int) or not 100 <= status <= 999:
        raise ValueError(f'ASGI status must be an int, got {status!r}')
    headers = [
        (bytes(name).decode('latin-1'), bytes(value).decode('latin-1')) for name, value in message.get('headers') or ()
    ]
    return (status, *_response_headers(headers, 'ASGI'))


def _asgi_body(message: dict[str, Any]) -> bytes:
    body = message.get('body', b'')
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f'ASGI body must be bytes, got {type(body).__name__}')
    return bytes(body)


class _ASGIStream:
    """The body of an ASGI response after its first message; `close()` ends the exchange."""

    def __init__(self, channel: _ASGIChannel, first: bytes, more: bool, request: Request):
        self._channel = channel
        self._first = first
        self._more = more
        self._label = f'{request.method} {request.raw_path}'

    def __iter__(self) -> Iterator[bytes]:
        yield self._first
        while self._more:
            message, error = self._channel.next_message()
            if message == _DONE:
                if error is not None:
                    logger.error(
                        'webview app failed while streaming %s; closing the connection',
                        self._label,
                        exc_info=(type(error), error, error.__traceback__),
                    )
                    raise _Aborted(str(error))
                logger.error('webview app returned mid-body while streaming %s', self._label)
                raise _Aborted('incomplete body')
            if message.get('type') != 'http.response.body':
                logger.error('webview app sent %r while streaming %s', message.get('type'), self._label)
                raise _Aborted('unexpected message')
            self._more = bool(message.get('more_body', False))
            yield _asgi_body(message)
        self._channel.finish()

    def close(self) -> None:
        """Tell the app the response is over."""
        self._channel.close()
