import enum
import math
import unittest
from dataclasses import dataclass, field
from typing import AbstractSet, Annotated, Any, Dict, List, Literal, NotRequired, Optional, Tuple, TypedDict, Union

from racetrack_job_wrapper.convert import ValidationError, ValidationMode, build_converter, build_text_converter
from racetrack_job_wrapper.endpoint_config import EndpointConfig
from racetrack_job_wrapper.endpoints import MISSING
from racetrack_job_wrapper.schema import SchemaBuilder, json_schema
from racetrack_job_wrapper.serialize import json_default
from racetrack_job_wrapper.testing import JobTestClient
from tests.support import ServerTestCase


class Color(enum.Enum):
    RED = 'red'
    GREEN = 'green'


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Weight(float, enum.Enum):
    LIGHT = 1.5
    HEAVY = 2.0


class Access(enum.IntFlag):
    READ = 1
    WRITE = 2


@dataclass
class Point:
    x: float
    y: float = 0.0


@dataclass
class Node:
    """A tree node."""

    value: int
    children: list['Node'] = field(default_factory=list)
    color: Color = Color.RED
    label: str = field(default='', init=False)


class Movie(TypedDict):
    title: str
    year: int


class Partial(TypedDict, total=False):
    note: str


class Sequel(Movie):
    # A string, as under `from __future__ import annotations`, where __required_keys__ cannot see NotRequired.
    prequel: 'NotRequired[Movie]'


@dataclass
class OnlyX:
    x: int = 0


@dataclass
class OnlyY:
    y: int = 0


class NotAType:
    pass


def schema_of(annotation):
    builder = SchemaBuilder()
    return builder.schema(annotation), builder.components


