"""Large plain-JSON result: a list of small objects, built once, returned on every call."""

import os

COUNT = int(os.environ.get('BENCH_RECORD_COUNT', '100000'))


class Job:
    """Returns the same records on every call."""

    def __init__(self):
        self.records = [
            {'id': index, 'name': f'item-{index}', 'score': index / 7, 'tags': ['a', 'b']} for index in range(COUNT)
        ]

    def perform(self):
        """Return the records."""
        return self.records
