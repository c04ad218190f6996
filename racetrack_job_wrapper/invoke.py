"""The one way job code is called on the request path: bind, validate, admit, call, serialize."""
from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
import typing
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from racetrack_job_wrapper.endpoints import EndpointSpec, ParamSpec
from racetrack_job_wrapper.messages import JSON_TYPE, HTTPError, Request, Response, encode_json
from racetrack_job_wrapper.metrics import EndpointMetrics, JobMetrics
from racetrack_job_wrapper.schema import (
    Converter, ValidationError, ValidationMode, build_converter, build_text_converter)
from racetrack_job_wrapper.serialize import SerializationError, floats_where_annotated, to_json_serializable

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures

logger = logging.getLogger(__name__)


class ClientDisconnected(Exception):
    """The client went away while its call was waiting; nobody is left to answer."""


class RequestContext:
    """Per-request context variables a job reads: `self.request_context.get().headers.get(...)`."""

    def __init__(self) -> None:
        self.request: contextvars.ContextVar[Request] = contextvars.ContextVar('request_context')
        self.extra: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar('request_extra')

    def attach_to(self, entrypoint: object) -> None:
        """Expose the variables as `entrypoint.request_context` / `entrypoint.request_extra`."""
        for attribute, variable in (('request_context', self.request), ('request_extra', self.extra)):
            try:
                setattr(entrypoint, attribute, variable)
            except AttributeError:  # __slots__ or a read-only property: the job opted out
                logger.debug('cannot set %s on the job instance', attribute)


class ConcurrencyLimiter:
    """At most `max_concurrency` job calls at once; waiting calls are served first-come first-served.

    Admission (check and enqueue) is one step under a lock, so a burst cannot overshoot
    `max_queue`. Thread-safe.
    """

    def __init__(self, max_concurrency: int, max_queue: int | None = None, metrics: JobMetrics | None = None):
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._metrics = metrics
        self._rejected = metrics.requests_rejected.labels(reason='queue_full') if metrics is not None else None
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: deque[threading.Event] = deque()
        self._mean_seconds = 0.0  # moving average of call duration, for Retry-After

    def acquire(self, is_disconnected: Callable[[], bool] | None = None) -> float:
        """Wait for a slot; returns seconds waited. Raises HTTPError(429) when the queue is full,
        ClientDisconnected when the client left while waiting."""
        with self._lock:
            if self._running < self.max_concurrency and not self._waiters:
                self._running += 1
                self._update_gauges()
                return 0.0
            if self.max_queue is not None and len(self._waiters) >= self.max_queue:
                retry_after = self._retry_after()
                if self._rejected is not None:
                    self._rejected.inc()
                raise HTTPError(
                    429, f'too many requests: the job runs {self.max_concurrency} call(s) at a time '
                         f'(max_concurrency) and {len(self._waiters)} are waiting, the queue limit '
                         f'(max_concurrency_queue) is {self.max_queue}',
                    headers={'Retry-After': str(retry_after)}, error_type='TooManyRequests')
            event = threading.Event()
            self._waiters.append(event)
            self._update_gauges()
        started = time.monotonic()
        while not event.wait(0.2):
            if is_disconnected is not None and is_disconnected():
                with self._lock:
                    if not event.is_set():
                        self._waiters.remove(event)
                        self._update_gauges()
                        raise ClientDisconnected()
                # The slot was handed over just now: pass it on.
                self.release(0.0)
                raise ClientDisconnected()
        return time.monotonic() - started

    def release(self, seconds: float) -> None:
        """Free a slot (or hand it to the first waiter)."""
        with self._lock:
            if seconds:
                self._mean_seconds = seconds if not self._mean_seconds else 0.8 * self._mean_seconds + 0.2 * seconds
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._running -= 1
            self._update_gauges()

    def _retry_after(self) -> int:
        rounds = (len(self._waiters) + 1) / self.max_concurrency
        return max(1, math.ceil(rounds * self._mean_seconds))

    def _update_gauges(self) -> None:
        if self._metrics is not None:
            self._metrics.calls_queued.set(len(self._waiters))


