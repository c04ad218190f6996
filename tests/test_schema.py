import enum
import unittest
from dataclasses import dataclass, field
from typing import Annotated, Any, Dict, List, Literal, Optional, Tuple, TypedDict, Union

from racetrack_job_wrapper.endpoints import MISSING
from racetrack_job_wrapper.schema import (
    SchemaBuilder, ValidationError, build_converter, build_text_converter, json_default, json_schema)


class Color(enum.Enum):
    RED = 'red'
    GREEN = 'green'


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


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
        self.assertEqual(schema_of(tuple[int, str])[0], {
            'type': 'array', 'prefixItems': [{'type': 'integer'}, {'type': 'string'}],
            'minItems': 2, 'maxItems': 2})
        self.assertEqual(schema_of(Tuple[int, ...])[0], {'type': 'array', 'items': {'type': 'integer'}})
        self.assertEqual(schema_of(tuple)[0], {'type': 'array'})
        self.assertEqual(schema_of(set[int])[0], {'type': 'array', 'uniqueItems': True, 'items': {'type': 'integer'}})
        self.assertEqual(schema_of(dict[str, float])[0], {'type': 'object', 'additionalProperties': {'type': 'number'}})
        self.assertEqual(schema_of(Dict)[0], {'type': 'object'})
        self.assertEqual(schema_of(dict[int, str])[0], {
            'type': 'object', 'propertyNames': {'type': 'string', 'pattern': '^-?[0-9]+$'},
            'additionalProperties': {'type': 'string'}})

    def test_unions_literals_annotated(self):
        self.assertEqual(schema_of(Optional[int])[0], {'anyOf': [{'type': 'integer'}, {'type': 'null'}]})
        self.assertEqual(schema_of(int | str)[0], {'anyOf': [{'type': 'integer'}, {'type': 'string'}]})
        self.assertEqual(schema_of(Union[float, list[int]])[0],
                         {'anyOf': [{'type': 'number'}, {'type': 'array', 'items': {'type': 'integer'}}]})
        self.assertEqual(schema_of(Literal['a', 'b'])[0], {'type': 'string', 'enum': ['a', 'b']})
        self.assertEqual(schema_of(Literal[1, 'x'])[0], {'enum': [1, 'x']})
        self.assertEqual(schema_of(Annotated[int, 'meta'])[0], {'type': 'integer'})

    def test_enum_component(self):
        self.assertEqual(schema_of(Color), ({'$ref': '#/components/schemas/Color'}, {
            'Color': {'title': 'Color', 'type': 'string', 'enum': ['red', 'green']}}))
        self.assertEqual(schema_of(Level)[1]['Level'], {'title': 'Level', 'type': 'integer', 'enum': [1, 2]})

    def test_recursive_dataclass_component(self):
        schema, components = schema_of(Optional[list[Node]])
        self.assertEqual(schema, {'anyOf': [
            {'type': 'array', 'items': {'$ref': '#/components/schemas/Node'}}, {'type': 'null'}]})
        self.assertEqual(components['Node'], {
            'type': 'object', 'title': 'Node',
            'properties': {
                'value': {'type': 'integer'},
                'children': {'type': 'array', 'items': {'$ref': '#/components/schemas/Node'}},
                'color': {'$ref': '#/components/schemas/Color', 'default': 'red'},
                'label': {'type': 'string', 'readOnly': True},
            },
            'required': ['value'],
            'additionalProperties': False,
            'description': 'A tree node.',
        })
        self.assertEqual(sorted(components), ['Color', 'Node'])

    def test_typeddict_components(self):
        self.assertEqual(schema_of(Movie)[1], {'Movie': {
            'type': 'object', 'title': 'Movie',
            'properties': {'title': {'type': 'string'}, 'year': {'type': 'integer'}},
            'required': ['title', 'year'], 'additionalProperties': False}})
        self.assertEqual(schema_of(Partial)[1], {'Partial': {
            'type': 'object', 'title': 'Partial', 'properties': {'note': {'type': 'string'}},
            'additionalProperties': False}})

    def test_json_schema_uses_defs(self):
        self.assertEqual(json_schema(list[Point]), {
            'type': 'array', 'items': {'$ref': '#/$defs/Point'},
            '$defs': {'Point': {'type': 'object', 'title': 'Point',
                                'properties': {'x': {'type': 'number'}, 'y': {'type': 'number', 'default': 0.0}},
                                'required': ['x'], 'additionalProperties': False}}})

    def test_json_default(self):
        self.assertEqual(json_default((1, 2)), (True, [1, 2]))
        self.assertEqual(json_default(Color.GREEN), (True, 'green'))
        self.assertEqual(json_default({3, 1}), (True, [1, 3]))
        self.assertEqual(json_default(Point(1.0)), (True, {'x': 1.0, 'y': 0.0}))
        self.assertEqual(json_default(NotAType()), (False, None))
        self.assertEqual(json_default(float('nan')), (False, None))


