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

from racetrack_job_wrapper import messages
from racetrack_job_wrapper.messages import encodable_float, encode_serialized

_PLAIN = (str, int, bool, type(None))
_EXACT_PLAIN = frozenset(_PLAIN)


class SerializationError(TypeError):
    """A result that cannot be expressed in JSON; the message names the type and where it was."""


def to_json_serializable(value: Any, _path: str = 'result', *, for_encoder: bool = False) -> Any:
    """Convert dataclasses, numpy values, datetimes, Decimal, Enum, sets, tuples, `__to_json__()`
    and pydantic-style `model_dump()` objects into JSON-native values, recursively. A dataclass
    field declared with `field(metadata={'exclude': True})` is left out, as racetrack's own
    datamodel serializer leaves it out.

    With `for_encoder`, the value is meant for `messages.encode_serialized`, which writes the same
    bytes faster from it: numpy arrays of finite numbers stay arrays, str and int subclasses (enum
    members among them) become the plain values the encoder writes for them, and floats are
    `messages.encodable_float`'s.

    Raises SerializationError naming the type, and where in the result it was (`_path` names
    the whole), for anything else, and for non-finite floats.
    """
    return _convert(value, _path, for_encoder)


def encode_result(value: Any) -> bytes:
    """A job result as JSON: the bytes, and the errors, of `to_json_serializable(value, for_encoder=True)`
    written by `messages.encode_serialized`.

    The standard encoder first takes the result as it is and calls back only for what it does
    not write itself (dataclasses, numpy values, datetimes...), converted as
    `to_json_serializable` converts them: a result of plain dicts and lists is written at C
    speed, with no walk over it in Python. For everything it writes, it writes what the walk
    would have made of it (a str or int subclass as its plain value, a tuple as a list, number
    keys as strings). A result it refuses (a non-finite float, a key JSON cannot have, a lone
    surrogate) is walked after all, so the error names where. With orjson installed, a numpy
    array met on the way hands the whole result to the walk and orjson, which write arrays
    many times faster than `tolist()`.
    """
    encoder = _AS_IT_IS if messages.CODEC.orjson is None else _AS_IT_IS_BUT_ARRAYS
    try:
        return encoder.encode(value).encode()
    except (ValueError, TypeError):  # SerializationError and _ArrayMet are TypeErrors
        pass
    return encode_serialized(to_json_serializable(value, for_encoder=True))


class _ArrayMet(TypeError):
    """A numpy array in a result: with orjson, the walk and orjson write it faster."""


def _converted(value: Any) -> Any:
    """The standard encoder's fallback: what it cannot write, converted (the walk places a failure)."""
    numpy = sys.modules.get('numpy')
    if numpy is not None and isinstance(value, numpy.ndarray) and _is_finite_number_array(value, numpy):
        return value.tolist()  # numbers only: the encoder writes them as they are
    return _convert(value, 'result', False)


def _converted_but_arrays(value: Any) -> Any:
    numpy = sys.modules.get('numpy')
    if numpy is not None and isinstance(value, numpy.ndarray):
        raise _ArrayMet()
    return _convert(value, 'result', False)


# Compact, no NaN: `messages.encode_json`'s encoder, calling back for what it does not write itself.
_AS_IT_IS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(',', ':'), default=_converted)
_AS_IT_IS_BUT_ARRAYS = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(',', ':'), default=_converted_but_arrays
)


# Where a value sits in the result, rendered only for an error message: the whole's name, or
# (where the container sits, the key, index or field name, how it is written).
_Where = str | tuple[Any, Any, str]
_ITEM, _FIELD = '[]', '.'
# Values that are JSON as they are, by exact class: looked up before any call is made for them.
_LEAVES = frozenset({str, int, bool, type(None)})


def _is_leaf(value: Any) -> bool:
    """JSON as it is, in either mode: a plain str, int, bool or None, or a plain float `encodable_float` keeps."""
    cls = value.__class__
    return cls in _LEAVES or (cls is float and (1e-4 <= abs(value) < 1e16 or value == 0.0))


def _render(where: _Where) -> str:
    parts = []
    while isinstance(where, tuple):
        where, key, style = where
        parts.append(f'.{key}' if style == _FIELD else f'[{key!r}]')
    return where + ''.join(reversed(parts))


