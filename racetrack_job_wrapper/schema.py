"""Python annotations -> JSON Schema, and input converters built from them.

Both readers walk an annotation once at start-up; a converter is a chain of closures, so the
per-request cost is a few isinstance checks and no introspection.

Conversion rules (JSON is lenient where Python types are not):
- an integer is a valid `float` and is converted to float (`1` -> `1.0`), so a job sees the
  type it annotated; a bool is never an `int` or a `float`;
- a list is a valid `tuple`, `set` or `frozenset` and is converted to one;
- dataclass-typed values arrive as instances (recursively); unknown or missing fields are errors;
- an `Enum` is given by value and arrives as the member; a `Literal` is checked by value and type;
- `Optional[X]` accepts null; in a union a value whose JSON type matches a member exactly goes to
  that member, otherwise members are tried in order;
- annotations this module does not understand (arbitrary classes, numpy arrays, `Any`, none at
  all) get the schema `{}` and are not checked.

Text converters (query strings, path segments) parse `int`, `float` (finite only), `bool`
(`true/false/1/0/yes/no/on/off`), `str`, `Literal` and `Enum` values from text; a
list/tuple/set parameter takes every value of a repeated query key (`?n=1&n=2`); a scalar
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
    return isinstance(annotation, type) and typing.is_typeddict(annotation)


def _is_dataclass_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def _is_enum_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum)


def _class_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an unresolvable forward reference: fall back to what is written
        return {name: value for klass in reversed(cls.__mro__)
                for name, value in getattr(klass, '__annotations__', {}).items()}


def _dataclass_fields(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = _class_hints(cls)
    return [(field, hints.get(field.name, field.type)) for field in dataclasses.fields(cls)]


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
            return self._tuple_schema(args)
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

    def _tuple_schema(self, args: tuple[Any, ...]) -> dict[str, Any]:
        if not args:
            return {'type': 'array'}
        if len(args) == 2 and args[1] is Ellipsis:
            if _is_unchecked(args[0]):
                return {'type': 'array'}
            return {'type': 'array', 'items': self.schema(args[0])}
        if args == ((),):  # tuple[()]: the empty tuple
            return {'type': 'array', 'maxItems': 0}
        return {'type': 'array', 'prefixItems': [self.schema(arg) for arg in args],
                'minItems': len(args), 'maxItems': len(args)}

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
        hints = _class_hints(cls)
        required_keys = getattr(cls, '__required_keys__', frozenset(hints))
        properties = {name: self.schema(annotation) for name, annotation in hints.items()}
        schema: dict[str, Any] = {'type': 'object', 'title': cls.__name__, 'properties': properties}
        required = [name for name in hints if name in required_keys]
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


def build_converter(annotation: Any) -> Converter | None:
    """A converter checking a decoded JSON value against `annotation`, or None when nothing is checked.

    The converter is called as `conv(value, path)` and returns the value to pass on;
    it raises ValidationError naming the path, e.g. `numbers[2]: expected number, got string`.
    """
    return _ConverterBuilder().build(annotation)


def _accept_bool(value: Any, path: str) -> Any:
    if value is True or value is False:
        return value
    raise _mismatch(path, 'boolean', value)


def _accept_int(value: Any, path: str) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _mismatch(path, 'integer', value)


def _accept_float(value: Any, path: str) -> Any:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ValidationError(path, 'integer is too large for a float') from None
    raise _mismatch(path, 'number', value)


def _accept_str(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return value
    raise _mismatch(path, 'string', value)


def _accept_none(value: Any, path: str) -> Any:
    if value is None:
        return None
    raise _mismatch(path, 'null', value)


def _accept_any(value: Any, path: str) -> Any:
    return value


_PRIMITIVES: dict[Any, tuple[Converter, str]] = {
    bool: (_accept_bool, 'boolean'), int: (_accept_int, 'integer'), float: (_accept_float, 'number'),
    str: (_accept_str, 'string'), _NONE_TYPE: (_accept_none, 'null'),
}


class _ConverterBuilder:
    """Builds converters; memoizes classes so recursive dataclasses build a finite closure graph."""

    def __init__(self) -> None:
        self._classes: dict[type, Converter] = {}

    def build(self, annotation: Any) -> Converter | None:
        annotation = _strip(annotation)
        if _is_unchecked(annotation) or isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar)):
            return None
        if annotation is None:
            annotation = _NONE_TYPE
        primitive = _PRIMITIVES.get(annotation)
        if primitive is not None:
            return primitive[0]
        members = _union_members(annotation)
        if members is not None:
            return self._union(members)
        origin = typing.get_origin(annotation)
        if origin is Literal:
            return _literal_converter(typing.get_args(annotation))
        if _is_enum_type(annotation):
            return _enum_converter(annotation)
        if _is_dataclass_type(annotation):
            return self._dataclass(annotation)
        if _is_typeddict(annotation):
            return self._typeddict(annotation)
        args = typing.get_args(annotation)
        base = origin or annotation
        if base is tuple:
            return self._tuple(args)
        if base in _SET_ORIGINS:
            return self._sequence(args[0] if args else Any, frozenset if base is frozenset else set)
        if base in _LIST_ORIGINS:
            return self._sequence(args[0] if args else Any, list)
        if base in _DICT_ORIGINS:
            return self._dict(args)
        return None

    def _item(self, annotation: Any) -> Converter:
        return self.build(annotation) or _accept_any

    def _union(self, members: tuple[Any, ...]) -> Converter:
        converters = [self._item(member) for member in members]
        if _accept_any in converters:
            return _accept_any
        names = ' or '.join(_expected_name(_strip(member)) for member in members)
        # Values whose JSON type names a primitive member go straight to it: `str | int` keeps
        # "1" a string, `int | float` keeps 1 an integer; an integer goes to `float` only when
        # no member is `int`.
        exact: dict[type, Converter] = {}
        for member, converter in zip(members, converters):
            member = _NONE_TYPE if member is None else _strip(member)
            if member in _PRIMITIVES:
                exact.setdefault(member, converter)
        if int not in exact and float in exact:
            exact[int] = exact[float]

        def convert_union(value: Any, path: str) -> Any:
            converter = exact.get(type(value))
            if converter is not None:
                return converter(value, path)
            errors: list[ValidationError] = []
            for converter in converters:
                try:
                    return converter(value, path)
                except ValidationError as e:
                    errors.append(e)
            inner = [e for e in errors if not (e.mismatch and e.path == path)]
            if len(inner) == 1:
                raise inner[0]
            raise _mismatch(path, names, value)
        return convert_union

    def _sequence(self, item_annotation: Any, kind: type) -> Converter:
        item = self.build(item_annotation)
        expected = 'array'

        def convert_sequence(value: Any, path: str) -> Any:
            if not isinstance(value, list):
                raise _mismatch(path, expected, value)
            if item is None:
                items = value
            else:
                items = [item(element, f'{path}[{index}]') for index, element in enumerate(value)]
            if kind is list:
                return items
            try:
                return kind(items)
            except TypeError:
                raise ValidationError(path, 'array items must be hashable to form a set') from None
        return convert_sequence

    def _tuple(self, args: tuple[Any, ...]) -> Converter:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            listed = self._sequence(args[0] if args else Any, list)

            def convert_variadic(value: Any, path: str) -> Any:
                return tuple(listed(value, path))
            return convert_variadic
        if args == ((),):
            args = ()
        items = [self._item(arg) for arg in args]
        count = len(items)

        def convert_fixed(value: Any, path: str) -> Any:
            if not isinstance(value, list):
                raise _mismatch(path, 'array', value)
            if len(value) != count:
                raise ValidationError(path, f'expected an array of {count} items, got {len(value)}')
            return tuple(item(element, f'{path}[{index}]') for index, (item, element) in enumerate(zip(items, value)))
        return convert_fixed

    def _dict(self, args: tuple[Any, ...]) -> Converter:
        key = build_text_converter(args[0]) if len(args) == 2 and _strip(args[0]) is not str else None
        value_converter = self.build(args[1]) if len(args) == 2 else None

        def convert_dict(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise _mismatch(path, 'object', value)
            if key is None and value_converter is None:
                return value
            converted = {}
            for name, element in value.items():
                item_path = f'{path}.{name}'
                converted[key(name, item_path) if key else name] = (
                    value_converter(element, item_path) if value_converter else element)
            return converted
        return convert_dict

    def _dataclass(self, cls: type) -> Converter:
        known = self._classes.get(cls)
        if known is not None:
            return known
        fields: dict[str, Converter] = {}
        required: list[str] = []

        def convert_dataclass(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise _mismatch(path, f'object ({cls.__name__})', value)
            kwargs = {}
            for name, element in value.items():
                converter = fields.get(name)
                if converter is None:
                    raise ValidationError(f'{path}.{name}', f'unknown field of {cls.__name__}')
                kwargs[name] = converter(element, f'{path}.{name}')
            for name in required:
                if name not in kwargs:
                    raise ValidationError(f'{path}.{name}', 'required field is missing')
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

    def _typeddict(self, cls: type) -> Converter:
        known = self._classes.get(cls)
        if known is not None:
            return known
        fields: dict[str, Converter] = {}
        required: list[str] = []

        def convert_typeddict(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise _mismatch(path, f'object ({cls.__name__})', value)
            converted = {}
            for name, element in value.items():
                converter = fields.get(name)
                if converter is None:
                    raise ValidationError(f'{path}.{name}', f'unknown field of {cls.__name__}')
                converted[name] = converter(element, f'{path}.{name}')
            for name in required:
                if name not in converted:
                    raise ValidationError(f'{path}.{name}', 'required field is missing')
            return converted
        self._classes[cls] = convert_typeddict
        hints = _class_hints(cls)
        required_keys = getattr(cls, '__required_keys__', frozenset(hints))
        for name, annotation in hints.items():
            fields[name] = self._item(annotation)
            if name in required_keys:
                required.append(name)
        return convert_typeddict


def _expected_name(annotation: Any) -> str:
    if annotation is None or annotation is _NONE_TYPE:
        return 'null'
    primitive = _PRIMITIVES.get(annotation)
    if primitive is not None:
        return primitive[1]
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


def _literal_converter(values: tuple[Any, ...]) -> Converter:
    table = _choices([(value, value) for value in values])
    expected = 'one of ' + ', '.join(_show(json_default(value)[1]) for value in values)

    def convert_literal(value: Any, path: str) -> Any:
        found = _lookup(table, value)
        if found is _NOT_FOUND:
            raise ValidationError(path, f'expected {expected}, got {_show(value)}', mismatch=True)
        return found
    return convert_literal


def _enum_converter(cls: type[enum.Enum]) -> Converter:
    table = _choices([(json_default(member.value)[1], member) for member in cls])
    expected = 'one of ' + ', '.join(_show(json_default(member.value)[1]) for member in cls)

    def convert_enum(value: Any, path: str) -> Any:
        found = _lookup(table, value)
        if found is _NOT_FOUND:
            raise ValidationError(path, f'expected {expected}, got {_show(value)}', mismatch=True)
        return found
    return convert_enum


# ---------------------------------------------------------------------------------------------
# Text converters


def build_text_converter(annotation: Any) -> Converter | None:
    """A converter turning query-string or path text into a value of `annotation`, or None when unchecked.

    Called as `conv(text_or_texts, path)`: a string, or the list of values of a repeated query key.
    """
    return _build_text(_strip(annotation))


def _text_str(text: str, path: str) -> Any:
    return text


def _text_int(text: str, path: str) -> Any:
    stripped = text.strip()
    if stripped and '_' not in stripped:
        try:
            return int(stripped)
        except ValueError:
            pass
    raise ValidationError(path, f'expected integer, got {_show(text)}', mismatch=True)


def _text_float(text: str, path: str) -> Any:
    stripped = text.strip()
    if stripped and '_' not in stripped:
        try:
            number = float(stripped)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise ValidationError(path, f'expected number, got {_show(text)}', mismatch=True)


def _text_bool(text: str, path: str) -> Any:
    lowered = text.strip().lower()
    if lowered in _TRUE_TEXTS:
        return True
    if lowered in _FALSE_TEXTS:
        return False
    raise ValidationError(path, f'expected boolean, got {_show(text)}', mismatch=True)


def _text_none(text: str, path: str) -> Any:
    if text == '' or text == 'null':
        return None
    raise ValidationError(path, f'expected null, got {_show(text)}', mismatch=True)


_TEXT_PRIMITIVES: dict[Any, Converter] = {
    str: _text_str, int: _text_int, float: _text_float, bool: _text_bool, _NONE_TYPE: _text_none,
}


def _text_form(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if value is None:
        return 'null'
    return str(value)


def _last(texts: Any) -> str:
    return texts[-1] if isinstance(texts, list) else texts


def _build_text(annotation: Any) -> Converter | None:
    if _is_unchecked(annotation) or isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar)):
        return None
    scalar = _build_text_scalar(annotation)
    if scalar is not None:
        def convert_text(texts: Any, path: str) -> Any:
            return scalar(_last(texts), path)
        return convert_text
    origin = typing.get_origin(annotation) or annotation
    args = typing.get_args(annotation)
    if origin in _LIST_ORIGINS or origin in _SET_ORIGINS or origin is tuple:
        variadic = origin is not tuple or not args or (len(args) == 2 and args[1] is Ellipsis)
        item_types = [args[0] if args else Any] if variadic else list(args)
        items = [_build_text_scalar(_strip(item)) or _text_str for item in item_types]
        kind = list if origin in _LIST_ORIGINS else (frozenset if origin is frozenset else
                                                     (set if origin in _SET_ORIGINS else tuple))

        def convert_texts(texts: Any, path: str) -> Any:
            values = texts if isinstance(texts, list) else [texts]
            if not variadic and len(values) != len(items):
                raise ValidationError(path, f'expected {len(items)} values, got {len(values)}')
            converters = items * len(values) if variadic else items
            return kind(converter(text, f'{path}[{index}]')
                        for index, (converter, text) in enumerate(zip(converters, values)))
        return convert_texts
    json_converter = build_converter(annotation)
    if json_converter is None:
        return None

    def convert_json_text(texts: Any, path: str) -> Any:
        try:
            value = json.loads(_last(texts))
        except ValueError:
            raise ValidationError(path, f'expected {_expected_name(annotation)} as JSON text') from None
        return json_converter(value, path)
    return convert_json_text


def _build_text_scalar(annotation: Any) -> Converter | None:
    """Converter for one text value, or None when `annotation` is not a scalar."""
    if annotation is None:
        annotation = _NONE_TYPE
    if _is_unchecked(annotation):
        return _text_str
    primitive = _TEXT_PRIMITIVES.get(annotation)
    if primitive is not None:
        return primitive
    origin = typing.get_origin(annotation)
    if origin is Literal or _is_enum_type(annotation):
        if origin is Literal:
            pairs = [(value, value) for value in typing.get_args(annotation)]
        else:
            pairs = [(member.value, member) for member in annotation]
        table = {_text_form(json_default(value)[1]): result for value, result in pairs}
        expected = 'one of ' + ', '.join(_show(text) for text in table)

        def convert_choice(text: str, path: str) -> Any:
            try:
                return table[text]
            except KeyError:
                raise ValidationError(path, f'expected {expected}, got {_show(text)}', mismatch=True) from None
        return convert_choice
    members = _union_members(annotation)
    if members is not None:
        converters = [_build_text_scalar(_strip(member)) for member in members]
        if any(converter is None for converter in converters):
            return None
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
            raise ValidationError(path, f'expected {names}, got {_show(text)}', mismatch=True)
        return convert_union_text
    return None