class SchemaTest(unittest.TestCase):
    def test_primitives(self):
        self.assertEqual(schema_of(int)[0], {'type': 'integer'})
        self.assertEqual(schema_of(float)[0], {'type': 'number'})
        self.assertEqual(schema_of(bool)[0], {'type': 'boolean'})
        self.assertEqual(schema_of(str)[0], {'type': 'string'})
        self.assertEqual(schema_of(None)[0], {'type': 'null'})
        self.assertEqual(schema_of(type(None))[0], {'type': 'null'})

    def test_unchecked_annotations_are_empty(self):
        for annotation in (MISSING, Any, object, NotAType, 'Unresolved', bytes):
            with self.subTest(annotation=annotation):
                self.assertEqual(schema_of(annotation), ({}, {}))

    def test_containers(self):
        self.assertEqual(schema_of(list[int])[0], {'type': 'array', 'items': {'type': 'integer'}})
        self.assertEqual(schema_of(List[str])[0], {'type': 'array', 'items': {'type': 'string'}})
        self.assertEqual(schema_of(list)[0], {'type': 'array'})
        self.assertEqual(
            schema_of(tuple[int, str])[0],
            {'type': 'array', 'prefixItems': [{'type': 'integer'}, {'type': 'string'}], 'minItems': 2, 'maxItems': 2},
        )
        self.assertEqual(schema_of(Tuple[int, ...])[0], {'type': 'array', 'items': {'type': 'integer'}})
        self.assertEqual(schema_of(tuple)[0], {'type': 'array'})
        self.assertEqual(schema_of(tuple[()])[0], {'type': 'array', 'maxItems': 0})
        self.assertEqual(schema_of(set[int])[0], {'type': 'array', 'uniqueItems': True, 'items': {'type': 'integer'}})
        self.assertEqual(schema_of(dict[str, float])[0], {'type': 'object', 'additionalProperties': {'type': 'number'}})
        self.assertEqual(schema_of(Dict)[0], {'type': 'object'})
        self.assertEqual(
            schema_of(dict[int, str])[0],
            {
                'type': 'object',
                'propertyNames': {'type': 'string', 'pattern': '^-?[0-9]+$'},
                'additionalProperties': {'type': 'string'},
            },
        )

    def test_unions_literals_annotated(self):
        self.assertEqual(schema_of(Optional[int])[0], {'anyOf': [{'type': 'integer'}, {'type': 'null'}]})
        self.assertEqual(schema_of(int | str)[0], {'anyOf': [{'type': 'integer'}, {'type': 'string'}]})
        self.assertEqual(
            schema_of(Union[float, list[int]])[0],
            {'anyOf': [{'type': 'number'}, {'type': 'array', 'items': {'type': 'integer'}}]},
        )
        self.assertEqual(schema_of(Literal['a', 'b'])[0], {'type': 'string', 'enum': ['a', 'b']})
        self.assertEqual(schema_of(Literal[1, 'x'])[0], {'enum': [1, 'x']})
        self.assertEqual(schema_of(Annotated[int, 'meta'])[0], {'type': 'integer'})

    def test_enum_component(self):
        self.assertEqual(
            schema_of(Color),
            (
                {'$ref': '#/components/schemas/Color'},
                {'Color': {'title': 'Color', 'type': 'string', 'enum': ['red', 'green']}},
            ),
        )
        self.assertEqual(schema_of(Level)[1]['Level'], {'title': 'Level', 'type': 'integer', 'enum': [1, 2]})

    def test_recursive_dataclass_component(self):
        schema, components = schema_of(Optional[list[Node]])
        self.assertEqual(
            schema, {'anyOf': [{'type': 'array', 'items': {'$ref': '#/components/schemas/Node'}}, {'type': 'null'}]}
        )
        self.assertEqual(
            components['Node'],
            {
                'type': 'object',
                'title': 'Node',
                'properties': {
                    'value': {'type': 'integer'},
                    'children': {'type': 'array', 'items': {'$ref': '#/components/schemas/Node'}},
                    'color': {'$ref': '#/components/schemas/Color', 'default': 'red'},
                    'label': {'type': 'string', 'readOnly': True},
                },
                'required': ['value'],
                'additionalProperties': False,
                'description': 'A tree node.',
            },
        )
        self.assertEqual(sorted(components), ['Color', 'Node'])

    def test_typeddict_components(self):
        self.assertEqual(
            schema_of(Movie)[1],
            {
                'Movie': {
                    'type': 'object',
                    'title': 'Movie',
                    'properties': {'title': {'type': 'string'}, 'year': {'type': 'integer'}},
                    'required': ['title', 'year'],
                    'additionalProperties': False,
                }
            },
        )
        self.assertEqual(
            schema_of(Partial)[1],
            {
                'Partial': {
                    'type': 'object',
                    'title': 'Partial',
                    'properties': {'note': {'type': 'string'}},
                    'additionalProperties': False,
                }
            },
        )
        self.assertEqual(schema_of(Sequel)[1]['Sequel']['required'], ['title', 'year'])

    def test_json_schema_uses_defs(self):
        self.assertEqual(
            json_schema(list[Point]),
            {
                'type': 'array',
                'items': {'$ref': '#/$defs/Point'},
                '$defs': {
                    'Point': {
                        'type': 'object',
                        'title': 'Point',
                        'properties': {'x': {'type': 'number'}, 'y': {'type': 'number', 'default': 0.0}},
                        'required': ['x'],
                        'additionalProperties': False,
                    }
                },
            },
        )

    def test_json_default(self):
        self.assertEqual(json_default((1, 2)), (True, [1, 2]))
        self.assertEqual(json_default(Color.GREEN), (True, 'green'))
        self.assertEqual(json_default({3, 1}), (True, [1, 3]))
        self.assertEqual(json_default(Point(1.0)), (True, {'x': 1.0, 'y': 0.0}))
        self.assertEqual(json_default(NotAType()), (False, None))
        self.assertEqual(json_default(float('nan')), (False, None))


class ConverterTestCase(unittest.TestCase):
    mode = ValidationMode.LAX

    def convert(self, annotation, value, path='p'):
        return build_converter(annotation, self.mode)(value, path)

    def assertConverts(self, annotation, value, expected):
        """Converted to `expected`, with the same type (checked through lists too)."""
        converted = self.convert(annotation, value)
        self.assertEqual((converted, type(converted)), (expected, type(expected)))
        if isinstance(expected, list):
            self.assertEqual([type(item) for item in converted], [type(item) for item in expected])

    def refuse(self, annotation, value, message, path='p'):
        with self.assertRaises(ValidationError) as caught:
            build_converter(annotation, self.mode)(value, path)
        self.assertEqual(str(caught.exception), message)


