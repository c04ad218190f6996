"""The command line in child processes: job references, importable directories, --help, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path

from tests.support import EXAMPLES_DIR, REPO_DIR, ProcessJob


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
