"""Python annotations -> JSON Schema, and input converters built from them.

Both readers walk an annotation once at start-up; a converter is a chain of closures, so the
per-request cost is a few type checks and no introspection.

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
`Enum` value into its member. `Optional[X]` accepts null. Annotations this module does not
understand (arbitrary classes, numpy arrays, `Any`, none at all) get the schema `{}` and are not
checked.

Text converters (query strings, path segments) parse `int`, `float`, `bool`, `str`, `Literal`
and `Enum` values from text, in every mode: lax reads numbers and booleans as pydantic reads
strings, strict takes plain decimals (finite floats only) and `true/false/1/0/yes/no/on/off`;
a list/tuple/set parameter takes every value of a repeated query key (`?n=1&n=2`); a scalar
parameter given a repeated key takes the last value; an empty value means null for an
`Optional` non-string; dicts, dataclasses and TypedDicts are read as JSON text.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import json
import math
import re
import sys
import types
import typing
from typing import Any, Callable, Literal, Union

Converter = Callable[[Any, str], Any]

REF_PREFIX = '#/components/schemas/'
_NONE_TYPE = type(None)
_UNION_TYPES = (Union, types.UnionType)
_LIST_ORIGINS = (list, collections.abc.Sequence, collections.abc.MutableSequence,
                 collections.abc.Iterable, collections.abc.Collection)
_SET_ORIGINS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
_DICT_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
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


def json_type_name(value: Any) -> str:
    """The JSON name of a decoded value's type: null, boolean, integer, number, string, array, object."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'boolean'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'number'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, (list, tuple)):
        return 'array'
    if isinstance(value, dict):
        return 'object'
    return type(value).__name__


def _mismatch(path: str, expected: str, value: Any) -> ValidationError:
    return ValidationError(path, f'expected {expected}, got {json_type_name(value)}', mismatch=True)


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    # Error messages echo input; a long value would flood logs and responses.
    return text if len(text) <= 60 else text[:57] + '...'


# ---------------------------------------------------------------------------------------------
# Annotation analysis shared by the schema and converter builders


def _strip(annotation: Any) -> Any:
    """The annotation without `Annotated` metadata and `NewType` wrappers."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif hasattr(annotation, '__supertype__'):  # typing.NewType
            annotation = annotation.__supertype__
        else:
            return annotation


def _is_unchecked(annotation: Any) -> bool:
    return annotation is inspect.Parameter.empty or annotation is Any or annotation is object


def _is_typeddict(annotation: Any) -> bool:
    if not isinstance(annotation, type):
        return False
    if typing.is_typeddict(annotation):
        return True
    # typing_extensions.TypedDict, which pydantic asks for before Python 3.12, has a metaclass of its own.
    extensions = sys.modules.get('typing_extensions')
    return extensions is not None and extensions.is_typeddict(annotation)


def _is_dataclass_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def _is_enum_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _class_hints(cls: type) -> dict[str, Any]:
    try:
        # With extras: Annotated is stripped where read, and a TypedDict's NotRequired[...] stays visible.
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # an unresolvable forward reference: fall back to what is written
        return {name: value for klass in reversed(cls.__mro__)
                for name, value in getattr(klass, '__annotations__', {}).items()}


def _dataclass_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = _class_hints(cls)
    return [(field, hints.get(field.name, field.type)) for field in dataclasses.fields(cls)]


def _typeddict_keys(cls: type) -> list[tuple[str, Any, bool]]:
    """(name, annotation, required) of each key of a TypedDict.

    `Required[...]` and `NotRequired[...]` are read from the hints too: in string annotations
    (`from __future__ import annotations`) `__required_keys__` cannot see them.
    """
    required_keys = getattr(cls, '__required_keys__', None)
    keys = []
    for name, annotation in _class_hints(cls).items():
        required = required_keys is None or name in required_keys
        while typing.get_origin(annotation) in (typing.Required, typing.NotRequired):
            required = typing.get_origin(annotation) is typing.Required
            annotation = typing.get_args(annotation)[0]
        keys.append((name, annotation, required))
    return keys


def _fixed_items(annotation: Any) -> tuple[Any, ...] | None:
    """The item types of a fixed-length tuple annotation (`tuple[int, str]`, `tuple[()]`); None when variadic."""
    args = typing.get_args(annotation)
    if annotation is tuple or annotation is typing.Tuple or (len(args) == 2 and args[1] is Ellipsis):
        return None
    return () if args == ((),) else args  # `tuple[()]` has the arguments `((),)` before Python 3.11


def _set_type(origin: Any) -> type:
    """The type a set annotation's values become: `frozenset` for the immutable ones, as pydantic has it."""
    return frozenset if origin is frozenset or origin is collections.abc.Set else set


