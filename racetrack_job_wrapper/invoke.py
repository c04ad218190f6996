"""The one way job code is called on the request path: bind, validate, admit, call, serialize."""

from __future__ import annotations

import contextvars
import inspect
import logging
import math
import threading
import time
import typing
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future
from typing import Any

from racetrack_job_wrapper.asyncloop import AsyncRunner
from racetrack_job_wrapper.convert import (
    Converter,
    ValidationError,
    ValidationMode,
    build_converter,
    build_text_converter,
)
from racetrack_job_wrapper.endpoints import EndpointSpec, ParamSpec
from racetrack_job_wrapper.limiter import ConcurrencyLimiter, DeadlinePassed
from racetrack_job_wrapper.messages import (
    CLIENT_LEFT,
    DEADLINE_PASSED,
    CallCancelled,
    ClientDisconnected,
    HTTPError,
    Request,
    Response,
    json_bytes_response,
)
from racetrack_job_wrapper.metrics import EndpointMetrics, JobMetrics
from racetrack_job_wrapper.records import Record
from racetrack_job_wrapper.serialize import SerializationError, encode_result, floats_where_annotated
from racetrack_job_wrapper.settings import PREFER_HEADER, REQUEST_TIMEOUT_HEADER
from racetrack_job_wrapper.streaming import ResultStream, gather, is_stream, streamed_item_type, wants_stream

logger = logging.getLogger(__name__)

_CLIENT_POLL = 0.2  # seconds between looks at whether a watched call's client is still there
_OVERRUN_WARNING = 1.0  # seconds past its deadline after which a call is said not to stop when asked


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


class _Binding(Record):
    param: ParamSpec
    convert: Converter | None