class AsyncRunner:
    """One event loop thread for `async def` job methods; each call runs in the caller's context."""

    def __init__(self) -> None:
        import asyncio  # only jobs with async methods pay for the import
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name='job-event-loop', daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the loop and wait for its result."""
        return self.submit(coroutine).result()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start a coroutine on the loop in a copy of the caller's context; returns its future at once."""
        context = contextvars.copy_context()
        import concurrent.futures  # with asyncio, only for jobs with async methods
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def start() -> None:
            task = self._loop.create_task(coroutine, context=context)
            task.add_done_callback(lambda done: _settle(done, future))

        self._loop.call_soon_threadsafe(start)
        return future

    def close(self) -> None:
        """Stop the loop thread."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


def _settle(task: asyncio.Task[Any], future: concurrent.futures.Future[Any]) -> None:
    if task.cancelled():
        future.cancel()  # result() raises CancelledError
    elif task.exception() is not None:
        future.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        future.set_result(task.result())


@dataclass(frozen=True)
class _Binding:
    param: ParamSpec
    convert: Converter | None


class Invoker:
    """Calls one job endpoint for a request: the handler behind its route."""

    def __init__(self, spec: EndpointSpec, *, metrics: JobMetrics, context: RequestContext,
                 limiter: ConcurrencyLimiter | None = None, async_runner: AsyncRunner | None = None,
                 validate: ValidationMode = ValidationMode.LAX, max_json_depth: int = 100):
        self.spec = spec
        self._metrics: EndpointMetrics = metrics.endpoint(spec.metric_label)
        self._calls_running = metrics.calls_running
        self._queue_wait = metrics.queue_wait
        self._context = context
        self._limiter = limiter
        self._async_runner = async_runner
        self._max_json_depth = max_json_depth
        self._bindings = {
            param.name: _Binding(param, _converter_for(param, validate)) for param in spec.params}
        self._body_params = [binding for binding in self._bindings.values() if binding.param.source == 'body']
        self._query_params = [binding for binding in self._bindings.values() if binding.param.source == 'query']
        self._path_params = [binding for binding in self._bindings.values() if binding.param.source == 'path']
        self._required = [param.name for param in spec.params if param.required]
        self._accepted = ', '.join(param.name for param in spec.params) or 'none'
        if spec.is_async and async_runner is None:
            raise ValueError(f'endpoint {spec.path} is async and needs an AsyncRunner')

    def __call__(self, request: Request) -> Response:
        kwargs = self._arguments(request)
        waited = 0.0
        if self._limiter is not None:
            waited = self._limiter.acquire(request.state.get('is_disconnected'))
            self._queue_wait.observe(waited)
        started = time.perf_counter()
        failed = True
        self._metrics.call_started()
        self._calls_running.inc()
        try:
            result = self._call(request, kwargs)
            body = self._encode(result)
            failed = False
        finally:
            seconds = time.perf_counter() - started
            self._calls_running.dec()
            self._metrics.call_finished(seconds, failed)
            if self._limiter is not None:
                self._limiter.release(seconds)
        return Response(body, 200, JSON_TYPE)

    def _call(self, request: Request, kwargs: dict[str, Any]) -> Any:
        request_token = self._context.request.set(request)
        extra_token = self._context.extra.set({})
        try:
            result = self.spec.handler(**kwargs)
            if self.spec.is_async:
                result = self._async_runner.run(result)  # type: ignore[union-attr]
            return result
        except ValueError as e:
            # Kept from the existing implementation: a ValueError is the job refusing its input.
            raise HTTPError(400, str(e) or type(e).__name__, error_type=type(e).__name__) from e
        finally:
            self._context.request.reset(request_token)
            self._context.extra.reset(extra_token)

    def _encode(self, result: Any) -> bytes:
        try:
            if self.spec.fastapi_rules and self.spec.has_return_annotation:
                result = floats_where_annotated(result, self.spec.returns)
            return encode_json(to_json_serializable(result))
        except (SerializationError, ValueError, TypeError) as e:
            raise HTTPError(500, f'the result of {self.spec.path} cannot be returned as JSON: {e}',
                            error_type='SerializationError') from e

    def _arguments(self, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        empty = not request.body.strip()
        if self.spec.whole_body is not None:
            if not empty:
                kwargs[self.spec.whole_body] = _convert(self._bindings[self.spec.whole_body],
                                                        request.json(self._max_json_depth))
        elif self._body_params or (request.method not in ('GET', 'HEAD') and
                                   (self.spec.accepts_any_kwargs or not self.spec.fastapi_rules)):
            if empty and self.spec.empty_body is not None:
                payload = dict(self.spec.empty_body)
            else:
                payload = request.json(self._max_json_depth)
            if not isinstance(payload, dict):
                raise HTTPError(400, f'request body must be a JSON object of parameters, got {_json_type(payload)}',
                                error_type='InvalidPayload')
            for name, value in payload.items():
                binding = self._bindings.get(name)
                if binding is None or binding.param.source != 'body':
                    if self.spec.accepts_any_kwargs:
                        kwargs[name] = value
                    elif not self.spec.fastapi_rules:  # FastAPI ignores the fields it does not know
                        raise HTTPError(400, f'unexpected parameter {name!r}; {self.spec.path} accepts: {self._accepted}',
                                        error_type='InvalidPayload')
                    continue
                kwargs[name] = _convert(binding, value)
        elif not empty and request.method not in ('GET', 'HEAD'):
            request.json(self._max_json_depth)  # still refuse malformed JSON sent to a parameterless endpoint
        for binding in self._query_params:
            values = request.query_params.get(binding.param.name)
            if values is not None:
                kwargs[binding.param.name] = _convert(binding, values if _wants_list(binding) else values[-1])
        for binding in self._path_params:
            kwargs[binding.param.name] = _convert(binding, request.path_params[binding.param.name])
        missing = [name for name in self._required if name not in kwargs]
        if missing:
            names = ', '.join(repr(name) for name in missing)
            raise HTTPError(400, f'missing required parameter{"s" if len(missing) > 1 else ""} {names} '
                                 f'for {self.spec.path}', error_type='InvalidPayload')
        return kwargs


def _converter_for(param: ParamSpec, mode: ValidationMode) -> Converter | None:
    if not param.has_annotation:
        return None
    if param.source == 'body':
        return build_converter(param.annotation, mode)
    # Query and path values arrive as text: they need converting to their annotation in every mode.
    return build_text_converter(param.annotation, mode)


def _convert(binding: _Binding, value: Any) -> Any:
    if binding.convert is None:
        return value
    try:
        return binding.convert(value, binding.param.name)
    except ValidationError as e:
        raise HTTPError(400, str(e), error_type='ValidationError') from None


def _wants_list(binding: _Binding) -> bool:
    return typing.get_origin(binding.param.annotation) in (list, tuple, set, frozenset)


def _json_type(value: Any) -> str:
    names = {list: 'an array', str: 'a string', bool: 'a boolean', int: 'a number', float: 'a number',
             type(None): 'null'}
    return names.get(type(value), type(value).__name__)