def _union_members(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) in _UNION_TYPES:
        return typing.get_args(annotation)
    return None


def json_default(value: Any) -> tuple[bool, Any]:
    """(True, JSON form) of a default value when it has one (Enum -> value, tuple -> list ...), else (False, None)."""
    def convert(item: Any) -> Any:
        if isinstance(item, enum.Enum):
            return convert(item.value)
        if isinstance(item, (tuple, list)):
            return [convert(element) for element in item]
        if isinstance(item, (set, frozenset)):
            converted = [convert(element) for element in item]
            try:
                return sorted(converted)
            except TypeError:
                return converted
        if isinstance(item, dict):
            return {key: convert(element) for key, element in item.items()}
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return {field.name: convert(getattr(item, field.name)) for field in dataclasses.fields(item)}
        return item
    try:
        return True, json.loads(json.dumps(convert(value), allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        return False, None


# ---------------------------------------------------------------------------------------------
# JSON Schema


class SchemaBuilder:
    """Turns annotations into JSON Schema (2020-12, as OpenAPI 3.1 uses it).

    Dataclasses, TypedDicts and Enums become named schemas in `components`, referenced with
    `$ref`, which also makes recursive types finite. Not thread-safe; build at start-up.
    """

    def __init__(self, ref_prefix: str = REF_PREFIX):
        self.ref_prefix = ref_prefix
        self.components: dict[str, dict[str, Any]] = {}
        self._names: dict[Any, str] = {}

    def schema(self, annotation: Any) -> dict[str, Any]:
        """JSON Schema of `annotation`; `{}` when it is absent, `Any` or not understood."""
        annotation = _strip(annotation)
        if _is_unchecked(annotation) or isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar)):
            return {}
        if annotation is None or annotation is _NONE_TYPE:
            return {'type': 'null'}
        if annotation is bool:
            return {'type': 'boolean'}
        if annotation is int:
            return {'type': 'integer'}
        if annotation is float:
            return {'type': 'number'}
        if annotation is str:
            return {'type': 'string'}
        members = _union_members(annotation)
        if members is not None:
            return {'anyOf': [self.schema(member) for member in members]}
        origin = typing.get_origin(annotation)
        if origin is Literal:
            return _literal_schema(typing.get_args(annotation))
        if _is_enum_type(annotation) or _is_dataclass_type(annotation) or _is_typeddict(annotation):
            return {'$ref': self.ref_prefix + self._component(annotation)}
        args = typing.get_args(annotation)
        base = origin or annotation
        if base is tuple:
            return self._tuple_schema(annotation)
        if base in _SET_ORIGINS:
            schema: dict[str, Any] = {'type': 'array', 'uniqueItems': True}
            if args and not _is_unchecked(args[0]):
                schema['items'] = self.schema(args[0])
            return schema
        if base in _LIST_ORIGINS:
            schema = {'type': 'array'}
            if args and not _is_unchecked(args[0]):
                schema['items'] = self.schema(args[0])
            return schema
        if base in _DICT_ORIGINS:
            schema = {'type': 'object'}
            if len(args) == 2:
                key = _strip(args[0])
                if key is not str and not _is_unchecked(key):
                    key_schema = self.schema(key)
                    if key_schema.get('type') in ('integer', 'number'):
                        key_schema = {'type': 'string', 'pattern': _NUMBER_PATTERNS[key_schema['type']]}
                    if key_schema.get('type') == 'string' or 'enum' in key_schema or '$ref' in key_schema:
                        schema['propertyNames'] = key_schema
                if not _is_unchecked(_strip(args[1])):
                    schema['additionalProperties'] = self.schema(args[1])
            return schema
        return {}

    def _tuple_schema(self, annotation: Any) -> dict[str, Any]:
        items = _fixed_items(annotation)
        if items is None:
            args = typing.get_args(annotation)
            if not args or _is_unchecked(args[0]):
                return {'type': 'array'}
            return {'type': 'array', 'items': self.schema(args[0])}
        if not items:
            return {'type': 'array', 'maxItems': 0}
        return {'type': 'array', 'prefixItems': [self.schema(item) for item in items],
                'minItems': len(items), 'maxItems': len(items)}

    def _component(self, cls: type) -> str:
        name = self._names.get(cls)
        if name is not None:
            return name
        name = cls.__name__
        taken = set(self._names.values())
        counter = 2
        while name in taken:  # two classes of one name from different modules
            name = f'{cls.__name__}{counter}'
            counter += 1
        self._names[cls] = name
        self.components[name] = {}  # reserved first, so recursive references terminate
        if _is_enum_type(cls):
            schema = _literal_schema(tuple(member.value for member in cls))
            schema = {'title': cls.__name__, **schema}
        elif _is_dataclass_type(cls):
            schema = self._dataclass_schema(cls)
        else:
            schema = self._typeddict_schema(cls)
        description = _own_doc(cls)
        if description:
            schema['description'] = description
        self.components[name] = schema
        return name

    def _dataclass_schema(self, cls: type) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field, annotation in _dataclass_fields(cls):
            prop = dict(self.schema(annotation))
            if not field.init:
                # Filled in by the class itself: shown in results, not accepted as input.
                prop['readOnly'] = True
            elif field.default is not dataclasses.MISSING:
                ok, default = json_default(field.default)
                if ok:
                    prop['default'] = default
            elif field.default_factory is dataclasses.MISSING:
                required.append(field.name)
            properties[field.name] = prop
        schema: dict[str, Any] = {'type': 'object', 'title': cls.__name__, 'properties': properties}
        if required:
            schema['required'] = required
        schema['additionalProperties'] = False
        return schema

    def _typeddict_schema(self, cls: type) -> dict[str, Any]:
        keys = _typeddict_keys(cls)
        properties = {name: self.schema(annotation) for name, annotation, _ in keys}
        schema: dict[str, Any] = {'type': 'object', 'title': cls.__name__, 'properties': properties}
        required = [name for name, _, is_required in keys if is_required]
        if required:
            schema['required'] = required
        schema['additionalProperties'] = False
        return schema


