"""Every command README.md shows, run as it is written (from README.md itself, never a copy)."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import venv
from pathlib import Path

from tests.support import REPO_DIR, JobClient, free_port, slow

_spec = importlib.util.spec_from_file_location('readme_commands', REPO_DIR / '.ci' / 'readme_commands.py')
readme_commands = importlib.util.module_from_spec(_spec)
sys.modules['readme_commands'] = readme_commands  # dataclasses look their module up there
_spec.loader.exec_module(readme_commands)

# What a checkout holds besides the sources: left out of the copies the commands run in.
_NOT_SOURCES = shutil.ignore_patterns(
    '.git', '.venv', '.venvs', '.nox', '.hypothesis', '__pycache__', 'build', 'dist', '*.egg-info', 'wheelhouse'
)
JOB = """
class Job:
    def perform(self, number: int = 2) -> int:
        return number * 3
"""
# Commands another test or .ci/run runs: the command, and who runs it.
RUN_ELSEWHERE = {
    'nox -s wheelhouse': 'tests.test_wheelhouse (its .ci/wheelhouse.py)',
    'pip install --no-index --find-links wheelhouse racetrack_job_wrapper': 'tests.test_wheelhouse',
    'python -m racetrack_job_wrapper check job.py:Job': 'tests.test_testing.CheckCommandTest',
}


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment a user's shell would have: no virtual environment active, no checkout on the path."""
    env = {name: value for name, value in os.environ.items() if name not in ('VIRTUAL_ENV', 'PYTHONPATH')}
    scripts = str(Path(sys.executable).parent)
    env['PATH'] = os.pathsep.join(part for part in env.get('PATH', '').split(os.pathsep) if part != scripts)
    return {**env, **extra}


def script(name: str) -> str:
    """A console script of the interpreter running the tests (beside it in a virtual environment)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


class Server:
    """A command serving a job, in its own process group, stopped with SIGTERM."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], port: int):
        self.port = port
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.printed = ''
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self) -> str:
        if not self.log.closed:
            self.log.seek(0)
            self.printed = self.log.read().decode(errors='replace')
        return self.printed

    def wait_ready(self, timeout: float) -> None:
        client = JobClient(self.port, timeout=5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f'exited with {self.process.returncode}: {self.output()}')
                try:
                    if client.get('/ready').status == 200:
                        return
                except OSError:
                    client.close()
                time.sleep(0.1)
        finally:
            client.close()
        raise AssertionError(f'not ready within {timeout} s: {self.output()}')

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(30)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.output()
            self.log.close()


class ReadmeTestCase(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)

    def serve(self, argv: list[str], cwd: Path, port: int, timeout: float = 30, **env: str) -> Server:
        server = Server(argv, cwd, clean_environment(RJW_HOST='127.0.0.1', RJW_PORT=str(port), **env), port)
        self.addCleanup(server.stop)
        server.wait_ready(timeout)
        return server

    def shown(self, section: str) -> list[readme_commands.Command]:
        return [command for command in readme_commands.commands() if command.section == section]


@slow
class QuickStartTest(ReadmeTestCase):
    def test_the_quick_start_serves_the_prime_job_from_a_fresh_venv_and_answers_as_shown(self):
        serve_command, _ = readme_commands.quick_start()
        checkout = self.tmp / 'checkout'
        shutil.copytree(REPO_DIR, checkout, ignore=_NOT_SOURCES)
        port = free_port()
        # The command binds 0.0.0.0:7000 as written; RJW_HOST and RJW_PORT move it to a free port here.
        server = self.serve(['bash', '-c', serve_command], checkout, port, timeout=600)
        self.assertTrue((checkout / '.venv' / 'bin' / 'python').exists())
        curls = [command for command in self.shown('Quick start') if command.text.startswith('curl ')]
        self.assertEqual(len(curls), 2)
        for command in curls:
            text = command.text.replace('localhost:7000', f'127.0.0.1:{port}')
            result = subprocess.run(['bash', '-c', text], capture_output=True, text=True, timeout=30, check=True)
            self.assertEqual(result.stdout.strip(), command.comment, command.text)
        self.assertEqual(server.stop(), 0)

    def test_ci_runs_the_quick_start_test_command(self):
        _, test_command = readme_commands.quick_start()
        ci = (REPO_DIR / '.ci' / 'run').read_text()
        # Written out in .ci/run, line for line, so that the command CI runs is the README's.
        self.assertIn(f'\n{test_command}\n', ci)
        self.assertIn('.venv/bin/python -m unittest discover -v', test_command)
        # What it installs from Debian is what the tests need: the tools they start.
        for tool in ('chromium', 'prometheus', 'wrk', 'haproxy', 'redis-server', 'curl'):
            self.assertIn(f' {tool}', test_command)


