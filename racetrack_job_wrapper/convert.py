"""Input converters built from Python annotations: JSON values and query or path text -> job arguments.

A converter is built once at start-up from an annotation's `TypeInfo` and is a chain of closures,
so the per-request cost is a few type checks and no introspection.

Converters follow a `ValidationMode`, the manifest's `jobtype_extra.validate_input`:
- lax (the default) accepts what pydantic v2's lax mode accepts, as FastAPI endpoints do:
  numeric strings for numbers (`" 3 "`, `"1_000"`, `"1e3"` for a float, `"3.0"` for an int),
  integral floats for an int (`7907.0` -> `7907`), `1`/`0`/`"yes"`/`"off"`... for a bool; unknown
  dataclass and TypedDict fields are ignored; a union takes the member the value fits best, as
  pydantic's smart mode does;
- strict takes JSON types as they are: a bool is never an `int` or a `float`, a string never a
  number; a union sends a value whose JSON type names a member to it, else tries members in order;
  unknown fields are errors;
- off passes JSON arguments on as decoded.
In both checking modes a value that already fits reaches the job unchanged: an integer given for a
`float` stays an integer (PEP 484's numeric tower; pydantic would pass `1.0`), so the job sums
`[40, 2]` to `42`, as it would unvalidated. Where the value does not fit it is converted: a list
into a `tuple`, `set` or `frozenset`, an object into a dataclass instance (recursively), an
`Enum` value into its member. `Optional[X]` accepts null. A pydantic model validates itself:
`model_validate` in lax mode (as FastAPI calls it), `model_validate_json` with `strict=True` in
strict mode (the value came as JSON, where an array is a tuple's form), and the job gets the
model instance; pydantic's first error becomes the ValidationError, with its field's path.
Annotations this module does not understand (arbitrary classes, numpy arrays, `Any`, none at
all) are not checked.

Text converters (query strings, path segments) parse `int`, `float`, `bool`, `str`, `Literal`
and `Enum` values from text, in every mode: lax reads numbers and booleans as pydantic reads
strings, strict takes plain decimals (finite floats only) and `true/false/1/0/yes/no/on/off`;
a list/tuple/set parameter takes every value of a repeated query key (`?n=1&n=2`); a scalar
parameter given a repeated key takes the last value; an empty value means null for an
`Optional` non-string; dicts, dataclasses and TypedDicts are read as JSON text.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable
from typing import Any

from racetrack_job_wrapper.serialize import json_default
from racetrack_job_wrapper.typeinfo import JSON_TYPE_NAMES, Kind, TypeInfo, classify, json_type_name

Converter = Callable[[Any, str], Any]

_TRUE_TEXTS = frozenset({'true', '1', 'yes', 'on'})
_FALSE_TEXTS = frozenset({'false', '0', 'no', 'off'})


class ValidationError(ValueError):
    """An argument that does not fit its annotation; the message names the JSON path and the expected type."""

    def __init__(self, path: str, problem: str, mismatch: bool = False):
        super().__init__(f'{path}: {problem}')
        self.path = path
        self.problem = problem
        # A plain wrong-JSON-type error at `path`, as opposed to a problem found inside the value.
        self.mismatch = mismatch


def _mismatch(path: str, expected: str, value: Any) -> ValidationError:
    return ValidationError(path, f'expected {expected}, got {json_type_name(value)}', mismatch=True)


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    # Error messages echo input; a long value would flood logs and responses.
    return text if len(text) <= 60 else text[:57] + '...'


class ValidationMode(enum.Enum):
    """How JSON arguments are checked against annotations: the manifest's `jobtype_extra.validate_input`."""

    LAX = 'lax'  # `true`, the default: what pydantic's lax mode (so FastAPI) accepts
    STRICT = 'strict'  # `strict`: the JSON type must be the annotated one
    OFF = 'off'  # `false`: JSON arguments reach the job as decoded


# How closely a value matched, ranked as pydantic ranks union members: exact (it has the type),
# strict (the JSON form of it: an int for a float, an object for a dataclass, anything for Any)
# or lax (converted from another type, such as "3" for an int).
_LAX, _STRICT, _EXACT = 0, 1, 2


