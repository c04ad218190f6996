"""Turning job results into JSON-serializable values."""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import enum
import json
import math
import sys
import types
import typing
from pathlib import PurePath
from typing import Any

_PLAIN = (str, int, bool, type(None))


class SerializationError(TypeError):
    """A result that cannot be expressed in JSON; the message names the type and where it was."""


def to_json_serializable(value: Any, _path: str = 'result') -> Any:
    """Convert dataclasses, numpy values, datetimes, Decimal, Enum, sets, tuples, `__to_json__()`
    and pydantic-style `model_dump()` objects into JSON-native values, recursively. A dataclass
    field declared with `field(metadata={'exclude': True})` is left out, as racetrack's own
    datamodel serializer leaves it out.

    Raises SerializationError naming the type for anything else, and for non-finite floats.
    """
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f'{_path} is {value}, which JSON cannot represent')
        return value
    if isinstance(value, dict):
        return {_key(key, _path): to_json_serializable(item, f'{_path}[{key!r}]') for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_serializable(item, f'{_path}[{index}]') for index, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_json_serializable(item, f'{_path}[{index}]') for index, item in enumerate(value)]
        try:
            return sorted(items)
        except TypeError:
            return items
    # A dataclass is its fields even when it defines `__to_json__`, as in the existing implementation.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_json_serializable(getattr(value, field.name), f'{_path}.{field.name}')
            for field in dataclasses.fields(value)
            if not field.metadata.get('exclude', False)
        }
    to_json = getattr(value, '__to_json__', None)
    if callable(to_json):
        return to_json_serializable(to_json(), _path)
    if isinstance(value, enum.Enum):
        return to_json_serializable(value.value, _path)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    # A Decimal or UUID can only exist once its module was imported: look, don't import (memory).
    decimal = sys.modules.get('decimal')
    if decimal is not None and isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise SerializationError(f'{_path} is Decimal({str(value)!r}), which JSON cannot represent')
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 else float(value)
    uuid = sys.modules.get('uuid')
    if isinstance(value, PurePath) or (uuid is not None and isinstance(value, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise SerializationError(f'{_path} is bytes that are not UTF-8 text') from None
    numpy = sys.modules.get('numpy')  # only when the job itself imported numpy
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            return to_json_serializable(value.tolist(), _path)
        if isinstance(value, numpy.generic):
            return to_json_serializable(value.item(), _path)
    model_dump = getattr(value, 'model_dump', None)
    if callable(model_dump):
        return to_json_serializable(model_dump(mode='json') if _takes_mode(model_dump) else model_dump(), _path)
    raise SerializationError(
        f'{_path} of type {type(value).__module__}.{type(value).__qualname__} is not JSON-serializable'
    )


def json_default(value: Any) -> tuple[bool, Any]:
    """(True, JSON form) of a default or example value when it has one, else (False, None).

    The one reading of a default for the OpenAPI document, JSON Schema and `/api/v1/parameters`.
    """
    try:
        # Through JSON text and back, so enum members and other str or int subclasses become plain values.
        return True, json.loads(json.dumps(to_json_serializable(value, 'default')))
    except (TypeError, ValueError, RecursionError):  # no JSON form, or a `__to_json__` that refuses
        return False, None


def _key(key: Any, path: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (int, float, bool)) or key is None:
        return str(key).lower() if isinstance(key, bool) or key is None else str(key)
    if isinstance(key, enum.Enum):
        return str(key.value)
    raise SerializationError(f'{path} has a key of type {type(key).__qualname__}; JSON object keys are strings')


def _takes_mode(method: Any) -> bool:
    import inspect

    try:
        return 'mode' in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def floats_where_annotated(value: Any, annotation: Any) -> Any:
    """`value` with the ints its return annotation declares as floats made floats, as FastAPI's response model does.

    Looks through `Optional`, lists, tuples, sets and dict values; a union that admits `int`
    too, and anything else, is left as it is.
    """
    if annotation is float:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or isinstance(annotation, types.UnionType):
        if float in args and int not in args:
            return floats_where_annotated(value, float)
        return value
    if isinstance(value, dict) and origin in (dict, collections.abc.Mapping) and len(args) == 2:
        return {key: floats_where_annotated(item, args[1]) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)) and origin in (list, set, frozenset, collections.abc.Sequence):
        return type(value)(floats_where_annotated(item, args[0]) for item in value) if args else value
    if isinstance(value, tuple) and origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(floats_where_annotated(item, args[0]) for item in value)
        head = tuple(floats_where_annotated(item, arg) for item, arg in zip(value, args, strict=False))
        return head + value[len(args) :]
    return value