class ConverterTest(ConverterTestCase):
    """The default, lax mode: what pydantic's lax mode accepts (tests/test_validation_pydantic.py checks it)."""

    def test_unchecked_annotations_have_no_converter(self):
        for annotation in (MISSING, Any, object, NotAType, 'Unresolved'):
            with self.subTest(annotation=annotation):
                self.assertIsNone(build_converter(annotation))

    def test_values_that_fit_are_passed_unchanged(self):
        self.assertConverts(int, 5, 5)
        self.assertConverts(str, ' a ', ' a ')
        self.assertConverts(bool, False, False)
        self.assertIsNone(self.convert(None, None))
        self.assertConverts(float, 2.5, 2.5)
        # PEP 484's numeric tower: an int is a float; it stays an int (pydantic would make it 2.0).
        self.assertConverts(float, 2, 2)
        self.assertConverts(list[float], [40, 2], [40, 2])
        self.assertConverts(list[float], [1, 2.5], [1, 2.5])
        self.assertConverts(Optional[float], 1, 1)
        self.assertConverts(dict[str, float], {'a': 1}, {'a': 1})
        self.refuse(float, 10**400, 'p: integer is too large for a float')

    def test_numbers_from_strings_and_integral_floats(self):
        for value, expected in (
            ('3', 3),
            (' 3 ', 3),
            ('\t-3\n', -3),
            ('+3', 3),
            ('1_000', 1000),
            ('007', 7),
            ('3.0', 3),
            ('7907.000', 7907),
            (7907.0, 7907),
            (-0.0, 0),
            (True, 1),
        ):
            with self.subTest(value=value):
                self.assertConverts(int, value, expected)
        for value in (7907.5, '3.5', '1e3', '3.', '1__0', '_1', '0x10', '', '0-1', 2.0**63, None, []):
            with self.subTest(value=value), self.assertRaises(ValidationError):
                self.convert(int, value)
        for value, expected in (
            ('1.5', 1.5),
            (' 2 ', 2.0),
            ('1e3', 1000.0),
            ('1_000.5', 1000.5),
            ('-.5', -0.5),
            (False, 0.0),
        ):
            with self.subTest(value=value):
                self.assertConverts(float, value, expected)
        self.assertTrue(math.isnan(self.convert(float, 'nan')))
        self.assertEqual(self.convert(float, '-Infinity'), -math.inf)
        self.refuse(int, 7907.5, 'p: expected integer, got number')
        self.refuse(float, 'one', 'p: expected number, got string')
        self.refuse(list[float], [1, 2, 'x'], 'numbers[2]: expected number, got string', path='numbers')

    def test_booleans_from_numbers_and_words(self):
        for value, expected in (
            (1, True),
            (0, False),
            (1.0, True),
            ('true', True),
            ('YES', True),
            ('y', True),
            ('on', True),
            ('1', True),
            ('False', False),
            ('off', False),
            ('n', False),
        ):
            with self.subTest(value=value):
                self.assertConverts(bool, value, expected)
        for value in (2, 0.5, ' true', 'maybe', '', None):
            with self.subTest(value=value), self.assertRaises(ValidationError):
                self.convert(bool, value)
        self.refuse(bool, 2, 'p: expected boolean, got integer')

    def test_strings_and_null_are_not_converted(self):
        self.refuse(str, 1, 'p: expected string, got integer')
        self.refuse(str, None, 'p: expected string, got null')
        self.refuse(None, 0, 'p: expected null, got integer')
        self.refuse(None, '', 'p: expected null, got string')

    def test_list_paths(self):
        self.assertConverts(list[int], ['1', 2.0], [1, 2])
        self.refuse(list[int], {'a': 1}, 'p: expected array, got object')
        self.refuse(list[list[int]], [[1], [2, None]], 'p[1][1]: expected integer, got null')

    def test_tuple_and_set(self):
        self.assertEqual(self.convert(tuple[int, str], ['1', 'a']), (1, 'a'))
        self.assertEqual(self.convert(tuple[int, ...], [1, 2, 3]), (1, 2, 3))
        self.assertEqual(self.convert(tuple, [1, 'x']), (1, 'x'))
        self.assertEqual(self.convert(tuple[()], []), ())
        self.assertEqual(self.convert(set[int], [1, '2', 1]), {1, 2})
        self.assertEqual(self.convert(frozenset[str], ['a']), frozenset({'a'}))
        self.assertIs(type(self.convert(AbstractSet[int], [1])), frozenset)
        self.refuse(tuple[int, str], [1], 'p: expected an array of 2 items, got 1')
        self.refuse(tuple[int, str], [1, 2], 'p[1]: expected string, got integer')
        self.refuse(tuple[()], [1], 'p: expected an array of 0 items, got 1')
        self.refuse(set, [[1]], 'p: array items must be hashable to form a set')

    def test_dicts(self):
        self.assertEqual(self.convert(dict[str, int], {'a': '1'}), {'a': 1})
        # Keys are validated as the strings they are, so "1" is an int key but not a Literal[1] one.
        self.assertEqual(self.convert(dict[int, float], {'1': 2, ' 3 ': '0.5'}), {1: 2, 3: 0.5})
        self.assertEqual(self.convert(dict[Level, bool], {'2': 'yes'}), {Level.HIGH: True})
        self.refuse(dict[Literal[1, 2], int], {'1': 1}, 'p.1: expected one of 1, 2, got "1"')
        self.refuse(dict[str, int], {'a': 'b'}, 'p.a: expected integer, got string')
        self.refuse(dict[int, str], {'x': 'b'}, 'p.x: expected integer, got string')
        self.refuse(dict, [], 'p: expected object, got array')

    def test_unions_take_the_best_fitting_member(self):
        self.assertIsNone(self.convert(Optional[int], None))
        self.assertConverts(Optional[int], '3', 3)
        self.assertConverts(Union[int, str], '1', '1')  # an exact match beats a conversion
        self.assertConverts(Union[str, int], 1.0, 1)
        self.assertConverts(Union[float, int], 1, 1)
        self.assertConverts(Union[int, float], 1.0, 1.0)
        self.assertConverts(Union[int, float], '1.5', 1.5)
        self.assertConverts(Union[bool, int], 'yes', True)
        self.assertConverts(int | list[int], ['1'], [1])
        self.assertEqual(self.convert(Union[list[int], list[str]], ['1']), ['1'])
        self.assertEqual(self.convert(Union[tuple[int], list[int]], [1]), [1])
        self.assertIs(self.convert(Union[Color, str], 'red'), 'red')
        self.assertEqual(self.convert(Union[int, Any], 1.0), 1.0)  # Any fits better than a conversion
        # Between dataclasses, the one given more of its fields wins; on a tie, the first.
        self.assertEqual(self.convert(Union[OnlyX, OnlyY], {'y': 1}), OnlyY(1))
        self.assertEqual(self.convert(Union[OnlyX, OnlyY], {'x': 1, 'y': 2}), OnlyX(1))
        self.assertEqual(self.convert(Union[OnlyX, OnlyY], {}), OnlyX())
        self.refuse(Optional[int], 'x', 'p: expected integer or null, got string')
        self.refuse(int | str, None, 'p: expected integer or string, got null')
        # A problem inside the one member that could fit is reported as it is.
        self.refuse(Optional[Point], {'x': 'a'}, 'p.x: expected number, got string')

    def test_literal_and_enum(self):
        self.assertEqual(self.convert(Literal['a', 'b'], 'b'), 'b')
        self.assertConverts(Literal[1, 2], 1.0, 1)
        self.assertConverts(Literal[1, 2], True, 1)
        self.assertConverts(Literal[True], 1, True)
        self.refuse(Literal[1, 2], '1', 'p: expected one of 1, 2, got "1"')
        self.refuse(Literal['a', 'b'], 'c', 'p: expected one of "a", "b", got "c"')
        self.refuse(Literal['a'], 'x' * 100, 'p: expected one of "a", got "' + 'x' * 56 + '...')
        self.assertIs(self.convert(Color, 'green'), Color.GREEN)
        self.assertIs(self.convert(Level, ' 2 '), Level.HIGH)
        self.assertIs(self.convert(Level, True), Level.LOW)
        self.assertIs(self.convert(Weight, '1.5'), Weight.LIGHT)
        self.assertEqual(self.convert(Access, 3), Access.READ | Access.WRITE)
        self.refuse(Color, 'GREEN', 'p: expected one of "red", "green", got "GREEN"')
        self.refuse(Level, 2.5, 'p: expected one of 1, 2, got 2.5')
        self.refuse(Access, 2**63, f'p: expected one of 1, 2, got {2**63}')

    def test_dataclasses_arrive_as_instances(self):
        self.assertEqual(self.convert(Point, {'x': '1.5'}), Point(1.5, 0.0))
        self.assertIs(type(self.convert(Point, {'x': 1}).x), int)
        tree = self.convert(Node, {'value': 1, 'children': [{'value': '2', 'color': 'green'}]})
        self.assertEqual(tree, Node(1, [Node(2, [], Color.GREEN)]))
        self.assertIs(tree.children[0].color, Color.GREEN)
        # Unknown fields, and fields the class fills in itself, are ignored (pydantic's extra='ignore').
        self.assertEqual(self.convert(Node, {'value': 1, 'size': 3, 'label': 'x'}), Node(1))
        self.refuse(Node, {'children': []}, 'tree.value: required field is missing', path='tree')
        self.refuse(
            Node,
            {'value': 1, 'children': [{'value': 1.5}]},
            'tree.children[0].value: expected integer, got number',
            path='tree',
        )
        self.refuse(Point, [1, 2], 'p: expected object (Point), got array')

    def test_dataclass_post_init_errors(self):
        @dataclass
        class Positive:
            n: int

            def __post_init__(self):
                if self.n <= 0:
                    raise ValueError('n must be positive')

        self.refuse(Positive, {'n': '0'}, 'p: invalid Positive: n must be positive')

    def test_typeddict(self):
        self.assertEqual(self.convert(Movie, {'title': 'x', 'year': '1999', 'extra': 1}), {'title': 'x', 'year': 1999})
        self.assertEqual(self.convert(Partial, {}), {})
        self.assertEqual(self.convert(Sequel, {'title': 'x', 'year': 2000}), {'title': 'x', 'year': 2000})
        self.refuse(Sequel, {'title': 'x', 'year': 2000, 'prequel': {}}, 'p.prequel.title: required field is missing')
        self.refuse(Movie, {'title': 'x'}, 'p.year: required field is missing')

    def test_unknown_nested_types_are_not_checked(self):
        marker = NotAType()
        self.assertEqual(self.convert(list[NotAType], [1, 'x']), [1, 'x'])
        self.assertIs(self.convert(dict[str, Any], {'a': marker})['a'], marker)


