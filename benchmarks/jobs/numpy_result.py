"""Large result: the same 200,000 floats (standard normal) on every call, as a numpy array.

With `BENCH_AS_LIST=1` (the floor) it returns them as a Python list, the least `json.dumps`
needs. `BENCH_ARRAY_SIZE` changes the count.
"""

import os

import numpy

SIZE = int(os.environ.get('BENCH_ARRAY_SIZE', '200000'))
AS_LIST = os.environ.get('BENCH_AS_LIST') == '1'


class Job:
    """Returns the same floats on every call."""

    def __init__(self):
        self.values = numpy.random.default_rng(0).standard_normal(SIZE)
        if AS_LIST:
            self.values = self.values.tolist()

    def perform(self):
        """Return the floats."""
        return self.values
