"""Preload: a job holding read-only weights (a numpy array of `BENCH_WEIGHTS_MB` megabytes, default 500)."""

import os

import numpy

MEGABYTES = int(os.environ.get('BENCH_WEIGHTS_MB', '500'))


class Job:
    """Answers which process it runs in, from weights loaded once."""

    def __init__(self):
        # A model's weights: read-only once loaded.
        self.weights = numpy.random.default_rng(0).random(MEGABYTES * 1024 * 1024 // 8)

    def perform(self):
        """Return the worker's pid and a sum over the weights."""
        return {'pid': os.getpid(), 'sum': float(self.weights[:1000].sum())}
