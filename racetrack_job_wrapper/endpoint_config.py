"""`EndpointConfig` for `auxiliary_endpoints_v2`, and the `Body` / `Query` / `Path` parameter markers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPMethod
from typing import Any


@dataclass
class EndpointConfig:
    """One auxiliary endpoint: its path, HTTP method, handler and documentation options.

    `other_options` may carry `tags`, `summary`, `description`, `deprecated` and `operation_id`
    for the API docs; other keys are ignored with a warning.
    """

    path: str
    method: HTTPMethod | str
    handler: Callable[..., Any]
    other_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Marker:
    default: Any = ...
    description: str | None = None
    example: Any = ...
    examples: list[Any] | None = None


@dataclass(frozen=True)
class Body(_Marker):
    """`Annotated[T, Body(...)]`: the argument comes from the JSON request body.

    As in FastAPI, an endpoint's only body parameter takes the whole body (`1.2`, not
    `{"factor": 1.2}`), unless it is `Body(embed=True)`.
    """

    embed: bool = False


class Query(_Marker):
    """`Annotated[T, Query(...)]`: the argument comes from the query string."""


class Path(_Marker):
    """`Annotated[T, Path(...)]`: the argument is a `{name}` segment of the endpoint path."""