class ConverterTest(unittest.TestCase):
    def convert(self, annotation, value, path='p'):
        return build_converter(annotation)(value, path)

    def refuse(self, annotation, value, message, path='p'):
        with self.assertRaises(ValidationError) as caught:
            build_converter(annotation)(value, path)
        self.assertEqual(str(caught.exception), message)

    def test_unchecked_annotations_have_no_converter(self):
        for annotation in (MISSING, Any, object, NotAType, 'Unresolved'):
            with self.subTest(annotation=annotation):
                self.assertIsNone(build_converter(annotation))

    def test_primitives(self):
        self.assertEqual(self.convert(int, 5), 5)
        self.assertEqual(self.convert(str, 'a'), 'a')
        self.assertIs(self.convert(bool, False), False)
        self.assertIsNone(self.convert(None, None))
        self.refuse(int, 1.5, 'p: expected integer, got number')
        self.refuse(int, True, 'p: expected integer, got boolean')
        self.refuse(float, False, 'p: expected number, got boolean')
        self.refuse(bool, 1, 'p: expected boolean, got integer')
        self.refuse(str, None, 'p: expected string, got null')
        self.refuse(None, 0, 'p: expected null, got integer')

    def test_integer_becomes_float(self):
        value = self.convert(float, 2)
        self.assertEqual((value, type(value)), (2.0, float))
        self.refuse(float, 10 ** 400, 'p: integer is too large for a float')

    def test_list_paths(self):
        self.assertEqual(self.convert(list[float], [1, 2.5]), [1.0, 2.5])
        self.refuse(list[float], [1, 2, 'x'], 'numbers[2]: expected number, got string', path='numbers')
        self.refuse(list[int], {'a': 1}, 'p: expected array, got object')
        self.refuse(list[list[int]], [[1], [2, None]], 'p[1][1]: expected integer, got null')

    def test_tuple_and_set(self):
        self.assertEqual(self.convert(tuple[int, str], [1, 'a']), (1, 'a'))
        self.assertEqual(self.convert(tuple[int, ...], [1, 2, 3]), (1, 2, 3))
        self.assertEqual(self.convert(tuple, [1, 'x']), (1, 'x'))
        self.assertEqual(self.convert(set[int], [1, 2, 1]), {1, 2})
        self.assertEqual(self.convert(frozenset[str], ['a']), frozenset({'a'}))
        self.refuse(tuple[int, str], [1], 'p: expected an array of 2 items, got 1')
        self.refuse(tuple[int, str], [1, 2], 'p[1]: expected string, got integer')
        self.refuse(set, [[1]], 'p: array items must be hashable to form a set')

    def test_dicts(self):
        self.assertEqual(self.convert(dict[str, int], {'a': 1}), {'a': 1})
        self.assertEqual(self.convert(dict[int, float], {'1': 2}), {1: 2.0})
        self.refuse(dict[str, int], {'a': 'b'}, 'p.a: expected integer, got string')
        self.refuse(dict[int, str], {'x': 'b'}, 'p.x: expected integer, got "x"')
        self.refuse(dict, [], 'p: expected object, got array')

    def test_unions(self):
        self.assertIsNone(self.convert(Optional[int], None))
        self.assertEqual(self.convert(Optional[int], 3), 3)
        self.assertEqual(self.convert(Union[str, int], '1'), '1')
        value = self.convert(Union[float, int], 1)
        self.assertEqual((value, type(value)), (1, int))
        value = self.convert(Optional[float], 1)
        self.assertEqual((value, type(value)), (1.0, float))
        self.assertEqual(self.convert(int | list[int], [1]), [1])
        self.refuse(int | str, True, 'p: expected integer or string, got boolean')
        self.refuse(Optional[int], 'x', 'p: expected integer or null, got string')
        # A problem inside the one member that could fit is reported as it is.
        self.refuse(Optional[Point], {'x': 'a'}, 'p.x: expected number, got string')

    def test_literal_and_enum(self):
        self.assertEqual(self.convert(Literal['a', 'b'], 'b'), 'b')
        self.assertEqual(self.convert(Literal[1, 2], 1), 1)
        self.refuse(Literal['a', 'b'], 'c', 'p: expected one of "a", "b", got "c"')
        self.refuse(Literal[1, 2], True, 'p: expected one of 1, 2, got true')
        self.assertIs(self.convert(Color, 'green'), Color.GREEN)
        self.assertIs(self.convert(Level, 2), Level.HIGH)
        self.refuse(Color, 'GREEN', 'p: expected one of "red", "green", got "GREEN"')
        self.refuse(Level, True, 'p: expected one of 1, 2, got true')
        self.refuse(Literal['a'], 'x' * 100, 'p: expected one of "a", got "' + 'x' * 56 + '...')

    def test_dataclasses_arrive_as_instances(self):
        self.assertEqual(self.convert(Point, {'x': 1}), Point(1.0, 0.0))
        tree = self.convert(Node, {'value': 1, 'children': [{'value': 2, 'color': 'green'}]})
        self.assertEqual(tree, Node(1, [Node(2, [], Color.GREEN)]))
        self.assertIs(tree.children[0].color, Color.GREEN)
        self.refuse(Node, {'value': 1, 'children': [{'value': 2, 'size': 3}]},
                    'tree.children[0].size: unknown field of Node', path='tree')
        self.refuse(Node, {'children': []}, 'tree.value: required field is missing', path='tree')
        self.refuse(Node, {'value': 1, 'label': 'x'}, 'p.label: unknown field of Node')
        self.refuse(Point, [1, 2], 'p: expected object (Point), got array')

    def test_dataclass_post_init_errors(self):
        @dataclass
        class Positive:
            n: int

            def __post_init__(self):
                if self.n <= 0:
                    raise ValueError('n must be positive')

        self.refuse(Positive, {'n': 0}, 'p: invalid Positive: n must be positive')

    def test_typeddict(self):
        self.assertEqual(self.convert(Movie, {'title': 'x', 'year': 1999}), {'title': 'x', 'year': 1999})
        self.assertEqual(self.convert(Partial, {}), {})
        self.refuse(Movie, {'title': 'x'}, 'p.year: required field is missing')
        self.refuse(Movie, {'title': 'x', 'year': 1, 'extra': 1}, 'p.extra: unknown field of Movie')

    def test_unknown_nested_types_are_not_checked(self):
        marker = NotAType()
        self.assertEqual(self.convert(list[NotAType], [1, 'x']), [1, 'x'])
        self.assertIs(self.convert(dict[str, Any], {'a': marker})['a'], marker)


