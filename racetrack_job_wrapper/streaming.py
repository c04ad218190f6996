"""Results that are generators: each item sent as it is produced, as JSON lines or Server-Sent Events.

A job method that returns a generator (or an async generator) streams its answer when the
request asks for a stream: one JSON value per line (`Accept: application/x-ndjson`), or one
`data:` event per item (`Accept: text/event-stream`). Asked for anything else, it answers the
items as one JSON list, as racetrack-job-runner (FastAPI's encoder) answers a generator.

An exception part-way ends a stream with an error line or an `event: error`, in the usual
`{"error", "type"}` shape; a client that goes away closes the generator (its `finally` runs).
The call is over, for the concurrency cap and the metrics, when the last item has gone out
or the stream was closed.
"""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import logging
import time
import typing
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from racetrack_job_wrapper.messages import DEADLINE_PASSED, Request, encode_json

if TYPE_CHECKING:
    from racetrack_job_wrapper.asyncloop import AsyncRunner

logger = logging.getLogger(__name__)

NDJSON_TYPE = 'application/x-ndjson'
SSE_TYPE = 'text/event-stream'
# Return annotations of a generator. `Iterable[T]` is not one: a list is an iterable, answered whole.
_STREAM_ORIGINS = (
    collections.abc.Iterator,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncGenerator,
)


def is_stream(result: Any) -> bool:
    """Whether a job's result is a generator to stream (a list or any other value is answered whole)."""
    return inspect.isgenerator(result) or inspect.isasyncgen(result)


def streamed_item_type(annotation: Any) -> Any:
    """`T` of a return annotation `Iterator[T]`, `Generator[T, ...]`, `AsyncIterator[T]` ...; None if not one."""
    if typing.get_origin(annotation) in _STREAM_ORIGINS:
        arguments = typing.get_args(annotation)
        return arguments[0] if arguments else Any
    return None


def wants_stream(request: Request) -> bool:
    """Whether the client asked for a streamed answer (JSON lines or Server-Sent Events)."""
    accept = request.headers.get('accept', '')
    return NDJSON_TYPE in accept or SSE_TYPE in accept


async def gather(items: AsyncIterator[Any]) -> list[Any]:
    """Every item of an async generator, for an answer that is not streamed."""
    return [item async for item in items]


def wants_events(request: Request) -> bool:
    """Whether the client asked for Server-Sent Events (`Accept: text/event-stream`)."""
    return SSE_TYPE in request.headers.get('accept', '')


class ResultStream:
    """The body of a streamed answer: iterated by the server, closed by it when done or when the client left.

    `encode(item)` gives an item's JSON bytes; `on_end(failed)` is called once, when the stream
    ends, however it ends.
    """

    def __init__(
        self,
        items: Iterator[Any] | AsyncIterator[Any],
        request: Request,
        path: str,
        encode: Callable[[Any], bytes],
        on_end: Callable[[bool], None],
        async_runner: AsyncRunner | None = None,
    ):
        self._items = items
        self._request = request
        self._path = path
        self._encode = encode
        self._on_end = on_end
        self._async_runner = async_runner
        self._events = wants_events(request)
        self._chunks = self._generate()
        self._ended = False

    @property
    def content_type(self) -> str:
        """The media type of the stream."""
        return SSE_TYPE if self._events else NDJSON_TYPE

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        """End the stream (the server does, once sent or when the client left): the generator is closed."""
        self._chunks.close()
        self._end(failed=False)  # when iteration never began, the generator's own `finally` did not run

    def _generate(self) -> Generator[bytes, None, None]:
        failed = False
        try:
            for item in self._produce():
                yield self._frame(self._encode(item))
        except _Timeout:
            failed = True
            yield self._error(f'{self._path} did not finish streaming before its deadline', 'Timeout')
        except Exception as e:
            failed = True
            logger.exception('%s failed while streaming its result', self._path)
            yield self._error(str(e) or type(e).__name__, type(e).__name__)
        finally:
            self._end(failed)

    def _produce(self) -> Iterator[Any]:
        """The job's items, each checked against the deadline once produced."""
        request = self._request
        if inspect.isasyncgen(self._items):
            while True:
                try:
                    item = self._next_async(self._items)
                except StopAsyncIteration:
                    return
                yield item
        else:
            for item in typing.cast(Iterator[Any], self._items):
                if request.deadline is not None and time.monotonic() > request.deadline:
                    request.cancel(DEADLINE_PASSED)
                    raise _Timeout()
                yield item

    def _next_async(self, items: Any) -> Any:
        runner = self._async_runner
        if runner is None:
            raise RuntimeError('an async generator needs the event loop of async job methods')
        future, cancel = runner.start(items.__anext__())
        remaining = self._request.remaining()
        try:
            return future.result(timeout=remaining)
        except TimeoutError:
            cancel()  # CancelledError at its await; the item is given up
            self._request.cancel(DEADLINE_PASSED)
            with contextlib.suppress(BaseException):  # the cancellation, or what the generator raised meanwhile
                future.result()
            raise _Timeout() from None

    def _frame(self, data: bytes) -> bytes:
        return b'data: ' + data + b'\n\n' if self._events else data + b'\n'

    def _error(self, message: str, error_type: str) -> bytes:
        data = encode_json({'error': message, 'type': error_type})
        return b'event: error\ndata: ' + data + b'\n\n' if self._events else data + b'\n'

    def _end(self, failed: bool) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            if inspect.isasyncgen(self._items):
                if self._async_runner is not None:
                    self._async_runner.run(self._items.aclose())
            else:
                close = getattr(self._items, 'close', None)
                if close is not None:
                    close()  # GeneratorExit in the job's generator: its `finally` runs now
        except Exception:
            logger.exception('%s: closing its result stream failed', self._path)
        finally:
            self._on_end(failed)


class _Timeout(Exception):
    """The stream's deadline passed between two items."""
