"""`racetrack_job_wrapper.utils.quantity.Quantity`: parsing, value semantics, and its JSON form as perform answers it.

Every expected value (the wording of error messages aside) is what racetrack-job-runner 1.18's `Quantity` gives.
"""

from __future__ import annotations

import math
import unittest

from racetrack_job_wrapper.serialize import to_json_serializable
from racetrack_job_wrapper.testing import JobTestClient
from racetrack_job_wrapper.utils.quantity import Quantity


class ParsingTest(unittest.TestCase):
    def test_accepted_formats_and_plain_numbers(self):
        cases = {
            '128974848': 128974848.0,
            '129M': 129e6,
            '128974848000m': 128974848.0,
            '123Mi': 123 * 1024**2,
            '0.129G': 129e6,
            '2Ki': 2048.0,
            '1Ei': 1024.0**6,
            '1k': 1000.0,
            '100m': 0.1,
            '3m': 0.003,
            '7n': 7.000000000000001e-09,
            '0.1p': 1e-13,
            '1u': 1e-6,
            '1E': 1e18,
            '00012': 12.0,
            '0': 0.0,
        }  # floats, base times factor: 7n is not quite 7e-9
        for text, plain in cases.items():
            quantity = Quantity(text)
            self.assertEqual(quantity.plain_number, plain, text)
            self.assertIsInstance(quantity.plain_number, float)
            self.assertEqual((str(quantity), repr(quantity), quantity.__to_json__()), (text, text, text))

    def test_parts(self):
        quantity = Quantity('1.5Gi')
        self.assertEqual((quantity.quantity_str, quantity.base_number, quantity.suffix), ('1.5Gi', 1.5, 'Gi'))

    def test_malformed_numbers(self):
        for text in ('', '-1', '+1', '.5', ' 1', 'Mi', '1Mi\n', 'nanMi'):
            with self.assertRaisesRegex(ValueError, r'^invalid quantity format: '):
                Quantity(text)

    def test_unknown_suffixes(self):
        for text, suffix in (
            ('1K', 'K'),
            ('1mi', 'mi'),
            ('1 ', ' '),
            ('1\u00b5', '\u00b5'),
            ('1Mi ', 'Mi '),
            ('5.', '.'),
            ('1.2.3', '.3'),
            ('1e3', 'e3'),
        ):
            with self.assertRaises(ValueError) as caught:
                Quantity(text)
            self.assertTrue(
                str(caught.exception).startswith(
                    f"invalid quantity suffix: {suffix} in {text}, expected one of 'E', 'P', 'T'"
                ),
                caught.exception,
            )

    def test_not_a_string(self):
        for value in (12, 1.5, None, b'1Mi'):
            with self.assertRaises(TypeError):
                Quantity(value)  # type: ignore[arg-type]


class ValueTest(unittest.TestCase):
    def test_truth(self):
        self.assertEqual(
            [bool(Quantity(text)) for text in ('0', '0.0', '0Mi', '1m', '0.001')], [False, False, False, True, True]
        )

    def test_equality_and_order_by_plain_value(self):
        self.assertEqual(Quantity('1Ki'), Quantity('1024'))
        self.assertEqual(Quantity('1000m'), Quantity('1'))
        self.assertNotEqual(Quantity('1k'), Quantity('1Ki'))
        self.assertEqual(Quantity('0.3'), Quantity('300m'))
        self.assertTrue(Quantity('1G') < Quantity('1Gi') <= Quantity('1024Mi') < Quantity('2Gi'))
        self.assertTrue(Quantity('2Gi') > Quantity('1G') >= Quantity('1000M'))
        self.assertEqual(
            [str(q) for q in sorted([Quantity('1Gi'), Quantity('1G'), Quantity('500Mi'), Quantity('0')])],
            ['0', '500Mi', '1G', '1Gi'],
        )

    def test_other_types_are_never_equal_nor_ordered(self):
        self.assertFalse(Quantity('1') == 1)
        self.assertTrue(Quantity('1') != '1')
        with self.assertRaises(TypeError):
            Quantity('1') < 1  # noqa: B015
        with self.assertRaises(TypeError):
            hash(Quantity('1'))

    def test_division_by_a_number_keeps_the_suffix(self):
        for text, divisor, expected in (
            ('128Mi', 2, '64Mi'),
            ('128Mi', 3, '42.666666666666664Mi'),
            ('1.5', 0.5, '3'),
            ('3', 2, '1.5'),
            ('1G', True, '1G'),
            ('7m', math.inf, '0m'),
        ):
            quotient = Quantity(text) / divisor
            self.assertIsInstance(quotient, Quantity)
            self.assertEqual(str(quotient), expected)

    def test_division_errors(self):
        for divisor, error in (
            ('2', NotImplementedError),
            (Quantity('2'), NotImplementedError),
            (None, NotImplementedError),
            (0, ZeroDivisionError),
            (-1, ValueError),
            (1e16, ValueError),
            (math.nan, ValueError),
        ):  # 1e-16 is no quantity format
            with self.assertRaises(error, msg=repr(divisor)):
                Quantity('1') / divisor
        with self.assertRaises(TypeError):
            2 / Quantity('1')  # type: ignore[operator]

    def test_serialized_as_its_string(self):
        self.assertEqual(
            to_json_serializable({'memory': Quantity('128Mi'), 'cpu': [Quantity('100m')]}),
            {'memory': '128Mi', 'cpu': ['100m']},
        )


class QuantityJob:
    def perform(self, half: bool = False) -> Quantity:
        return Quantity('128Mi') / 2 if half else Quantity('128Mi')


class QuantityAnswerTest(unittest.TestCase):
    def test_perform_answers_the_quantity_string(self):
        client = self.enterContext(JobTestClient(QuantityJob(), {}))
        for payload, body in (({}, b'"128Mi"'), ({'half': True}, b'"64Mi"')):
            response = client.post('/api/v1/perform', payload)
            self.assertEqual((response.status, response.body), (200, body))


if __name__ == '__main__':
    unittest.main()