class TextConverterTest(unittest.TestCase):
    def convert(self, annotation, text, path='q'):
        return build_text_converter(annotation)(text, path)

    def refuse(self, annotation, text, message):
        with self.assertRaises(ValidationError) as caught:
            build_text_converter(annotation)(text, 'q')
        self.assertEqual(str(caught.exception), message)

    def test_scalars(self):
        self.assertEqual(self.convert(int, '42'), 42)
        self.assertEqual(self.convert(float, '1.5'), 1.5)
        self.assertEqual(self.convert(str, ''), '')
        self.assertIs(self.convert(bool, 'true'), True)
        self.assertIs(self.convert(bool, 'Off'), False)
        self.refuse(int, '1.5', 'q: expected integer, got "1.5"')
        self.refuse(int, '1_000', 'q: expected integer, got "1_000"')
        self.refuse(float, 'nan', 'q: expected number, got "nan"')
        self.refuse(bool, 'maybe', 'q: expected boolean, got "maybe"')

    def test_repeated_keys(self):
        self.assertEqual(self.convert(int, ['1', '2']), 2)
        self.assertEqual(self.convert(list[int], ['1', '2']), [1, 2])
        self.assertEqual(self.convert(list[int], '7'), [7])
        self.assertEqual(self.convert(tuple[int, str], ['1', 'a']), (1, 'a'))
        self.assertEqual(self.convert(set[str], ['a', 'a']), {'a'})
        self.refuse(list[int], ['1', 'x'], 'q[1]: expected integer, got "x"')
        self.refuse(tuple[int, str], ['1'], 'q: expected 2 values, got 1')

    def test_optional_literal_enum(self):
        self.assertIsNone(self.convert(Optional[int], ''))
        self.assertEqual(self.convert(Optional[int], '3'), 3)
        self.assertEqual(self.convert(Optional[str], ''), '')
        self.assertEqual(self.convert(int | str, 'x'), 'x')
        self.assertEqual(self.convert(Literal[1, 2], '2'), 2)
        self.assertIs(self.convert(Color, 'red'), Color.RED)
        self.refuse(Color, 'blue', 'q: expected one of "red", "green", got "blue"')
        self.refuse(Optional[int], 'x', 'q: expected integer or null, got "x"')

    def test_json_text_for_structures(self):
        self.assertEqual(self.convert(Point, '{"x": 2}'), Point(2.0))
        self.assertEqual(self.convert(dict[str, int], '{"a": 1}'), {'a': 1})
        self.refuse(Point, 'nope', 'q: expected object (Point) as JSON text')

    def test_unchecked(self):
        self.assertIsNone(build_text_converter(MISSING))
        self.assertIsNone(build_text_converter(Any))
        self.assertIsNone(build_text_converter(NotAType))


if __name__ == '__main__':
    unittest.main()
