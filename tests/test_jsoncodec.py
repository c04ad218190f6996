"""The orjson codec held against the standard library: the same bytes out, the same values and 400s in.

Each value a job may return is encoded three ways: the way before the codec existed
(`to_json_serializable`, then the standard encoder), and `to_json_serializable(...,
for_encoder=True)` through `JSONCodec` with orjson and without it. Each request body is decoded
by the decoder before the codec (kept below as `reference_decode`) and by both codecs. The HTTP
tests run once more in a child process in which orjson cannot be imported.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import math
import os
import random
import re
import struct
import subprocess
import sys
import unittest
import unittest.mock
import uuid
from pathlib import PurePosixPath
from typing import Any

import numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as numpy_st

from racetrack_job_wrapper import messages
from racetrack_job_wrapper.messages import MAX_NUMBER_DIGITS, HTTPError, JSONCodec, encodable_float, encode_json
from racetrack_job_wrapper.serialize import SerializationError, encode_result, to_json_serializable
from tests.support import REPO_DIR, ServerTestCase
from tests.test_serialize import ACCOUNT, Credentials

try:
    import orjson
except ImportError:  # the child process of WithoutOrjsonTest, or an environment without the extra
    orjson = None

needs_orjson = unittest.skipIf(orjson is None, 'orjson is not installed')
STANDARD = JSONCodec()
ORJSON = JSONCodec(orjson) if orjson is not None else None
EXAMPLES = int(os.environ.get('JSON_CODEC_EXAMPLES', '300'))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)

# Floats where a writer may choose another form than repr: both sides of 1e-4 and 1e16,
# single-digit exponents, the smallest and largest doubles, integral values.
SPECIAL_FLOATS = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1e-300,
    1e-10,
    1e-9,
    1e-7,
    -1e-7,
    1.5e-5,
    1e-5,
    9.999999999999999e-05,
    1e-4,
    0.00012345,
    0.1,
    1 / 3,
    1.0,
    100.0,
    123456.789,
    2.0**53,
    9007199254740993.0,
    1e15,
    9999999999999998.0,
    1e16,
    -1e16,
    1.2345678901234568e17,
    1e21,
    1e22,
    1e23,
    2.5e300,
    1.7976931348623157e308,
    -1.7976931348623157e308,
]


class Color(enum.Enum):
    RED = 'red'
    PAIR = (1, 2)


class Level(enum.IntEnum):
    LOW = 1


class Flavor(enum.StrEnum):
    SWEET = 'sweet'


class Code(str, enum.Enum):  # noqa: UP042 - a StrEnum cannot have an int value
    """A str mixin whose value is an int: the member's text is '1', its value 1."""

    ONE = 1


class Text(str):
    pass


class Count(int):
    pass


class Ratio(float):
    pass


class Ordered(collections.OrderedDict):
    pass


@dataclasses.dataclass
class Point:
    x: float
    y: float
    label: str = 'p'
    secret: str = dataclasses.field(default='s', metadata={'exclude': True})


class Custom:
    def __to_json__(self) -> Any:
        return {'kind': 'custom', 'tiny': 1e-9, 'level': Level.LOW}


class Dumpable:
    def model_dump(self, mode: str = 'python') -> Any:
        return {'mode': mode, 'values': (1.5, 2e-6)}


def _arrays() -> list[Any]:
    rng = numpy.random.default_rng(18)
    normal = rng.standard_normal(5_000)
    normal[::97] *= 1e-6  # values that repr writes with an exponent, among plain ones
    return [
        normal,
        normal.reshape(50, 100),
        normal.reshape(10, 10, 50)[:, ::2, ::-3],  # not contiguous
        normal.astype(numpy.float32),
        normal[:200].astype(numpy.float16),
        normal.astype('>f8'),  # not native byte order
        normal.reshape(50, 100).T,
        numpy.array([1e-7, 1.5e-5, 9.999999999999999e-05, 1e16, 1e300, 5e-324, -0.0, 0.0, 1e-4, 1e15]),
        numpy.arange(-5, 5, dtype=numpy.int8),
        numpy.arange(1000, dtype=numpy.int64).reshape(10, 100),
        numpy.array([0, 2**64 - 1], dtype=numpy.uint64),
        numpy.array([-(2**63), 2**63 - 1], dtype=numpy.int64),
        numpy.arange(6, dtype='>i4'),
        numpy.array([True, False, True]),
        numpy.zeros((0,)),
        numpy.zeros((2, 0)),
        numpy.zeros((0, 3), dtype=numpy.int32),
        numpy.array(2.5),  # 0-d
        numpy.array(1e-7),
        numpy.array([1.0, float('nan'), 2.0]),
        numpy.array([[1.0, 2.0], [3.0, float('inf')]]),
        numpy.array([1 + 2j]),
        numpy.array(['a', 'bc']),
        numpy.array([1, 'a', None], dtype=object),
        numpy.array(['2024-01-02T03:04:05'], dtype='datetime64[s]'),
        numpy.ma.masked_array([1.0, 2.0], mask=[False, True]),
        {'embedded': normal[:300], 'ints': numpy.arange(3)},
        [numpy.float64(1e-7), numpy.float32(0.1), numpy.int64(7), numpy.bool_(True), numpy.uint64(2**64 - 1)],
    ]


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value, 1e-7]
    return value