class StrictConverterTest(ConverterTestCase):
    """`validate_input: strict`: JSON types as they are; what the default lax mode converts is refused."""

    mode = ValidationMode.STRICT

    def test_primitives(self):
        self.assertEqual(self.convert(int, 5), 5)
        self.assertEqual(self.convert(str, 'a'), 'a')
        self.assertIs(self.convert(bool, False), False)
        self.assertIsNone(self.convert(None, None))
        self.refuse(int, 1.5, 'p: expected integer, got number')
        self.refuse(int, 7907.0, 'p: expected integer, got number')
        self.refuse(int, '3', 'p: expected integer, got string')
        self.refuse(int, True, 'p: expected integer, got boolean')
        self.refuse(float, False, 'p: expected number, got boolean')
        self.refuse(float, '1.5', 'p: expected number, got string')
        self.refuse(bool, 1, 'p: expected boolean, got integer')
        self.refuse(bool, 'true', 'p: expected boolean, got string')
        self.refuse(str, None, 'p: expected string, got null')
        self.refuse(None, 0, 'p: expected null, got integer')

    def test_integer_stays_integer_for_float(self):
        self.assertConverts(float, 2, 2)
        self.assertConverts(list[float], [40, 2], [40, 2])
        self.assertConverts(Optional[float], 1, 1)
        self.refuse(float, 10**400, 'p: integer is too large for a float')

    def test_list_paths(self):
        self.refuse(list[float], [1, 2, 'x'], 'numbers[2]: expected number, got string', path='numbers')
        self.refuse(list[int], {'a': 1}, 'p: expected array, got object')

    def test_tuple_and_set(self):
        self.assertEqual(self.convert(tuple[int, str], [1, 'a']), (1, 'a'))
        self.assertEqual(self.convert(set[int], [1, 2, 1]), {1, 2})
        self.refuse(tuple[int, str], [1, 2], 'p[1]: expected string, got integer')

    def test_dict_keys_are_read_as_query_text(self):
        self.assertEqual(self.convert(dict[int, float], {'1': 2}), {1: 2})
        self.assertEqual(self.convert(dict[Literal[1, 2], int], {'1': 1}), {1: 1})
        self.refuse(dict[str, int], {'a': '1'}, 'p.a: expected integer, got string')
        self.refuse(dict[int, str], {'x': 'b'}, 'p.x: expected integer, got "x"')

    def test_unions_send_json_types_to_their_member(self):
        self.assertEqual(self.convert(Union[str, int], '1'), '1')
        self.assertConverts(Union[float, int], 1, 1)
        self.assertEqual(self.convert(Union[tuple[int], list[int]], [1]), (1,))  # in order
        self.refuse(int | str, True, 'p: expected integer or string, got boolean')
        self.refuse(Optional[int], '3', 'p: expected integer or null, got string')

    def test_literal_and_enum_by_value_and_type(self):
        self.assertEqual(self.convert(Literal[1, 2], 1), 1)
        self.refuse(Literal[1, 2], True, 'p: expected one of 1, 2, got true')
        self.refuse(Literal[1, 2], 1.0, 'p: expected one of 1, 2, got 1.0')
        self.assertIs(self.convert(Level, 2), Level.HIGH)
        self.refuse(Level, '2', 'p: expected one of 1, 2, got "2"')
        self.refuse(Level, True, 'p: expected one of 1, 2, got true')

    def test_unknown_fields_are_errors(self):
        self.refuse(
            Node,
            {'value': 1, 'children': [{'value': 2, 'size': 3}]},
            'tree.children[0].size: unknown field of Node',
            path='tree',
        )
        self.refuse(Node, {'value': 1, 'label': 'x'}, 'p.label: unknown field of Node')
        self.refuse(Movie, {'title': 'x', 'year': 1, 'extra': 1}, 'p.extra: unknown field of Movie')

    def test_off_mode_has_no_converter(self):
        self.assertIsNone(build_converter(int, ValidationMode.OFF))
        self.assertIsNone(build_converter(Point, ValidationMode.OFF))