_NUMBER_PATTERNS = {'integer': r'^-?[0-9]+$', 'number': r'^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$'}


def _literal_schema(values: tuple[Any, ...]) -> dict[str, Any]:
    converted = [json_default(value)[1] for value in values]
    kinds = {json_type_name(value) for value in converted}
    schema: dict[str, Any] = {}
    if len(kinds) == 1:
        schema['type'] = kinds.pop()
    schema['enum'] = converted
    return schema


def _own_doc(cls: type) -> str:
    doc = cls.__dict__.get('__doc__')
    if not doc or (dataclasses.is_dataclass(cls) and doc.startswith(f'{cls.__name__}(')):
        return ''  # dataclasses generate a docstring from the signature; it says nothing new
    if _is_enum_type(cls) and doc == 'An enumeration.':
        return ''
    return inspect.cleandoc(doc)


def json_schema(annotation: Any) -> dict[str, Any]:
    """A standalone JSON Schema of `annotation`, named types under `$defs`."""
    builder = SchemaBuilder(ref_prefix='#/$defs/')
    schema = builder.schema(annotation)
    if builder.components:
        schema = {**schema, '$defs': builder.components}
    return schema


# ---------------------------------------------------------------------------------------------
# JSON value converters


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

    __slots__ = ('level', 'fields_set')

    def __init__(self) -> None:
        self.level = _EXACT
        self.fields_set: int | None = None  # dataclass and TypedDict fields given, nested ones included

    def lower(self, level: int) -> None:
        if level < self.level:
            self.level = level

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
    node = _ConverterBuilder(mode).build(annotation)
    if node is None:
        return None

    def convert(value: Any, path: str) -> Any:
        return node(value, path, _Fit())
    return convert


# The characters Rust's `str::trim` strips (Unicode White_Space), as pydantic does around numbers;
# Python's `str.strip()` would also strip U+001C..U+001F.
_WHITESPACE = ('\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008'
               '\u2009\u200a\u2028\u2029\u202f\u205f\u3000')
