"""Request and Response value objects, and the one JSON error shape."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from racetrack_job_wrapper.routing import Route

JSON_TYPE = 'application/json'
NOSNIFF = ('X-Content-Type-Options', 'nosniff')
MAX_NUMBER_DIGITS = 1000  # digits in one JSON number; int() of thousands of digits costs quadratic time
_LONG_DIGIT_RUN = re.compile(rf'\d{{{MAX_NUMBER_DIGITS + 1}}}')
_T = TypeVar('_T')


class HTTPError(Exception):
    """An error with an HTTP status; the error boundary turns it into a JSON response."""

    def __init__(
        self,
        status: int,
        detail: str,
        headers: Mapping[str, str] | None = None,
        error_type: str | None = None,
        close: bool = False,
        rejected: str | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.error_type = error_type or HTTPStatus(status).phrase.replace(' ', '')
        self.close = close
        # The reason word when the request is refused before any job code runs (`requests_rejected_total`).
        self.rejected = rejected


class ClientDisconnected(Exception):
    """The client went away while its request waited; there is nobody to answer."""


class JobDefinitionError(ValueError):
    """A job method or setting that cannot be served; the message names the method or field.

    `where` is the job's own function, method or class at fault, when the error was found in
    this library's code: its source line is what `/live` points at.
    """

    def __init__(self, message: str, where: object = None):
        super().__init__(message)
        self.where = where


class Headers:
    """Case-insensitive, read-only view of request headers; repeated fields keep every value."""

    __slots__ = ('_items', '_index')

    def __init__(self, items: Iterable[tuple[str, str]] = ()):
        self._items = list(items)
        index: dict[str, str] = {}
        for name, value in self._items:
            key = name.lower()
            # Repeated fields combine with a comma, as RFC 9110 section 5.3 allows.
            index[key] = f'{index[key]}, {value}' if key in index else value
        self._index = index

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: _T) -> str | _T: ...

    def get(self, name: str, default: _T | None = None) -> str | _T | None:
        """Value of a header (combined if repeated), or `default`."""
        return self._index.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Every value sent for a header, in order."""
        key = name.lower()
        return [value for field, value in self._items if field.lower() == key]

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def items(self) -> list[tuple[str, str]]:
        """Raw (name, value) pairs as received."""
        return list(self._items)

    def keys(self) -> list[str]:
        """Lower-cased header names."""
        return list(self._index)

    def __repr__(self) -> str:
        return f'Headers({self._items!r})'


class Request:
    """One parsed HTTP request; the body is read before the request object exists.

    Besides what the client sent, it carries the transport's facts (`http_version`, the
    `server` address, `is_disconnected`), set by the server, and what the app decided: the
    `route` that matched and, for a request refused before job code, the `rejected` reason.
    """

    __slots__ = (
        'method',
        'path',
        'raw_path',
        'query',
        'headers',
        'body',
        'path_params',
        'client',
        'base_path',
        'http_version',
        'server',
        'is_disconnected',
        'route',
        'rejected',
        '_json',
        '_query_params',
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str = '',
        headers: Headers | None = None,
        body: bytes = b'',
        client: tuple[str, int] = ('', 0),
        raw_path: str | None = None,
        base_path: str = '',
        http_version: str = 'HTTP/1.1',
        server: tuple[str, int] = ('localhost', 80),
        is_disconnected: Callable[[], bool] | None = None,
    ):
        self.method = method
        self.path = path
        self.raw_path = raw_path if raw_path is not None else path
        self.query = query
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.client = client
        self.base_path = base_path
        self.http_version = http_version
        self.server = server  # the address the server is bound to: (host, port)
        self.is_disconnected = is_disconnected
        self.path_params: dict[str, str] = {}
        self.route: Route | None = None
        self.rejected: str | None = None
        self._json: Any = _UNSET
        self._query_params: dict[str, list[str]] | None = None

    @property
    def query_params(self) -> dict[str, list[str]]:
        """Query string as a dict of value lists (parsed once)."""
        if self._query_params is None:
            self._query_params = parse_qs(self.query, keep_blank_values=True)
        return self._query_params

    def json(self, max_depth: int = 100) -> Any:
        """Body decoded as JSON (cached); an empty body is `{}`; bad JSON raises HTTPError(400)."""
        if self._json is _UNSET:
            self._json = decode_json(self.body, max_depth)
        return self._json