class _Fit:
    """How closely one conversion matched; lets a union pick its member as pydantic's smart mode does."""

    __slots__ = ('fields_set', 'level')

    def __init__(self) -> None:
        self.level = _EXACT
        self.fields_set: int | None = None  # dataclass and TypedDict fields given, nested ones included

    def lower(self, level: int) -> None:
        self.level = min(self.level, level)

    def add_fields(self, count: int) -> None:
        self.fields_set = (self.fields_set or 0) + count

    def beats(self, other: _Fit) -> bool:
        # Between two structured members the one given more of its fields wins, else the closer match.
        if self.fields_set is not None and other.fields_set is not None and self.fields_set != other.fields_set:
            return self.fields_set > other.fields_set
        return self.level > other.level


# A converter as built: it also reports how closely the value matched.
_Node = Callable[[Any, str, _Fit], Any]


def build_converter(annotation: Any, mode: ValidationMode = ValidationMode.LAX) -> Converter | None:
    """A converter checking a decoded JSON value against `annotation`, or None when nothing is checked.

    The converter is called as `conv(value, path)` and returns the value to pass on;
    it raises ValidationError naming the path, e.g. `numbers[2]: expected number, got string`.
    """
    if mode is ValidationMode.OFF:
        return None
    node = _ConverterBuilder(mode).build(classify(annotation))
    if node is None:
        return None

    def convert(value: Any, path: str) -> Any:
        return node(value, path, _Fit())

    return convert


# The characters Rust's `str::trim` strips (Unicode White_Space), as pydantic does around numbers;
# Python's `str.strip()` would also strip U+001C..U+001F.
_WHITESPACE = (
    '\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008'
    '\u2009\u200a\u2028\u2029\u202f\u205f\u3000'
)
# pydantic's integer strings: a sign, leading zeros (underscores among them too), digits with single
# underscores between them, and a `.000` tail. pydantic also reads "0-1" as -1, a slip of its
# leading-zero stripping that is deliberately not copied.
_INT_TEXT = re.compile(r'([+-]?)(?:0[0_]*)?(0|[1-9](?:_?[0-9])*)(?:\.0+)?', re.ASCII)
_MAX_INT_DIGITS = 4300  # Python's default int_max_str_digits, the bound pydantic (>= 2.14) keeps too
# Rust's float syntax, which pydantic parses strings with: inf, infinity and nan in any case.
_FLOAT_TEXT = re.compile(
    r'[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)', re.ASCII | re.IGNORECASE
)
_FLOAT_INT_BOUND = 2.0**63  # pydantic takes integral floats as ints inside the 64-bit range only
_INT64 = range(-(2**63), 2**63)
_BOOL_TEXTS = {
    '0': False,
    'f': False,
    'n': False,
    'no': False,
    'off': False,
    'false': False,
    '1': True,
    't': True,
    'y': True,
    'yes': True,
    'on': True,
    'true': True,
}


def _int_from_text(text: str) -> int | None:
    match = _INT_TEXT.fullmatch(text.strip(_WHITESPACE))
    if match is None:
        return None
    sign, digits = match[1], match[2].replace('_', '')
    if len(digits) > _MAX_INT_DIGITS:
        return None
    return int(sign + digits)


def _float_from_text(text: str) -> float | None:
    candidate = text.strip(_WHITESPACE)
    if _FLOAT_TEXT.fullmatch(candidate) is None:
        # Underscores between characters are dropped, as in Python literals; pydantic then does not trim.
        if '_' not in text or text.startswith('_') or text.endswith('_') or '__' in text:
            return None
        candidate = text.replace('_', '')
        if _FLOAT_TEXT.fullmatch(candidate) is None:
            return None
    return float(candidate)


def _bool_from_text(text: str) -> bool | None:
    return _BOOL_TEXTS.get(text.lower()) if text.isascii() else None


def _int_as_float(value: int, path: str, fit: _Fit) -> int:
    # PEP 484's numeric tower: an int is acceptable where a float is expected, so it reaches the job
    # unchanged (pydantic would pass 1.0 for 1; `sum` of ints should stay an int). It must still fit one.
    try:
        float(value)
    except OverflowError:
        raise ValidationError(path, 'integer is too large for a float') from None
    fit.lower(_STRICT)
    return value