# pydantic's integer strings: a sign, leading zeros (underscores among them too), digits with single
# underscores between them, and a `.000` tail. pydantic also reads "0-1" as -1, a slip of its
# leading-zero stripping that is deliberately not copied.
_INT_TEXT = re.compile(r'([+-]?)(?:0[0_]*)?(0|[1-9](?:_?[0-9])*)(?:\.0+)?', re.ASCII)
_MAX_INT_TEXT = 4300  # characters with the sign: pydantic's bound, Python's default int_max_str_digits
# Rust's float syntax, which pydantic parses strings with: inf, infinity and nan in any case.
_FLOAT_TEXT = re.compile(r'[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)',
                         re.ASCII | re.IGNORECASE)
_FLOAT_INT_BOUND = 2.0 ** 63  # pydantic takes integral floats as ints inside the 64-bit range only
_INT64 = range(-2 ** 63, 2 ** 63)
_BOOL_TEXTS = {'0': False, 'f': False, 'n': False, 'no': False, 'off': False, 'false': False,
               '1': True, 't': True, 'y': True, 'yes': True, 'on': True, 'true': True}


def _int_from_text(text: str) -> int | None:
    match = _INT_TEXT.fullmatch(text.strip(_WHITESPACE))
    if match is None:
        return None
    sign, digits = match[1], match[2].replace('_', '')
    if len(digits) + (sign == '-') > _MAX_INT_TEXT:
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


_PRIMITIVE_NAMES: dict[Any, str] = {
    bool: 'boolean', int: 'integer', float: 'number', str: 'string', _NONE_TYPE: 'null'}
_STRICT_PRIMITIVES: dict[Any, _Node] = {
    bool: _strict_bool, int: _strict_int, float: _strict_float, str: _accept_str, _NONE_TYPE: _accept_none}
_LAX_PRIMITIVES: dict[Any, _Node] = {
    bool: _lax_bool, int: _lax_int, float: _lax_float, str: _accept_str, _NONE_TYPE: _accept_none}


