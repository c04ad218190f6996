"""What a Python annotation stands for: one classification, read by the JSON Schema builder and the converters.

`classify(annotation)` looks through `Annotated[...]` metadata and `NewType` wrappers, reads
unions, `Literal`, enums, dataclasses and TypedDicts (`typing` and `typing_extensions` ones,
string annotations of their fields resolved, `Required`/`NotRequired` read, `ReadOnly` looked
through), pydantic models (recognised by their `model_validate`, so pydantic is never imported
here), and the generic containers of `typing` and `collections.abc`. The JSON Schema builder
and the converters ask the `TypeInfo` it returns what an annotation is, never `typing` itself.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import sys
import types
import typing
from collections.abc import Callable, Collection, Iterable
from typing import Any, Literal, Union

from racetrack_job_wrapper.records import Record

_NONE_TYPE = type(None)
_UNION_TYPES = (Union, types.UnionType)
_SEQUENCE_ORIGINS = (
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
)
_SET_ORIGINS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
_DICT_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


class Kind(enum.Enum):
    """The kinds of annotation the readers tell apart."""

    ANY = 'any'  # no annotation, `Any` or `object`: any value goes
    NONE = 'none'  # `None`
    BOOL = 'bool'
    INT = 'int'
    FLOAT = 'float'
    STR = 'str'
    BYTES = 'bytes'  # JSON has no bytes: the schema and the converters leave it unchecked
    LITERAL = 'literal'  # `values`: the literal values
    ENUM = 'enum'  # `values`: the members
    UNION = 'union'  # `parts`: the members; `Optional[X]` is `X | None`
    SEQUENCE = 'sequence'  # list, Sequence, Iterable, Collection, `tuple[X, ...]`: `item`, `container`
    TUPLE = 'tuple'  # fixed length: `parts` are the item types, none for `tuple[()]`
    SET = 'set'  # set, frozenset, AbstractSet: `item`, `container`
    DICT = 'dict'  # dict, Mapping: `key`, `value`
    DATACLASS = 'dataclass'  # `fields`
    TYPEDDICT = 'typeddict'  # `fields`
    MODEL = 'model'  # a pydantic model class: it validates and describes itself
    UNKNOWN = 'unknown'  # any other class, an unresolved forward reference, a TypeVar: not checked


# The JSON Schema names of the scalar kinds.
JSON_TYPE_NAMES: dict[Kind, str] = {
    Kind.NONE: 'null',
    Kind.BOOL: 'boolean',
    Kind.INT: 'integer',
    Kind.FLOAT: 'number',
    Kind.STR: 'string',
}
_SCALARS: tuple[tuple[Any, Kind], ...] = (
    (_NONE_TYPE, Kind.NONE),
    (bool, Kind.BOOL),
    (int, Kind.INT),
    (float, Kind.FLOAT),
    (str, Kind.STR),
    (bytes, Kind.BYTES),
)


class TypeInfo(Record, eq=False):
    """One annotation, classified; built by `classify`, which caches it, so compared by identity."""

    kind: Kind
    # The annotation without `Annotated` and `NewType`: the class itself for the class kinds and the
    # scalars (`type(None)` for None).
    annotation: Any
    parts: tuple[TypeInfo, ...] = ()
    values: tuple[Any, ...] = ()
    fields: tuple[FieldInfo, ...] = ()
    # What a SEQUENCE or SET value becomes: list or tuple, set or frozenset.
    container: Callable[[Iterable[Any]], Collection[Any]] = list

    @property
    def item(self) -> TypeInfo:
        """The item type of a SEQUENCE or SET."""
        return self.parts[0]

    @property
    def key(self) -> TypeInfo:
        """The key type of a DICT."""
        return self.parts[0]

    @property
    def value(self) -> TypeInfo:
        """The value type of a DICT."""
        return self.parts[1]

    @property
    def name(self) -> str:
        """The class name of an ENUM, DATACLASS, TYPEDDICT or MODEL."""
        return str(self.annotation.__name__)


class FieldInfo(Record):
    """A field of a dataclass or a key of a TypedDict."""

    name: str
    annotation: Any  # resolved where it can be; `Required[...]` and `NotRequired[...]` taken off
    required: bool  # must be given in the input
    has_default: bool = False  # a dataclass field with a default value (not a default_factory)
    default: Any = None  # read only when `has_default`
    init: bool = True  # False for a dataclass `field(init=False)`: set by the class, not taken as input

    @property
    def info(self) -> TypeInfo:
        """The field's annotation, classified; looked up when read, so recursive classes stay finite."""
        return classify(self.annotation)


# Keyed by identity, holding the annotation so its id stays taken: typing's equality would merge
# `Union[int, str]` with `Union[str, int]`, whose member order decides conversions. Annotations come
# from the job's classes, a set fixed at start-up, so the cache does not grow per request.
_CLASSIFIED: dict[int, tuple[Any, TypeInfo]] = {}


def classify(annotation: Any) -> TypeInfo:
    """The classification of `annotation`, computed once per annotation object. Thread-safe."""
    entry = _CLASSIFIED.get(id(annotation))
    if entry is None:
        entry = _CLASSIFIED.setdefault(id(annotation), (annotation, _classify(annotation)))
    return entry[1]


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


