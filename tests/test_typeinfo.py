# String annotations on purpose: dataclass and TypedDict fields must be resolved to be classified.
from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import typing
import unittest
from typing import Annotated, Any, Literal, NewType, NotRequired, Optional, Required, TypedDict, Union

import typing_extensions

from racetrack_job_wrapper.typeinfo import FieldInfo, Kind, classify, json_type_name


class Color(enum.Enum):
    RED = 'red'
    GREEN = 'green'


@dataclasses.dataclass
class Node:
    value: int
    children: list[Node] = dataclasses.field(default_factory=list)
    label: str = 'leaf'
    depth: int = dataclasses.field(default=0, init=False)


@dataclasses.dataclass
class Dangling:
    other: Missing  # noqa: F821  never defined: the annotation stays as written


class Movie(TypedDict):
    title: str
    year: NotRequired[int]


class Draft(TypedDict, total=False):
    title: Required[str]
    note: str


class ExtensionMovie(typing_extensions.TypedDict):
    title: str


class ReadOnlyMovie(typing_extensions.TypedDict, total=False):
    title: typing_extensions.Required[typing_extensions.ReadOnly[str]]
    year: typing_extensions.ReadOnly[int]
    rating: typing_extensions.ReadOnly[typing_extensions.NotRequired[float]]
    votes: Required[int]


class FakeModel:
    @classmethod
    def model_validate(cls, value: Any) -> FakeModel:
        return cls()

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        return {'type': 'object'}


class HalfModel:
    model_validate = None


UserId = NewType('UserId', int)
T = typing.TypeVar('T')