class _ConverterBuilder:
    """Builds converters of one mode; memoizes classes so recursive dataclasses build a finite closure graph."""

    def __init__(self, mode: ValidationMode) -> None:
        self._lax = mode is ValidationMode.LAX
        self._primitives = _LAX_PRIMITIVES if self._lax else _STRICT_PRIMITIVES
        self._classes: dict[type, _Node] = {}

    def build(self, annotation: Any) -> _Node | None:
        annotation = _strip(annotation)
        if _is_unchecked(annotation) or isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar)):
            return None
        if annotation is None:
            annotation = _NONE_TYPE
        primitive = self._primitives.get(annotation)
        if primitive is not None:
            return primitive
        members = _union_members(annotation)
        if members is not None:
            return self._union(members)
        origin = typing.get_origin(annotation)
        if origin is Literal:
            values = typing.get_args(annotation)
            return _lax_literal(values) if self._lax else _strict_literal(values)
        if _is_enum_type(annotation):
            return _lax_enum(annotation) if self._lax else _strict_enum(annotation)
        if _is_dataclass_type(annotation):
            return self._dataclass(annotation)
        if _is_typeddict(annotation):
            return self._typeddict(annotation)
        args = typing.get_args(annotation)
        base = origin or annotation
        if base is tuple:
            return self._tuple(annotation)
        if base in _SET_ORIGINS:
            return self._sequence(args[0] if args else Any, _set_type(base))
        if base in _LIST_ORIGINS:
            return self._sequence(args[0] if args else Any, list)
        if base in _DICT_ORIGINS:
            return self._dict(args)
        return None

    def _item(self, annotation: Any) -> _Node:
        return self.build(annotation) or _accept_any

    def _union(self, members: tuple[Any, ...]) -> _Node:
        kinds = [_NONE_TYPE if member is None else _strip(member) for member in members]
        nodes = [self._item(member) for member in members]
        names = ' or '.join(_expected_name(kind) for kind in kinds)
        return _smart_union(kinds, nodes, names) if self._lax else _ordered_union(kinds, nodes, names)

    def _sequence(self, item_annotation: Any, kind: type) -> _Node:
        item = self.build(item_annotation)
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
            if kind is list:
                return items
            fit.lower(_LAX)
            try:
                return kind(items)
            except TypeError:
                raise ValidationError(path, 'array items must be hashable to form a set') from None
        return convert_sequence

    def _tuple(self, annotation: Any) -> _Node:
        fixed = _fixed_items(annotation)
        if fixed is None:
            args = typing.get_args(annotation)
            listed = self._sequence(args[0] if args else Any, list)

            def convert_variadic(value: Any, path: str, fit: _Fit) -> Any:
                items = tuple(listed(value, path, fit))
                fit.lower(_LAX)
                return items
            return convert_variadic
        items = [self._item(item) for item in fixed]
        count = len(items)

        def convert_fixed(value: Any, path: str, fit: _Fit) -> Any:
            if not isinstance(value, list):
                raise _mismatch(path, 'array', value)
            if len(value) != count:
                raise ValidationError(path, f'expected an array of {count} items, got {len(value)}')
            fit.lower(_LAX)
            return tuple(item(element, f'{path}[{index}]', fit)
                         for index, (item, element) in enumerate(zip(items, value)))
        return convert_fixed

    def _dict(self, args: tuple[Any, ...]) -> _Node:
        key_type = _strip(args[0]) if len(args) == 2 else Any
        key = None if key_type is str or _is_unchecked(key_type) else self._key(key_type)
        value_converter = self.build(args[1]) if len(args) == 2 else None
        holds_any = _is_unchecked(key_type) or value_converter is None

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
                    value_converter(element, item_path, fit) if value_converter else element)
            return converted
        return convert_dict

    def _key(self, annotation: Any) -> _Node | None:
        if self._lax:
            return self.build(annotation)  # pydantic validates the key string as any other value
        text = build_text_converter(annotation, ValidationMode.STRICT)
        if text is None:
            return None

        def convert_key(name: str, path: str, fit: _Fit) -> Any:
            return text(name, path)
        return convert_key

    def _fields(self, value: Any, path: str, fit: _Fit, cls: type, fields: dict[str, _Node],
                required: list[str]) -> dict[str, Any]:
        """The converted fields of an object given for a dataclass or TypedDict."""
        if not isinstance(value, dict):
            raise _mismatch(path, f'object ({cls.__name__})', value)
        converted = {}
        for name, element in value.items():
            converter = fields.get(name)
            if converter is None:
                if self._lax:
                    continue  # pydantic ignores unknown fields (its default, extra='ignore')
                raise ValidationError(f'{path}.{name}', f'unknown field of {cls.__name__}')
            converted[name] = converter(element, f'{path}.{name}', fit)
        for name in required:
            if name not in converted:
                raise ValidationError(f'{path}.{name}', 'required field is missing')
        fit.add_fields(len(converted))
        return converted

    def _dataclass(self, cls: type) -> _Node:
        known = self._classes.get(cls)
        if known is not None:
            return known
        fields: dict[str, _Node] = {}
        required: list[str] = []

        def convert_dataclass(value: Any, path: str, fit: _Fit) -> Any:
            kwargs = self._fields(value, path, fit, cls, fields, required)
            fit.lower(_STRICT)
            try:
                return cls(**kwargs)
            except (TypeError, ValueError) as e:  # __post_init__ checks of the job's own
                raise ValidationError(path, f'invalid {cls.__name__}: {e}') from None
        self._classes[cls] = convert_dataclass  # before the fields, for recursive types
        for field, annotation in _dataclass_fields(cls):
            if not field.init:
                continue
            fields[field.name] = self._item(annotation)
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                required.append(field.name)
        return convert_dataclass

    def _typeddict(self, cls: type) -> _Node:
        known = self._classes.get(cls)
        if known is not None:
            return known
        fields: dict[str, _Node] = {}
        required: list[str] = []

        def convert_typeddict(value: Any, path: str, fit: _Fit) -> Any:
            return self._fields(value, path, fit, cls, fields, required)
        self._classes[cls] = convert_typeddict
        for name, annotation, is_required in _typeddict_keys(cls):
            fields[name] = self._item(annotation)
            if is_required:
                required.append(name)
        return convert_typeddict


def _union_error(path: str, names: str, value: Any, errors: list[ValidationError]) -> ValidationError:
    # A problem inside the one member that could fit is reported as it is.
    inner = [e for e in errors if not (e.mismatch and e.path == path)]
    return inner[0] if len(inner) == 1 else _mismatch(path, names, value)


