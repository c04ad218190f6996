"""`--reload`: a change of the job's code is served on the same socket; a failed reload keeps the previous job."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import types
import unittest
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from racetrack_job_wrapper.cli import apply_flag_variables, build_parser
from racetrack_job_wrapper.health import HealthState, health_body
from racetrack_job_wrapper.reload import (
    changed_files,
    class_reference,
    fresh_modules,
    job_directory,
    job_modules,
    scan,
)
from racetrack_job_wrapper.settings import JobSettings
from tests.support import REPO_DIR, JobClient, ProcessJob, RawConnection, free_port

DEADLINE = 60.0  # seconds; polled, so a fast machine waits about a second

VALUE_JOB = """
    class Job:
        def perform(self):
            return {value!r}
"""


def write(path: Path, text: str) -> Path:
    """Replace the file at once, as editors save: the watcher never sees it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f'.{path.name}.partial')
    partial.write_text(textwrap.dedent(text))
    os.replace(partial, path)
    return path


def perform(port: int) -> Any:
    """The answer of a perform call on a new connection."""
    client = JobClient(port)
    try:
        response = client.post('/api/v1/perform')
        return response.json() if response.status == 200 else ('status', response.status)
    finally:
        client.close()


def poll(condition: Any) -> bool:
    """`wait_until` at a pace that leaves the server's log readable."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def health(port: int) -> dict[str, Any]:
    """The /health body, asked on a new connection."""
    client = JobClient(port)
    try:
        body: dict[str, Any] = client.get('/health').json()
        return body
    finally:
        client.close()


class ReloadProcessTest(unittest.TestCase):
    """Real processes started with --reload, the job's files in a temporary directory."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', str(self.tmp)]))

    def start(self, *args: str) -> ProcessJob:
        job = ProcessJob([*args, '--reload'], cwd=self.tmp)
        self.addCleanup(job.stop)
        job.wait_ready()
        return job

    def wait_for(self, job: ProcessJob, condition: Any, what: str) -> None:
        if not poll(condition):
            self.fail(f'{what} within {DEADLINE:.0f} s; the log:\n{job.read_output()}')

    def wait_for_log(self, job: ProcessJob, text: str) -> None:
        """Log lines are written by a thread of their own: a line may come a moment after what it tells."""
        self.wait_for(job, lambda: text in job.read_output(), f'the log did not say {text!r}')

    def test_an_edit_is_served_on_the_same_socket_and_connections_live_on(self):
        write(self.tmp / 'job.py', VALUE_JOB.format(value='one'))
        job = self.start('job.py:Job')
        self.assertEqual(health(job.port)['reloads'], 0)
        kept = RawConnection(job.port)
        self.addCleanup(kept.close)
        request = b'POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}'
        kept.send(request)
        self.assertEqual(kept.read_response().json(), 'one')

        # New connections all through the reload: each one is answered, by the old job or the new.
        answers: list[Any] = []
        stop = threading.Event()

        def keep_asking() -> None:
            while not stop.is_set():
                try:
                    answers.append(perform(job.port))
                except OSError as e:  # a refused or reset connection: the socket was dropped
                    answers.append(e)
                time.sleep(0.01)

        asker = threading.Thread(target=keep_asking, daemon=True)
        asker.start()
        write(self.tmp / 'job.py', VALUE_JOB.format(value='two'))
        self.wait_for(job, lambda: perform(job.port) == 'two', 'the edited job did not answer')
        self.assertTrue(poll(lambda: len(answers) > 0 and answers[-1] == 'two'))
        stop.set()
        asker.join(DEADLINE)
        self.assertEqual([answer for answer in answers if answer not in ('one', 'two')], [])

        kept.send(request)  # the connection opened before the reload carries on, served by the new job
        self.assertEqual(kept.read_response().json(), 'two')
        self.assertIsNone(job.process.poll())
        # The probes tell of the reload a moment after the new job serves: after the swap.
        self.wait_for(job, lambda: health(job.port)['reloads'] == 1, '/health did not count the reload')
        body = health(job.port)
        self.assertEqual((body['status'], body['reload_error']), ('pass', None))
        self.wait_for_log(job, 'reloading: job.py changed')
        self.wait_for_log(job, 'reloaded in ')
        self.assertRegex(job.read_output(), r'reloaded in \d+\.\d s')
        self.assertEqual(job.read_output().count('serving at '), 1)

    def test_a_failed_reload_keeps_the_previous_job_and_the_next_good_one_clears_the_error(self):
        write(self.tmp / 'job.py', VALUE_JOB.format(value='first'))
        job = self.start('job.py:Job')
        write(self.tmp / 'job.py', 'class Job:\n    def perform(self)\n        return 1\n')
        self.wait_for(job, lambda: health(job.port)['reload_error'] is not None, '/health showed no reload error')
        body = health(job.port)
        self.assertEqual((body['status'], body['live'], body['ready'], body['error']), ('pass', True, True, None))
        self.assertTrue(body['reload_error'].startswith('SyntaxError: '), body)
        self.assertTrue(body['reload_error'].endswith('cause=SyntaxError (at job.py:2)'), body)
        self.assertEqual(perform(job.port), 'first')
        self.wait_for_log(job, 'reload failed')
        failures = [line for line in job.read_output().splitlines() if 'reload failed' in line]
        self.assertEqual(len(failures), 1, failures)
        self.assertIn('ERROR', failures[0])
        self.assertIn('the previous job serves on: ' + body['reload_error'], failures[0])

        write(
            self.tmp / 'job.py',
            """
            class Job:
                def __init__(self):
                    raise RuntimeError('no model')

                def perform(self):
                    return 'never'
            """,
        )
        self.wait_for(
            job, lambda: 'RuntimeError: no model' in (health(job.port)['reload_error'] or ''), 'no second error'
        )
        self.assertEqual(health(job.port)['reload_error'], 'RuntimeError: no model, cause=RuntimeError (at job.py:4)')
        self.assertEqual(perform(job.port), 'first')

        write(self.tmp / 'job.py', VALUE_JOB.format(value='fixed'))
        self.wait_for(job, lambda: perform(job.port) == 'fixed', 'the fixed job did not answer')
        self.wait_for(job, lambda: health(job.port)['reload_error'] is None, 'the reload error did not clear')
        body = health(job.port)
        self.assertEqual((body['status'], body['reloads']), ('pass', 1))
        self.wait_for_log(job, 'reloaded in ')
        self.assertEqual(len([line for line in job.read_output().splitlines() if 'reload failed' in line]), 2)

    def test_a_job_that_failed_to_load_is_served_once_fixed(self):
        write(self.tmp / 'job.py', 'class Job:\n    def perform(self):\n        return undefined_name\n\nJob().x\n')
        job = ProcessJob(['job.py:Job', '--reload'], cwd=self.tmp)
        self.addCleanup(job.stop)
        job.wait_listening()
        self.wait_for(job, lambda: health(job.port)['error'] is not None, 'the load did not fail')
        self.assertEqual(health(job.port)['live'], False)
        write(self.tmp / 'job.py', VALUE_JOB.format(value='loaded'))
        self.wait_for(job, lambda: perform(job.port) == 'loaded', 'the fixed job did not answer')
        self.wait_for(job, lambda: health(job.port)['live'], '/live did not recover')
        body = health(job.port)
        self.assertEqual(
            (body['status'], body['live'], body['error'], body['reload_error']), ('pass', True, None, None)
        )

    def test_a_change_of_an_imported_helper_reloads_and_the_manifest_asks_for_a_restart(self):
        write(self.tmp / 'helper.py', 'def value():\n    return 1\n')
        write(
            self.tmp / 'job.py',
            'from helper import value\n\nclass Job:\n    def perform(self):\n        return value()\n',
        )
        write(self.tmp / 'job.yaml', 'name: reloaded\n')
        job = self.start('job.py:Job')
        self.assertEqual(perform(job.port), 1)
        write(self.tmp / 'helper.py', 'def value():\n    return 2\n')
        self.wait_for(job, lambda: perform(job.port) == 2, 'the helper change was not served')
        self.wait_for_log(job, 'reloading: helper.py changed')

        write(self.tmp / 'job.yaml', 'name: renamed\n')
        self.wait_for_log(job, 'restart to apply it')
        self.assertIn('reload: job.yaml changed; the manifest is read at start-up only', job.read_output())
        self.assertEqual(health(job.port)['job_name'], 'reloaded')
        self.assertEqual(health(job.port)['reloads'], 1)

    def test_a_module_reference_watches_its_package(self):
        write(self.tmp / 'pkg' / '__init__.py', '')
        write(self.tmp / 'pkg' / 'helper.py', 'WORD = "alpha"\n')
        write(
            self.tmp / 'pkg' / 'jobmod.py',
            'from pkg.helper import WORD\n\nclass Job:\n    def perform(self):\n        return WORD\n',
        )
        job = self.start('pkg.jobmod:Job')
        self.assertEqual(perform(job.port), 'alpha')
        write(self.tmp / 'pkg' / 'helper.py', 'WORD = "beta"\n')
        self.wait_for(job, lambda: perform(job.port) == 'beta', 'the package change was not served')

    def test_a_request_in_flight_finishes_on_the_previous_job(self):
        self.check_in_flight_call('', 'time.sleep')

    def test_an_async_request_in_flight_finishes_on_the_previous_job_and_its_loop(self):
        self.check_in_flight_call('async ', 'await asyncio.sleep')

    def check_in_flight_call(self, kind: str, sleep: str) -> None:
        waiting = f"""
            import asyncio
            import os
            import time

            class Job:
                {kind}def perform(self):
                    if os.path.exists('started'):  # the calls after the first one answer at once
                        return 'previous'
                    open('started', 'w').close()
                    deadline = time.monotonic() + 60
                    while not os.path.exists('release') and time.monotonic() < deadline:
                        {sleep}(0.01)
                    return 'previous'
        """
        write(self.tmp / 'job.py', waiting)
        job = self.start('job.py:Job')
        result: dict[str, Any] = {}
        caller = threading.Thread(target=lambda: result.setdefault('answer', perform(job.port)), daemon=True)
        caller.start()
        self.wait_for(job, (self.tmp / 'started').exists, 'the first call did not start')
        write(self.tmp / 'job.py', f'class Job:\n    {kind}def perform(self):\n        return "next"\n')
        self.wait_for(job, lambda: perform(job.port) == 'next', 'the new job did not answer')
        self.assertTrue(caller.is_alive())
        (self.tmp / 'release').touch()
        caller.join(DEADLINE)
        self.assertEqual(result.get('answer'), 'previous')
        self.assertEqual(perform(job.port), 'next')

    def test_metrics_of_the_job_are_those_of_the_new_job(self):
        metrics_job = """
            from prometheus_client import Counter

            calls = Counter('job_calls', 'Calls of perform')

            class Job:
                def perform(self):
                    calls.inc()
                    return {value}

                def metrics(self):
                    return [{{'name': 'job_generation', 'value': {value}}}]
        """
        write(self.tmp / 'job.py', metrics_job.format(value=1))
        job = self.start('job.py:Job')
        client = job.client()
        self.assertEqual(perform(job.port), 1)
        self.assertIn('job_generation 1.0', client.get('/metrics').body.decode())
        write(self.tmp / 'job.py', metrics_job.format(value=2))
        self.wait_for(job, lambda: perform(job.port) == 2, 'the new job did not answer')
        text = client.get('/metrics').body.decode()
        self.assertIn('job_generation 2.0', text)
        self.assertNotIn('job_generation 1.0', text)
        self.assertIn('job_calls_total 1.0', text)  # the new module's counter, counting from 0
        self.assertIsNone(health(job.port)['reload_error'])

    def test_reload_with_several_workers_is_a_usage_error(self):
        write(self.tmp / 'job.py', VALUE_JOB.format(value=1))
        cases = [
            (['job.py:Job', '--reload', '--workers', '2'], {}),
            (['job.py:Job', '--workers', '2'], {'RJW_RELOAD': 'true'}),
        ]
        for args, env in cases:
            with self.subTest(args=args, env=env):
                result = self.run_cli(args, env)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertEqual(
                    result.stderr.splitlines(),
                    [
                        'racetrack_job_wrapper: error: --reload serves the job in one process;'
                        ' it cannot be used with --workers 2'
                    ],
                )
        result = self.run_cli(['job.py:Job'], {'RJW_RELOAD': 'maybe'})
        self.assertEqual(result.returncode, 2)
        self.assertIn("RJW_RELOAD='maybe': must be true or false", result.stderr)

    def run_cli(self, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, 'PYTHONPATH': str(REPO_DIR), **env}
        return subprocess.run(
            [sys.executable, '-m', 'racetrack_job_wrapper', *args, '--host', '127.0.0.1', '--port', '0'],
            cwd=self.tmp,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )

    def test_serve_job_class_with_reload_of_an_imported_class(self):
        self.check_serve_job_class('imported', 'job.py')

    def test_serve_job_class_with_reload_of_a_class_of_the_script(self):
        self.check_serve_job_class('script', 'run.py')

    def check_serve_job_class(self, chosen: str, edited: str) -> None:
        write(
            self.tmp / 'run.py',
            """
            import sys

            from racetrack_job_wrapper.standalone import serve_job_class

            class Job:
                def perform(self):
                    return 'script'

            if __name__ == '__main__':
                from job import Job as Imported

                chosen = Job if sys.argv[2] == 'script' else Imported
                serve_job_class(chosen, host='127.0.0.1', port=int(sys.argv[1]), reload=True)
            """,
        )
        write(self.tmp / 'job.py', VALUE_JOB.format(value='imported'))
        port = free_port()
        env = {**os.environ, 'PYTHONPATH': str(REPO_DIR), 'PYTHONUNBUFFERED': '1'}
        log = self.tmp / 'log.txt'
        with open(log, 'wb') as output:
            process = subprocess.Popen(
                [sys.executable, 'run.py', str(port), chosen], cwd=self.tmp, env=env, stdout=output, stderr=output
            )
        self.addCleanup(process.wait, DEADLINE)
        self.addCleanup(process.terminate)
        self.assertTrue(poll(lambda: _answer(port) == chosen), log.read_text())
        path = self.tmp / edited
        write(path, path.read_text().replace(f"return '{chosen}'", "return 'edited'"))
        self.assertTrue(poll(lambda: _answer(port) == 'edited'), log.read_text())
        process.terminate()
        self.assertEqual(process.wait(DEADLINE), 0, log.read_text())
        self.assertEqual(log.read_text().count('serving at '), 1)