_UNSET = object()


class Response:
    """Status, headers and a body of bytes (or an iterable of bytes, streamed)."""

    __slots__ = ('status', 'headers', 'body', 'stream', 'content_length', 'close')

    def __init__(
        self,
        body: bytes = b'',
        status: int = 200,
        content_type: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        stream: Iterable[bytes] | None = None,
        content_length: int | None = None,
    ):
        self.status = status
        self.body = body
        self.stream = stream
        self.headers: list[tuple[str, str]] = list(headers.items() if isinstance(headers, Mapping) else headers or ())
        if content_type is not None:
            self.headers.append(('Content-Type', content_type))
        self.content_length = content_length if stream is not None else len(body)
        self.close = False

    def header(self, name: str) -> str | None:
        """First value of a response header, case-insensitive."""
        key = name.lower()
        return next((value for field, value in self.headers if field.lower() == key), None)


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response; `data` must already be JSON-serializable."""
    return json_bytes_response(encode_json(data), status, headers)


def json_bytes_response(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A response of encoded JSON, marked `nosniff` so that no browser reads it as a page or a script."""
    response = Response(body, status, JSON_TYPE, headers)
    response.headers.append(NOSNIFF)
    return response


def error_response(status: int, message: str, error_type: str, headers: Mapping[str, str] | None = None) -> Response:
    """The one error shape: `{"error": message, "type": error_type}`."""
    return json_response({'error': message, 'type': error_type}, status, headers)


def http_error_response(error: HTTPError) -> Response:
    """Response for an HTTPError."""
    response = error_response(error.status, error.detail, error.error_type, error.headers)
    response.close = error.close
    return response


def encode_json(data: Any) -> bytes:
    """Compact UTF-8 JSON; non-finite floats are refused (JSON has no NaN or Infinity)."""
    return _ENCODER.encode(data).encode()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'{name} is not valid JSON')


# Built once: json.dumps and json.loads with non-default options construct a new encoder or
# decoder on every call. Both are stateless between calls, so threads can share them.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(',', ':'))
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _checked_number(convert: Any) -> Any:
    def parse(text: str) -> Any:
        digits = sum(char.isdigit() for char in text)
        if digits > MAX_NUMBER_DIGITS:
            raise ValueError(f'a number has {digits} digits, the limit is {MAX_NUMBER_DIGITS}')
        return convert(text)

    return parse


# For the rare body with a long run of digits somewhere (maybe only inside a string).
_CHECKED_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_int=_checked_number(int), parse_float=_checked_number(float)
)


def decode_json(body: bytes, max_depth: int = 100) -> Any:
    """Parse a JSON request body: UTF-8, finite numbers, nesting at most `max_depth`; else HTTPError(400)."""
    if not body.strip():
        return {}
    try:
        text = body.decode('utf-8-sig' if body.startswith(b'\xef\xbb\xbf') else 'utf-8')
    except UnicodeDecodeError as e:
        raise HTTPError(
            400, f'request body is not valid UTF-8: {e.reason} at byte {e.start}', error_type='InvalidJSON'
        ) from None
    # Counting brackets is cheap C work; only a body with many of them needs the scan.
    depth = _nesting_depth(text) if text.count('[') + text.count('{') > max_depth else 0
    if depth > max_depth:
        raise HTTPError(400, f'JSON nesting is {depth} levels deep, the limit is {max_depth}', error_type='InvalidJSON')
    # One regex search decides whether the per-number checks are needed at all.
    decoder = _CHECKED_DECODER if _LONG_DIGIT_RUN.search(text) else _DECODER
    try:
        return decoder.decode(text)
    except ValueError as e:
        # Covers JSONDecodeError, NaN/Infinity and numbers with too many digits.
        raise HTTPError(400, f'request body is not valid JSON: {e}', error_type='InvalidJSON') from None
    except RecursionError:
        # Unbalanced brackets the depth scan does not count as nesting still stop here, not deeper.
        raise HTTPError(
            400, f'JSON nesting is deeper than the limit of {max_depth}', error_type='InvalidJSON'
        ) from None


def _nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings, found in one linear scan before parsing."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == '\\':
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in '[{':
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in ']}':
            depth -= 1
    return deepest
