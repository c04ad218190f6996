"""Request and Response value objects, the one JSON error shape, and JSON in and out (orjson when installed)."""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from itertools import accumulate
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from racetrack_job_wrapper.routing import Route

JSON_TYPE = 'application/json'
NOSNIFF = ('X-Content-Type-Options', 'nosniff')
MAX_NUMBER_DIGITS = 1000  # digits in one JSON number; int() of thousands of digits costs quadratic time
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


# Why a call was cancelled (`Request.cancel_reason`): the words its error and its log line use.
DEADLINE_PASSED = 'its deadline passed'
CLIENT_LEFT = 'its client disconnected'


class CallCancelled(Exception):
    """Raised by `request.check()` in job code once its call is cancelled: past its deadline, or its client gone."""


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
        'deadline',
        'cancel_on_disconnect',
        'on_progress',
        '_cancelled',
        '_disconnect_checked',
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
        # The job call's deadline as a time.monotonic() value, None for none; set by the invoker.
        self.deadline: float | None = None
        self.cancel_on_disconnect = True
        # Where `report_progress` sends a fraction and a message: set for async calls only.
        self.on_progress: Callable[[float, str], None] | None = None
        self._cancelled: str | None = None  # why the call was cancelled
        self._disconnect_checked = 0.0
        self._json: Any = _UNSET
        self._query_params: dict[str, list[str]] | None = None

    @property
    def query_params(self) -> dict[str, list[str]]:
        """Query string as a dict of value lists (parsed once)."""
        if self._query_params is None:
            self._query_params = parse_qs(self.query, keep_blank_values=True)
        return self._query_params

    def remaining(self) -> float | None:
        """Seconds left until the call's deadline (0 once past it); None without a deadline."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def cancel(self, reason: str) -> None:
        """Cancel the call (`reason` says why: DEADLINE_PASSED, CLIENT_LEFT)."""
        if self._cancelled is None:
            self._cancelled = reason

    @property
    def cancel_reason(self) -> str | None:
        """Why the call was cancelled, or None."""
        return self._cancelled

    def cancelled(self) -> bool:
        """Whether the job should stop: the call was cancelled, its deadline passed, or its client left.

        The client is looked at (a system call) at most every 0.1 s, and only with
        `cancel_on_disconnect`.
        """
        if self._cancelled is None:
            now = time.monotonic()
            watched = self.cancel_on_disconnect and self.is_disconnected is not None
            if self.deadline is not None and now >= self.deadline:
                self.cancel(DEADLINE_PASSED)
            elif watched and now - self._disconnect_checked > 0.1:
                self._disconnect_checked = now
                if self.is_disconnected is not None and self.is_disconnected():
                    self.cancel(CLIENT_LEFT)
        return self._cancelled is not None

    def report_progress(self, fraction: float, message: str = '') -> None:
        """Say how far the call has come (0 to 1), shown by the status of an async call; a no-op otherwise.

        Raises ValueError for a fraction outside [0, 1] (or not a number).
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f'progress must be a fraction from 0 to 1, got {fraction!r}')
        if self.on_progress is not None:
            self.on_progress(float(fraction), str(message))

    def check(self) -> None:
        """Raise CallCancelled when `cancelled()`: where a long-running job looks whether to go on."""
        if self.cancelled():
            raise CallCancelled(f'the call of {self.path} was cancelled: {self._cancelled}')

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


def encode_serialized(data: Any) -> bytes:
    """`encode_json`'s bytes for what `to_json_serializable(..., for_encoder=True)` returns, numpy
    arrays included, written by orjson when it is installed (`JSONCodec`)."""
    return CODEC.encode(data)


def decode_json(body: bytes, max_depth: int = 100) -> Any:
    """Parse a JSON request body: UTF-8, finite numbers, nesting at most `max_depth`; else HTTPError(400)."""
    return CODEC.decode(body, max_depth)


class _ReprFloat(float):
    """A float that orjson would write otherwise than Python's repr, so the codec writes its repr."""

    __slots__ = ()


def encodable_float(value: float) -> float:
    """A finite float as `encode_serialized` writes it the standard way: a plain float where orjson's text is repr's,
    else a float subclass that the codec writes with repr.

    Python's repr (and so the standard encoder) writes plain notation from 1e-4 up to 1e16 and
    exponents outside that range (`1e-07`, `1.5e-05`, `1e+16`); orjson writes the same shortest
    digits, and in the plain range the same text, but other exponent forms (`1e-7`, `0.000015`,
    and in older versions `1e16`).
    """
    if 1e-4 <= abs(value) < 1e16 or value == 0.0:
        return value if type(value) is float else float.__float__(value)
    return _ReprFloat(value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'{name} is not valid JSON')


