"""`JobTestClient` (the whole request path in process) and `racetrack_job_wrapper check` against the examples."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import unittest
from collections.abc import Iterator
from pathlib import Path

from racetrack_job_wrapper.testing import JobTestClient, check
from tests.support import EXAMPLES_DIR, REPO_DIR, load_example


class Adder:
    def perform(self, a: int, b: int = 1) -> int:
        """Add two numbers."""
        if a < 0:
            raise ValueError('a must not be negative')
        return a + b

    def tokens(self) -> Iterator[str]:
        yield from ('x', 'y')

    def docs_input_example(self) -> dict:
        return {'a': 1, 'b': 2}

    def auxiliary_endpoints(self) -> dict:
        return {'/tokens': self.tokens}


class TestClientTest(unittest.TestCase):
    def test_perform_validation_errors_and_probes_without_a_socket(self):
        with JobTestClient(Adder, {'name': 'adder', 'version': '1.0.0'}) as client:
            self.assertEqual(client.perform(a=2, b=3).json(), 5)
            converted = client.perform(a='7')  # the lax conversion the server does
            self.assertEqual((converted.status, converted.json()), (200, 8))
            refused = client.perform(a=-1)
            self.assertEqual(refused.status, 400)
            self.assertEqual(refused.json(), {'error': 'a must not be negative', 'type': 'ValueError'})
            invalid = client.perform(a='seven')
            self.assertEqual((invalid.status, invalid.json()['type']), (400, 'ValidationError'))
            self.assertEqual(client.get('/health').json()['job_name'], 'adder')
            self.assertEqual(client.get('/ready').json(), {'ready': True})
            self.assertEqual(client.get('/pub/job/adder/1.0.0/api/v1/parameters').status, 200)
            self.assertEqual(client.get('/nowhere').status, 404)
            self.assertEqual(client.post('/api/v1/tokens').json(), ['x', 'y'])
            streamed = client.post('/api/v1/tokens', headers={'Accept': 'application/x-ndjson'})
            self.assertEqual(streamed.body, b'"x"\n"y"\n')
            self.assertIn('x-request-tracing-id', client.perform(a=1).headers)
            value = client.registry.get_sample_value
            # Job calls: perform four times (not the one refused before job code), tokens twice.
            self.assertEqual(value('requests_done_total'), 6)
            self.assertEqual(value('endpoint_requests_started_total', {'endpoint': '/perform'}), 4)

    def test_access_control_and_the_concurrency_cap_take_part(self):
        environ = {'JOB_AUTH_TOKENS': 'secret'}
        with JobTestClient(Adder(), {'jobtype_extra': {'max_concurrency': 1}}, environ=environ) as client:
            self.assertEqual(client.perform(a=1).status, 401)
            self.assertEqual(
                client.request('POST', '/api/v1/perform', {'a': 1}, headers={'X-Racetrack-Auth': 'secret'}).json(), 2
            )
            self.assertEqual(client.get('/live').status, 200)  # probes need no token

    def test_outside_its_with_block_it_says_how_to_use_it(self):
        client = JobTestClient(Adder)
        with self.assertRaisesRegex(RuntimeError, 'inside `with JobTestClient'):
            client.perform(a=1)

    def test_every_example_job_loads_and_answers_its_docs_examples(self):
        for name in ('prime', 'auxiliary', 'metrics', 'async', 'streaming', 'static', 'deadlines'):
            with self.subTest(example=name):
                job = load_example(name)
                with JobTestClient(job, cwd=EXAMPLES_DIR / name) as client:
                    results = check(client)
                self.assertTrue(results)
                self.assertEqual([result for result in results if not result.ok], [])


class CheckCommandTest(unittest.TestCase):
    def run_check(self, cwd: Path, reference: str = 'job.py:Job') -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, '-m', 'racetrack_job_wrapper', 'check', reference],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, 'PYTHONPATH': str(REPO_DIR)},
        )

    def test_the_examples_pass(self):
        for name in ('prime', 'auxiliary'):
            with self.subTest(example=name):
                result = self.run_check(EXAMPLES_DIR / name)
                self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
                self.assertIn('ok   POST /api/v1/perform 200', result.stdout)

    def test_a_wrong_example_or_return_type_fails(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / 'job.py').write_text(
                textwrap.dedent(
                    """
                    class Job:
                        def perform(self, number: int) -> int:
                            return str(number)

                        def half(self, number: int) -> float:
                            return 1 / (number - number)

                        def docs_input_examples(self):
                            return {'/perform': {'number': 3}, '/half': {'number': 4}}

                        def auxiliary_endpoints(self):
                            return {'/half': self.half}
                    """
                )
            )
            result = self.run_check(Path(tmp))
        self.assertEqual(result.returncode, 1, result.stderr)
        lines = result.stdout.splitlines()
        self.assertTrue(
            lines[0].startswith('FAIL POST /api/v1/perform 200 the result does not match its declared type')
        )
        self.assertTrue(lines[1].startswith('FAIL POST /api/v1/half 500 answered 500'), lines)


if __name__ == '__main__':
    unittest.main()