def _strict_bool(value: Any, path: str, fit: _Fit) -> Any:
    if value is True or value is False:
        return value
    raise _mismatch(path, 'boolean', value)


def _strict_int(value: Any, path: str, fit: _Fit) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _mismatch(path, 'integer', value)


def _strict_float(value: Any, path: str, fit: _Fit) -> Any:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_as_float(value, path, fit)
    raise _mismatch(path, 'number', value)


def _lax_bool(value: Any, path: str, fit: _Fit) -> Any:
    if value is True or value is False:
        return value
    kind = type(value)
    flag: bool | None = None
    if kind is int or kind is float:
        if value == 0 or value == 1:
            flag = value == 1
    elif kind is str:
        flag = _bool_from_text(value)
    if flag is None:
        raise _mismatch(path, 'boolean', value)
    fit.lower(_LAX)
    return flag


def _lax_int(value: Any, path: str, fit: _Fit) -> Any:
    kind = type(value)
    if kind is int:
        return value
    number: int | None = None
    if kind is bool:
        number = int(value)
    elif kind is float:
        if value.is_integer() and -_FLOAT_INT_BOUND < value < _FLOAT_INT_BOUND:
            number = int(value)
    elif kind is str:
        number = _int_from_text(value)
    if number is None:
        raise _mismatch(path, 'integer', value)
    fit.lower(_LAX)
    return number


def _lax_float(value: Any, path: str, fit: _Fit) -> Any:
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return _int_as_float(value, path, fit)
    number: float | None = None
    if kind is bool:
        number = float(value)
    elif kind is str:
        number = _float_from_text(value)
    if number is None:
        raise _mismatch(path, 'number', value)
    fit.lower(_LAX)
    return number


def _accept_str(value: Any, path: str, fit: _Fit) -> Any:
    if isinstance(value, str):
        return value
    raise _mismatch(path, 'string', value)


def _accept_none(value: Any, path: str, fit: _Fit) -> Any:
    if value is None:
        return None
    raise _mismatch(path, 'null', value)


def _accept_any(value: Any, path: str, fit: _Fit) -> Any:
    fit.lower(_STRICT)  # in a pydantic union, Any is preferred to a lax conversion but not to an exact match
    return value


_STRICT_PRIMITIVES: dict[Kind, _Node] = {
    Kind.BOOL: _strict_bool,
    Kind.INT: _strict_int,
    Kind.FLOAT: _strict_float,
    Kind.STR: _accept_str,
    Kind.NONE: _accept_none,
}
_LAX_PRIMITIVES: dict[Kind, _Node] = {
    Kind.BOOL: _lax_bool,
    Kind.INT: _lax_int,
    Kind.FLOAT: _lax_float,
    Kind.STR: _accept_str,
    Kind.NONE: _accept_none,
}