def _classify(annotation: Any) -> TypeInfo:
    annotation = _strip(annotation)
    if annotation is None:
        annotation = _NONE_TYPE
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
        return TypeInfo(Kind.ANY, annotation)
    for scalar, kind in _SCALARS:
        if annotation is scalar:
            return TypeInfo(kind, annotation)
    if isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar)):
        return TypeInfo(Kind.UNKNOWN, annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _UNION_TYPES:
        return TypeInfo(Kind.UNION, annotation, parts=tuple(classify(member) for member in args))
    if origin is Literal:
        return TypeInfo(Kind.LITERAL, annotation, values=args)
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return TypeInfo(Kind.ENUM, annotation, values=tuple(annotation))
        if dataclasses.is_dataclass(annotation):
            return TypeInfo(Kind.DATACLASS, annotation, fields=_dataclass_fields(annotation))
        if _is_typeddict(annotation):
            return TypeInfo(Kind.TYPEDDICT, annotation, fields=_typeddict_fields(annotation))
        if _is_model(annotation):
            return TypeInfo(Kind.MODEL, annotation)
    base = origin or annotation
    if base is tuple:
        # A bare `tuple` or `typing.Tuple` has no `__args__`; `tuple[()]` has empty ones.
        if not hasattr(annotation, '__args__') or (len(args) == 2 and args[1] is Ellipsis):
            return TypeInfo(Kind.SEQUENCE, annotation, parts=(classify(args[0] if args else Any),), container=tuple)
        return TypeInfo(Kind.TUPLE, annotation, parts=tuple(classify(item) for item in args))
    if base in _SET_ORIGINS:
        # The immutable set annotations become frozensets, as pydantic has it.
        container = frozenset if base is frozenset or base is collections.abc.Set else set
        return TypeInfo(Kind.SET, annotation, parts=(classify(args[0] if args else Any),), container=container)
    if base in _SEQUENCE_ORIGINS:
        return TypeInfo(Kind.SEQUENCE, annotation, parts=(classify(args[0] if args else Any),))
    if base in _DICT_ORIGINS:
        key, value = args if len(args) == 2 else (Any, Any)
        return TypeInfo(Kind.DICT, annotation, parts=(classify(key), classify(value)))
    return TypeInfo(Kind.UNKNOWN, annotation)


def _strip(annotation: Any) -> Any:
    """The annotation without `Annotated` metadata and `NewType` wrappers."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif isinstance(annotation, typing.NewType):
            annotation = annotation.__supertype__
        else:
            return annotation


def _is_typeddict(cls: type) -> bool:
    if typing.is_typeddict(cls):
        return True
    # typing_extensions.TypedDict, which pydantic asks for before Python 3.12, has a metaclass of its own.
    extensions = sys.modules.get('typing_extensions')
    return extensions is not None and bool(extensions.is_typeddict(cls))


def _is_model(cls: type) -> bool:
    # pydantic v2's BaseModel (and RootModel); the job imported pydantic to define it.
    return callable(getattr(cls, 'model_validate', None)) and callable(getattr(cls, 'model_json_schema', None))


def _typeddict_qualifiers() -> dict[Any, bool | None]:
    """`Required` and `NotRequired` (whether the key is required) and `ReadOnly` (None: no say).

    From `typing` and, when a job imported it, `typing_extensions`, whose `ReadOnly` stands
    before Python 3.13.
    """
    modules = [typing, sys.modules.get('typing_extensions')]
    qualifiers: dict[Any, bool | None] = {}
    for module in modules:
        for name, required in (('Required', True), ('NotRequired', False), ('ReadOnly', None)):
            qualifier = getattr(module, name, None)
            if qualifier is not None:
                qualifiers[qualifier] = required
    return qualifiers


def _class_hints(cls: type) -> dict[str, Any]:
    try:
        # With extras: Annotated is stripped where read, and a TypedDict's NotRequired[...] stays visible.
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 -- an unresolvable forward reference raises what its evaluation raises
        return {
            name: value
            for klass in reversed(cls.__mro__)
            for name, value in getattr(klass, '__annotations__', {}).items()
        }


def _dataclass_fields(cls: type) -> tuple[FieldInfo, ...]:
    hints = _class_hints(cls)
    fields = []
    for field in dataclasses.fields(cls):
        has_default = field.default is not dataclasses.MISSING
        required = field.init and not has_default and field.default_factory is dataclasses.MISSING
        fields.append(
            FieldInfo(
                field.name,
                hints.get(field.name, field.type),
                required=required,
                has_default=has_default,
                default=field.default if has_default else None,
                init=field.init,
            )
        )
    return tuple(fields)


def _typeddict_fields(cls: type) -> tuple[FieldInfo, ...]:
    # `Required[...]` and `NotRequired[...]` are read from the hints too: in string annotations
    # (`from __future__ import annotations`) `__required_keys__` cannot see them.
    required_keys = getattr(cls, '__required_keys__', None)
    qualifiers = _typeddict_qualifiers()
    fields = []
    for name, annotation in _class_hints(cls).items():
        required = required_keys is None or name in required_keys
        # Nested either way round (`ReadOnly[NotRequired[int]]`); read-only binds the job, not its input.
        while (origin := typing.get_origin(annotation)) in qualifiers:
            says = qualifiers[origin]
            if says is not None:
                required = says
            annotation = typing.get_args(annotation)[0]
        fields.append(FieldInfo(name, annotation, required=required))
    return tuple(fields)