class ClassifyTest(unittest.TestCase):
    def assertKind(self, annotation: Any, kind: Kind) -> None:
        self.assertIs(classify(annotation).kind, kind, annotation)

    def test_anything_goes(self):
        for annotation in (inspect.Parameter.empty, Any, object):
            self.assertKind(annotation, Kind.ANY)

    def test_scalars_with_none_as_its_type(self):
        for annotation, kind in (
            (None, Kind.NONE),
            (type(None), Kind.NONE),
            (bool, Kind.BOOL),
            (int, Kind.INT),
            (float, Kind.FLOAT),
            (str, Kind.STR),
            (bytes, Kind.BYTES),
        ):
            self.assertKind(annotation, kind)
        self.assertIs(classify(None).annotation, type(None))

    def test_annotated_and_newtype_are_looked_through(self):
        info = classify(Annotated[UserId, 'meta'])
        self.assertEqual((info.kind, info.annotation), (Kind.INT, int))
        self.assertIs(classify(Annotated[list[UserId], 'meta']).item.kind, Kind.INT)

    def test_unions_keep_their_member_order(self):
        self.assertEqual([member.kind for member in classify(Union[int, str]).parts], [Kind.INT, Kind.STR])
        # typing holds these two equal; their order decides conversions, so neither is taken for the other.
        self.assertEqual([member.kind for member in classify(Union[str, int]).parts], [Kind.STR, Kind.INT])
        self.assertEqual([member.kind for member in classify(str | int).parts], [Kind.STR, Kind.INT])
        self.assertEqual([member.kind for member in classify(Optional[float]).parts], [Kind.FLOAT, Kind.NONE])

    def test_literals_and_enums(self):
        info = classify(Literal['a', 1, None])
        self.assertEqual((info.kind, info.values), (Kind.LITERAL, ('a', 1, None)))
        info = classify(Color)
        self.assertEqual((info.kind, info.values, info.name), (Kind.ENUM, (Color.RED, Color.GREEN), 'Color'))

    def test_sequences_and_what_they_become(self):
        for annotation, item, container in (
            (list[int], Kind.INT, list),
            (typing.List[str], Kind.STR, list),
            (list, Kind.ANY, list),
            (collections.abc.Sequence[int], Kind.INT, list),
            (typing.Iterable[int], Kind.INT, list),
            (typing.Collection[int], Kind.INT, list),
            (tuple[int, ...], Kind.INT, tuple),
            (tuple, Kind.ANY, tuple),
            (typing.Tuple, Kind.ANY, tuple),
        ):
            info = classify(annotation)
            self.assertEqual((info.kind, info.item.kind, info.container), (Kind.SEQUENCE, item, container), annotation)

    def test_fixed_tuples(self):
        self.assertEqual([item.kind for item in classify(tuple[int, str]).parts], [Kind.INT, Kind.STR])
        for empty in (tuple[()], typing.Tuple[()]):
            info = classify(empty)
            self.assertEqual((info.kind, info.parts), (Kind.TUPLE, ()), empty)

    def test_sets_become_frozen_where_the_annotation_is_immutable(self):
        for annotation, container in (
            (set[int], set),
            (typing.MutableSet[int], set),
            (frozenset[int], frozenset),
            (typing.AbstractSet[int], frozenset),
            (set, set),
        ):
            info = classify(annotation)
            self.assertEqual((info.kind, info.container), (Kind.SET, container), annotation)

    def test_dicts(self):
        info = classify(dict[Color, list[float]])
        self.assertEqual(
            (info.kind, info.key.kind, info.value.kind, info.value.item.kind),
            (Kind.DICT, Kind.ENUM, Kind.SEQUENCE, Kind.FLOAT),
        )
        for bare in (dict, typing.Dict, typing.Mapping):
            info = classify(bare)
            self.assertEqual((info.kind, info.key.kind, info.value.kind), (Kind.DICT, Kind.ANY, Kind.ANY), bare)

    def test_dataclass_fields_resolved_with_defaults_and_required_flags(self):
        info = classify(Node)
        self.assertEqual((info.kind, info.name), (Kind.DATACLASS, 'Node'))
        self.assertEqual(
            info.fields,
            (
                FieldInfo('value', int, required=True),
                FieldInfo('children', list[Node], required=False),
                FieldInfo('label', str, required=False, has_default=True, default='leaf'),
                FieldInfo('depth', int, required=False, has_default=True, default=0, init=False),
            ),
        )
        # A recursive class is classified once: its field leads back to the same TypeInfo.
        self.assertIs(info.fields[1].info.item, info)

    def test_an_unresolvable_field_annotation_stays_as_written(self):
        field = classify(Dangling).fields[0]
        self.assertEqual((field.annotation, field.info.kind), ('Missing', Kind.UNKNOWN))

    def test_typeddict_keys_read_required_and_not_required_from_string_annotations(self):
        info = classify(Movie)
        self.assertEqual(info.kind, Kind.TYPEDDICT)
        self.assertEqual(info.fields, (FieldInfo('title', str, required=True), FieldInfo('year', int, required=False)))
        self.assertEqual(
            [(field.name, field.required) for field in classify(Draft).fields], [('title', True), ('note', False)]
        )
        self.assertEqual(classify(ExtensionMovie).fields, (FieldInfo('title', str, required=True),))

    def test_read_only_keys_are_looked_through(self):
        self.assertEqual(
            classify(ReadOnlyMovie).fields,
            (
                FieldInfo('title', str, required=True),
                FieldInfo('year', int, required=False),
                FieldInfo('rating', float, required=False),
                FieldInfo('votes', int, required=True),
            ),
        )

    def test_a_class_with_model_validate_is_a_model(self):
        # pydantic's BaseModel is recognised by its methods, so pydantic is never imported to tell.
        info = classify(FakeModel)
        self.assertEqual((info.kind, info.name, info.fields), (Kind.MODEL, 'FakeModel', ()))
        self.assertIs(classify(Optional[FakeModel]).parts[0], info)
        self.assertKind(HalfModel, Kind.UNKNOWN)

    def test_what_is_not_understood(self):
        for annotation in (
            'Point',
            typing.ForwardRef('Point'),
            T,
            Color.RED,
            collections.abc.Iterator[int],
            typing.Callable[[int], int],
            type[int],
        ):
            self.assertKind(annotation, Kind.UNKNOWN)

    def test_computed_once_per_annotation(self):
        annotation = list[Optional[int]]
        self.assertIs(classify(annotation), classify(annotation))


class JsonTypeNameTest(unittest.TestCase):
    def test_names(self):
        for value, name in (
            (None, 'null'),
            (True, 'boolean'),
            (3, 'integer'),
            (1.5, 'number'),
            ('x', 'string'),
            ([1], 'array'),
            ((1,), 'array'),
            ({}, 'object'),
            (b'x', 'bytes'),
        ):
            self.assertEqual(json_type_name(value), name, value)


if __name__ == '__main__':
    unittest.main()
