"""Lax validation checked against pydantic itself: the same inputs accepted, the same values produced.

pydantic is a test dependency only (the library never imports it). Outside CI the tests are
skipped when pydantic is missing; with CI=true a missing pydantic fails the run.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import re
import typing
import unittest
from typing import Annotated, Any, Dict, List, Literal, NewType, Optional, Tuple, Union

from hypothesis import assume, given, settings, strategies

try:
    import pydantic
except ImportError:
    if os.environ.get('CI') == 'true':
        raise  # CI installs the test extra: there a missing pydantic is a failure, not a skip
    pydantic = None
try:
    # pydantic takes TypedDicts from typing_extensions (one of its dependencies) before Python 3.12.
    from typing_extensions import NotRequired, TypedDict
except ImportError:
    from typing import NotRequired, TypedDict

from racetrack_job_wrapper.convert import ValidationError, build_converter, build_text_converter
from racetrack_job_wrapper.testing import JobTestClient
from tests.test_schema import Color, Level, Weight


class Letter(str, enum.Enum):  # noqa: UP042 - the str mixin users write, not StrEnum
    X = 'x'


class Access(enum.IntFlag):
    READ = 1
    WRITE = 2


class Mixed(enum.Enum):
    ONE = 1
    HALF = 0.5
    WORD = 'a'


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


@dataclasses.dataclass
class Node:
    value: int
    children: list[Node] = dataclasses.field(default_factory=list)
    label: str = dataclasses.field(default='', init=False)


@dataclasses.dataclass
class Positive:
    n: int

    def __post_init__(self):
        if self.n <= 0:
            raise ValueError('n must be positive')


@dataclasses.dataclass
class OnlyX:
    x: int = 0


@dataclasses.dataclass
class OnlyY:
    y: int = 0


class Movie(TypedDict):
    title: str
    year: int


class Partial(TypedDict, total=False):
    note: str
    n: int


class WithOptional(TypedDict):
    a: int
    b: NotRequired[float]


class OnlyXDict(TypedDict, total=False):
    x: int


class OnlyYDict(TypedDict, total=False):
    y: int


UserId = NewType('UserId', int)

ANNOTATIONS = [
    # scalars
    int,
    float,
    bool,
    str,
    None,
    type(None),
    Any,
    Annotated[int, 'meta'],
    UserId,
    # Optional and unions, including those decided by pydantic's smart-mode ranking
    Optional[int],
    Optional[float],
    Optional[bool],
    Optional[str],
    int | None,
    Union[int, str],
    Union[str, int],
    Union[float, int],
    Union[int, float],
    Union[bool, int],
    Union[int, bool],
    Union[bool, float],
    Union[float, bool],
    Union[bool, str],
    Union[str, bool],
    Union[int, float, str, None],
    Union[int, list[int]],
    Union[list[int], int],
    Union[list[int], list[str]],
    Union[list[float], list[int]],
    Union[tuple[int], list[int]],
    Union[set[int], list[int]],
    Union[dict[str, int], list[int]],
    Union[OnlyX, OnlyY],
    Union[OnlyXDict, OnlyYDict],
    Union[Point, dict],
    Union[dict, Point],
    Optional[Point],
    Union[list[OnlyX], list[OnlyY]],
    Union[Color, str],
    Union[str, Color],
    Union[Color, int],
    Union[Level, str],
    Union[Literal['a'], int],
    Union[Literal[1], str],
    Union[Literal[1], float],
    Union[float, Literal[1]],
    Union[Literal[1], bool],
    Union[int, Any],
    Union[Any, int],
    Union[float, Any],
    # sequences and sets
    list,
    List[int],
    list[float],
    list[str],
    list[bool],
    list[list[int]],
    list[Optional[int]],
    list[Any],
    tuple,
    Tuple[int, str],
    tuple[int, ...],
    tuple[()],
    tuple[float, Optional[str]],
    set,
    set[int],
    set[float],
    frozenset[str],
    typing.Sequence[int],
    typing.MutableSequence[int],
    typing.AbstractSet[int],
    typing.MutableSet[int],
    # mappings
    dict,
    Dict[str, int],
    dict[int, float],
    dict[bool, int],
    dict[float, int],
    dict[Color, int],
    dict[Level, int],
    dict[Optional[int], int],
    dict[Union[int, str], int],
    dict[Literal[1, 2], int],
    dict[Literal['a', 'b'], int],
    dict[str, Any],
    dict[str, list[float]],
    typing.Mapping[str, int],
    typing.MutableMapping[str, bool],
    # Literal and Enum
    Literal['a', 'b'],
    Literal[1, 2],
    Literal[True],
    Literal[False],
    Literal[None],
    Literal[0, False],
    Literal[1, True],
    Literal['1', 1],
    Literal['a', 1, None],
    Literal[Letter.X],
    Literal[Level.LOW],
    Literal[Color.RED],
    Color,
    Level,
    Weight,
    Letter,
    Access,
    Mixed,
    # dataclasses and TypedDicts
    Point,
    Node,
    Positive,
    Movie,
    Partial,
    WithOptional,
    list[Point],
    dict[str, Movie],
    Optional[Movie],
]

NUMBER_TEXTS = [
    '',
    ' ',
    '0',
    '1',
    '2',
    '-1',
    '+3',
    '-0',
    ' 3 ',
    '\t3\n',
    '\xa03',
    '\u30003',
    '\x1c3',
    '\u200b3',
    '3_000',
    '_3',
    '3_',
    '3__0',
    '0__1',
    '0_0',
    '0_',
    '007',
    '-007',
    '+-3',
    '--3',
    '3.0',
    '3.00',
    '-3.0',
    '1_0.0',
    '3.0_0',
    '3.',
    '.0',
    '0.0',
    '00.0',
    '3.5',
    '1e3',
    '1E3',
    '1e-3',
    '1.5',
    ' 1.5 ',
    '-.5',
    '5.',
    '1_000.5',
    '1._5',
    '1e1_0',
    ' 1_0 ',
    '1_0 ',
    'nan',
    'NaN',
    '-nan',
    'inf',
    '-inf',
    '+Infinity',
    'infinit',
    '1e400',
    '0x10',
    '0b1',
    '1 000',
    '1,000',
    '\u0663',
    '3 .0',
    '7907.0',
    '7907.5',
    '1' * 4300,
    '-' + '1' * 4299,
    '-' + '1' * 4300,
    '+' + '1' * 4300,
    '1' * 4301,
    '0' * 4400 + '1',
]
WORD_TEXTS = [
    'true',
    'True',
    'TRUE',
    'false',
    'yes',
    'YES',
    'no',
    'on',
    'off',
    'oN',
    'y',
    'n',
    't',
    'f',
    ' true',
    'true\n',
    'none',
    'null',
    'x',
    'X',
    'a',
    'b',
    'red',
    'RED',
    'green',
    'LOW',
]
NUMBERS = [
    0,
    1,
    2,
    -1,
    7907,
    3,
    10**20,
    2**63,
    2**64,
    -(2**63),
    10**400,
    2**1024 - 2**970,
    0.0,
    -0.0,
    1.0,
    0.5,
    1.5,
    2.0,
    2.5,
    7907.0,
    7907.5,
    -3.0,
    1e20,
    9.2e18,
    2.0**63,
    -(2.0**63),
    1e308,
]
STRUCTURES = [
    [],
    [1],
    [1, 2],
    [2, 1, 2],
    ['1'],
    [1.0],
    [1.5],
    [1, '2', 3.0],
    [[1]],
    [[1, '2'], []],
    [True],
    ['a', 1],
    [1, 'a'],
    [1, None],
    [None],
    ['x', 'y'],
    [{'x': 1}],
    [{'y': 1}],
    [{'x': 'a'}],
    {},
    {'a': 1},
    {'a': '1'},
    {'a': 1.5},
    {'a': [1, '2']},
    {'1': 2},
    {'1': 2, ' 2 ': '3'},
    {'1.0': 1},
    {'x': 1},
    {'x': '1.5', 'y': 2},
    {'x': 1, 'z': 3},
    {'x': None},
    {'x': True},
    {'y': 1},
    {'x': 1, 'y': 2},
    {'z': 1},
    {'value': '1', 'children': [{'value': 2.0}]},
    {'value': 1, 'label': 'x'},
    {'value': 1, 'children': None},
    {'title': 'x', 'year': '1999'},
    {'title': 'x', 'year': 1, 'extra': 2},
    {'title': 'x'},
    {'n': 0},
    {'n': '5'},
    {'a': 1, 'b': '2'},
    {'a': '1', 'b': 2},
    {'note': 'n'},
    {'red': 1},
    {'true': 1, 'no': 2},
    {'null': 1},
    {'': 1},
    {'a': {'title': 't', 'year': 2000}},
]
VALUES = [None, True, False, *NUMBERS, *NUMBER_TEXTS, *WORD_TEXTS, *STRUCTURES]
LEADING_ZERO_SIGN = re.compile(r'\+?0[0_]*-')
FAST = settings(max_examples=200, deadline=None, database=None, derandomize=True)


def pydantic_result(adapter: pydantic.TypeAdapter, value: Any) -> tuple[bool, Any]:
    try:
        return True, adapter.validate_python(value)
    except pydantic.ValidationError:
        return False, None


def our_result(converter, value: Any) -> tuple[bool, Any]:
    try:
        return True, (value if converter is None else converter(value, 'p'))
    except ValidationError:
        return False, None


def same(ours: Any, theirs: Any, given: Any) -> bool:
    """Equal with equal types, except the one documented difference: an int given for a float stays an int."""
    if type(theirs) is float and type(ours) is int:
        return type(given) is int and ours == given == theirs
    if type(ours) is not type(theirs):
        return False
    if type(theirs) is float and math.isnan(theirs):
        return math.isnan(ours)
    if isinstance(theirs, (list, tuple)):
        givens = given if isinstance(given, list) and len(given) == len(theirs) else [None] * len(theirs)
        return len(ours) == len(theirs) and all(map(same, ours, theirs, givens))
    if isinstance(theirs, (set, frozenset)):
        # Positions are lost in a set: an int element may stand for a float one if an int was given.
        int_given = isinstance(given, list) and any(type(item) is int for item in given)
        return ours == theirs and {type(item) for item in ours} <= (
            {type(item) for item in theirs} | ({int} if int_given else set())
        )
    if isinstance(theirs, dict):
        if len(ours) != len(theirs):
            return False
        # Keys keep the order given (the tables below have no keys that convert to the same one).
        givens = list(given.values()) if isinstance(given, dict) and len(given) == len(theirs) else [None] * len(theirs)
        entries = zip(ours.items(), theirs.items(), givens, strict=True)
        return all(
            same(our_key, key, None) and same(our_item, item, original)
            for (our_key, our_item), (key, item), original in entries
        )
    if dataclasses.is_dataclass(theirs):
        given_map = given if isinstance(given, dict) else {}
        return all(
            same(getattr(ours, field.name), getattr(theirs, field.name), given_map.get(field.name))
            for field in dataclasses.fields(theirs)
        )
    if isinstance(theirs, enum.Enum):
        return ours is theirs
    return ours == theirs


@unittest.skipIf(pydantic is None, 'pydantic is not installed (pip install "pydantic>=2"); CI=true requires it')
class LaxMatchesPydanticTest(unittest.TestCase):
    def assertMatches(self, annotation: Any, value: Any, converter=None, adapter=None) -> None:
        adapter = adapter or pydantic.TypeAdapter(annotation)
        converter = converter or build_converter(annotation)
        expected_ok, expected = pydantic_result(adapter, value)
        ok, got = our_result(converter, value)
        shown = repr(value) if len(repr(value)) < 80 else repr(value)[:70] + '...'
        verdict = f'accepts it as {expected!r}' if expected_ok else 'refuses it'
        self.assertEqual(ok, expected_ok, f'{annotation} given {shown}: pydantic {verdict}')
        if ok:
            self.assertTrue(same(got, expected, value), f'{annotation} given {shown}: {got!r}, pydantic {expected!r}')

    def test_every_annotation_with_every_value(self):
        for annotation in ANNOTATIONS:
            adapter = pydantic.TypeAdapter(annotation)
            converter = build_converter(annotation)
            for value in VALUES:
                with self.subTest(annotation=annotation, value=repr(value)[:40]):
                    self.assertMatches(annotation, value, converter, adapter)

    def test_query_text_reads_scalars_as_pydantic_reads_strings(self):
        # FastAPI hands query and path text to pydantic as strings; a text converter agrees on them,
        # except that it also reads an empty value or "null" as null for an Optional (pydantic refuses).
        for annotation in (
            int,
            float,
            bool,
            str,
            Optional[int],
            Union[int, str],
            Union[int, float],
            Optional[Union[float, bool]],
            Level,
            Color,
            Letter,
            Literal['a', 'b'],
        ):
            adapter = pydantic.TypeAdapter(annotation)
            converter = build_text_converter(annotation)
            for text in NUMBER_TEXTS + WORD_TEXTS:
                if text in ('', 'null') and type(None) in typing.get_args(annotation):
                    continue
                with self.subTest(annotation=annotation, text=text[:20]):
                    self.assertMatches(annotation, text, converter, adapter)

    @FAST
    @given(strategies.text(alphabet='0123456789_.+-eE \t\xa0infatyo', max_size=12))
    def test_generated_number_texts(self, text):
        # pydantic reads "0-1" as -1 (its leading-zero stripping lets the sign through); not copied.
        assume(LEADING_ZERO_SIGN.match(text.strip()) is None)
        for annotation in (int, float, bool):
            self.assertMatches(annotation, text)

    @FAST
    @given(
        strategies.recursive(
            strategies.none()
            | strategies.booleans()
            | strategies.integers()
            | strategies.floats(allow_nan=False, allow_infinity=False)
            | strategies.sampled_from(NUMBER_TEXTS[:60]),
            lambda children: (
                strategies.lists(children, max_size=3)
                | strategies.dictionaries(strategies.sampled_from(['x', 'y', 'a', '1', 'true']), children, max_size=3)
            ),
            max_leaves=6,
        )
    )
    def test_generated_json_values(self, value):
        for annotation in (
            list[float],
            dict[str, Optional[int]],
            Union[int, list[int], str],
            Union[OnlyX, OnlyY],
            tuple[bool, float],
            dict[int, Union[float, str]],
        ):
            self.assertMatches(annotation, value)


# Jobs whose parameters are pydantic models or typing_extensions TypedDicts, served through
# `App.handle` as a request would reach them.
if pydantic is not None:
    import typing_extensions

    class Address(pydantic.BaseModel):
        street: str

    class Person(pydantic.BaseModel):
        """Someone to greet."""

        name: str = pydantic.Field(description='Full name')
        age: int = 0
        home: Optional[Address] = None
        nicknames: Tuple[str, ...] = ()

        @pydantic.field_validator('age')
        @classmethod
        def not_negative(cls, value: int) -> int:
            if value < 0:
                raise ValueError('age must not be negative')
            return value

    class Numbers(pydantic.RootModel[List[int]]):
        pass

    class Movie(typing_extensions.TypedDict):
        title: typing_extensions.ReadOnly[str]
        year: typing_extensions.NotRequired[int]
        rating: typing_extensions.NotRequired[typing_extensions.ReadOnly[float]]

    class ModelJob:
        def perform(self, person: Person, friends: List[Person] = [], best: Optional[Person] = None) -> dict:
            """Greet a person."""
            assert isinstance(person, Person), type(person)
            assert all(isinstance(friend, Person) for friend in friends)
            return {
                'type': type(person).__name__,
                'person': person.model_dump(),
                'friends': len(friends),
                'best': best.name if best else None,
            }

        def auxiliary_endpoints(self) -> dict:
            return {'/movie': self.movie, '/sum': self.sum}

        def auxiliary_endpoints_v2(self) -> list:
            from racetrack_job_wrapper.endpoint_config import EndpointConfig

            return [EndpointConfig('/greet', 'POST', self.greet)]

        def movie(self, movie: Movie) -> dict:
            return {'type': type(movie).__name__, 'movie': movie}

        def sum(self, numbers: Numbers) -> int:
            return sum(numbers.root)

        def greet(self, person: Person) -> str:
            # As FastAPI binds it: the lone model parameter is the whole body.
            return f'hello {person.name} ({type(person).__name__})'


@unittest.skipIf(pydantic is None, 'pydantic is not installed (pip install "pydantic>=2"); CI=true requires it')
class ModelParameterTest(unittest.TestCase):
    def client(self, job: Any = None, jobtype_extra: dict[str, Any] | None = None) -> JobTestClient:
        manifest = {'jobtype_extra': jobtype_extra or {}}
        return self.enterContext(JobTestClient(job or ModelJob, manifest))

    def call(self, client: JobTestClient, path: str, body: Any) -> tuple[int, Any]:
        response = client.post(path, body)
        return response.status, response.json()

    def test_the_job_gets_the_model_instance(self):
        payload = {'person': {'name': 'Ada', 'age': '36', 'home': {'street': 'Main'}, 'nicknames': ['A']}}
        status, body = self.call(self.client(), '/api/v1/perform', payload)
        self.assertEqual(status, 200)
        self.assertEqual(
            body,
            {
                'type': 'Person',
                'person': {'name': 'Ada', 'age': 36, 'home': {'street': 'Main'}, 'nicknames': ['A']},
                'friends': 0,
                'best': None,
            },
        )

    def test_models_in_lists_and_optionals(self):
        payload = {'person': {'name': 'Ada'}, 'friends': [{'name': 'B'}, {'name': 'C'}], 'best': {'name': 'B'}}
        status, body = self.call(self.client(), '/api/v1/perform', payload)
        self.assertEqual((status, body['friends'], body['best']), (200, 2, 'B'))
        status, body = self.call(self.client(), '/api/v1/perform', {'person': {'name': 'Ada'}, 'best': None})
        self.assertEqual((status, body['best']), (200, None))

    def test_errors_name_the_parameter_and_the_field(self):
        client = self.client()
        cases = [
            ({'person': 'Ada'}, 'person: expected object (Person), got string'),
            ({'person': {}}, 'person.name: Field required'),
            (
                {'person': {'name': 'Ada', 'age': 'old'}},
                'person.age: Input should be a valid integer, unable to parse string as an integer',
            ),
            ({'person': {'name': 'Ada', 'age': -1}}, 'person.age: Value error, age must not be negative'),
            ({'person': {'name': 'Ada', 'home': {'street': 5}}}, 'person.home.street: Input should be a valid string'),
            ({'person': {'name': 'Ada'}, 'friends': [{'name': 'B'}, {}]}, 'friends[1].name: Field required'),
            ({'person': {'age': 'x'}}, 'person.name: Field required (and 1 more error in Person)'),
        ]
        for payload, error in cases:
            with self.subTest(payload=payload):
                self.assertEqual(
                    self.call(client, '/api/v1/perform', payload), (400, {'error': error, 'type': 'ValidationError'})
                )

    def test_strict_mode_validates_the_json_strictly(self):
        client = self.client(jobtype_extra={'validate_input': 'strict'})
        status, body = self.call(client, '/api/v1/perform', {'person': {'name': 'Ada', 'nicknames': ['A']}})
        self.assertEqual((status, body['person']['nicknames']), (200, ['A']))  # an array is a tuple's JSON form
        self.assertEqual(
            self.call(client, '/api/v1/perform', {'person': {'name': 'Ada', 'age': '36'}}),
            (400, {'error': 'person.age: Input should be a valid integer', 'type': 'ValidationError'}),
        )

    def test_unvalidated_input_reaches_the_job_as_sent(self):
        class RawJob:
            def perform(self, person: Person) -> str:
                return type(person).__name__

        client = self.client(RawJob, jobtype_extra={'validate_input': 'false'})
        self.assertEqual(self.call(client, '/api/v1/perform', {'person': {'name': 'Ada'}}), (200, 'dict'))

    def test_auxiliary_endpoints_v2_bind_a_lone_model_to_the_whole_body(self):
        self.assertEqual(self.call(self.client(), '/api/v1/greet', {'name': 'Ada'}), (200, 'hello Ada (Person)'))

    def test_a_root_model(self):
        self.assertEqual(self.call(self.client(), '/api/v1/sum', {'numbers': [1, '2']}), (200, 3))
        status, body = self.call(self.client(), '/api/v1/sum', {'numbers': [1, 'x']})
        self.assertEqual(
            (status, body['error']),
            (400, 'numbers[1]: Input should be a valid integer, unable to parse string as an integer'),
        )

    def test_typing_extensions_typed_dict_with_read_only_keys(self):
        client = self.client()
        self.assertEqual(
            self.call(client, '/api/v1/movie', {'movie': {'title': 'Up', 'year': '2009', 'rating': 8}}),
            (200, {'type': 'dict', 'movie': {'title': 'Up', 'year': 2009, 'rating': 8}}),
        )
        self.assertEqual(
            self.call(client, '/api/v1/movie', {'movie': {'title': 'Up', 'rating': 'good'}}),
            (400, {'error': 'movie.rating: expected number, got string', 'type': 'ValidationError'}),
        )
        self.assertEqual(
            self.call(client, '/api/v1/movie', {'movie': {'year': 2009}}),
            (400, {'error': 'movie.title: required field is missing', 'type': 'ValidationError'}),
        )

    def test_the_openapi_document_describes_them(self):
        from openapi_spec_validator import validate

        response = self.client().get('/openapi.json')
        self.assertEqual(response.status, 200)
        document = response.json()
        validate(document)
        schemas = document['components']['schemas']
        person = Person.model_json_schema(ref_template='#/components/schemas/{model}')
        del person['$defs']  # Address, a component of its own
        self.assertEqual(schemas['Person'], person)
        self.assertEqual(schemas['Address'], Address.model_json_schema())
        self.assertEqual(schemas['Numbers'], Numbers.model_json_schema())
        self.assertEqual(
            schemas['Movie'],
            {
                'type': 'object',
                'title': 'Movie',
                'properties': {'title': {'type': 'string'}, 'year': {'type': 'integer'}, 'rating': {'type': 'number'}},
                'required': ['title'],
                'additionalProperties': False,
            },
        )
        perform = document['paths']['/api/v1/perform']['post']
        properties = perform['requestBody']['content']['application/json']['schema']['properties']
        self.assertEqual(properties['person'], {'$ref': '#/components/schemas/Person'})
        self.assertEqual(properties['friends']['items'], {'$ref': '#/components/schemas/Person'})
        greet = document['paths']['/api/v1/greet']['post']
        self.assertEqual(
            greet['requestBody']['content']['application/json']['schema'], {'$ref': '#/components/schemas/Person'}
        )


if __name__ == '__main__':
    unittest.main()