CORPUS: list[Any] = [
    ACCOUNT,
    Credentials('u', 'p'),
    [ACCOUNT, ACCOUNT],
    None,
    True,
    0,
    'text',
    {},
    [],
    {'a': 1, 'b': [1, 2.5, None, True, False, 'x'], 'c': {'d': []}},
    SPECIAL_FLOATS,
    {repr(value): value for value in SPECIAL_FLOATS},
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**40)],
    {'big': 2**64, 'tiny': 1e-7},
    ''.join(chr(code) for code in range(0x80)) + '\u2028\u2029\ufeff\uffff\U0001f600é',
    ['\ud800'],  # a lone surrogate: the standard encoder refuses it
    {'k\ud800': 1},
    [Color.RED, Color.PAIR, Level.LOW, Flavor.SWEET, Code.ONE],
    {Flavor.SWEET: 1, Code.ONE: 2, Level.LOW: 3, Color.RED: 4},
    {1: 'int', 1.5: 'float', 1e-7: 'tiny float', False: 'bool', None: 'none'},
    {(1, 2): 'tuple key'},
    [Text('sub'), Count(3), Ratio(1e-7), Ratio(2.5), {Text('key'): Count(4)}],
    Ordered([('b', 1), ('a', 2)]),
    Point(1e-7, 2.5),
    [Point(1.0, 2.0, 'q'), Custom(), Dumpable()],
    datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC),
    [datetime.date(2024, 1, 2), datetime.time(3, 4, 5), datetime.datetime(2024, 1, 2)],
    [datetime.timedelta(microseconds=1), datetime.timedelta(days=1), datetime.timedelta(days=10**8)],
    [decimal.Decimal('1.5'), decimal.Decimal('10'), decimal.Decimal('1E+2'), decimal.Decimal('1e-7')],
    decimal.Decimal('1e400'),  # a float's inf
    decimal.Decimal('NaN'),
    [uuid.UUID(int=5), PurePosixPath('/a/b')],
    [b'bytes', {3, 1, 2}, frozenset({'b', 'a'}), {1, 'a'}, (1, (2, 3))],
    b'\xff',
    float('nan'),
    {'x': [float('inf')]},
    object(),
    _deep(300),  # deeper than orjson writes
    *_arrays(),
]


def assert_same(case: unittest.TestCase, actual: Any, expected: Any, context: Any = '') -> None:
    """assertEqual that shows where two long values part, instead of diffing megabytes."""
    if actual == expected:
        return
    left, right = repr(actual), repr(expected)
    at = next((i for i, (a, b) in enumerate(zip(left, right, strict=False)) if a != b), min(len(left), len(right)))
    window = slice(max(0, at - 60), at + 60)
    case.fail(f'{context!r:.200}: they part at character {at} of the repr:\n{left[window]}\n!=\n{right[window]}')


def encode_before(value: Any) -> Any:
    """What a result encoded to before the codec: to_json_serializable, then the standard encoder."""
    try:
        return encode_json(to_json_serializable(value))
    except (SerializationError, ValueError, TypeError) as e:  # what invoke answers 500 for
        return type(e).__name__, str(e)


def encode_with(codec: JSONCodec, value: Any) -> Any:
    """What a result encodes to now, as invoke encodes it."""
    try:
        return codec.encode(to_json_serializable(value, for_encoder=True))
    except (SerializationError, ValueError, TypeError) as e:
        return type(e).__name__, str(e)