def _convert(value: Any, where: _Where, for_encoder: bool) -> Any:
    cls = value.__class__
    # The containers first: most results are these, and their leaves are taken as they are,
    # without a call each.
    if isinstance(value, dict):
        return {
            (key if key.__class__ is str else _key(key, where, for_encoder)): (
                item if _is_leaf(item) else _convert(item, (where, key, _ITEM), for_encoder)
            )
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [
            item if _is_leaf(item) else _convert(item, (where, index, _ITEM), for_encoder)
            for index, item in enumerate(value)
        ]
    if isinstance(value, _PLAIN):
        if for_encoder and cls not in _EXACT_PLAIN:
            # A str or int subclass (an enum member maybe): the plain value the encoder writes for it.
            return str.__str__(value) if isinstance(value, str) else int.__int__(typing.cast(int, value))
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f'{_render(where)} is {value}, which JSON cannot represent')
        return encodable_float(value) if for_encoder else value
    if isinstance(value, (set, frozenset)):
        items = [_convert(item, (where, index, _ITEM), for_encoder) for index, item in enumerate(value)]
        try:
            return sorted(items)
        except TypeError:
            return items
    # A dataclass is its fields even when it defines `__to_json__`, as in the existing implementation.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _convert(getattr(value, field.name), (where, field.name, _FIELD), for_encoder)
            for field in dataclasses.fields(value)
            if not field.metadata.get('exclude', False)
        }
    to_json = getattr(value, '__to_json__', None)
    if callable(to_json):
        return _convert(to_json(), where, for_encoder)
    if isinstance(value, enum.Enum):
        return _convert(value.value, where, for_encoder)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return _convert(value.total_seconds(), where, for_encoder)
    # A Decimal or UUID can only exist once its module was imported: look, don't import (memory).
    decimal = sys.modules.get('decimal')
    if decimal is not None and isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise SerializationError(f'{_render(where)} is Decimal({str(value)!r}), which JSON cannot represent')
        if value == value.to_integral_value() and value.as_tuple().exponent >= 0:
            return int(value)
        # Beyond a float's range this is inf, which the encoder refuses in its own words.
        return encodable_float(float(value)) if for_encoder else float(value)
    uuid = sys.modules.get('uuid')
    if isinstance(value, PurePath) or (uuid is not None and isinstance(value, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise SerializationError(f'{_render(where)} is bytes that are not UTF-8 text') from None
    numpy = sys.modules.get('numpy')  # only when the job itself imported numpy
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            if for_encoder and _is_finite_number_array(value, numpy):
                return value
            return _convert(value.tolist(), where, for_encoder)
        if isinstance(value, numpy.generic):
            return _convert(value.item(), where, for_encoder)
    model_dump = getattr(value, 'model_dump', None)
    if callable(model_dump):
        dumped = model_dump(mode='json') if _takes_mode(model_dump) else model_dump()
        return _convert(dumped, where, for_encoder)
    raise SerializationError(
        f'{_render(where)} of type {type(value).__module__}.{type(value).__qualname__} is not JSON-serializable'
    )


def _is_finite_number_array(array: Any, numpy: Any) -> bool:
    """An ndarray (not a subclass) of booleans, integers or floats up to 64 bits, with no NaN or infinity."""
    if type(array) is not numpy.ndarray or not array.ndim or array.dtype.kind not in 'biuf' or array.dtype.itemsize > 8:
        return False
    # A non-finite element takes the element by element way, which names where it is.
    return array.dtype.kind != 'f' or bool(numpy.isfinite(array).all())


def json_default(value: Any) -> tuple[bool, Any]:
    """(True, JSON form) of a default or example value when it has one, else (False, None).

    The one reading of a default for the OpenAPI document, JSON Schema and `/api/v1/parameters`.
    """
    try:
        # Through JSON text and back, so enum members and other str or int subclasses become plain values.
        return True, json.loads(json.dumps(to_json_serializable(value, 'default')))
    except (TypeError, ValueError, RecursionError):  # no JSON form, or a `__to_json__` that refuses
        return False, None


def _key(key: Any, where: _Where, for_encoder: bool = False) -> str:
    if isinstance(key, str):
        return str.__str__(key) if for_encoder and type(key) is not str else key
    if isinstance(key, bool) or key is None:
        # As JSON writes the value (and json.dumps the key, as racetrack-job-runner answers it).
        return 'null' if key is None else 'true' if key else 'false'
    if isinstance(key, (int, float)):
        return str(key)
    if isinstance(key, enum.Enum):
        return str(key.value)
    raise SerializationError(
        f'{_render(where)} has a key of type {type(key).__qualname__}; JSON object keys are strings'
    )


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