@slow
class RunningAJobTest(ReadmeTestCase):
    def setUp(self):
        super().setUp()
        (self.tmp / 'job.py').write_text(JOB)
        (self.tmp / 'package').mkdir()
        (self.tmp / 'package' / '__init__.py').write_text('')
        (self.tmp / 'package' / 'module.py').write_text(JOB)
        (self.tmp / 'job.yaml').write_text('name: readme-job\nversion: 1.2.3\n')

    def argv(self, text: str, port: int) -> list[str]:
        argv = shlex.split(text.replace('--port 8000', f'--port {port}'))
        if argv[0] == 'python':
            return [sys.executable, *argv[1:]]
        return [script(argv[0]), *argv[1:]]

    def test_every_way_to_run_a_job_shown(self):
        commands = [
            command
            for section in ('Running a job', 'Reloading on a change (development)', 'Performance')
            for command in self.shown(section)
            if 'template' not in command.text
        ]
        self.assertEqual(len(commands), 7, commands)
        for command in commands:
            with self.subTest(command=command.text):
                port = free_port()
                server = self.serve(self.argv(command.text, port), self.tmp, port)
                client = JobClient(port)
                self.assertEqual(client.post('/api/v1/perform', {'number': 5}).json(), 15)
                client.close()
                self.assertEqual(server.stop(), 0, server.output())

    def test_the_template_command(self):
        (command,) = [command for command in self.shown('Running a job') if 'template' in command.text]
        (self.tmp / 'Dockerfile.template').write_text('FROM python:3.11-slim\nLABEL version={{ manifest.version }}\n')
        subprocess.run(self.argv(command.text, 0), cwd=self.tmp, check=True, timeout=30, env=clean_environment())
        # Jinja2 drops a template's last newline, as racetrack-job-runner's rendering does.
        self.assertEqual((self.tmp / 'Dockerfile').read_text(), 'FROM python:3.11-slim\nLABEL version=1.2.3')


@slow
class MigratingTest(ReadmeTestCase):
    def test_the_reinstall_commands_in_a_fresh_venv(self):
        commands = self.shown('Migrating from racetrack-job-runner')
        self.assertEqual([command.text.split()[:2] for command in commands], [['pip', 'uninstall'], ['pip', 'install']])
        checkout = self.tmp / 'checkout'
        shutil.copytree(REPO_DIR, checkout, ignore=_NOT_SOURCES)
        venv.EnvBuilder(with_pip=True).create(self.tmp / 'env')
        bin_dir = self.tmp / 'env' / 'bin'
        env = clean_environment(PATH=f'{bin_dir}{os.pathsep}{clean_environment()["PATH"]}')
        for command in commands:
            subprocess.run(['bash', '-c', command.text], cwd=checkout, env=env, check=True, timeout=600)
        located = subprocess.run(
            [str(bin_dir / 'python'), '-c', 'import racetrack_job_wrapper as p; print(p.__file__, p.__version__)'],
            cwd=self.tmp,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.assertTrue(located.startswith(str(self.tmp / 'env')), located)


class EveryCommandTest(unittest.TestCase):
    def test_every_command_shown_is_run_by_a_test_or_by_ci(self):
        run_here = {
            'Quick start',
            'Running a job',
            'Reloading on a change (development)',
            'Performance',
            'Migrating from racetrack-job-runner',
        }
        for command in readme_commands.commands():
            with self.subTest(command=command.text):
                self.assertTrue(
                    command.section in run_here or command.text in RUN_ELSEWHERE,
                    f'no test runs this README command: {command.text}',
                )
        self.assertEqual(
            textwrap.dedent(readme_commands.quick_start()[0]).split()[0:4], ['python3', '-m', 'venv', '.venv']
        )


if __name__ == '__main__':
    unittest.main()