class Invoker:
    """Calls one job endpoint for a request: the handler behind its route."""

    def __init__(
        self,
        spec: EndpointSpec,
        *,
        metrics: JobMetrics,
        context: RequestContext,
        limiter: ConcurrencyLimiter | None = None,
        async_runner: AsyncRunner | None = None,
        validate: ValidationMode = ValidationMode.LAX,
        max_json_depth: int = 100,
        request_timeout: float = 0.0,
        cancel_on_disconnect: bool = True,
        defer: Callable[[Request], Response | None] | None = None,
    ):
        """`defer`, for a request with a `Prefer` header, may answer it instead of calling now (async calls)."""
        self.spec = spec
        self._metrics: EndpointMetrics = metrics.endpoint(spec.metric_label)
        self._calls_running = metrics.calls_running
        self._queue_wait = metrics.queue_wait
        self._context = context
        self._limiter = limiter
        self._async_runner = async_runner
        self._max_json_depth = max_json_depth
        self._request_timeout = request_timeout or None
        self._cancel_on_disconnect = cancel_on_disconnect
        self._defer = defer
        self._warned_overrun = False
        self._bindings = {param.name: _Binding(param, _converter_for(param, validate)) for param in spec.params}
        self._body_params = [binding for binding in self._bindings.values() if binding.param.source == 'body']
        self._query_params = [binding for binding in self._bindings.values() if binding.param.source == 'query']
        self._path_params = [binding for binding in self._bindings.values() if binding.param.source == 'path']
        self._required = [param.name for param in spec.params if param.required]
        self._accepted = ', '.join(param.name for param in spec.params) or 'none'
        if (spec.is_async or spec.is_async_generator) and async_runner is None:
            raise ValueError(f'endpoint {spec.path} is async and needs an AsyncRunner')

    def __call__(self, request: Request) -> Response:
        kwargs = self._arguments(request)
        # Validated first, so a bad input is refused at once whether the call is deferred or not.
        if self._defer is not None and request.headers.get(PREFER_HEADER) is not None:
            deferred = self._defer(request)
            if deferred is not None:
                return deferred
        request.deadline = self._deadline(request)
        request.cancel_on_disconnect = self._cancel_on_disconnect
        if self._limiter is not None:
            try:
                waited = self._limiter.acquire(request.is_disconnected, request.deadline)
            except DeadlinePassed:
                self._metrics.timed_out()
                raise _timed_out(self.spec.path) from None
            self._queue_wait.observe(waited)
        call = _Call(self, request)
        if request.deadline is None and not self.spec.is_async:
            # Nothing to watch for: the call runs in the request's own thread (a disconnect is
            # seen by a job that asks `request.cancelled()`).
            call.run_here(kwargs)
        else:
            call.run_watched(kwargs)
        return call.response()

    def _deadline(self, request: Request) -> float | None:
        """`request_timeout`, or the lower `X-Request-Timeout` of the request, from now."""
        budget = self._request_timeout
        given = request.headers.get(REQUEST_TIMEOUT_HEADER)
        if given is not None:
            seconds = _timeout_header(given)
            budget = seconds if budget is None else min(budget, seconds)
        return None if budget is None else time.monotonic() + budget

    def _call(self, request: Request, kwargs: dict[str, Any]) -> Any:
        """The handler's result (a sync handler's, called in this thread); a ValueError is a 400.

        A generator's items are gathered into a list here, unless the client asked for a stream.
        """
        request_token = self._context.request.set(request)
        extra_token = self._context.extra.set({})
        try:
            result = self.spec.handler(**kwargs)
            if is_stream(result) and not wants_stream(request):
                if inspect.isasyncgen(result):
                    return self._async_runner.run(gather(result))  # type: ignore[union-attr]  # __init__ checks
                return list(result)
            return result
        except ValueError as e:
            raise _refused(e) from e
        finally:
            self._context.request.reset(request_token)
            self._context.extra.reset(extra_token)

    def _start_async(self, request: Request, kwargs: dict[str, Any]) -> tuple[Future[Any], Callable[[], None]]:
        """Start an `async def` handler on the event loop, in this request's context."""
        request_token = self._context.request.set(request)
        extra_token = self._context.extra.set({})
        try:
            return self._async_runner.start(self.spec.handler(**kwargs))  # type: ignore[union-attr]  # __init__ checks
        finally:
            self._context.request.reset(request_token)
            self._context.extra.reset(extra_token)

    def _overran(self, request: Request, overrun: float) -> None:
        """Record a call that ended past its deadline; say once per endpoint that it does not stop when asked."""
        self._metrics.overran(overrun)
        if overrun > _OVERRUN_WARNING and not self._warned_overrun:
            self._warned_overrun = True
            logger.warning(
                '%s (%s) ran %.1f s past its deadline: it does not stop when cancelled; check '
                'request_context.get().cancelled() in long loops (logged once)',
                self.spec.path,
                getattr(self.spec.handler, '__qualname__', self.spec.handler),
                overrun,
            )

    def _stream(self, call: _Call, result: Any) -> Response:
        item_type = streamed_item_type(self.spec.returns) if self.spec.has_return_annotation else None
        stream = ResultStream(
            result,
            call.request,
            self.spec.path,
            lambda item: self._encode(item, item_type),
            call.end,
            self._async_runner,
        )
        headers = [('Cache-Control', 'no-cache'), ('X-Accel-Buffering', 'no')]
        return Response(content_type=stream.content_type, headers=headers, stream=stream)

    def _encode(self, result: Any, annotation: Any = None) -> bytes:
        try:
            if annotation is None and self.spec.has_return_annotation:
                annotation = self.spec.returns
                item = streamed_item_type(annotation)
                if item is not None:  # a generator's items, gathered into a list
                    annotation = list[item]  # type: ignore[valid-type]
            if self.spec.fastapi_rules and annotation is not None:
                result = floats_where_annotated(result, annotation)
            return encode_result(result)
        except (SerializationError, ValueError, TypeError) as e:
            raise HTTPError(
                500, f'the result of {self.spec.path} cannot be returned as JSON: {e}', error_type='SerializationError'
            ) from e

    def _arguments(self, request: Request) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        empty = not request.body or request.body.isspace()  # isspace stops at the first other byte: no copy
        if self.spec.whole_body is not None:
            if not empty:
                kwargs[self.spec.whole_body] = _convert(
                    self._bindings[self.spec.whole_body], request.json(self._max_json_depth)
                )
        elif self._body_params or (
            request.method not in ('GET', 'HEAD') and (self.spec.accepts_any_kwargs or not self.spec.fastapi_rules)
        ):
            if empty and self.spec.empty_body is not None:
                payload = dict(self.spec.empty_body)
            else:
                payload = request.json(self._max_json_depth)
            if not isinstance(payload, dict):
                raise HTTPError(
                    400,
                    f'request body must be a JSON object of parameters, got {_json_type(payload)}',
                    error_type='InvalidPayload',
                )
            for name, value in payload.items():
                binding = self._bindings.get(name)
                if binding is None or binding.param.source != 'body':
                    if self.spec.accepts_any_kwargs:
                        kwargs[name] = value
                    elif not self.spec.fastapi_rules:  # FastAPI ignores the fields it does not know
                        raise HTTPError(
                            400,
                            f'unexpected parameter {name!r}; {self.spec.path} accepts: {self._accepted}',
                            error_type='InvalidPayload',
                        )
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
            raise HTTPError(
                400,
                f'missing required parameter{"s" if len(missing) > 1 else ""} {names} for {self.spec.path}',
                error_type='InvalidPayload',
            )
        return kwargs