class TextConverterTest(unittest.TestCase):
    mode = ValidationMode.LAX

    def convert(self, annotation, text, path='q'):
        return build_text_converter(annotation, self.mode)(text, path)

    def refuse(self, annotation, text, message):
        with self.assertRaises(ValidationError) as caught:
            build_text_converter(annotation, self.mode)(text, 'q')
        self.assertEqual(str(caught.exception), message)

    def test_scalars(self):
        self.assertEqual(self.convert(int, '42'), 42)
        self.assertEqual(self.convert(float, '1.5'), 1.5)
        self.assertEqual(self.convert(str, ''), '')
        self.assertIs(self.convert(bool, 'true'), True)
        self.assertIs(self.convert(bool, 'Off'), False)
        self.refuse(int, '1.5', 'q: expected integer, got "1.5"')
        self.refuse(bool, 'maybe', 'q: expected boolean, got "maybe"')

    def test_lax_text_as_pydantic_reads_strings(self):
        self.assertEqual(self.convert(int, '7907.0'), 7907)
        self.assertEqual(self.convert(int, '1_000'), 1000)
        self.assertEqual(self.convert(float, ' 1e3 '), 1000.0)
        self.assertTrue(math.isnan(self.convert(float, 'nan')))
        self.assertIs(self.convert(bool, 't'), True)
        self.assertIs(self.convert(Level, ' 2 '), Level.HIGH)
        self.assertEqual(self.convert(int | str, '1'), '1')  # text is a string, an exact match for `str`
        self.assertEqual(self.convert(int | float, '1.5'), 1.5)
        self.refuse(int, '1e3', 'q: expected integer, got "1e3"')
        self.refuse(bool, ' true', 'q: expected boolean, got " true"')

    def test_repeated_keys(self):
        self.assertEqual(self.convert(int, ['1', '2']), 2)
        self.assertEqual(self.convert(list[int], ['1', '2']), [1, 2])
        self.assertEqual(self.convert(list[int], '7'), [7])
        self.assertEqual(self.convert(tuple[int, str], ['1', 'a']), (1, 'a'))
        self.assertEqual(self.convert(set[str], ['a', 'a']), {'a'})
        self.refuse(list[int], ['1', 'x'], 'q[1]: expected integer, got "x"')
        self.refuse(tuple[int, str], ['1'], 'q: expected 2 values, got 1')
        self.refuse(tuple[()], ['1'], 'q: expected 0 values, got 1')

    def test_optional_literal_enum(self):
        self.assertIsNone(self.convert(Optional[int], ''))
        self.assertIsNone(self.convert(Optional[int], 'null'))
        self.assertEqual(self.convert(Optional[int], '3'), 3)
        self.assertEqual(self.convert(Optional[str], ''), '')
        self.assertEqual(self.convert(int | str, 'x'), 'x')
        self.assertEqual(self.convert(Literal[1, 2], '2'), 2)
        self.assertIs(self.convert(Literal[True], 'true'), True)
        self.assertIs(self.convert(Color, 'red'), Color.RED)
        self.refuse(Color, 'blue', 'q: expected one of "red", "green", got "blue"')
        self.refuse(Optional[int], 'x', 'q: expected integer or null, got "x"')

    def test_json_text_for_structures(self):
        self.assertEqual(self.convert(Point, '{"x": "2"}'), Point(2.0))
        self.assertEqual(self.convert(dict[str, int], '{"a": 1}'), {'a': 1})
        self.refuse(Point, 'nope', 'q: expected object (Point) as JSON text')

    def test_unchecked(self):
        self.assertIsNone(build_text_converter(MISSING))
        self.assertIsNone(build_text_converter(Any))
        self.assertIsNone(build_text_converter(NotAType))


