"""Introspection of job methods, once at start-up, into endpoint descriptions.

One `EndpointSpec` serves three readers: the invoker (argument binding and validation),
the OpenAPI generator, and `/api/v1/parameters`.
"""

from __future__ import annotations

import enum
import inspect
import json
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from racetrack_job_wrapper.docstrings import parse_docstring
from racetrack_job_wrapper.messages import JobDefinitionError
from racetrack_job_wrapper.records import Record, field
from racetrack_job_wrapper.serialize import SerializationError, json_default, to_json_serializable

logger = logging.getLogger(__name__)

MISSING: Any = inspect.Parameter.empty
# FastAPI's markers and ours are told apart by class name, so FastAPI is never imported.
_MARKER_SOURCES = {'Body': 'body', 'Query': 'query', 'Path': 'path'}


class ParamSpec(Record):
    """One parameter of an endpoint handler."""

    name: str
    annotation: Any = MISSING  # the type, with `Annotated[...]` metadata removed
    default: Any = MISSING
    source: str = 'body'  # 'body', 'query' or 'path'
    description: str = ''
    examples: tuple[Any, ...] = ()

    @property
    def required(self) -> bool:
        """True when the parameter has no default."""
        return self.default is MISSING

    @property
    def has_annotation(self) -> bool:
        """True when the parameter is annotated."""
        return self.annotation is not MISSING


