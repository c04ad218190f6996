"""Introspection of job methods, once at start-up, into endpoint descriptions.

One `EndpointSpec` serves three readers: the invoker (argument binding and validation),
the OpenAPI generator, and `/api/v1/parameters`.
"""
from __future__ import annotations

import inspect
import json
import logging
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from racetrack_job_wrapper.docstrings import parse_docstring
from racetrack_job_wrapper.serialize import SerializationError, to_json_serializable

logger = logging.getLogger(__name__)

MISSING: Any = inspect.Parameter.empty
# FastAPI's markers and ours are told apart by class name, so FastAPI is never imported.
_MARKER_SOURCES = {'Body': 'body', 'Query': 'query', 'Path': 'path'}


class JobDefinitionError(ValueError):
    """A job method or setting that cannot be served; the message names the method or field."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of an endpoint handler."""

    name: str
    annotation: Any = MISSING      # the type, with `Annotated[...]` metadata removed
    default: Any = MISSING
    source: str = 'body'           # 'body', 'query' or 'path'
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


@dataclass(frozen=True)
class EndpointSpec:
    """A job method exposed over HTTP, described once at start-up."""

    path: str                      # under /api/v1, e.g. '/perform' or '/multiply/{path}'
    method: str                    # upper-case HTTP method
    handler: Callable[..., Any]
    signature: inspect.Signature
    params: tuple[ParamSpec, ...]
    returns: Any = MISSING
    description: str = ''
    returns_description: str = ''
    example: Mapping[str, Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    accepts_any_kwargs: bool = False
    is_async: bool = False

    @property
    def metric_label(self) -> str:
        """The `endpoint` label in metrics: the path as the job declared it."""
        return self.path

    def param(self, name: str) -> ParamSpec | None:
        """The parameter called `name`, if any."""
        return next((param for param in self.params if param.name == name), None)


def describe_endpoint(path: str, method: str, handler: Callable[..., Any], *,
                      example: Mapping[str, Any] | None = None,
                      options: Mapping[str, Any] | None = None,
                      default_source: str = 'body') -> EndpointSpec:
    """Describe `handler` served at `path`; raises JobDefinitionError for signatures that cannot be served."""
    label = getattr(handler, '__qualname__', repr(handler))
    if not callable(handler):
        raise JobDefinitionError(f'endpoint {path}: handler {handler!r} is not callable')
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError) as e:
        raise JobDefinitionError(f'endpoint {path}: cannot read the signature of {label}: {e}') from e
    hints = _type_hints(handler)
    doc = parse_docstring(inspect.getdoc(handler))
    path_names = set(_path_param_names(path))
    params: list[ParamSpec] = []
    accepts_any_kwargs = False
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise JobDefinitionError(
                f'endpoint {path}: {label} takes *{parameter.name}; job methods must not use *args, '
                'since arguments arrive by name as a JSON object')
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_any_kwargs = True
            continue
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise JobDefinitionError(
                f'endpoint {path}: parameter {parameter.name!r} of {label} is positional-only; '
                'arguments arrive by name')
        annotation = hints.get(parameter.name, parameter.annotation)
        annotation, marker = _split_annotated(annotation)
        if parameter.name in path_names:
            source = 'path'
        elif marker is not None:
            source = _MARKER_SOURCES[type(marker).__name__]
        else:
            source = default_source
        default = parameter.default
        if default is MISSING and marker is not None:
            marker_default = getattr(marker, 'default', ...)
            if marker_default is not ... and not _is_undefined(marker_default):
                default = marker_default
        params.append(ParamSpec(
            name=parameter.name,
            annotation=annotation,
            default=default,
            source=source,
            description=doc.params.get(parameter.name) or _marker_description(marker),
            examples=_marker_examples(marker),
        ))
    missing = path_names - {param.name for param in params}
    if missing:
        raise JobDefinitionError(
            f'endpoint {path}: path parameter(s) {", ".join(sorted(missing))} are not parameters of {label}')
    if example is not None:
        validate_example(path, example)
    return EndpointSpec(
        path=path,
        method=method.upper(),
        handler=handler,
        signature=signature,
        params=tuple(params),
        returns=hints.get('return', signature.return_annotation),
        description=doc.description,
        returns_description=doc.returns,
        example=example,
        options=dict(options or {}),
        accepts_any_kwargs=accepts_any_kwargs,
        is_async=inspect.iscoroutinefunction(handler),
    )


MAX_EXAMPLE_BYTES = 1024 * 1024


def validate_example(path: str, example: Any) -> None:
    """Check a docs input example: a dict, JSON-serializable, at most 1 MB encoded."""
    if not isinstance(example, Mapping):
        raise JobDefinitionError(
            f'input example for endpoint {path} must be a dict, got {type(example).__name__}')
    try:
        size = len(json.dumps(example, allow_nan=False).encode())
    except (TypeError, ValueError) as e:
        raise JobDefinitionError(f'input example for endpoint {path} is not JSON-serializable: {e}') from e
    if size > MAX_EXAMPLE_BYTES:
        raise JobDefinitionError(
            f'input example for endpoint {path} is {size} bytes encoded; the limit is {MAX_EXAMPLE_BYTES}')


def describe_parameters(spec: EndpointSpec) -> list[dict[str, Any]]:
    """The `/api/v1/parameters` listing: name, default_value (when there is one) and type."""
    described = []
    for param in spec.params:
        entry: dict[str, Any] = {'name': param.name}
        if not param.required:
            entry['default_value'] = _json_default(param.default)
        entry['type'] = type_name(param.annotation)
        described.append(entry)
    return described


def _json_default(value: Any) -> Any:
    """A default as JSON can show it; its repr when it has no JSON form."""
    try:
        return to_json_serializable(value)
    except SerializationError:
        return repr(value)


def type_name(annotation: Any) -> str | None:
    """Readable name of an annotation: `int`, `list[float]`, `Optional[str]`; None when absent."""
    if annotation is MISSING:
        return None
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    if isinstance(annotation, str):
        return annotation
    return str(annotation).replace('typing.', '')


def _type_hints(handler: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations (string annotations evaluated); the raw ones if resolution fails."""
    target = getattr(handler, '__func__', handler)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception as e:  # a forward reference the module cannot resolve
        logger.warning('cannot resolve annotations of %s (%s); using them as written',
                       getattr(handler, '__qualname__', handler), e)
        return {}


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
