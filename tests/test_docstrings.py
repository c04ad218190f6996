import unittest

from racetrack_job_wrapper.docstrings import Docstring, parse_docstring
from racetrack_job_wrapper.endpoints import describe_endpoint
from racetrack_job_wrapper.openapi import build_openapi


class RestStyleTest(unittest.TestCase):
    def test_fields(self):
        doc = parse_docstring(
            """Sum the numbers.

            More about it.

            :param numbers: The numbers,
                any count of them.
            :type numbers: list
            :param int radix: Their radix.
            :returns: The sum.
            """
        )
        self.assertEqual(
            doc,
            Docstring(
                description='Sum the numbers.\n\nMore about it.',
                params={'numbers': 'The numbers, any count of them.', 'radix': 'Their radix.'},
                returns='The sum.',
            ),
        )

    def test_nothing(self):
        self.assertEqual(parse_docstring(None), Docstring())
        self.assertEqual(parse_docstring(''), Docstring())
        self.assertEqual(parse_docstring('Just text.'), Docstring(description='Just text.'))


class GoogleStyleTest(unittest.TestCase):
    def test_sections(self):
        doc = parse_docstring(
            """Add.

            Args:
                x (int): The first,
                    continued.
                *args: The rest.

            Returns:
                int: The sum.

            Raises:
                ValueError: When bad.
            """
        )
        self.assertEqual(
            doc,
            Docstring(
                description='Add.', params={'x': 'The first, continued.', 'args': 'The rest.'}, returns='int: The sum.'
            ),
        )


NUMPY_DOC = """Add numbers up.

    The sum of every number given.

    Parameters
    ----------
    numbers : list of float
        The numbers to add.

        None means zero.
    mode : {'sum', 'mean'}, optional
        How to combine them.
    x, y : int
        Coordinates.
    flag
        A bare name.
    *args
        Anything else.
    **kwargs : dict
        Options.

    Returns
    -------
    float
        The total,
        rounded.

    Raises
    ------
    ValueError
        When a number is not one.

    Notes
    -----
    Not part of the description.

    Examples
    --------
    >>> Job().perform([1, 2])
    3
    """


class NumpyStyleTest(unittest.TestCase):
    def test_sections(self):
        self.assertEqual(
            parse_docstring(NUMPY_DOC),
            Docstring(
                description='Add numbers up.\n\nThe sum of every number given.',
                params={
                    'numbers': 'The numbers to add. None means zero.',
                    'mode': 'How to combine them.',
                    'x': 'Coordinates.',
                    'y': 'Coordinates.',
                    'flag': 'A bare name.',
                    'args': 'Anything else.',
                    'kwargs': 'Options.',
                },
                returns='The total, rounded.',
            ),
        )

    def test_returns_without_a_description_give_their_type(self):
        doc = parse_docstring('Sum.\n\nReturns\n-------\ntotal : int\n')
        self.assertEqual(doc, Docstring(description='Sum.', returns='int'))
        self.assertEqual(parse_docstring('Sum.\n\nReturns\n-------\nint\n').returns, 'int')

    def test_other_parameters_and_yields(self):
        doc = parse_docstring(
            'Stream.\n\nOther Parameters\n----------------\nchunk : int\n    Chunk size.\n\n'
            'Yields\n------\nbytes\n    Each chunk.\n'
        )
        self.assertEqual(doc, Docstring(description='Stream.', params={'chunk': 'Chunk size.'}, returns='Each chunk.'))

    def test_parameters_only(self):
        doc = parse_docstring('Parameters\n----------\nx : float\n    The x.\n')
        self.assertEqual(doc, Docstring(params={'x': 'The x.'}))

    def test_an_underlined_heading_of_another_kind_stays_text(self):
        text = 'Usage\n-----\nCall it.'
        self.assertEqual(parse_docstring(text), Docstring(description=text))

    def test_a_google_section_title_without_underline_is_not_numpy(self):
        # `Parameters` without its dashes and without a colon is text.
        self.assertEqual(parse_docstring('Intro.\nParameters\nx : int\n').params, {})

    def test_descriptions_reach_the_openapi_document(self):
        class Job:
            def perform(self, numbers: list[float], mode: str = 'sum') -> float:
                return sum(numbers)

        Job.perform.__doc__ = NUMPY_DOC
        spec = describe_endpoint('/perform', 'POST', Job().perform)
        document = build_openapi([spec], title='Job - adder', version='1')
        operation = document['paths']['/api/v1/perform']['post']
        properties = operation['requestBody']['content']['application/json']['schema']['properties']
        self.assertEqual(properties['numbers']['description'], 'The numbers to add. None means zero.')
        self.assertEqual(properties['mode']['description'], 'How to combine them.')
        self.assertEqual(operation['responses']['200']['description'], 'The total, rounded.')
        self.assertEqual(operation['summary'], 'Add numbers up.')


if __name__ == '__main__':
    unittest.main()