class EndpointSpec(Record):
    """A job method exposed over HTTP, described once at start-up."""

    path: str  # under /api/v1, e.g. '/perform' or '/multiply/{path}'
    method: str  # upper-case HTTP method
    handler: Callable[..., Any]
    signature: inspect.Signature
    params: tuple[ParamSpec, ...]
    returns: Any = MISSING
    docstring: str = ''  # the handler's whole docstring, shown in the API docs
    description: str = ''  # its free text without the parameter and return fields
    returns_description: str = ''
    example: Mapping[str, Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    accepts_any_kwargs: bool = False
    is_async: bool = False
    # An `async def` with `yield`: its items are awaited on the event loop, one by one.
    is_async_generator: bool = False
    # Bound as FastAPI binds (auxiliary_endpoints_v2): unmarked scalars from the query string,
    # unknown body fields ignored, a lone body parameter taking the whole body.
    fastapi_rules: bool = False
    # The one parameter that takes the whole JSON body (under FastAPI's rules), if any.
    whole_body: str | None = None
    # What an empty body stands for: the docs example of perform and auxiliary_endpoints(), as in
    # the existing implementation; None means `{}`.
    empty_body: Mapping[str, Any] | None = None

    @property
    def metric_label(self) -> str:
        """The `endpoint` label in metrics: the path as the job declared it."""
        return self.path

    @property
    def has_return_annotation(self) -> bool:
        """True when the handler declares what it returns."""
        return self.returns is not MISSING

    def param(self, name: str) -> ParamSpec | None:
        """The parameter called `name`, if any."""
        return next((param for param in self.params if param.name == name), None)


def describe_endpoint(
    path: str,
    method: str,
    handler: Callable[..., Any],
    *,
    example: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    fastapi_rules: bool = False,
    example_fills_empty_body: bool = False,
    example_source: object = None,
) -> EndpointSpec:
    """Describe `handler` served at `path`; raises JobDefinitionError for signatures that cannot be served.

    Without `fastapi_rules` (perform, auxiliary_endpoints) every argument not in the path
    or marked comes from the JSON body object. With them (auxiliary_endpoints_v2), as FastAPI
    binds: GET and DELETE read the query string; other methods read scalars (int, str,
    Optional[float] ...) from the query string and the rest from the body, a lone body
    parameter taking the whole body unless it is `Body(embed=True)`. With
    `example_fills_empty_body`, a request with an empty body is called with `example`.
    """
    label = getattr(handler, '__qualname__', repr(handler))
    if not callable(handler):
        raise JobDefinitionError(f'endpoint {path}: handler {handler!r} is not callable', where=handler)
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError) as e:
        raise JobDefinitionError(f'endpoint {path}: cannot read the signature of {label}: {e}', where=handler) from e
    hints = _type_hints(handler)
    docstring = inspect.getdoc(handler) or ''
    doc = parse_docstring(docstring)
    path_names = set(_path_param_names(path))
    params: list[ParamSpec] = []
    body_markers: dict[str, Any] = {}
    accepts_any_kwargs = False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue  # arguments arrive by name, so `*args` is always empty
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_any_kwargs = True
            continue
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise JobDefinitionError(
                f'endpoint {path}: parameter {parameter.name!r} of {label} is positional-only; '
                'arguments arrive by name',
                where=handler,
            )
        annotation = hints.get(parameter.name, parameter.annotation)
        annotation, marker = _split_annotated(annotation)
        if parameter.name in path_names:
            source = 'path'
        elif marker is not None:
            source = _MARKER_SOURCES[type(marker).__name__]
        elif fastapi_rules and (method.upper() in ('GET', 'DELETE') or _is_scalar(annotation)):
            source = 'query'
        else:
            source = 'body'
        if source == 'body':
            body_markers[parameter.name] = marker
        default = parameter.default
        if default is MISSING and marker is not None:
            marker_default = getattr(marker, 'default', ...)
            if marker_default is not ... and not _is_undefined(marker_default):
                default = marker_default
        params.append(
            ParamSpec(
                name=parameter.name,
                annotation=annotation,
                default=default,
                source=source,
                description=doc.params.get(parameter.name) or _marker_description(marker),
                examples=_marker_examples(marker),
            )
        )
    missing = path_names - {param.name for param in params}
    if missing:
        raise JobDefinitionError(
            f'endpoint {path}: path parameter(s) {", ".join(sorted(missing))} are not parameters of {label}',
            where=handler,
        )
    if example is not None:
        example = validate_example(path, example, example_source)
    whole_body = None
    if fastapi_rules and len(body_markers) == 1 and not accepts_any_kwargs:
        name, marker = next(iter(body_markers.items()))
        if not getattr(marker, 'embed', False):
            whole_body = name
    return EndpointSpec(
        path=path,
        method=method.upper(),
        handler=handler,
        signature=signature,
        params=tuple(params),
        returns=hints.get('return', signature.return_annotation),
        docstring=docstring,
        description=doc.description,
        returns_description=doc.returns,
        example=example,
        options=dict(options or {}),
        accepts_any_kwargs=accepts_any_kwargs,
        is_async=inspect.iscoroutinefunction(handler),
        is_async_generator=inspect.isasyncgenfunction(handler),
        fastapi_rules=fastapi_rules,
        whole_body=whole_body,
        empty_body=example if example_fills_empty_body else None,
    )


MAX_EXAMPLE_BYTES = 1024 * 1024
# The existing implementation's wording of a bad example, kept so that alerts on `/live` keep matching.
_BAD_EXAMPLE = 'invalid docs input example: '


def validate_example(path: str, example: Any, source: object = None) -> Any:
    """A docs input example in its JSON form; JobDefinitionError unless a dict of at most 1 MB of JSON.

    `source` is the job method that gave the example, where the error points.
    """
    if not isinstance(example, Mapping):
        raise JobDefinitionError(f'{_BAD_EXAMPLE}input example (for {path} endpoint) is not a dict', where=source)
    try:
        serializable = to_json_serializable(example, 'example')
        size = len(json.dumps(serializable, allow_nan=False).encode())
    except (SerializationError, TypeError, ValueError) as e:
        raise JobDefinitionError(
            f'{_BAD_EXAMPLE}failed to encode input example (for {path} endpoint) to JSON: {e}',
            where=source,
        ) from e
    if size > MAX_EXAMPLE_BYTES:
        raise JobDefinitionError(
            f'{_BAD_EXAMPLE}input example (for {path} endpoint) encoded to JSON ({size} bytes) '
            f'exceeds maximum size ({MAX_EXAMPLE_BYTES} bytes)',
            where=source,
        )
    return serializable


