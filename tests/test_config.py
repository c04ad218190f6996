"""Configuration end to end in child processes: manifest sources, runtime env, start-up errors, examples."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path

from tests.support import EXAMPLES_DIR, REPO_DIR, ClientResponse, JobClient, ProcessJob

# Reads its configuration when imported, as jobs do; leaves a marker so tests can tell it was imported.
ENV_JOB = """
import os
from pathlib import Path

Path('imported').write_text('yes')
SEEN = {name: os.environ.get(name) for name in ('GREETING', 'LEVEL', 'FLAG', 'COUNT')}


class Job:
    def perform(self) -> dict:
        return SEEN
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


class ConfigProcessTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)
        write(self.tmp, 'job.py', ENV_JOB)

    def run_job(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> ProcessJob:
        job = ProcessJob(list(args), cwd=cwd or self.tmp, env=env)
        self.addCleanup(job.stop)
        job.wait_ready()
        return job

    def run_failing(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        """Start a job expected to refuse its configuration; it must exit by itself, promptly."""
        full_env = {**os.environ, **(env or {}), 'PYTHONPATH': str(REPO_DIR)}
        return subprocess.run(
            [sys.executable, '-m', 'racetrack_job_wrapper', *args, '--host', '127.0.0.1', '--port', '0'],
            cwd=cwd or self.tmp,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def test_manifest_path_runtime_env_secrets_and_identity(self):
        write(
            self.tmp,
            'settings.yaml',
            """
            name: env-job
            version: 2.1.0
            runtime_env:
              GREETING: hello
              LEVEL: runtime
              FLAG: true
              COUNT: 3
            secret_runtime_env_file: secrets.env
            jobtype_extra:
              colour: blue
        """,
        )
        write(self.tmp, 'secrets.env', 'LEVEL = "secret"\n')
        write(self.tmp, 'job.yaml', 'name: not-this-one\n')
        job = self.run_job('job.py:Job', '--manifest-path', 'settings.yaml')
        client = job.client()
        self.assertEqual(
            client.post('/api/v1/perform').json(),
            {'GREETING': 'hello', 'LEVEL': 'secret', 'FLAG': 'true', 'COUNT': '3'},
        )
        health = client.get('/health').json()
        self.assertEqual((health['job_name'], health['job_version']), ('env-job', '2.1.0'))
        self.assertEqual(client.get('/').headers['location'], '/pub/job/env-job/2.1.0/docs')
        self.assertEqual(client.post('/pub/job/env-job/2.1.0/api/v1/perform').status, 200)
        self.assertIn('unknown jobtype_extra fields are ignored: colour', job.read_output())

    def test_manifest_from_env_var_wins_over_job_yaml_and_job_name_env_over_manifest(self):
        write(self.tmp, 'job.yaml', 'runtime_env:\n  GREETING: from-file\n')
        inline = (
            r'name: inline\nversion: 0.0.7\nruntime_env:\n  GREETING: from-env\n'
            r'jobtype_extra:\n  home_page: /api/v1/parameters'
        )
        job = self.run_job('job.py:Job', env={'JOB_MANIFEST_YAML': inline, 'JOB_VERSION': '0.0.8'})
        client = job.client()
        self.assertEqual(client.post('/api/v1/perform').json()['GREETING'], 'from-env')
        health = client.get('/health').json()
        self.assertEqual((health['job_name'], health['job_version']), ('inline', '0.0.8'))
        self.assertEqual(client.get('/').headers['location'], '/pub/job/inline/0.0.8/api/v1/parameters')

    def test_job_yaml_in_working_directory_and_job_name_from_env(self):
        write(self.tmp, 'job.yaml', 'name: local\nruntime_env:\n  GREETING: from-file\n')
        job = self.run_job('job.py:Job', env={'JOB_NAME': 'renamed'})
        client = job.client()
        self.assertEqual(client.post('/api/v1/perform').json()['GREETING'], 'from-file')
        self.assertEqual(client.get('/health').json()['job_name'], 'renamed')
        self.assertEqual(client.get('/').headers['location'], '/pub/job/renamed/latest/docs')

    def test_auth_tokens_from_the_secret_runtime_env_file(self):
        write(self.tmp, 'job.yaml', 'secret_runtime_env_file: .env.runtime\npublic_endpoints: [/api/v1/parameters]\n')
        write(self.tmp, '.env.runtime', 'JOB_AUTH_TOKENS=first,second\n')
        client = self.run_job('job.py:Job').client()
        self.assertEqual(client.post('/api/v1/perform').status, 401)
        self.assertEqual(client.post('/api/v1/perform', headers={'Authorization': 'Bearer second'}).status, 200)
        self.assertEqual(client.get('/api/v1/parameters').status, 200)
        self.assertEqual(client.get('/ready').status, 200)

    def test_bad_configuration_exits_at_once_with_the_reason_on_stderr(self):
        cases = [
            (
                {'jobtype_extra': "{max_concurrency: 'abc'}"},
                "jobtype_extra.max_concurrency must be an integer >= 1, got str 'abc'",
            ),
            (
                {'jobtype_extra': '{max_concurrency: 0}'},
                'jobtype_extra.max_concurrency must be an integer >= 1, got int 0',
            ),
            (
                {'jobtype_extra': '{max_concurrency_queue: [1]}'},
                'jobtype_extra.max_concurrency_queue must be an integer >= 0, got list [1]',
            ),
            (
                {'jobtype_extra': "{home_page: 'https://elsewhere.example/'}"},
                "jobtype_extra.home_page must be a path on this job starting with a single '/' (no scheme or host),"
                " got 'https://elsewhere.example/'",
            ),
            ({'build_env': '[a, b]'}, "build_env must be a mapping of NAME: value, got list ['a', 'b']"),
            ({'runtime_env': '{PUB_URL: x}'}, 'runtime env var PUB_URL is reserved'),
            (
                {'public_endpoints': '/api/v1/perform'},
                "public_endpoints must be a list of paths, got str '/api/v1/perform'",
            ),
        ]
        for fields, message in cases:
            with self.subTest(fields=fields):
                write(self.tmp, 'job.yaml', ''.join(f'{key}: {value}\n' for key, value in fields.items()))
                result = self.run_failing('job.py:Job')
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn('invalid job configuration: ' + message, result.stderr)
                self.assertNotIn('Traceback', result.stderr)
                self.assertFalse((self.tmp / 'imported').exists(), 'the job was imported despite the error')

    def test_bad_auth_tokens_and_bad_manifest_path_exit_too(self):
        result = self.run_failing('job.py:Job', env={'JOB_AUTH_TOKENS': 'ok,not ok'})
        self.assertEqual(result.returncode, 2)
        self.assertIn('invalid job configuration: JOB_AUTH_TOKENS: token 2 must be printable ASCII', result.stderr)
        self.assertNotIn('not ok', result.stderr)
        result = self.run_failing('job.py:Job', '--manifest-path', 'missing.yaml')
        self.assertEqual(result.returncode, 2)
        self.assertIn("invalid job configuration: manifest file 'missing.yaml' does not exist", result.stderr)


class ExamplesTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_env_secret_example_from_its_template_or_the_environment(self):
        directory = self.tmp / 'env-secret'
        shutil.copytree(EXAMPLES_DIR / 'env-secret', directory)
        # As in a cluster: no secret file, its values in the environment; the log points to the template.
        job = ProcessJob(['job.py:JobEntrypoint'], cwd=directory, env={'API_TOKEN': 'from-the-cluster'})
        self.addCleanup(job.stop)
        job.wait_ready()
        self.assertEqual(
            job.client().post('/api/v1/perform').json(),
            {'debug': True, 'model_zoo': 'zoo', 'api_token_configured': True},
        )
        self.assertIn(
            "copy the template '.env.runtime.dist' to '.env.runtime' and fill in the secret values", job.read_output()
        )
        job.stop()
        shutil.copy(directory / '.env.runtime.dist', directory / '.env.runtime')
        job = ProcessJob(['job.py:JobEntrypoint'], cwd=directory)
        self.addCleanup(job.stop)
        job.wait_ready()
        self.assertEqual(
            job.client().post('/api/v1/perform').json(),
            {'debug': True, 'model_zoo': 'zoo', 'api_token_configured': True},
        )
        self.assertEqual(job.client().get('/health').json()['job_name'], 'python-env-secret')

    def test_concurrency_example_queues_then_refuses(self):
        job = ProcessJob(['job.py:SlowModel'], cwd=EXAMPLES_DIR / 'concurrency')
        self.addCleanup(job.stop)
        job.wait_ready()
        probe = job.client()

        def gauge(name: str) -> float:
            found = re.search(rf'^{name} (\S+)$', probe.get('/metrics').body.decode(), re.MULTILINE)
            return float(found.group(1))

        def wait_for(name: str, value: float) -> None:
            deadline = time.monotonic() + 20
            while gauge(name) != value:
                self.assertLess(time.monotonic(), deadline, f'{name} never reached {value}')
                time.sleep(0.02)

        answers: dict[str, ClientResponse] = {}

        def call(text: str, seconds: float) -> None:
            client = JobClient(job.port)
            try:
                answers[text] = client.post('/api/v1/perform', {'text': text, 'seconds': seconds})
            finally:
                client.close()

        threads = [threading.Thread(target=call, args=('slow', 3.0))]
        threads[0].start()
        wait_for('request_calls_running', 1.0)
        for index in range(10):
            threads.append(threading.Thread(target=call, args=(f'q{index}', 0.0)))
            threads[-1].start()
        wait_for('request_calls_queued', 10.0)
        refused = probe.post('/api/v1/perform', {'text': 'late', 'seconds': 0})
        self.assertEqual(refused.status, 429)
        self.assertIn('(max_concurrency_queue) is 10', refused.json()['error'])
        self.assertEqual(refused.headers['retry-after'], '1')
        for thread in threads:
            thread.join(30)
        self.assertEqual(
            {text: (r.status, r.json()) for text, r in answers.items()},
            {'slow': (200, 'SLOW'), **{f'q{i}': (200, f'Q{i}') for i in range(10)}},
        )


if __name__ == '__main__':
    unittest.main()