class _ConverterBuilder:
    """Builds converters of one mode; memoizes classes so recursive dataclasses build a finite closure graph."""

    def __init__(self, mode: ValidationMode) -> None:
        self._lax = mode is ValidationMode.LAX
        self._primitives = _LAX_PRIMITIVES if self._lax else _STRICT_PRIMITIVES
        self._classes: dict[type, _Node] = {}

    def build(self, info: TypeInfo) -> _Node | None:
        kind = info.kind
        primitive = self._primitives.get(kind)
        if primitive is not None:
            return primitive
        if kind is Kind.UNION:
            return self._union(info.parts)
        if kind is Kind.LITERAL:
            return _lax_literal(info.values) if self._lax else _strict_literal(info.values)
        if kind is Kind.ENUM:
            return _lax_enum(info) if self._lax else _strict_enum(info)
        if kind in (Kind.DATACLASS, Kind.TYPEDDICT):
            return self._object(info)
        if kind is Kind.MODEL:
            return _model(info, strict=not self._lax)
        if kind in (Kind.SEQUENCE, Kind.SET):
            return self._sequence(info.item, info.container)
        if kind is Kind.TUPLE:
            return self._tuple(info.parts)
        if kind is Kind.DICT:
            return self._dict(info.key, info.value)
        return None

    def _item(self, info: TypeInfo) -> _Node:
        return self.build(info) or _accept_any

    def _union(self, members: tuple[TypeInfo, ...]) -> _Node:
        nodes = [self._item(member) for member in members]
        names = ' or '.join(_expected_name(member) for member in members)
        return _smart_union(members, nodes, names) if self._lax else _ordered_union(members, nodes, names)

    def _sequence(self, item_info: TypeInfo, container: Callable[[list[Any]], Any]) -> _Node:
        item = self.build(item_info)
        expected = 'array'

        def convert_sequence(value: Any, path: str, fit: _Fit) -> Any:
            if not isinstance(value, list):
                raise _mismatch(path, expected, value)
            if item is None:
                if value:
                    fit.lower(_STRICT)  # items taken as Any
                items = value
            else:
                items = [item(element, f'{path}[{index}]', fit) for index, element in enumerate(value)]
            if container is list:
                return items
            fit.lower(_LAX)
            try:
                return container(items)
            except TypeError:
                raise ValidationError(path, 'array items must be hashable to form a set') from None

        return convert_sequence

    def _tuple(self, item_infos: tuple[TypeInfo, ...]) -> _Node:
        items = [self._item(item) for item in item_infos]
        count = len(items)

        def convert_fixed(value: Any, path: str, fit: _Fit) -> Any:
            if not isinstance(value, list):
                raise _mismatch(path, 'array', value)
            if len(value) != count:
                raise ValidationError(path, f'expected an array of {count} items, got {len(value)}')
            fit.lower(_LAX)
            return tuple(
                item(element, f'{path}[{index}]', fit)
                for index, (item, element) in enumerate(zip(items, value, strict=True))
            )

        return convert_fixed

    def _dict(self, key_info: TypeInfo, value_info: TypeInfo) -> _Node:
        key = None if key_info.kind in (Kind.STR, Kind.ANY) else self._key(key_info)
        value_converter = self.build(value_info)
        holds_any = key_info.kind is Kind.ANY or value_converter is None

        def convert_dict(value: Any, path: str, fit: _Fit) -> Any:
            if not isinstance(value, dict):
                raise _mismatch(path, 'object', value)
            if holds_any and value:
                fit.lower(_STRICT)  # keys or values taken as Any
            if key is None and value_converter is None:
                return value
            converted = {}
            for name, element in value.items():
                item_path = f'{path}.{name}'
                converted[key(name, item_path, fit) if key else name] = (
                    value_converter(element, item_path, fit) if value_converter else element
                )
            return converted

        return convert_dict

    def _key(self, info: TypeInfo) -> _Node | None:
        if self._lax:
            return self.build(info)  # pydantic validates the key string as any other value
        text = _build_text(info, strict=True)
        if text is None:
            return None

        def convert_key(name: str, path: str, fit: _Fit) -> Any:
            return text(name, path)

        return convert_key

    def _object(self, info: TypeInfo) -> _Node:
        """A dataclass or a TypedDict: an object's fields bound to its fields; a dataclass is then constructed."""
        cls = info.annotation
        known = self._classes.get(cls)
        if known is not None:
            return known
        fields: dict[str, _Node] = {}
        required: list[str] = []
        ignore_unknown = self._lax  # pydantic ignores unknown fields (its default, extra='ignore')
        construct = info.kind is Kind.DATACLASS
        expected = f'object ({info.name})'

        def convert_object(value: Any, path: str, fit: _Fit) -> Any:
            if not isinstance(value, dict):
                raise _mismatch(path, expected, value)
            converted = {}
            for name, element in value.items():
                converter = fields.get(name)
                if converter is None:
                    if ignore_unknown:
                        continue
                    raise ValidationError(f'{path}.{name}', f'unknown field of {info.name}')
                converted[name] = converter(element, f'{path}.{name}', fit)
            for name in required:
                if name not in converted:
                    raise ValidationError(f'{path}.{name}', 'required field is missing')
            fit.add_fields(len(converted))
            if not construct:
                return converted  # a TypedDict value is the dict itself
            fit.lower(_STRICT)
            try:
                return cls(**converted)
            except (TypeError, ValueError) as e:  # __post_init__ checks of the job's own
                raise ValidationError(path, f'invalid {info.name}: {e}') from None

        self._classes[cls] = convert_object  # before the fields, for recursive types
        for field in info.fields:
            if field.init:
                fields[field.name] = self._item(field.info)
                if field.required:
                    required.append(field.name)
        return convert_object