class StrictTextConverterTest(TextConverterTest):
    """`validate_input: strict` keeps plain decimals, finite floats and the classic boolean words."""

    mode = ValidationMode.STRICT

    def test_lax_text_as_pydantic_reads_strings(self):
        self.refuse(int, '7907.0', 'q: expected integer, got "7907.0"')
        self.refuse(int, '1_000', 'q: expected integer, got "1_000"')
        self.refuse(float, 'nan', 'q: expected number, got "nan"')
        self.refuse(bool, 't', 'q: expected boolean, got "t"')
        self.assertIs(self.convert(bool, ' on '), True)
        self.assertEqual(self.convert(int | str, '1'), 1)  # text is tried as a string last

    def test_json_text_for_structures(self):
        self.assertEqual(self.convert(Point, '{"x": 2}'), Point(2))
        self.refuse(Point, '{"x": "2"}', 'q.x: expected number, got string')


class ArgumentsJob:
    def perform(self, numbers: list[float] = (), number: int = 0, x: float = 0.0) -> dict:
        if x < 0:
            raise ValueError(f'{x} is negative')
        return {'sum': sum(numbers), 'number': number, 'type': type(number).__name__}

    def auxiliary_endpoints_v2(self):
        return [EndpointConfig('/double', 'GET', self.double)]

    def double(self, number: int) -> int:
        return 2 * number


