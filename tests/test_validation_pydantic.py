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


if __name__ == '__main__':
    unittest.main()