def _model(info: TypeInfo, strict: bool) -> _Node:
    """A pydantic model, validated by pydantic: the job has it installed, having defined the model with it."""
    cls = info.annotation
    expected = f'object ({info.name})'
    takes_any = bool(getattr(cls, '__pydantic_root_model__', False))  # a RootModel's value need not be an object

    def validate(value: Any) -> Any:
        return cls.model_validate_json(json.dumps(value), strict=True) if strict else cls.model_validate(value)

    def convert_model(value: Any, path: str, fit: _Fit) -> Any:
        if not takes_any and not isinstance(value, dict):
            raise _mismatch(path, expected, value)
        try:
            model = validate(value)
        except ValueError as e:  # pydantic's ValidationError is one; so is a job's validator refusing
            raise _model_error(path, info.name, e) from None
        fit.lower(_STRICT)
        fields_set = getattr(model, 'model_fields_set', None)
        if isinstance(fields_set, (set, frozenset)):
            fit.add_fields(len(fields_set))
        return model

    return convert_model


def _model_error(path: str, name: str, error: ValueError) -> ValidationError:
    """pydantic's first error, at its field's path: `point.x: Input should be a valid number`."""
    errors = getattr(error, 'errors', None)
    details: list[Any] = []
    if callable(errors):
        try:
            details = list(errors(include_url=False))
        except TypeError:
            details = list(errors())
    if not details or not isinstance(details[0], dict):
        return ValidationError(path, f'invalid {name}: {error}')
    first = details[0]
    where = path + ''.join(f'[{part}]' if isinstance(part, int) else f'.{part}' for part in first.get('loc', ()))
    message = str(first.get('msg', error))
    more = len(details) - 1
    if more:
        message += f' (and {more} more error{"s" if more > 1 else ""} in {name})'
    return ValidationError(where, message, mismatch=where == path and first.get('type') == 'model_type')


def _union_error(path: str, names: str, value: Any, errors: list[ValidationError]) -> ValidationError:
    # A problem inside the one member that could fit is reported as it is.
    inner = [e for e in errors if not (e.mismatch and e.path == path)]
    return inner[0] if len(inner) == 1 else _mismatch(path, names, value)


def _primitive_members(members: tuple[TypeInfo, ...], nodes: list[_Node]) -> dict[type, _Node]:
    """The converters of a union's scalar members, by the Python type of the values they take as they are."""
    exact: dict[type, _Node] = {}
    for member, node in zip(members, nodes, strict=True):
        if member.kind in JSON_TYPE_NAMES:
            exact.setdefault(member.annotation, node)
    return exact


def _ordered_union(members: tuple[TypeInfo, ...], nodes: list[_Node], names: str) -> _Node:
    """Strict unions: a value whose JSON type names a primitive member goes to it, others try members in order."""
    if _accept_any in nodes:
        return _accept_any
    # `str | int` keeps "1" a string, `int | float` keeps 1 an integer; an integer goes to `float`
    # when no member is `int`.
    exact = _primitive_members(members, nodes)
    if int not in exact and float in exact:
        exact[int] = exact[float]

    def convert_union(value: Any, path: str, fit: _Fit) -> Any:
        converter = exact.get(type(value))
        if converter is not None:
            return converter(value, path, fit)
        errors: list[ValidationError] = []
        for converter in nodes:
            try:
                return converter(value, path, fit)
            except ValidationError as e:
                errors.append(e)
        raise _union_error(path, names, value, errors)

    return convert_union