def _checked_number(convert: Any) -> Any:
    def parse(text: str) -> Any:
        digits = sum(char.isdigit() for char in text)
        if digits > MAX_NUMBER_DIGITS:
            raise ValueError(f'a number has {digits} digits, the limit is {MAX_NUMBER_DIGITS}')
        return convert(text)

    return parse


def _plain_array(value: Any) -> Any:
    numpy = sys.modules.get('numpy')
    if numpy is not None and isinstance(value, numpy.ndarray):
        return value.tolist()
    raise TypeError(f'Object of type {value.__class__.__name__} is not JSON serializable')


# Built once: json.dumps and json.loads with non-default options construct a new encoder or
# decoder on every call. Both are stateless between calls, so threads can share them.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(',', ':'))
_SERIALIZED_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(',', ':'), default=_plain_array)
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
# For the rare body with a long run of digits somewhere (maybe only inside a string).
_CHECKED_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_int=_checked_number(int), parse_float=_checked_number(float)
)
# Byte classes for the scans below: every digit becomes 0, a dot stays, anything else is a space.
_DIGIT_CLASSES = bytes(48 if 48 <= byte <= 57 else 46 if byte == 46 else 32 for byte in range(256))
# A run of digits not after a dot that is 19 or more long: maybe an integer beyond 64 bits.
_LONG_INTEGER = b' ' + b'0' * 19
_LONG_NUMBER = b'0' * (MAX_NUMBER_DIGITS + 1)
_NOT_BRACKET_OR_QUOTE = bytes(byte for byte in range(256) if byte not in b'[]{}"')
_NOT_BRACKET = bytes(byte for byte in range(256) if byte not in b'[]{}')
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)  # to the closing quote, or the end
_PLAIN_STRING = re.compile(rb'"[^"]*+"?')
_STEP = [1 if byte in b'[{' else -1 if byte in b']}' else 0 for byte in range(256)]
_SQUARE = bytes.maketrans(b'{}', b'[]')


class JSONCodec:
    """Encodes serialized results and decodes request bodies, with orjson or the standard library alone.

    Both ways give the same bytes and the same values, errors included: orjson is asked only
    where its answer is the standard library's, and whatever it refuses goes to the standard
    library, which writes it, reads it or words the error.

    - Encoding: floats outside orjson's agreement come as a float subclass (see `encodable_float`) and
      are written with repr; a numpy array of numbers is written by orjson, its floats outside that
      range by repr; integers beyond 64 bits, lone surrogates and nesting past orjson's limit make
      it refuse the value.
    - Decoding: a body with a run of 19 digits not after a dot (orjson reads integers beyond 64
      bits as floats) goes to the standard decoder, and so does a body orjson refuses: its
      messages differ, and it refuses lone surrogate escapes and `1e400`, which the standard
      decoder reads. The checks before parsing (nesting, long numbers) are the same for both.

    Thread-safe: it holds no state between calls.
    """

    def __init__(self, orjson: Any = None):
        self.orjson = orjson
        if orjson is not None:
            self._options = (
                orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
            )

    def encode(self, data: Any) -> bytes:
        """`encode_json`'s bytes for `data`: JSON's own types, finite floats and numpy arrays."""
        if self.orjson is not None:
            try:
                encoded: bytes = self.orjson.dumps(data, default=self._orjson_default, option=self._options)
                return encoded
            except self.orjson.JSONEncodeError:
                pass  # the standard encoder writes it, or refuses it in its own words
        return _SERIALIZED_ENCODER.encode(data).encode()

    def decode(self, body: bytes, max_depth: int = 100) -> Any:
        """Parse a JSON request body: UTF-8, finite numbers, nesting at most `max_depth`; else HTTPError(400)."""
        if not body.strip():
            return {}
        # Counting brackets is cheap C work; only a body with many of them needs the scan.
        depth = _nesting_over(body, max_depth) if body.count(b'[') + body.count(b'{') > max_depth else 0
        digits = body.translate(_DIGIT_CLASSES)
        # One search decides whether the per-number checks are needed at all.
        long_number = _LONG_NUMBER in digits
        if self.orjson is not None and not depth and not long_number and not _has_long_integer(digits):
            try:
                return self.orjson.loads(body)
            except self.orjson.JSONDecodeError:
                pass  # the standard decoder below reads it or words the error
        try:
            text = body.decode('utf-8-sig' if body.startswith(b'\xef\xbb\xbf') else 'utf-8')
        except UnicodeDecodeError as e:
            raise HTTPError(
                400, f'request body is not valid UTF-8: {e.reason} at byte {e.start}', error_type='InvalidJSON'
            ) from None
        if depth:
            raise HTTPError(
                400, f'JSON nesting is {depth} levels deep, the limit is {max_depth}', error_type='InvalidJSON'
            )
        decoder = _CHECKED_DECODER if long_number else _DECODER
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

    def _orjson_default(self, value: Any) -> Any:
        # Called for what orjson does not write itself, subclasses included (the passthrough options).
        if isinstance(value, float) and math.isfinite(value):
            return self.orjson.Fragment(float.__repr__(value).encode())
        numpy = sys.modules.get('numpy')
        if (
            numpy is not None
            and type(value) is numpy.ndarray
            and value.ndim
            and value.dtype.kind in 'biuf'
            and value.dtype.itemsize <= 8
        ):
            return self._array(value, numpy)
        raise TypeError(f'Object of type {value.__class__.__name__} is not JSON serializable')

    def _array(self, array: Any, numpy: Any) -> Any:
        """A numpy array of numbers as a fragment of JSON, as `tolist()` and the standard encoder write it."""
        if array.dtype.kind == 'f':
            if array.dtype.itemsize != 8 or not array.dtype.isnative:
                array = array.astype(numpy.float64)  # what tolist() makes of float16 and float32 too
            magnitude = numpy.abs(array)
            if not numpy.isfinite(magnitude).all():
                raise TypeError('non-finite float in an array')  # the standard encoder refuses it
            exponent = (magnitude >= 1e16) | ((magnitude < 1e-4) & (magnitude != 0))
            if exponent.any():
                boxed = array.astype(object)
                boxed[exponent] = [self.orjson.Fragment(repr(item).encode()) for item in array[exponent].tolist()]
                return self.orjson.Fragment(self.orjson.dumps(boxed.tolist()))
        elif not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder('='))
        if not array.flags.c_contiguous:
            array = numpy.ascontiguousarray(array)
        return self.orjson.Fragment(self.orjson.dumps(array, option=self.orjson.OPT_SERIALIZE_NUMPY))


