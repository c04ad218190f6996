"""The command line in child processes: job references, importable directories, --help, SIGTERM."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path

from tests.support import EXAMPLES_DIR, REPO_DIR, ProcessJob, free_port


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', str(self.tmp)]))

    def run_job(self, *args: str, cwd: Path | None = None) -> ProcessJob:
        job = ProcessJob(list(args), cwd=cwd or self.tmp)
        self.addCleanup(job.stop)
        job.wait_ready()
        return job

    def test_example_prime_job_by_file_and_class(self):
        job = self.run_job(str(EXAMPLES_DIR / 'prime' / 'job.py') + ':Job')
        client = job.client()
        self.assertEqual(client.post('/api/v1/perform', {'number': 7907}).json(), True)
        self.assertEqual(client.post('/api/v1/perform', {'number': 7909 * 2}).json(), False)

    def test_legacy_run_form_with_class_name(self):
        write(
            self.tmp,
            'job.py',
            """
            class Helper:
                pass

            class Job:
                def perform(self, x: int = 1):
                    return x * 2
        """,
        )
        job = self.run_job('run', 'job.py', 'Job')
        self.assertEqual(job.client().post('/api/v1/perform', {'x': 21}).json(), 42)

    def test_file_alone_with_one_class(self):
        write(
            self.tmp,
            'only.py',
            """
            class Only:
                def perform(self):
                    return 'only'
        """,
        )
        job = self.run_job('only.py')
        self.assertEqual(job.client().post('/api/v1/perform').json(), 'only')

    def test_module_reference_and_importable_directories(self):
        # The guide's layout: job_entrypoint.py imports supersmart.model from the working directory.
        write(self.tmp, 'supersmart/__init__.py', '')
        write(
            self.tmp,
            'supersmart/model.py',
            """
            def is_prime(number: int) -> bool:
                return number > 1 and all(number % i for i in range(2, int(number ** 0.5) + 1))
        """,
        )
        write(
            self.tmp,
            'job_entrypoint.py',
            """
            from pathlib import Path
            from supersmart.model import is_prime

            class JobEntrypoint:
                def perform(self, number: int) -> dict:
                    return {'prime': is_prime(number), 'data': Path('./data.txt').read_text()}
        """,
        )
        write(self.tmp, 'data.txt', 'relative')
        job = self.run_job('job_entrypoint:JobEntrypoint')
        self.assertEqual(
            job.client().post('/api/v1/perform', {'number': 13}).json(), {'prime': True, 'data': 'relative'}
        )

    def test_job_file_directory_is_importable(self):
        write(
            self.tmp,
            'src/job.py',
            """
            class Job:
                def perform(self):
                    return 'from job'
        """,
        )
        write(
            self.tmp,
            'src/main.py',
            """
            from job import Job

            class Main(Job):
                pass
        """,
        )
        job = self.run_job('src/main.py:Main')
        self.assertEqual(job.client().post('/api/v1/perform').json(), 'from job')

    def test_several_classes_need_a_name(self):
        write(
            self.tmp,
            'two.py',
            """
            class A:
                def perform(self):
                    return 1

            class B:
                def perform(self):
                    return 2
        """,
        )
        job = ProcessJob(['two.py'], cwd=self.tmp)
        self.addCleanup(job.stop)
        job.wait_listening()
        live = self._wait_live_failure(job)
        self.assertIn('several classes (A, B)', live['error'])
        self.assertIn('two.py:ClassName', live['error'])

    def test_syntax_error_is_reported_with_file_and_line(self):
        write(self.tmp, 'broken.py', 'class Job:\n    def perform(self)\n        return 1\n')
        job = ProcessJob(['broken.py:Job'], cwd=self.tmp)
        self.addCleanup(job.stop)
        job.wait_listening()
        live = self._wait_live_failure(job)
        self.assertRegex(live['error'], r'^SyntaxError: .*, cause=SyntaxError \(at .*broken.py:2\)$')

    def _wait_live_failure(self, job: ProcessJob) -> dict:
        client = job.client()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = client.get('/live')
            if response.status == 500:
                client.close()
                return response.json()
            time.sleep(0.05)
        self.fail('the job never reported its load failure')

    def test_help_explains_both_forms(self):
        for args in (['--help'], ['run', '--help']):
            result = subprocess.run(
                [sys.executable, '-m', 'racetrack_job_wrapper', *args],
                capture_output=True,
                text=True,
                cwd=REPO_DIR,
                timeout=30,
            )
            self.assertEqual(result.returncode, 0)
            for fragment in ('job.py:Job', 'package.module:Job', '--port', '--manifest-path', 'run job.py'):
                self.assertIn(fragment, result.stdout)

    def test_sigterm_finishes_request_in_flight_and_exits_zero(self):
        write(
            self.tmp,
            'slow.py',
            """
            import time

            class Slow:
                def perform(self, seconds: float = 1.0):
                    time.sleep(seconds)
                    return 'finished'
        """,
        )
        job = self.run_job('slow.py')
        result = {}

        def call():
            result['response'] = job.client().post('/api/v1/perform', {'seconds': 1.0})

        thread = threading.Thread(target=call)
        thread.start()
        time.sleep(0.3)
        job.process.send_signal(signal.SIGTERM)
        thread.join(10)
        self.assertEqual(job.process.wait(30), 0, job.read_output())
        self.assertEqual(result['response'].status, 200)
        self.assertEqual(result['response'].json(), 'finished')


# What both console scripts, racetrack_job_runner and racetrack_job_wrapper, run.
CONSOLE_SCRIPT = 'import sys; from racetrack_job_wrapper.cli import main; sys.exit(main())'


class TemplateCommandTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', str(self.tmp)]))
        write(
            self.tmp,
            'job.yaml',
            """
            name: adder
            version: 1.2.0
            build_env:
              PIP_INDEX: https://pypi.example/simple
        """,
        )
        write(
            self.tmp,
            'Dockerfile.template',
            'FROM python\n{% for k, v in env_vars.items() %}ENV {{ k }}="{{ v }}"\n{% endfor %}'
            'LABEL version="{{ manifest.version }}"\n',
        )

    def template(self, *args: str, script: bool = False) -> subprocess.CompletedProcess:
        command = ['-c', CONSOLE_SCRIPT] if script else ['-m', 'racetrack_job_wrapper']
        return subprocess.run(
            [sys.executable, *command, 'template', *args],
            capture_output=True,
            text=True,
            cwd=self.tmp,
            timeout=30,
            env={**os.environ, 'PYTHONPATH': str(REPO_DIR)},
        )

    def test_renders_with_the_manifest(self):
        for script in (False, True):
            with self.subTest(script=script):
                result = self.template('Dockerfile.template', 'Dockerfile', script=script)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(
                    (self.tmp / 'Dockerfile').read_text(),
                    'FROM python\nENV PIP_INDEX="https://pypi.example/simple"\nLABEL version="1.2.0"',
                )
                self.assertIn('template Dockerfile.template rendered into Dockerfile', result.stderr)

    def test_errors_exit_2_with_one_line(self):
        write(self.tmp, 'bad.template', 'x\n{{ manifest.git.remote.host }}\n')
        write(self.tmp, 'broken.yaml', 'name: [\n')
        cases = (
            (
                ('absent.template', 'out'),
                f"racetrack_job_wrapper template: error: template file 'absent.template' does not exist"
                f' (looked at {self.tmp}/absent.template)',
            ),
            (
                ('bad.template', 'out'),
                "racetrack_job_wrapper template: error: bad.template: 'None' has no attribute 'remote'",
            ),
            (
                ('Dockerfile.template', 'out', '--manifest-path', 'absent.yaml'),
                f"racetrack_job_wrapper template: error: manifest file 'absent.yaml' does not exist"
                f' (looked at {self.tmp}/absent.yaml)',
            ),
            (
                ('Dockerfile.template', 'out', '--manifest-path', 'broken.yaml'),
                "racetrack_job_wrapper template: error: cannot read manifest file 'broken.yaml':",
            ),
        )
        for args, message in cases:
            with self.subTest(args=args):
                result = self.template(*args)
                self.assertEqual(result.returncode, 2)
                self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
                self.assertTrue(result.stderr.startswith(message), result.stderr)
                self.assertFalse((self.tmp / 'out').exists())

    def test_help(self):
        result = self.template('--help')
        self.assertEqual(result.returncode, 0)
        for fragment in ('TEMPLATE_FILE OUT_FILE', '--manifest-path', 'env_vars', 'Jinja2'):
            self.assertIn(fragment, result.stdout)


if __name__ == '__main__':
    unittest.main()


class ConventionsTest(unittest.TestCase):
    """What users know from uvicorn and gunicorn: flags as environment variables, one-line start-up errors."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', str(self.tmp)]))
        write(self.tmp, 'job.py', 'class Job:\n    def perform(self, x: int = 1):\n        return x * 2\n')

    def run_cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, '-m', 'racetrack_job_wrapper', *args],
            capture_output=True,
            text=True,
            cwd=self.tmp,
            timeout=30,
            env={**os.environ, 'PYTHONPATH': str(REPO_DIR), **(env or {})},
        )

    def test_a_port_in_use_is_one_line_naming_the_address(self):
        with socket.socket() as taken:
            taken.bind(('127.0.0.1', 0))
            taken.listen()
            port = taken.getsockname()[1]
            for workers in ('1', '2'):
                with self.subTest(workers=workers):
                    result = self.run_cli(
                        'job.py:Job', '--host', '127.0.0.1', '--port', str(port), '--workers', workers
                    )
                    self.assertEqual(result.returncode, 1, result.stderr)
                    lines = result.stderr.strip().splitlines()
                    self.assertEqual(len(lines), 1, lines)
                    self.assertTrue(
                        lines[0].endswith(f'cannot listen on http://127.0.0.1:{port}: Address already in use'), lines
                    )

    def test_a_host_that_is_no_address_is_one_line(self):
        result = self.run_cli('job.py:Job', '--host', 'no-such-host.invalid', '--port', '0')
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn('cannot listen on http://no-such-host.invalid:0: ', result.stderr)

    def test_bad_flag_and_variable_values_are_usage_errors(self):
        result = self.run_cli('job.py:Job', '--port', '99999')
        self.assertEqual(result.returncode, 2)
        self.assertIn('argument --port: must be a port number from 0 to 65535, got 99999', result.stderr)
        result = self.run_cli('job.py:Job', env={'RJW_MAX_BODY_BYTES': '-5'})
        self.assertEqual(result.returncode, 2)
        self.assertIn("RJW_MAX_BODY_BYTES='-5': must be a positive integer", result.stderr)
        result = self.run_cli(
            'job.py:Job',
            env={'LOG_LEVEL': 'loud', 'RJW_PORT': '0', 'RJW_HOST': '127.0.0.1'},
        )
        self.assertEqual(result.returncode, 2)
        self.assertIn("LOG_LEVEL='loud': choose from debug, info, warning, error", result.stderr)

    def test_every_flag_can_be_an_environment_variable_and_the_flag_wins(self):
        port = free_port()
        env = {'RJW_HOST': '127.0.0.1', 'RJW_PORT': str(port), 'RJW_MAX_BODY_BYTES': '10', 'LOG_LEVEL': 'debug'}
        job = ProcessJob(['job.py:Job', '--max-body-bytes', '20'], cwd=self.tmp, env=env, port=port)
        self.addCleanup(job.stop)
        job.wait_ready()
        client = job.client()
        self.assertEqual(client.post('/api/v1/perform', {'x': 123456}).status, 200)  # 13 bytes: 20 won over 10
        self.assertEqual(client.post('/api/v1/perform', {'x': 12345678901234567890}).status, 413)  # 27 bytes
        self.assertEqual(job.stop(), 0)
        self.assertIn('DEBUG', job.read_output())  # LOG_LEVEL=debug
        self.assertIn(f'serving at http://127.0.0.1:{port}', job.read_output())

    def test_an_ipv6_host(self):
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(('::1', 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, '-m', 'racetrack_job_wrapper', 'job.py:Job', '--host', '::1', '--port', str(port)],
            cwd=self.tmp,
            env={**os.environ, 'PYTHONPATH': str(REPO_DIR)},
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(process.stderr.close)
        self.addCleanup(process.wait, 30)
        self.addCleanup(process.terminate)
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = http.client.HTTPConnection('::1', port, timeout=5)
                connection.request('POST', '/api/v1/perform', b'{"x": 4}', {'Content-Type': 'application/json'})
                response = connection.getresponse()
                body = response.read()
                connection.close()
                if response.status == 200:
                    self.assertEqual(body, b'8')
                    break
            except OSError:
                connection.close()
                self.assertLess(time.monotonic(), deadline, 'no answer on [::1]')
                time.sleep(0.05)
        process.terminate()
        self.assertEqual(process.wait(30), 0)
        self.assertIn(f'serving at http://[::1]:{port}', process.stderr.read())

    def test_help_names_every_environment_variable(self):
        from racetrack_job_wrapper.cli import build_parser, flag_variable
        from racetrack_job_wrapper.settings import ENVIRONMENT_VARIABLES

        text = self.run_cli('--help').stdout
        for name in ENVIRONMENT_VARIABLES:
            self.assertIn(f'\n  {name} ', text)
        for action in build_parser()._actions:
            if action.option_strings and action.dest not in ('help', 'version'):
                self.assertIn(f'[${flag_variable(action.dest)}]', ' '.join(text.split()))

    def test_the_environment_table_names_every_variable_the_package_reads(self):
        from racetrack_job_wrapper.settings import ENVIRONMENT_VARIABLES

        read = set()
        for path in (REPO_DIR / 'racetrack_job_wrapper').glob('*.py'):
            if path.name == 'webview.py':  # a WSGI environ, not the process's
                continue
            for line in path.read_text().splitlines():
                if 'environ' in line or '_ENV' in line or '_flag(' in line or '_identity(' in line:
                    read |= set(re.findall(r"'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)'", line))
        self.assertGreater(len(read), 10)
        self.assertEqual(read - set(ENVIRONMENT_VARIABLES), set())


class JobDefinitionSiteTest(unittest.TestCase):
    """A job error this library finds (not one the job raises) points at the job's own line."""

    def failing_live(self, source: str) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            write(Path(tmp), 'job.py', source)
            job = ProcessJob(['job.py:Job'], cwd=tmp)
            try:
                job.wait_listening()
                client = job.client()
                deadline = time.monotonic() + 20
                while (response := client.get('/live')).status == 200:
                    self.assertLess(time.monotonic(), deadline, 'the job did not fail to load')
                    time.sleep(0.05)
                return response.json()['error']
            finally:
                job.stop()

    def test_a_bad_docs_input_example(self):
        error = self.failing_live(
            """
            class Job:
                def perform(self, x: int = 1):
                    return x

                def docs_input_example(self):
                    return {'x': object()}
            """
        )
        self.assertIn('invalid docs input example: failed to encode input example (for /perform endpoint)', error)
        self.assertTrue(error.endswith('(at job.py:6)'), error)

    def test_a_missing_static_file(self):
        error = self.failing_live(
            """
            class Job:
                def perform(self):
                    return 1

                def static_endpoints(self):
                    return {'/notes': 'no-such-file.txt'}
            """
        )
        self.assertIn("static endpoint /notes: file 'no-such-file.txt' does not exist", error)
        self.assertTrue(error.endswith('(at job.py:6)'), error)

    def test_a_signature_that_cannot_be_served(self):
        error = self.failing_live(
            """
            class Job:
                def perform(self, x, /):
                    return x
            """
        )
        self.assertIn("parameter 'x' of Job.perform is positional-only", error)
        self.assertTrue(error.endswith('(at job.py:3)'), error)