def _smart_union(members: tuple[TypeInfo, ...], nodes: list[_Node], names: str) -> _Node:
    """Lax unions, as pydantic's smart mode: the first exact match, else the closest fit, the earlier on a tie."""
    # A value of a primitive member's own type matches it exactly, and only a Literal (or a nested
    # union) could match exactly before it; without those the member is known at once.
    exact: dict[type, _Node] = {}
    if not any(member.kind in (Kind.LITERAL, Kind.UNION) for member in members):
        exact = _primitive_members(members, nodes)

    def convert_union(value: Any, path: str, fit: _Fit) -> Any:
        converter = exact.get(type(value))
        if converter is not None:
            return converter(value, path, fit)
        best: tuple[Any, _Fit] | None = None
        errors: list[ValidationError] = []
        for converter in nodes:
            member_fit = _Fit()
            try:
                result = converter(value, path, member_fit)
            except ValidationError as e:
                errors.append(e)
                continue
            if member_fit.level == _EXACT and member_fit.fields_set is None:
                return result
            if best is None or member_fit.beats(best[1]):
                best = (result, member_fit)
        if best is None:
            raise _union_error(path, names, value, errors)
        result, best_fit = best
        fit.lower(best_fit.level)
        if best_fit.fields_set is not None:
            fit.add_fields(best_fit.fields_set)
        return result

    return convert_union


def _expected_name(info: TypeInfo) -> str:
    kind = info.kind
    if kind in JSON_TYPE_NAMES:
        return JSON_TYPE_NAMES[kind]
    if kind is Kind.LITERAL:
        return 'one of ' + ', '.join(_show(value) for value in info.values)
    if kind is Kind.ENUM:
        return f'{info.name} value'
    if kind in (Kind.DATACLASS, Kind.TYPEDDICT, Kind.MODEL):
        return f'object ({info.name})'
    if kind is Kind.DICT:
        return 'object'
    if kind in (Kind.TUPLE, Kind.SEQUENCE, Kind.SET):
        return 'array'
    return 'any value'


def _choices(values: list[Any]) -> dict[tuple[type, Any], Any]:
    # Keyed by type too: True == 1 in Python, but not in JSON.
    table: dict[tuple[type, Any], Any] = {}
    for value, result in values:
        kind = bool if isinstance(value, bool) else (int if isinstance(value, int) else type(value))
        try:
            table[(kind, value)] = result
        except TypeError:  # an unhashable value cannot come from a lookup anyway
            continue
    return table


def _lookup(table: dict[tuple[type, Any], Any], value: Any) -> Any:
    kind = bool if isinstance(value, bool) else (int if isinstance(value, int) else type(value))
    try:
        return table.get((kind, value), _NOT_FOUND)
    except TypeError:
        return _NOT_FOUND


_NOT_FOUND = object()


def _choice_error(path: str, expected: str, value: Any) -> ValidationError:
    return ValidationError(path, f'expected {expected}, got {_show(value)}', mismatch=True)


def _one_of(values: Any) -> str:
    """The expected values of a Literal or Enum, in their JSON form."""
    return 'one of ' + ', '.join(_show(json_default(value)[1]) for value in values)


def _strict_literal(values: tuple[Any, ...]) -> _Node:
    table = _choices([(value, value) for value in values])
    expected = _one_of(values)

    def convert_literal(value: Any, path: str, fit: _Fit) -> Any:
        found = _lookup(table, value)
        if found is _NOT_FOUND:
            raise _choice_error(path, expected, value)
        return found

    return convert_literal


def _lax_literal(values: tuple[Any, ...]) -> _Node:
    table = _choices([(value, value) for value in values])
    # Then pydantic compares by value, so 1.0 and true match 1 and "x" matches a str enum member;
    # booleans, floats and enum members before plain ints and strings, as its lookup goes.
    by_value = sorted(values, key=lambda value: type(value) in (int, str))
    expected = _one_of(values)

    def convert_literal(value: Any, path: str, fit: _Fit) -> Any:
        found = _lookup(table, value)
        if found is _NOT_FOUND:
            found = next((literal for literal in by_value if literal == value), _NOT_FOUND)
            if found is _NOT_FOUND:
                raise _choice_error(path, expected, value)
        return found

    return convert_literal


