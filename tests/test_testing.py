"""`JobTestClient` (the whole request path in process) and `racetrack_job_wrapper check` against the examples."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from racetrack_job_wrapper.testing import JobTestClient, check
from tests.support import EXAMPLES_DIR, REPO_DIR, wait_until
from tests.test_examples import NOT_EXAMPLES, readme_commands


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

    def test_async_calls_run_as_on_the_server(self):
        calls_dir = self.enterContext(tempfile.TemporaryDirectory())
        with JobTestClient(Adder, {'jobtype_extra': {'calls_dir': calls_dir}}) as client:
            accepted = client.post('/api/v1/perform', {'a': 2}, headers={'Prefer': 'respond-async'})
            self.assertEqual(accepted.status, 202)
            location = accepted.headers['location']
            self.assertTrue(wait_until(lambda: client.get(location).json()['status'] == 'succeeded'))
            self.assertEqual(client.get(location).json()['result'], 3)
            refused = client.post('/api/v1/perform', {'a': -1}, headers={'Prefer': 'respond-async'})
            self.assertEqual(refused.status, 202)  # accepted: the job refuses it when it runs
            failed = refused.headers['location']
            self.assertTrue(wait_until(lambda: client.get(failed).json()['status'] == 'failed'))
            self.assertEqual(
                client.get(failed).json()['error'], {'error': 'a must not be negative', 'type': 'ValueError'}
            )
            self.assertIn('async_calls{status="succeeded"} 1.0', client.get('/metrics').text)

    def test_outside_its_with_block_it_says_how_to_use_it(self):
        client = JobTestClient(Adder)
        with self.assertRaisesRegex(RuntimeError, 'inside `with JobTestClient'):
            client.perform(a=1)

    def test_every_example_job_loads_and_answers_its_docs_examples(self):
        for directory in sorted(EXAMPLES_DIR.iterdir()):
            if not directory.is_dir() or directory.name in NOT_EXAMPLES:
                continue
            with self.subTest(example=directory.name), self.example_job(directory.name) as (job, cwd, environ):
                with JobTestClient(job, cwd=cwd, environ=environ) as client:
                    results = check(client)
                self.assertTrue(results)
                self.assertEqual([result for result in results if not result.ok], [])

    @contextlib.contextmanager
    def example_job(self, name: str) -> Iterator[tuple[type, Path, dict[str, str]]]:
        """The job class an example's README serves first, the directory it is served from, and its variables.

        The slow loader is told to load at once; the numpy model is trained first, in a copy.
        """
        command = readme_commands(name)[0]
        file, _, class_name = command.args[0].partition(':')
        path = (command.cwd / file).resolve()
        with contextlib.ExitStack() as stack:
            if name == 'numpy-model':
                copy = Path(stack.enter_context(tempfile.TemporaryDirectory())) / name
                shutil.copytree(path.parent, copy, ignore=shutil.ignore_patterns('__pycache__', 'model.pkl'))
                subprocess.run([sys.executable, 'train.py'], cwd=copy, check=True, capture_output=True, timeout=60)
                path = copy / path.name
                stack.enter_context(contextlib.chdir(copy))  # the job reads model.pkl from the working directory
            stack.enter_context(mock.patch.dict(os.environ, {'MODEL_LOAD_SECONDS': '0.1'}))
            stack.enter_context(mock.patch.object(sys, 'path', [str(path.parent), *sys.path]))
            spec = importlib.util.spec_from_file_location(f'example_{name.replace("-", "_")}_{path.stem}', path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            stack.callback(_forget_modules_under, path.parent)
            spec.loader.exec_module(module)
            yield getattr(module, class_name), path.parent, command.env


def _forget_modules_under(directory: Path) -> None:
    """Unload the modules imported from an example's folder, so the next example's `model` or `job` is its own."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, '__file__', None)
        if file and Path(file).is_relative_to(directory):
            del sys.modules[name]


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