def _primitive_members(kinds: list[Any], nodes: list[_Node]) -> dict[type, _Node]:
    exact: dict[type, _Node] = {}
    for kind, node in zip(kinds, nodes):
        if kind in _PRIMITIVE_NAMES:
            exact.setdefault(kind, node)
    return exact


def _ordered_union(kinds: list[Any], nodes: list[_Node], names: str) -> _Node:
    """Strict unions: a value whose JSON type names a primitive member goes to it, others try members in order."""
    if _accept_any in nodes:
        return _accept_any
    # `str | int` keeps "1" a string, `int | float` keeps 1 an integer; an integer goes to `float`
    # when no member is `int`.
    exact = _primitive_members(kinds, nodes)
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


def _smart_union(kinds: list[Any], nodes: list[_Node], names: str) -> _Node:
    """Lax unions, as pydantic's smart mode: the first exact match, else the closest fit, the earlier on a tie."""
    # A value of a primitive member's own type matches it exactly, and only a Literal (or a nested
    # union) could match exactly before it; without those the member is known at once.
    exact: dict[type, _Node] = {}
    if not any(typing.get_origin(kind) is Literal or _union_members(kind) is not None for kind in kinds):
        exact = _primitive_members(kinds, nodes)

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


def _expected_name(annotation: Any) -> str:
    if annotation is None or annotation is _NONE_TYPE:
        return 'null'
    primitive = _PRIMITIVE_NAMES.get(annotation)
    if primitive is not None:
        return primitive
    origin = typing.get_origin(annotation) or annotation
    if origin is Literal:
        return 'one of ' + ', '.join(_show(value) for value in typing.get_args(annotation))
    if _is_enum_type(annotation):
        return f'{annotation.__name__} value'
    if _is_dataclass_type(annotation) or _is_typeddict(annotation):
        return f'object ({annotation.__name__})'
    if origin in _DICT_ORIGINS:
        return 'object'
    if origin is tuple or origin in _SET_ORIGINS or origin in _LIST_ORIGINS:
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


def _strict_literal(values: tuple[Any, ...]) -> _Node:
    table = _choices([(value, value) for value in values])
    expected = 'one of ' + ', '.join(_show(json_default(value)[1]) for value in values)

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
    expected = 'one of ' + ', '.join(_show(json_default(value)[1]) for value in values)

    def convert_literal(value: Any, path: str, fit: _Fit) -> Any:
        found = _lookup(table, value)
        if found is _NOT_FOUND:
            found = next((literal for literal in by_value if literal == value), _NOT_FOUND)
            if found is _NOT_FOUND:
                raise _choice_error(path, expected, value)
        return found
    return convert_literal


def _strict_enum(cls: type[enum.Enum]) -> _Node:
    table = _choices([(json_default(member.value)[1], member) for member in cls])
    expected = 'one of ' + ', '.join(_show(json_default(member.value)[1]) for member in cls)

    def convert_enum(value: Any, path: str, fit: _Fit) -> Any:
        found = _lookup(table, value)
        if found is _NOT_FOUND:
            raise _choice_error(path, expected, value)
        return found
    return convert_enum


def _lax_enum(cls: type[enum.Enum]) -> _Node:
    # pydantic converts to the enum's mixed-in type first (an IntEnum takes "1"), looks the value up
    # among the members, then asks the class itself (Flag combinations, a custom `_missing_`).
    mixin = next((kind for kind in (int, str, float) if issubclass(cls, kind)), None)
    to_mixin = _LAX_PRIMITIVES.get(mixin)
    members = {member.value: member for member in cls}
    expected = 'one of ' + ', '.join(_show(json_default(member.value)[1]) for member in cls)

    def convert_enum(value: Any, path: str, fit: _Fit) -> Any:
        fit.lower(_LAX)  # pydantic never counts a value as an exact match for an enum
        if to_mixin is not None:
            try:
                key = to_mixin(value, path, _Fit())
            except ValidationError:
                key = None
            if key in members:
                return members[key]
            if mixin is int and key is not None and key not in _INT64:
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
    return _build_text(_strip(annotation), strict=mode is ValidationMode.STRICT)


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