class ValidationModeOverSocketTest(ServerTestCase):
    # The one validation test through the real server; the other modes take the same request
    # path in process (ValidationModeTest).
    def test_lax_default_keeps_fitting_values_and_converts_the_rest(self):
        client = self.serve(ArgumentsJob)
        response = client.post('/api/v1/perform', {'numbers': [40, 2]})
        self.assertEqual((response.status, response.body), (200, b'{"sum":42,"number":0,"type":"int"}'))
        self.assertEqual(
            client.post('/api/v1/perform', {'number': 7907.0}).json(), {'sum': 0, 'number': 7907, 'type': 'int'}
        )
        self.assertEqual(
            client.post('/api/v1/perform', {'number': ' 7907 ', 'numbers': ['1.5']}).json(),
            {'sum': 1.5, 'number': 7907, 'type': 'int'},
        )
        self.assertEqual(
            client.post('/api/v1/perform', {'x': -4}).json(), {'error': '-4 is negative', 'type': 'ValueError'}
        )
        self.assertEqual(client.get('/api/v1/double?number=7907.0').json(), 15814)
        response = client.post('/api/v1/perform', {'number': 7907.5})
        self.assertEqual(
            (response.status, response.json()),
            (400, {'error': 'number: expected integer, got number', 'type': 'ValidationError'}),
        )
        response = client.post('/api/v1/perform', {'numbers': [1, 2, 'x']})
        self.assertEqual(
            (response.status, response.json()),
            (400, {'error': 'numbers[2]: expected number, got string', 'type': 'ValidationError'}),
        )


class ValidationModeTest(unittest.TestCase):
    def test_strict_takes_json_types_as_they_are(self):
        client = self.enterContext(JobTestClient(ArgumentsJob, {'jobtype_extra': {'validate_input': 'strict'}}))
        self.assertEqual(
            client.post('/api/v1/perform', {'numbers': [40, 2]}).body, b'{"sum":42,"number":0,"type":"int"}'
        )
        response = client.post('/api/v1/perform', {'number': 7907.0})
        self.assertEqual(
            (response.status, response.json()),
            (400, {'error': 'number: expected integer, got number', 'type': 'ValidationError'}),
        )
        response = client.get('/api/v1/double?number=7907.0')
        self.assertEqual(
            (response.status, response.json()),
            (400, {'error': 'number: expected integer, got "7907.0"', 'type': 'ValidationError'}),
        )

    def test_false_passes_json_arguments_raw(self):
        client = self.enterContext(JobTestClient(ArgumentsJob, {'jobtype_extra': {'validate_input': False}}))
        self.assertEqual(
            client.post('/api/v1/perform', {'number': '7907'}).json(), {'sum': 0, 'number': '7907', 'type': 'str'}
        )
        self.assertEqual(
            client.post('/api/v1/perform', {'number': 7907.0}).json(), {'sum': 0, 'number': 7907.0, 'type': 'float'}
        )
        # Query text still has to become the annotated type.
        self.assertEqual(client.get('/api/v1/double?number=7907.0').json(), 15814)