def _has_long_integer(digits: bytes) -> bool:
    """Whether the digit classes of a body hold a run of 19 digits that does not follow a dot."""
    return _LONG_INTEGER in digits or digits.startswith(_LONG_INTEGER[1:])


def _nesting_over(body: bytes, limit: int) -> int:
    """0 when the bracket nesting outside strings is at most `limit`, else how deep it is.

    The same reading as a scan character by character (a backslash escapes the next character
    inside a string only; an unclosed string runs to the end), in C-speed passes.
    """
    if b'\\' in body:
        brackets = _STRING.sub(b'', body).translate(None, _NOT_BRACKET)
    else:
        # Without escapes, dropping everything but brackets and quotes, then pairs of adjacent
        # quotes (empty strings, or the end of one and the start of the next), leaves every
        # bracket on the same side of the same quotes.
        skeleton = body.translate(None, _NOT_BRACKET_OR_QUOTE).replace(b'""', b'')
        brackets = _PLAIN_STRING.sub(b'', skeleton) if b'"' in skeleton else skeleton
    # Removing every adjacent pair `[]` takes exactly one level off a balanced nesting: a body
    # that empties within `limit` rounds is nested no deeper (and needs no count at all).
    rest = brackets.translate(_SQUARE)
    for _ in range(limit):
        shorter = rest.replace(b'[]', b'')
        if len(shorter) == len(rest):
            break
        rest = shorter
    if not rest:
        return 0
    # Unbalanced, or deeper than the limit: count exactly.
    deepest = max(accumulate(map(_STEP.__getitem__, brackets)))
    return deepest if deepest > limit else 0


def _load_orjson() -> Any:
    """The orjson module when it is installed and writes as `JSONCodec` expects, else None."""
    try:
        import orjson
    except ImportError:  # an optional extra: the standard library does it all
        return None
    # A version without Fragment (before 3.9), or one whose plain-notation floats are not repr's, is left unused.
    probe = [0.0, -0.0, 1e-4, 0.1, 1 / 3, 1.5, 100.0, 2.0**53, 9999999999999998.0, -123456.789, '\x00\x1f"\\\u2028']
    try:
        if orjson.dumps([*probe, orjson.Fragment(b'1e-07')]) != _ENCODER.encode([*probe, 1e-07]).encode():
            return None
    except (AttributeError, TypeError):
        return None
    return orjson


CODEC = JSONCodec(_load_orjson())