_STRICT_TEXT_PRIMITIVES: dict[Any, Converter] = {
    str: _text_str, int: _strict_text_int, float: _strict_text_float, bool: _strict_text_bool,
    _NONE_TYPE: _text_none,
}
_LAX_TEXT_PRIMITIVES: dict[Any, Converter] = {
    str: _text_str, int: _lax_text_int, float: _lax_text_float, bool: _lax_text_bool, _NONE_TYPE: _text_none,
}


def _text_form(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if value is None:
        return 'null'
    return str(value)


def _last(texts: Any) -> str:
    return texts[-1] if isinstance(texts, list) else texts


def _build_text(annotation: Any, strict: bool) -> Converter | None:
    if _is_unchecked(annotation) or isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar)):
        return None
    scalar = _build_text_scalar(annotation, strict)
    if scalar is not None:
        def convert_text(texts: Any, path: str) -> Any:
            return scalar(_last(texts), path)
        return convert_text
    origin = typing.get_origin(annotation) or annotation
    args = typing.get_args(annotation)
    if origin in _LIST_ORIGINS or origin in _SET_ORIGINS or origin is tuple:
        fixed = _fixed_items(annotation) if origin is tuple else None
        variadic = fixed is None
        item_types = [args[0] if args else Any] if fixed is None else list(fixed)
        items = [_build_text_scalar(_strip(item), strict) or _text_str for item in item_types]
        kind = list if origin in _LIST_ORIGINS else (_set_type(origin) if origin in _SET_ORIGINS else tuple)

        def convert_texts(texts: Any, path: str) -> Any:
            values = texts if isinstance(texts, list) else [texts]
            if not variadic and len(values) != len(items):
                raise ValidationError(path, f'expected {len(items)} values, got {len(values)}')
            converters = items * len(values) if variadic else items
            return kind(converter(text, f'{path}[{index}]')
                        for index, (converter, text) in enumerate(zip(converters, values)))
        return convert_texts
    json_converter = build_converter(annotation, ValidationMode.STRICT if strict else ValidationMode.LAX)
    if json_converter is None:
        return None

    def convert_json_text(texts: Any, path: str) -> Any:
        try:
            value = json.loads(_last(texts))
        except ValueError:
            raise ValidationError(path, f'expected {_expected_name(annotation)} as JSON text') from None
        return json_converter(value, path)
    return convert_json_text


def _build_text_scalar(annotation: Any, strict: bool) -> Converter | None:
    """Converter for one text value, or None when `annotation` is not a scalar."""
    if annotation is None:
        annotation = _NONE_TYPE
    if _is_unchecked(annotation):
        return _text_str
    primitive = (_STRICT_TEXT_PRIMITIVES if strict else _LAX_TEXT_PRIMITIVES).get(annotation)
    if primitive is not None:
        return primitive
    if typing.get_origin(annotation) is Literal or _is_enum_type(annotation):
        by_text = _text_choice(annotation)
        if strict:
            return by_text
        node = (_lax_literal(typing.get_args(annotation)) if typing.get_origin(annotation) is Literal
                else _lax_enum(annotation))

        def convert_choice(text: str, path: str) -> Any:
            # pydantic's reading of the text first (" 2 " for an IntEnum), then the value's text form
            # (Literal[1] from "1": pydantic refuses it, yet text has no other way to say 1).
            try:
                return node(text, path, _Fit())
            except ValidationError:
                return by_text(text, path)
        return convert_choice
    members = _union_members(annotation)
    if members is not None:
        scalars = [_build_text_scalar(_strip(member), strict) for member in members]
        converters = [converter for converter in scalars if converter is not None]
        if len(converters) != len(scalars):
            return None
        if not strict and _text_str in converters:
            return _text_str  # text matches a `str` member exactly, which pydantic's smart union prefers
        names = ' or '.join(_expected_name(_strip(member)) for member in members)
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


def _text_choice(annotation: Any) -> Converter:
    """Literal or Enum values by their text form: `1`, `true`, `null`, `red`."""
    if typing.get_origin(annotation) is Literal:
        pairs = [(value, value) for value in typing.get_args(annotation)]
    else:
        pairs = [(member.value, member) for member in annotation]
    table = {_text_form(json_default(value)[1]): result for value, result in pairs}
    expected = 'one of ' + ', '.join(_show(text) for text in table)

    def convert_choice(text: str, path: str) -> Any:
        try:
            return table[text]
        except KeyError:
            raise _text_mismatch(path, expected, text) from None
    return convert_choice