def _strict_enum(info: TypeInfo) -> _Node:
    table = _choices([(json_default(member.value)[1], member) for member in info.values])
    expected = _one_of(member.value for member in info.values)

    def convert_enum(value: Any, path: str, fit: _Fit) -> Any:
        found = _lookup(table, value)
        if found is _NOT_FOUND:
            raise _choice_error(path, expected, value)
        return found

    return convert_enum


def _lax_enum(info: TypeInfo) -> _Node:
    # pydantic converts to the enum's mixed-in type first (an IntEnum takes "1"), looks the value up
    # among the members, then asks the class itself (Flag combinations, a custom `_missing_`).
    cls = info.annotation
    mixin = next((classify(base).kind for base in (int, str, float) if issubclass(cls, base)), None)
    to_mixin = _LAX_PRIMITIVES.get(mixin) if mixin is not None else None
    members = {member.value: member for member in info.values}
    expected = _one_of(member.value for member in info.values)

    def convert_enum(value: Any, path: str, fit: _Fit) -> Any:
        fit.lower(_LAX)  # pydantic never counts a value as an exact match for an enum
        if to_mixin is not None:
            try:
                key = to_mixin(value, path, _Fit())
            except ValidationError:
                key = None
            if key in members:
                return members[key]
            if mixin is Kind.INT and key is not None and key not in _INT64:
                raise _choice_error(path, expected, value)  # pydantic looks int values up as 64-bit integers
        try:
            return cls(value)
        except (ValueError, TypeError):
            raise _choice_error(path, expected, value) from None

    return convert_enum


# ---------------------------------------------------------------------------------------------
# Text converters


def build_text_converter(annotation: Any, mode: ValidationMode = ValidationMode.LAX) -> Converter | None:
    """A converter turning query-string or path text into a value of `annotation`, or None when unchecked.

    Called as `conv(text_or_texts, path)`: a string, or the list of values of a repeated query key.
    Text is converted in every mode (it has to become the annotated type); by lax rules unless
    `mode` is strict.
    """
    return _build_text(classify(annotation), strict=mode is ValidationMode.STRICT)


def _text_mismatch(path: str, expected: str, text: str) -> ValidationError:
    return ValidationError(path, f'expected {expected}, got {_show(text)}', mismatch=True)


def _text_str(text: str, path: str) -> Any:
    return text


def _text_none(text: str, path: str) -> Any:
    if text == '' or text == 'null':
        return None
    raise _text_mismatch(path, 'null', text)


def _strict_text_int(text: str, path: str) -> Any:
    stripped = text.strip()
    if stripped and '_' not in stripped:
        try:
            return int(stripped)
        except ValueError:
            pass
    raise _text_mismatch(path, 'integer', text)


def _strict_text_float(text: str, path: str) -> Any:
    stripped = text.strip()
    if stripped and '_' not in stripped:
        try:
            number = float(stripped)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise _text_mismatch(path, 'number', text)


def _strict_text_bool(text: str, path: str) -> Any:
    lowered = text.strip().lower()
    if lowered in _TRUE_TEXTS:
        return True
    if lowered in _FALSE_TEXTS:
        return False
    raise _text_mismatch(path, 'boolean', text)


def _lax_text_int(text: str, path: str) -> Any:
    number = _int_from_text(text)
    if number is None:
        raise _text_mismatch(path, 'integer', text)
    return number


def _lax_text_float(text: str, path: str) -> Any:
    number = _float_from_text(text)
    if number is None:
        raise _text_mismatch(path, 'number', text)
    return number


def _lax_text_bool(text: str, path: str) -> Any:
    flag = _bool_from_text(text)
    if flag is None:
        raise _text_mismatch(path, 'boolean', text)
    return flag


_STRICT_TEXT_PRIMITIVES: dict[Kind, Converter] = {
    Kind.STR: _text_str,
    Kind.INT: _strict_text_int,
    Kind.FLOAT: _strict_text_float,
    Kind.BOOL: _strict_text_bool,
    Kind.NONE: _text_none,
}
_LAX_TEXT_PRIMITIVES: dict[Kind, Converter] = {
    Kind.STR: _text_str,
    Kind.INT: _lax_text_int,
    Kind.FLOAT: _lax_text_float,
    Kind.BOOL: _lax_text_bool,
    Kind.NONE: _text_none,
}


