"""`to_json_serializable` unit by unit, and through perform."""

from __future__ import annotations

import dataclasses
import enum
import unittest

import numpy

from racetrack_job_wrapper.serialize import SerializationError, to_json_serializable
from racetrack_job_wrapper.testing import JobTestClient


@dataclasses.dataclass
class Credentials:
    user: str
    password: str = dataclasses.field(default='hunter2', metadata={'exclude': True})


@dataclasses.dataclass
class Account:
    name: str
    credentials: Credentials
    history: list[Credentials]
    token: str = dataclasses.field(default='t0k3n', metadata={'exclude': True})
    shown: int = dataclasses.field(default=1, metadata={'exclude': False, 'unit': 'count'})


ACCOUNT = Account('a', Credentials('u'), [Credentials('old', 'secret')])
# What racetrack-job-runner 1.18 answers for ACCOUNT.
ACCOUNT_JSON = {'name': 'a', 'credentials': {'user': 'u'}, 'history': [{'user': 'old'}], 'shown': 1}


class ExcludedFieldsTest(unittest.TestCase):
    def test_fields_marked_exclude_are_left_out_at_every_depth(self):
        self.assertEqual(to_json_serializable(ACCOUNT), ACCOUNT_JSON)

    def test_other_metadata_and_a_false_exclude_keep_the_field(self):
        self.assertEqual(to_json_serializable(Credentials('u', 'p')), {'user': 'u'})
        self.assertEqual(to_json_serializable(dataclasses.replace(ACCOUNT, shown=7))['shown'], 7)


class Level(enum.IntEnum):
    LOW = 1


class Flavor(enum.StrEnum):
    SWEET = 'sweet'


class ForEncoderTest(unittest.TestCase):
    """`for_encoder=True` hands the encoder values it writes as it wrote the default form."""

    def test_numpy_arrays_of_finite_numbers_stay_arrays(self):
        for array in (numpy.arange(3.0), numpy.arange(6).reshape(2, 3), numpy.array([True]), numpy.zeros(0)):
            self.assertIs(to_json_serializable({'a': array}, for_encoder=True)['a'], array)
        for array in (numpy.array([1.0, float('nan')]), numpy.array(['a']), numpy.array(1.5), numpy.array([1j])):
            with self.subTest(array=array):
                self.assertNotIsInstance(_quietly(to_json_serializable, array, for_encoder=True), numpy.ndarray)
        with self.assertRaisesRegex(SerializationError, r'^result\[1\] is nan, which JSON cannot represent$'):
            to_json_serializable(numpy.array([1.0, float('nan')]), for_encoder=True)

    def test_enum_members_and_other_subclasses_become_plain_values(self):
        converted = to_json_serializable({Flavor.SWEET: [Level.LOW, Flavor.SWEET, True]}, for_encoder=True)
        self.assertEqual(converted, {'sweet': [1, 'sweet', True]})
        self.assertIs(type(next(iter(converted))), str)
        self.assertEqual([type(item) for item in converted['sweet']], [int, str, bool])

    def test_keys_that_are_not_strings_are_written_as_json_writes_them(self):
        # As json.dumps writes the keys FastAPI's encoder leaves, and so racetrack-job-runner answers.
        converted = to_json_serializable({None: 0, True: 1, False: 2, 3: 3, 1.5: 4})
        self.assertEqual(converted, {'null': 0, 'true': 1, 'false': 2, '3': 3, '1.5': 4})

    def test_an_error_names_where_it_is(self):
        result = {'rows': [{'ok': 1}, {'when': object()}]}
        with self.assertRaisesRegex(SerializationError, r"^result\['rows'\]\[1\]\['when'\] of type builtins.object"):
            to_json_serializable(result)

    def test_floats_repr_writes_with_an_exponent_are_marked(self):
        converted = to_json_serializable([1e-7, 0.5, 1e16, numpy.float64(2.5)], for_encoder=True)
        self.assertEqual(converted, [1e-7, 0.5, 1e16, 2.5])
        self.assertEqual([type(item) is float for item in converted], [False, True, False, True])

    def test_the_default_form_is_unchanged(self):
        array = numpy.arange(3.0)
        self.assertEqual(to_json_serializable(array), [0.0, 1.0, 2.0])
        self.assertIs(to_json_serializable([Level.LOW])[0], Level.LOW)
        self.assertIs(type(to_json_serializable(1e-7)), float)


def _quietly(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except SerializationError as e:
        return e


class AccountJob:
    def perform(self) -> Account:
        return ACCOUNT


class ExcludedFieldsThroughPerformTest(unittest.TestCase):
    def test_perform_leaves_excluded_fields_out(self):
        with JobTestClient(AccountJob(), {}) as client:
            response = client.post('/api/v1/perform', {})
        self.assertEqual((response.status, response.json()), (200, ACCOUNT_JSON))


if __name__ == '__main__':
    unittest.main()