try:
    import pydantic
except ImportError:  # the test extra installs it; tests/test_validation_pydantic.py fails CI without it
    pydantic = None

if pydantic is not None:

    class Street(pydantic.BaseModel):
        name: str

    class Home(pydantic.BaseModel):
        street: Street
        color: Color = Color.RED

    class Office(pydantic.BaseModel):
        street: Street

    class Tree(pydantic.BaseModel):
        value: int
        children: List['Tree'] = []

    class Opaque(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        thing: NotAType


@unittest.skipIf(pydantic is None, 'pydantic is not installed (the test extra has it)')
class PydanticModelSchemaTest(unittest.TestCase):
    def test_a_model_and_its_definitions_become_components(self):
        schema, components = schema_of(Home)
        self.assertEqual(schema, {'$ref': '#/components/schemas/Home'})
        self.assertEqual(sorted(components), ['Color', 'Home', 'Street'])
        self.assertEqual(components['Home']['properties']['street'], {'$ref': '#/components/schemas/Street'})
        self.assertEqual(components['Street'], Street.model_json_schema())

    def test_shared_definitions_are_kept_once_and_an_enum_is_shared_with_ours(self):
        builder = SchemaBuilder()
        builder.schema(Color)
        builder.schema(Home)
        builder.schema(Office)
        self.assertEqual(sorted(builder.components), ['Color', 'Home', 'Office', 'Street'])
        self.assertEqual(
            builder.schema(Optional[Home]), {'anyOf': [{'$ref': '#/components/schemas/Home'}, {'type': 'null'}]}
        )

    def test_a_name_taken_by_another_schema_is_renamed_in_references_too(self):
        builder = SchemaBuilder()
        builder.components['Street'] = {'type': 'string'}  # another schema of that name
        builder.schema(Home)
        self.assertEqual(builder.components['Street2'], Street.model_json_schema())
        self.assertEqual(builder.components['Home']['properties']['street'], {'$ref': '#/components/schemas/Street2'})

    def test_recursive_model(self):
        schema, components = schema_of(Tree)
        self.assertEqual(schema, {'$ref': '#/components/schemas/Tree'})
        self.assertEqual(components['Tree']['properties']['children']['items'], {'$ref': '#/components/schemas/Tree'})

    def test_standalone_json_schema(self):
        schema = json_schema(list[Home])
        self.assertEqual(schema['items'], {'$ref': '#/$defs/Home'})
        self.assertEqual(schema['$defs']['Home']['properties']['street'], {'$ref': '#/$defs/Street'})

    def test_a_model_pydantic_cannot_describe_is_any_value(self):
        with self.assertLogs('racetrack_job_wrapper.schema', 'WARNING') as logs:
            self.assertEqual(schema_of(Opaque), ({}, {}))
        self.assertIn('Opaque cannot be described in JSON Schema', logs.output[0])


@unittest.skipIf(pydantic is None, 'pydantic is not installed (the test extra has it)')
class PydanticModelConverterTest(unittest.TestCase):
    def test_lax_and_strict(self):
        lax = build_converter(Home)
        self.assertEqual(lax({'street': {'name': 'Main'}, 'color': 'red'}, 'home'), Home(street=Street(name='Main')))
        strict = build_converter(Home, ValidationMode.STRICT)
        with self.assertRaises(ValidationError) as caught:
            strict({'street': {'name': 5}}, 'home')
        self.assertEqual(str(caught.exception), 'home.street.name: Input should be a valid string')

    def test_a_union_of_models_takes_the_one_given_more_fields(self):
        convert = build_converter(Union[Office, Home])
        self.assertIsInstance(convert({'street': {'name': 'x'}, 'color': 'green'}, 'place'), Home)
        self.assertIsInstance(convert({'street': {'name': 'x'}}, 'place'), Office)

    def test_text_converter_reads_json_text(self):
        convert = build_text_converter(Street)
        self.assertEqual(convert('{"name": "Main"}', 'street'), Street(name='Main'))


if __name__ == '__main__':
    unittest.main()