class _Call:
    """One job call: started, watched, answered; ended (slot freed, metrics recorded) when the work really ends."""

    _done: threading.Event

    def __init__(self, invoker: Invoker, request: Request):
        self.invoker = invoker
        self.request = request
        self._started = time.perf_counter()
        self._outcome: dict[str, Any] = {}
        self._ended = False
        self._lock = threading.Lock()
        invoker._metrics.call_started()
        invoker._calls_running.inc()

    def run_here(self, kwargs: dict[str, Any]) -> None:
        """Call a sync handler in this thread."""
        try:
            self._outcome['result'] = self.invoker._call(self.request, kwargs)
        except BaseException as e:
            self._outcome['error'] = e

    def run_watched(self, kwargs: dict[str, Any]) -> None:
        """Run the handler elsewhere (a thread, the event loop) and wait for it, its deadline, or its client leaving.

        At the deadline the answer is a 504, and the work is cancelled: an `async def` gets
        CancelledError, a plain `def` sees `request.cancelled()`. It keeps its place under the
        concurrency cap until it really ends.
        """
        invoker, request = self.invoker, self.request
        self._done = threading.Event()  # set by the work when it is over; only watched calls need it
        try:
            if invoker.spec.is_async:
                future, cancel = invoker._start_async(request, kwargs)
                future.add_done_callback(self._settle)
            else:
                cancel = _nothing
                context = contextvars.copy_context()
                worker = threading.Thread(
                    target=context.run, args=(self._work, kwargs), name=f'call {invoker.spec.path}', daemon=True
                )
                worker.start()
        except BaseException as e:  # the call could not start (bad arguments to a coroutine, no thread)
            self._outcome['error'] = e
            self._done.set()
            return
        watch_client = invoker._cancel_on_disconnect and request.is_disconnected is not None
        while not self._done.wait(_wait_step(request.deadline, watch_client)):
            if request.deadline is not None and time.monotonic() >= request.deadline:
                request.cancel(DEADLINE_PASSED)
                cancel()
                invoker._metrics.timed_out()
                raise _timed_out(invoker.spec.path)
            if watch_client and request.is_disconnected is not None and request.is_disconnected():
                request.cancel(CLIENT_LEFT)
                cancel()
                raise ClientDisconnected()

    def _work(self, kwargs: dict[str, Any]) -> None:
        try:
            self._outcome['result'] = self.invoker._call(self.request, kwargs)
        except BaseException as e:
            self._outcome['error'] = e
        self._done.set()
        if is_stream(self._outcome.get('result')):
            return  # the stream ends the call when its last item is sent
        self.end('error' in self._outcome)

    def _settle(self, future: Future[Any]) -> None:
        try:
            self._outcome['result'] = future.result()
        except BaseException as e:  # CancelledError too
            self._outcome['error'] = e
        self._done.set()
        self.end('error' in self._outcome)

    def response(self) -> Response:
        """The answer: the result as JSON, a stream, or the error the handler raised."""
        error = self._outcome.get('error')
        if error is not None:
            self.end(True)  # the work is over: it raised
            raise self._translate(error)
        result = self._outcome['result']
        if is_stream(result):
            return self.invoker._stream(self, result)
        try:
            body = self.invoker._encode(result)
        except BaseException:
            self.end(True)
            raise
        self.end(False)
        return json_bytes_response(body)

    def _translate(self, error: BaseException) -> BaseException:
        """A cancellation as the client should hear of it; an async handler's ValueError as a 400."""
        # Here, not at the top: a job without `async def` methods never needs asyncio's 12 ms at start-up.
        from asyncio import CancelledError

        reason = self.request.cancel_reason
        if isinstance(error, (CallCancelled, CancelledError, FutureCancelled)) and reason is not None:
            if reason == CLIENT_LEFT:
                return ClientDisconnected()
            self.invoker._metrics.timed_out()
            return _timed_out(self.invoker.spec.path)
        if isinstance(error, ValueError) and not isinstance(error, HTTPError):
            return _refused(error)
        return error

    def end(self, failed: bool) -> None:
        """Free the call's place and record it, once, when its work is over."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        invoker = self.invoker
        seconds = time.perf_counter() - self._started
        invoker._calls_running.dec()
        invoker._metrics.call_finished(seconds, failed)
        deadline = self.request.deadline
        if deadline is not None and self.request.cancel_reason == DEADLINE_PASSED:
            invoker._overran(self.request, max(0.0, time.monotonic() - deadline))
        if invoker._limiter is not None:
            invoker._limiter.release(seconds)


def _nothing() -> None:
    """A plain `def` cannot be interrupted: it sees its cancellation through `request.cancelled()`."""


def _wait_step(deadline: float | None, watch_client: bool) -> float | None:
    """How long to wait for the call before looking at its deadline and its client again."""
    step = _CLIENT_POLL if watch_client else None
    if deadline is not None:
        remaining = max(0.0, deadline - time.monotonic())
        step = remaining if step is None else min(step, remaining)
    return step


def _timed_out(path: str) -> HTTPError:
    return HTTPError(504, f'{path} did not finish before its deadline', error_type='Timeout', rejected='timeout')


def _refused(error: ValueError) -> HTTPError:
    # Kept from the existing implementation: a ValueError is the job refusing its input.
    return HTTPError(400, str(error) or type(error).__name__, error_type=type(error).__name__)


def _timeout_header(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise HTTPError(
            400,
            f'{REQUEST_TIMEOUT_HEADER} must be a positive number of seconds, got {text!r}',
            error_type='InvalidHeader',
        )
    return seconds


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
    names = {
        list: 'an array',
        str: 'a string',
        bool: 'a boolean',
        int: 'a number',
        float: 'a number',
        type(None): 'null',
    }
    return names.get(type(value), type(value).__name__)