def encode_as_invoke_does(codec: JSONCodec, value: Any) -> Any:
    """`encode_result` with `codec` in use: without orjson it hands the standard encoder the result as it is."""
    with unittest.mock.patch.object(messages, 'CODEC', codec):
        try:
            return encode_result(value)
        except (SerializationError, ValueError, TypeError) as e:
            return type(e).__name__, str(e)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'{name} is not valid JSON')


def _checked_number(convert: Any) -> Any:
    def parse(text: str) -> Any:
        digits = sum(char.isdigit() for char in text)
        if digits > MAX_NUMBER_DIGITS:
            raise ValueError(f'a number has {digits} digits, the limit is {MAX_NUMBER_DIGITS}')
        return convert(text)

    return parse


_REFERENCE_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_REFERENCE_CHECKED_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant, parse_int=_checked_number(int), parse_float=_checked_number(float)
)


def reference_decode(body: bytes, max_depth: int = 100) -> Any:
    """The request body decoder as it was before the codec, kept as the behaviour to match."""
    if not body.strip():
        return {}
    try:
        text = body.decode('utf-8-sig' if body.startswith(b'\xef\xbb\xbf') else 'utf-8')
    except UnicodeDecodeError as e:
        raise HTTPError(
            400, f'request body is not valid UTF-8: {e.reason} at byte {e.start}', error_type='InvalidJSON'
        ) from None
    depth = reference_nesting_depth(text) if text.count('[') + text.count('{') > max_depth else 0
    if depth > max_depth:
        raise HTTPError(400, f'JSON nesting is {depth} levels deep, the limit is {max_depth}', error_type='InvalidJSON')
    decoder = _REFERENCE_CHECKED_DECODER if re.search(rf'\d{{{MAX_NUMBER_DIGITS + 1}}}', text) else _REFERENCE_DECODER
    try:
        return decoder.decode(text)
    except ValueError as e:
        raise HTTPError(400, f'request body is not valid JSON: {e}', error_type='InvalidJSON') from None
    except RecursionError:
        raise HTTPError(
            400, f'JSON nesting is deeper than the limit of {max_depth}', error_type='InvalidJSON'
        ) from None


def reference_nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings, character by character, as before the codec."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == '\\':
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in '[{':
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in ']}':
            depth -= 1
    return deepest


def outcome(decode: Any, body: bytes, max_depth: int = 100) -> Any:
    """A decoder's answer to a body, comparable across decoders: the value with its types, or the 400."""
    try:
        value = decode(body, max_depth)
    except HTTPError as e:
        return 'error', e.status, e.detail, e.error_type
    # json.dumps tells 1 from 1.0 and True, keeps key order, and escapes lone surrogates.
    return 'value', json.dumps(value)


def assert_same_decoding(case: unittest.TestCase, body: bytes, max_depth: int = 100) -> None:
    expected = outcome(reference_decode, body, max_depth)
    assert_same(case, outcome(STANDARD.decode, body, max_depth), expected, body[:200])
    if ORJSON is not None:
        assert_same(case, outcome(ORJSON.decode, body, max_depth), expected, body[:200])


