"""`to_json_serializable` unit by unit, and through perform over a real socket."""

from __future__ import annotations

import dataclasses
import unittest

from racetrack_job_wrapper.serialize import to_json_serializable
from tests.support import ServerTestCase


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


class AccountJob:
    def perform(self) -> Account:
        return ACCOUNT


class ExcludedFieldsOverHTTPTest(ServerTestCase):
    def test_perform_leaves_excluded_fields_out(self):
        response = self.serve(AccountJob()).post('/api/v1/perform', {})
        self.assertEqual((response.status, response.json()), (200, ACCOUNT_JSON))


if __name__ == '__main__':
    unittest.main()
