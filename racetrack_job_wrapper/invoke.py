"""The one way job code is called on the request path: bind, validate, admit, call, serialize."""

from __future__ import annotations

import contextvars
import logging
import time
import typing
from dataclasses import dataclass
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
from racetrack_job_wrapper.limiter import ConcurrencyLimiter
from racetrack_job_wrapper.messages import HTTPError, Request, Response, encode_serialized, json_bytes_response
from racetrack_job_wrapper.metrics import EndpointMetrics, JobMetrics
from racetrack_job_wrapper.serialize import SerializationError, floats_where_annotated, to_json_serializable

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class _Binding:
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
    ):
        self.spec = spec
        self._metrics: EndpointMetrics = metrics.endpoint(spec.metric_label)
        self._calls_running = metrics.calls_running
        self._queue_wait = metrics.queue_wait
        self._context = context
        self._limiter = limiter
        self._async_runner = async_runner
        self._max_json_depth = max_json_depth
        self._bindings = {param.name: _Binding(param, _converter_for(param, validate)) for param in spec.params}
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
            waited = self._limiter.acquire(request.is_disconnected)
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
        return json_bytes_response(body)

    def _call(self, request: Request, kwargs: dict[str, Any]) -> Any:
        request_token = self._context.request.set(request)
        extra_token = self._context.extra.set({})
        try:
            result = self.spec.handler(**kwargs)
            if self.spec.is_async:
                result = self._async_runner.run(result)  # type: ignore[union-attr]  # __init__ requires one for async
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
            return encode_serialized(to_json_serializable(result, for_encoder=True))
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