BODIES = [
    b'',
    b'  \r\n\t\x0b\x0c',
    b'{}',
    b'{"a": 1}',
    b'{"x":1,"y":2,"x":3}',
    b'{"a":{"a":1},"a":2}',
    b' {"a" : [ 1 , 2 ] } \n',
    b'[true,false,null]',
    b'"text"',
    b'"\\u00e9\\ud83d\\ude00\\uDBFF\\uDFFF\\u0000\\/"',
    b'"\\ud800"',
    b'{"\\udc00\\ud800": 1}',
    b'"\xed\xa0\x80"',
    b'"\xff"',
    b'{"x": "\xc3"}',
    b'\xef\xbb\xbf{"bom": true}',
    b'\xef\xbb\xbf',
    b'1e400',
    b'[-1e400, 1.7976931348623159e308, 2.4703282292062327e-324, 2.4703282292062328e-324]',
    b'[-0, -0.0, 0.1, 1E5, 1e5, 1.0e+2, 1e-7, 9007199254740993, 9007199254740993.0]',
    b'[18446744073709551615, 18446744073709551616, -9223372036854775808, -9223372036854775809]',
    b'[9999999999999999999, -9999999999999999999, 12345678901234567890, -12345678901234567890]',
    b'111111111111111111111111111111',
    b'[0.0072113596587564995, 123456789012345678901234567890.5, 0.1234567890123456789012345678]',
    b'{"id": "12345678901234567890123", "n": 1}',
    b'{"x": ' + b'7' * 1001 + b'}',
    b'{"x": ' + b'7' * 100_000 + b'}',
    b'{"x": 0.' + b'1' * 5000 + b'e5}',
    b'{"id": "' + b'9' * 5000 + b'", "n": ' + b'1' * 1000 + b'}',
    b'[1.' + b'2' * 1500 + b']',
    b'NaN',
    b'{"x": NaN}',
    b'{"x": Infinity}',
    b'{"x": -Infinity}',
    b'nan',
    b'01',
    b'1.',
    b'.5',
    b'+1',
    b'-',
    b'tru',
    b'[1,]',
    b'{"a":1,}',
    b'[1 2]',
    b'"\\x"',
    b'"\x01"',
    b'"\x7f"',
    b'\x00',
    b'\x0c1',
    b'1\x0c',
    b'{"a":1}x',
    b'{"a": 1} {"b": 2}',
    b'{"x": ' + b'[' * 101 + b']' * 101 + b'}',
    b'{"x": ' + b'[' * 99 + b']' * 99 + b'}',
    b'[' * 200_000,
    b']' * 200 + b'[' * 150,
    b'{"s": "' + b'[' * 500 + b'"}',
    b'{"s": "\\"' + b'[' * 500 + b'"}',
    b'{"s": "\\\\"' + b'[' * 150 + b']' * 150 + b'}',
    b'"unterminated ' + b'[' * 300,
    b'"a\\',
    b'\\' + b'[' * 150,
    b'[' * 120 + b'"' + b']' * 120,
    b'[' * 1100 + b']' * 1100,
    b'{"x": "\xc3\xa9' + b'{' * 200 + b'"}',
]


class EncodeCorpusTest(unittest.TestCase):
    def test_every_supported_type_encodes_to_the_same_bytes(self):
        for value in CORPUS:
            with self.subTest(value=repr(value)[:80]):
                expected = encode_before(value)
                assert_same(self, encode_with(STANDARD, value), expected)
                if ORJSON is not None:
                    assert_same(self, encode_with(ORJSON, value), expected)

    def test_results_as_they_are_encode_to_the_same_bytes_and_errors(self):
        for value in [*CORPUS, float('nan'), [1, {'a': float('inf')}], ['\ud800'], {Color.RED: 1}, {(1, 2): 3}]:
            with self.subTest(value=repr(value)[:80]):
                expected = encode_before(value)
                assert_same(self, encode_as_invoke_does(STANDARD, value), expected)
                if ORJSON is not None:
                    assert_same(self, encode_as_invoke_does(ORJSON, value), expected)

    def test_the_values_the_serializer_tests_use(self):
        expected = b'{"name":"a","credentials":{"user":"u"},"history":[{"user":"old"}],"shown":1}'
        self.assertEqual(encode_before(ACCOUNT), expected)
        for codec in filter(None, (STANDARD, ORJSON)):
            self.assertEqual(encode_with(codec, ACCOUNT), expected)

    def test_errors_are_worded_as_before(self):
        self.assertEqual(
            encode_with(STANDARD, float('nan')), ('SerializationError', 'result is nan, which JSON cannot represent')
        )
        self.assertEqual(
            encode_with(STANDARD, numpy.array([[1.0, 2.0], [3.0, float('inf')]])),
            ('SerializationError', 'result[1][1] is inf, which JSON cannot represent'),
        )
        self.assertEqual(encode_with(STANDARD, ['\ud800'])[0], 'UnicodeEncodeError')

    def test_encodable_float_marks_exactly_the_floats_repr_writes_with_an_exponent(self):
        values = [*SPECIAL_FLOATS, math.nextafter(1e-4, 0), math.nextafter(1e16, 0), *_random_floats(20_000)]
        for value in values:
            marked = type(encodable_float(value)) is not float
            self.assertEqual(marked, 'e' in repr(value), repr(value))
            self.assertEqual(repr(float(encodable_float(value))), repr(value))
        self.assertIs(type(encodable_float(numpy.float64(2.5))), float)
        self.assertIs(type(encodable_float(Ratio(2.5))), float)

    @needs_orjson
    def test_orjson_writes_everything_but_big_integers_lone_surrogates_and_deep_nesting(self):
        written_by_orjson = [
            ACCOUNT,
            SPECIAL_FLOATS,
            ''.join(chr(code) for code in range(0x80)) + '\u2028\U0001f600',
            [Color.RED, Color.PAIR, Level.LOW, Flavor.SWEET, Code.ONE],
            {Flavor.SWEET: 1, Code.ONE: 2, Level.LOW: 3, Color.RED: 4, 1e-7: 5, None: 6},
            [Text('sub'), Count(3), Ratio(1e-7), {Text('key'): Count(4)}, Ordered(a=1)],
            [Point(1e-7, 2.5), Custom(), Dumpable(), uuid.UUID(int=5), PurePosixPath('/a')],
            [datetime.datetime(2024, 1, 2, 3, 4, 5, 6), datetime.timedelta(microseconds=1)],
            [decimal.Decimal('1.5'), decimal.Decimal('1e-7'), 2**64 - 1, -(2**63)],
            *[array for array in _arrays() if isinstance(encode_before(array), bytes)],
        ]
        with unittest.mock.patch.object(messages, '_SERIALIZED_ENCODER') as standard:
            standard.encode.side_effect = AssertionError('the standard encoder was asked')
            for value in written_by_orjson:
                with self.subTest(value=repr(value)[:80]):
                    ORJSON.encode(to_json_serializable(value, for_encoder=True))

    @needs_orjson
    def test_the_codec_in_use_is_orjson_when_it_is_installed(self):
        self.assertIs(messages.CODEC.orjson, orjson)