def _answer(port: int) -> Any:
    """The answer of a perform call, or None while nothing listens."""
    try:
        return perform(port)
    except OSError:
        return None


class ReloadPartsTest(unittest.TestCase):
    """The watcher's pieces, in this process."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp()).resolve()
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', str(self.tmp)]))

    def test_scan_sees_py_files_and_the_manifest_but_not_caches_environments_or_hidden_ones(self):
        for name in ('job.py', 'sub/helper.py', 'notes.txt', 'job.yaml', '.hidden.py'):
            write(self.tmp / name, '')
        for skipped in ('__pycache__', '.venv', 'venv', 'node_modules', '.git'):
            write(self.tmp / skipped / 'module.py', '')
        stamps = scan(self.tmp, [self.tmp / 'job.yaml', self.tmp / 'absent.yaml'])
        self.assertEqual(
            sorted(path.relative_to(self.tmp).as_posix() for path in stamps), ['job.py', 'job.yaml', 'sub/helper.py']
        )
        write(self.tmp / 'sub' / 'helper.py', 'x = 1\n')
        (self.tmp / 'job.py').unlink()
        write(self.tmp / 'new.py', '')
        self.assertEqual(
            changed_files(stamps, scan(self.tmp)),
            [self.tmp / 'job.py', self.tmp / 'job.yaml', self.tmp / 'new.py', self.tmp / 'sub' / 'helper.py'],
        )

    def test_job_directory_is_found_without_importing(self):
        write(self.tmp / 'pkg' / '__init__.py', 'raise RuntimeError("imported")\n')
        write(self.tmp / 'pkg' / 'inner' / '__init__.py', '')
        write(self.tmp / 'pkg' / 'inner' / 'jobmod.py', '')
        cwd = os.getcwd()
        os.chdir(self.tmp)
        self.addCleanup(os.chdir, cwd)
        self.assertEqual(job_directory('pkg.inner.jobmod:Job'), self.tmp / 'pkg' / 'inner')
        self.assertEqual(job_directory('pkg:Job'), self.tmp / 'pkg')
        self.assertEqual(job_directory('sub/job.py:Job'), self.tmp / 'sub')
        self.assertEqual(job_directory('job.py'), self.tmp)
        self.assertEqual(job_directory('no_such_module_anywhere:Job'), self.tmp)
        self.assertNotIn('pkg', sys.modules)

    def test_class_reference(self):
        self.assertEqual(
            class_reference(ReloadPartsTest), ('tests.test_reload:ReloadPartsTest', Path(__file__).resolve().parent)
        )

        def local() -> type:
            class Inner:
                pass

            return Inner

        with self.assertRaisesRegex(ValueError, 'top level of a file'):
            class_reference(local())

    def test_a_failed_fresh_import_puts_the_previous_modules_and_metrics_back(self):
        write(self.tmp / 'reload_probe_helper.py', 'VALUE = 1\n')
        registry = CollectorRegistry()
        sys.path.insert(0, str(self.tmp))
        self.addCleanup(sys.path.remove, str(self.tmp))
        self.addCleanup(sys.modules.pop, 'reload_probe_helper', None)
        import reload_probe_helper  # type: ignore[import-not-found]

        reload_probe_helper.counter = Counter('probe_calls', 'Calls', registry=registry)
        self.assertEqual(job_modules(self.tmp), {'reload_probe_helper': reload_probe_helper})
        write(self.tmp / 'reload_probe_helper.py', 'VALUE = 2\nraise RuntimeError("broken")\n')
        with self.assertRaisesRegex(RuntimeError, 'broken'), fresh_modules(self.tmp, registry):
            self.assertNotIn('reload_probe_helper', sys.modules)
            self.assertIsNone(registry.get_sample_value('probe_calls_total'))
            Counter('probe_calls', 'Calls, as the failed import registers it again', registry=registry)
            import reload_probe_helper  # noqa: F401, F811 - the fresh import that fails
        self.assertIs(sys.modules['reload_probe_helper'], reload_probe_helper)
        reload_probe_helper.counter.inc()
        self.assertEqual(registry.get_sample_value('probe_calls_total'), 1.0)

        write(self.tmp / 'reload_probe_helper.py', 'VALUE = 3\n')
        with fresh_modules(self.tmp, registry):
            fresh = __import__('reload_probe_helper')
        self.assertIsNot(fresh, reload_probe_helper)
        self.assertEqual(fresh.VALUE, 3)
        self.assertIsNone(registry.get_sample_value('probe_calls_total'))  # the new module made none

    def test_a_metric_the_job_imports_from_elsewhere_stays_registered(self):
        registry = CollectorRegistry()
        library = types.ModuleType('reload_probe_library')  # no file: not one of the job's modules
        library.shared = Counter('shared_calls', 'Made by a library', registry=registry)  # type: ignore[attr-defined]
        self.addCleanup(sys.modules.pop, 'reload_probe_library', None)
        sys.modules['reload_probe_library'] = library
        write(self.tmp / 'reload_probe_user.py', 'from reload_probe_library import shared\n')
        sys.path.insert(0, str(self.tmp))
        self.addCleanup(sys.path.remove, str(self.tmp))
        self.addCleanup(sys.modules.pop, 'reload_probe_user', None)
        previous = __import__('reload_probe_user')
        with fresh_modules(self.tmp, registry):
            fresh = __import__('reload_probe_user')
        self.assertIsNot(fresh, previous)
        library.shared.inc()  # type: ignore[attr-defined]
        self.assertEqual(registry.get_sample_value('shared_calls_total'), 1.0)

    def test_health_shows_reloads_only_when_reloading(self):
        settings = JobSettings.from_manifest({}, {})
        state = HealthState()
        state.set_ready()
        self.assertNotIn('reloads', health_body(state, settings)[1])
        state.track_reloads()
        self.assertEqual(health_body(state, settings)[1]['reloads'], 0)
        self.assertTrue(state.set_reload_failed('SyntaxError: x'))
        self.assertEqual(health_body(state, settings), (200, health_body(state, settings)[1]))
        self.assertEqual(health_body(state, settings)[1]['reload_error'], 'SyntaxError: x')
        state.set_reloaded()
        body = health_body(state, settings)[1]
        self.assertEqual((body['reloads'], body['reload_error']), (1, None))

    def test_the_variable_of_a_switch(self):
        for text, expected in (
            ('true', True),
            ('1', True),
            ('YES', True),
            ('false', False),
            ('0', False),
            ('no', False),
        ):
            with self.subTest(text):
                parser = build_parser()
                apply_flag_variables(parser, {'RJW_RELOAD': text})
                self.assertIs(parser.parse_args(['job.py']).reload, expected)
                self.assertIs(parser.parse_args(['job.py', '--reload']).reload, True)


if __name__ == '__main__':
    unittest.main()