def describe_parameters(spec: EndpointSpec) -> list[dict[str, Any]]:
    """The `/api/v1/parameters` listing, entry for entry as the existing implementation gives it.

    Its order: required positional parameters, `*args`, optional positional ones, then the
    keyword-only ones, each keyword-only one with a `default_value` (null when it has none).
    """
    required: list[dict[str, Any]] = []
    variadic: list[dict[str, Any]] = []
    optional: list[dict[str, Any]] = []
    keyword_only: list[dict[str, Any]] = []
    for parameter in spec.signature.parameters.values():
        kind = parameter.kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            continue
        type_ = parameter_type_name(parameter.annotation)
        if kind is inspect.Parameter.VAR_POSITIONAL:
            variadic.append({'name': parameter.name, 'type': f'List[{type_}]'})
        elif kind is inspect.Parameter.KEYWORD_ONLY:
            default = None if parameter.default is MISSING else _listed_default(parameter.default)
            keyword_only.append({'name': parameter.name, 'default_value': default, 'type': type_})
        elif parameter.default is MISSING:
            required.append({'name': parameter.name, 'type': type_})
        else:
            optional.append(
                {'name': parameter.name, 'default_value': _listed_default(parameter.default), 'type': type_}
            )
    return required + variadic + optional + keyword_only


def _listed_default(value: Any) -> Any:
    """A default as `/api/v1/parameters` lists it: its JSON form, else its repr."""
    has_json_form, default = json_default(value)
    return default if has_json_form else repr(value)


def parameter_type_name(annotation: Any) -> str | None:
    """An annotation as written, named the way the existing implementation names it.

    That is the object's `__name__` when it has one (`int`, `List` for `List[float]`,
    `list` for `list[float]`, `Optional`), else its `str()` (`int | None`, or the text of a
    string annotation); None when the parameter is not annotated.
    """
    if annotation is MISSING or annotation is None:
        return None
    name = getattr(annotation, '__name__', None)
    return name if isinstance(name, str) else str(annotation)


def _type_hints(handler: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations (string annotations evaluated); the raw ones if resolution fails."""
    target = getattr(handler, '__func__', handler)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception as e:  # a forward reference the module cannot resolve
        logger.warning(
            'cannot resolve annotations of %s (%s); using them as written', getattr(handler, '__qualname__', handler), e
        )
        return {}


def _is_scalar(annotation: Any) -> bool:
    """True for what FastAPI reads from the query string when unmarked: a number, string, bool, enum,
    Literal, or an Optional/Union of those; also an unannotated or `Any` parameter."""
    if annotation is MISSING or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        return all(member is type(None) or _is_scalar(member) for member in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, (int, float, str, bool, bytes, enum.Enum))


def _split_annotated(annotation: Any) -> tuple[Any, Any]:
    """(`T`, marker) for `Annotated[T, marker, ...]` where a marker is Body/Query/Path; else (annotation, None)."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return annotation, None
    inner, *metadata = typing.get_args(annotation)
    marker = next((item for item in metadata if type(item).__name__ in _MARKER_SOURCES), None)
    return inner, marker


def _is_undefined(value: Any) -> bool:
    # FastAPI/pydantic spell "no default" with their own sentinels.
    return type(value).__name__ in ('PydanticUndefinedType', 'UndefinedType', 'ellipsis')


def _marker_description(marker: Any) -> str:
    description = getattr(marker, 'description', None) if marker is not None else None
    return description if isinstance(description, str) else ''


def _marker_examples(marker: Any) -> tuple[Any, ...]:
    if marker is None:
        return ()
    examples = getattr(marker, 'examples', None)
    if isinstance(examples, (list, tuple)) and examples:
        return tuple(examples)
    example = getattr(marker, 'example', ...)
    if example is not ... and example is not None and not _is_undefined(example):
        return (example,)
    return ()


def _path_param_names(path: str) -> list[str]:
    return re.findall(r'\{([A-Za-z_][A-Za-z0-9_]*)\}', path)