def _random_floats(count: int) -> list[float]:
    """Finite doubles from random bit patterns: every exponent, sign and mantissa alike."""
    generator = random.Random(18)
    values: list[float] = []
    while len(values) < count:
        value = struct.unpack('<d', generator.getrandbits(64).to_bytes(8, 'little'))[0]
        if math.isfinite(value):
            values.append(value)
    return values


@needs_orjson
class FloatFormTest(unittest.TestCase):
    """orjson's floats against repr's, in the places the two writers could part."""

    def test_every_decade_alone_and_in_arrays(self):
        values = [
            float(f'{mantissa}e{exponent}')
            for exponent in range(-324, 309)
            for mantissa in ('1', '1.5', '2.2250738585072014', '4.9', '9.999999999999998', '1.7976931348623157')
        ]
        values = [value for value in values if math.isfinite(value)]
        expected = json.dumps(values, separators=(',', ':')).encode()
        assert_same(self, ORJSON.encode(to_json_serializable(values, for_encoder=True)), expected)
        assert_same(self, ORJSON.encode(numpy.array(values)), expected)
        for value in values:
            self.assertEqual(ORJSON.encode(encodable_float(value)), repr(value).encode())

    def test_random_bit_patterns(self):
        values = _random_floats(50_000)
        expected = json.dumps(values, separators=(',', ':')).encode()
        assert_same(self, ORJSON.encode(to_json_serializable(values, for_encoder=True)), expected)
        assert_same(self, ORJSON.encode(numpy.array(values)), expected)
        matrix = numpy.array(values).reshape(100, 500)
        assert_same(self, ORJSON.encode(matrix), json.dumps(matrix.tolist(), separators=(',', ':')).encode())

    def test_the_plain_notation_range_needs_no_help(self):
        # Where repr writes no exponent, orjson's own text is repr's: these floats stay plain floats.
        generator = random.Random(7)
        values = [math.copysign(10 ** generator.uniform(-4, 16), generator.random() - 0.5) for _ in range(50_000)]
        values = [value for value in values if 1e-4 <= abs(value) < 1e16]
        values += [float(generator.randrange(10**16)) for _ in range(10_000)]
        assert_same(self, orjson.dumps(values), json.dumps(values, separators=(',', ':')).encode())


# Any code point, lone surrogates included (which the default character strategy leaves out).
CHARACTERS = st.characters(min_codepoint=0, max_codepoint=0x10FFFF) | st.sampled_from(['\ud800', '\udfff'])