def _text_form(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if value is None:
        return 'null'
    return str(value)


def _last(texts: str | list[str]) -> str:
    return texts[-1] if isinstance(texts, list) else texts


def _build_text(info: TypeInfo, strict: bool) -> Converter | None:
    if info.kind is Kind.ANY:
        return None
    scalar = _build_text_scalar(info, strict)
    if scalar is not None:

        def convert_text(texts: Any, path: str) -> Any:
            return scalar(_last(texts), path)

        return convert_text
    if info.kind in (Kind.SEQUENCE, Kind.SET, Kind.TUPLE):
        variadic = info.kind is not Kind.TUPLE
        items = [_build_text_scalar(item, strict) or _text_str for item in info.parts]
        container = tuple if info.kind is Kind.TUPLE else info.container

        def convert_texts(texts: Any, path: str) -> Any:
            values = texts if isinstance(texts, list) else [texts]
            if not variadic and len(values) != len(items):
                raise ValidationError(path, f'expected {len(items)} values, got {len(values)}')
            converters = items * len(values) if variadic else items
            return container(
                converter(text, f'{path}[{index}]')
                for index, (converter, text) in enumerate(zip(converters, values, strict=True))
            )

        return convert_texts
    json_node = _ConverterBuilder(ValidationMode.STRICT if strict else ValidationMode.LAX).build(info)
    if json_node is None:
        return None

    def convert_json_text(texts: Any, path: str) -> Any:
        try:
            value = json.loads(_last(texts))
        except ValueError:
            raise ValidationError(path, f'expected {_expected_name(info)} as JSON text') from None
        return json_node(value, path, _Fit())

    return convert_json_text


def _build_text_scalar(info: TypeInfo, strict: bool) -> Converter | None:
    """Converter for one text value, or None when `info` is not a scalar."""
    kind = info.kind
    if kind is Kind.ANY:
        return _text_str
    primitive = (_STRICT_TEXT_PRIMITIVES if strict else _LAX_TEXT_PRIMITIVES).get(kind)
    if primitive is not None:
        return primitive
    if kind in (Kind.LITERAL, Kind.ENUM):
        by_text = _text_choice(info)
        if strict:
            return by_text
        node = _lax_literal(info.values) if kind is Kind.LITERAL else _lax_enum(info)

        def convert_choice(text: str, path: str) -> Any:
            # pydantic's reading of the text first (" 2 " for an IntEnum), then the value's text form
            # (Literal[1] from "1": pydantic refuses it, yet text has no other way to say 1).
            try:
                return node(text, path, _Fit())
            except ValidationError:
                return by_text(text, path)

        return convert_choice
    if kind is Kind.UNION:
        scalars = [_build_text_scalar(member, strict) for member in info.parts]
        converters = [converter for converter in scalars if converter is not None]
        if len(converters) != len(scalars):
            return None
        if not strict and _text_str in converters:
            return _text_str  # text matches a `str` member exactly, which pydantic's smart union prefers
        names = ' or '.join(_expected_name(member) for member in info.parts)
        # Text is tried as a string last; with a `str` member, '' and 'null' stay strings.
        ordered = sorted(converters, key=lambda converter: converter is _text_str)
        if _text_str in ordered and _text_none in ordered:
            ordered.remove(_text_none)

        def convert_union_text(text: str, path: str) -> Any:
            for converter in ordered:
                try:
                    return converter(text, path)
                except ValidationError:
                    continue
            raise _text_mismatch(path, names, text)

        return convert_union_text
    return None


def _text_choice(info: TypeInfo) -> Converter:
    """Literal or Enum values by their text form: `1`, `true`, `null`, `red`."""
    if info.kind is Kind.LITERAL:
        pairs = [(value, value) for value in info.values]
    else:
        pairs = [(member.value, member) for member in info.values]
    table = {_text_form(json_default(value)[1]): result for value, result in pairs}
    expected = 'one of ' + ', '.join(_show(text) for text in table)

    def convert_choice(text: str, path: str) -> Any:
        try:
            return table[text]
        except KeyError:
            raise _text_mismatch(path, expected, text) from None

    return convert_choice
