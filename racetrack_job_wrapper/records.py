"""Frozen records: the package's own value classes, declared as dataclasses are and cheaper to create.

`dataclasses.dataclass` writes each class's `__init__`, `__repr__`, `__eq__`, `__setattr__`
and `__hash__` as source text and compiles it at every import: 0.6 to 1.1 ms a class, 13 ms
for the 18 that a server imported, a tenth of its import time. A `Record` reads its fields
from the class's annotations and defaults once and shares one `__init__`, with the same
behaviour: positional or keyword arguments, defaults and `field(default_factory=...)`,
equality and hashing by value (`eq=False`: by identity), a repr, no assignment after
creation. Type checkers treat a subclass as a frozen dataclass (PEP 681).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, dataclass_transform

_R = TypeVar('_R', bound='Record')


class _Missing:
    def __repr__(self) -> str:
        return 'MISSING'


_MISSING: Any = _Missing()


class Field:
    """One field of a record: its default or its default factory, and what else it says about itself."""

    __slots__ = ('name', 'default', 'default_factory', 'metadata', 'repr')

    def __init__(
        self,
        default: Any = _MISSING,
        default_factory: Callable[[], Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        repr: bool = True,
    ):
        self.name = ''
        self.default = default
        self.default_factory = default_factory
        self.metadata = metadata or {}
        self.repr = repr  # False keeps the value (a secret, say) out of the record's repr

    @property
    def required(self) -> bool:
        """True when the field has neither a default nor a default factory."""
        return self.default is _MISSING and self.default_factory is None


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    repr: bool = True,
) -> Any:
    """A field with a default factory (a new list, say), metadata or no repr; a plain default needs no call."""
    return Field(default, default_factory, metadata, repr)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Record:
    """Base of a frozen value class: `class Route(Record): path: str; owner: str = ''`.

    `class TypeInfo(Record, eq=False)` compares and hashes by identity instead of by value.
    """

    __record_fields__: ClassVar[dict[str, Field]] = {}

    def __init_subclass__(cls, *, eq: bool = True, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        fields = dict(cls.__record_fields__)  # a base record's fields come first, as in dataclasses
        for name, annotation in cls.__dict__.get('__annotations__', {}).items():
            if str(annotation).startswith(('ClassVar', 'typing.ClassVar')):
                continue
            value = cls.__dict__.get(name, _MISSING)
            if isinstance(value, (list, dict, set)):  # one value shared by every record: refused, as dataclasses do
                raise ValueError(
                    f'mutable default {type(value).__name__} for field {name}: use field(default_factory=...)'
                )
            spec = value if isinstance(value, Field) else Field(value)
            spec.name = name
            fields.pop(name, None)
            fields[name] = spec
            if isinstance(value, Field):  # the class attribute is the plain default, or none
                if value.default is _MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, value.default)
        cls.__record_fields__ = fields
        if not eq:
            cls.__eq__ = object.__eq__  # type: ignore[method-assign]
            cls.__hash__ = object.__hash__  # type: ignore[method-assign]

    def __init__(self, *args: Any, **kwargs: Any):
        fields = self.__record_fields__
        name = type(self).__name__
        if len(args) > len(fields):
            raise TypeError(f'{name}() takes {len(fields)} arguments but {len(args)} were given')
        values = dict(zip(fields, args, strict=False))  # fewer arguments than fields: the rest by name or default
        for key, value in kwargs.items():
            if key not in fields:
                raise TypeError(f'{name}() got an unexpected keyword argument {key!r}')
            if key in values:
                raise TypeError(f'{name}() got multiple values for argument {key!r}')
            values[key] = value
        for key, spec in fields.items():
            if key in values:
                value = values[key]
            elif spec.default_factory is not None:
                value = spec.default_factory()
            elif spec.default is not _MISSING:
                value = spec.default
            else:
                raise TypeError(f'{name}() missing required argument {key!r}')
            object.__setattr__(self, key, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f'cannot assign to field {name!r}: {type(self).__name__} is frozen')

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f'cannot delete field {name!r}: {type(self).__name__} is frozen')

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, key) for key in self.__record_fields__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ', '.join(f'{key}={getattr(self, key)!r}' for key, spec in self.__record_fields__.items() if spec.repr)
        return f'{type(self).__qualname__}({shown})'


def replace(record: _R, **changes: Any) -> _R:
    """A copy of `record` with `changes` over its fields; TypeError naming a field it does not have."""
    values = {key: getattr(record, key) for key in record.__record_fields__}
    for key in changes:
        if key not in values:
            raise TypeError(f'{type(record).__name__} has no field {key!r}')
    values.update(changes)
    return type(record)(**values)


def fields(record: Record | type[Record]) -> tuple[Field, ...]:
    """The fields of a record (or record class), in declaration order."""
    return tuple(record.__record_fields__.values())