def json_values() -> st.SearchStrategy[Any]:
    text = st.text(CHARACTERS, max_size=8)
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.sampled_from(SPECIAL_FLOATS)
        | text
        | st.sampled_from([Level.LOW, Flavor.SWEET, Code.ONE, Color.PAIR, Text('t'), Count(2), Ratio(1e-8)])
        | st.decimals(allow_nan=False, allow_infinity=False, places=None)
        | st.datetimes()
        | st.timedeltas()
    )
    arrays = numpy_st.arrays(
        dtype=st.sampled_from(['f8', 'f4', 'f2', '>f8', 'i1', 'i8', 'u8', '>i4', '?']),
        shape=numpy_st.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    )
    return st.recursive(
        leaves | arrays,
        lambda children: (
            st.lists(children, max_size=5)
            | st.tuples(children, children)
            | st.dictionaries(text | st.sampled_from([Flavor.SWEET, 1, 2.5e-7, True, None]), children, max_size=5)
        ),
        max_leaves=20,
    )


class EncodePropertyTest(unittest.TestCase):
    @PROPERTY_SETTINGS
    @given(json_values())
    def test_generated_values_encode_to_the_same_bytes(self, value):
        expected = encode_before(value)
        assert_same(self, encode_with(STANDARD, value), expected)
        if ORJSON is not None:
            assert_same(self, encode_with(ORJSON, value), expected)


class EncodeAsItIsPropertyTest(unittest.TestCase):
    @PROPERTY_SETTINGS
    @given(json_values())
    def test_generated_values_encode_to_the_same_bytes(self, value):
        assert_same(self, encode_as_invoke_does(STANDARD, value), encode_before(value))


class DecodeCorpusTest(unittest.TestCase):
    def test_bodies_decode_to_the_same_values_and_errors(self):
        for body in BODIES:
            for max_depth in (100, 3):
                with self.subTest(body=body[:60], max_depth=max_depth):
                    assert_same_decoding(self, body, max_depth)

    def test_the_limit_tests_messages(self):
        self.assertEqual(
            outcome(STANDARD.decode, b'{"x": NaN}'),
            ('error', 400, 'request body is not valid JSON: NaN is not valid JSON', 'InvalidJSON'),
        )
        for codec in filter(None, (STANDARD, ORJSON)):
            self.assertEqual(
                outcome(codec.decode, b'{"a": 1,'),
                (
                    'error',
                    400,
                    'request body is not valid JSON: Expecting property name enclosed in double quotes: '
                    'line 1 column 9 (char 8)',
                    'InvalidJSON',
                ),
            )
            self.assertEqual(
                outcome(codec.decode, b'[' * 200_000)[2], 'JSON nesting is 200000 levels deep, the limit is 100'
            )

    @needs_orjson
    def test_past_the_standard_decoders_recursion_orjson_still_reads_within_the_limit(self):
        # The one difference: with max_json_depth raised near Python's recursion limit, a body
        # nested that deep is read as the limit promises instead of being refused.
        body = b'[' * 1000 + b']' * 1000
        self.assertIsInstance(ORJSON.decode(body, 5000), list)
        self.assertEqual(outcome(reference_decode, body, 5000)[0], 'error')
        assert_same(self, outcome(STANDARD.decode, body, 5000), outcome(reference_decode, body, 5000))
        assert_same(self, outcome(ORJSON.decode, body * 2, 5000), outcome(reference_decode, body * 2, 5000))


JSON_ALPHABET = ' \t\n\r[]{}",:0123456789.eE+-\\/untrfalsNIiy\x00\x7fé\u2028'


class DecodePropertyTest(unittest.TestCase):
    @PROPERTY_SETTINGS
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(CHARACTERS),
            lambda children: (
                st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
            ),
            max_leaves=20,
        ),
        st.booleans(),
        st.sampled_from([None, (',', ':'), (', ', ': ')]),
    )
    def test_generated_json_decodes_to_the_same_values(self, value, ascii_only, separators):
        body = json.dumps(value, ensure_ascii=ascii_only, separators=separators).encode('utf-8', 'surrogatepass')
        assert_same_decoding(self, body)
        assert_same_decoding(self, body, 2)

    @PROPERTY_SETTINGS
    @given(st.text(JSON_ALPHABET, max_size=40), st.integers(min_value=1, max_value=6))
    def test_generated_text_decodes_to_the_same_values_and_errors(self, text, max_depth):
        assert_same_decoding(self, text.encode(), max_depth)

    @PROPERTY_SETTINGS
    @given(st.binary(max_size=40), st.integers(min_value=1, max_value=6))
    def test_generated_bytes_decode_to_the_same_values_and_errors(self, body, max_depth):
        assert_same_decoding(self, body, max_depth)

    @PROPERTY_SETTINGS
    @given(st.text('[]{}"\\ aé', max_size=60), st.integers(min_value=1, max_value=8))
    def test_the_nesting_scan_counts_as_the_character_scan(self, text, limit):
        deepest = reference_nesting_depth(text)
        self.assertEqual(messages._nesting_over(text.encode(), limit), deepest if deepest > limit else 0)


class ResultsJob:
    """Returns what it is asked for, by name."""

    def perform(self, kind: str) -> Any:
        return RESULTS[kind]


def _http_results() -> dict[str, Any]:
    rng = numpy.random.default_rng(3)
    floats = rng.standard_normal(20_000)
    floats[::501] *= 1e-7
    return {
        'floats': floats,
        'matrix': floats.reshape(200, 100).T,
        'float32': floats.astype(numpy.float32),
        'ints': numpy.arange(-500, 500),
        'mixed': {
            'special': SPECIAL_FLOATS,
            'enums': [Level.LOW, Flavor.SWEET, Code.ONE, Color.PAIR],
            'keys': {Flavor.SWEET: 1, 2: 2, 1e-7: 3},
            'point': Point(1e-7, 3.0),
            'big': 2**70,
            'when': datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
        },
        'nan': numpy.array([1.0, float('nan')]),
    }


RESULTS = _http_results()


class OverHTTPTest(ServerTestCase):
    """The same bytes and errors through a real server, with whichever codec this process has."""

    def test_the_codec_follows_what_is_installed(self):
        self.assertIs(messages.CODEC.orjson, orjson)

    def test_results_are_the_bytes_of_the_standard_encoder(self):
        client = self.serve(ResultsJob())
        for kind, result in RESULTS.items():
            with self.subTest(kind=kind):
                response = client.post('/api/v1/perform', {'kind': kind})
                expected = encode_before(result)
                if isinstance(expected, bytes):
                    assert_same(self, (response.status, response.body), (200, expected))
                else:
                    self.assertEqual(response.status, 500)
                    self.assertEqual(
                        response.json()['error'], f'the result of /perform cannot be returned as JSON: {expected[1]}'
                    )

    def test_bodies_are_read_and_refused_as_before(self):
        class EchoJob:
            def perform(self, **kwargs: Any) -> Any:
                return kwargs

        client = self.serve(EchoJob())
        for body in [b'{"x": [1, 2.5e-7, "\\ud83d\\ude00", 18446744073709551616]}', b'{"x": 1e400}', *BODIES[-20:]]:
            with self.subTest(body=body[:60]):
                response = client.request('POST', '/api/v1/perform', body, {'Content-Type': 'application/json'})
                expected = outcome(reference_decode, body)
                if expected[0] == 'error':
                    self.assertEqual(
                        (response.status, response.json()), (400, {'error': expected[2], 'type': 'InvalidJSON'})
                    )
                elif isinstance(json.loads(expected[1]), dict):
                    encoded = encode_before(reference_decode(body))
                    if isinstance(encoded, bytes):
                        assert_same(self, (response.status, response.body), (200, encoded))
                    else:  # {"x": 1e400} reaches the job as inf, which cannot be answered
                        self.assertEqual(response.status, 500)


class WithoutOrjsonTest(unittest.TestCase):
    def test_the_http_tests_pass_when_orjson_cannot_be_imported(self):
        script = (
            "import sys; sys.modules['orjson'] = None; import unittest; "
            "unittest.main(module='tests.test_jsoncodec', argv=['without-orjson', 'OverHTTPTest', 'EncodeCorpusTest', "
            "'DecodeCorpusTest'])"
        )
        env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get('PYTHONPATH')]))}
        child = subprocess.run(
            [sys.executable, '-c', script], cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=300
        )
        self.assertEqual(child.returncode, 0, child.stderr[-3000:])
        self.assertIn('OK', child.stderr.splitlines()[-1])


if __name__ == '__main__':
    unittest.main()
