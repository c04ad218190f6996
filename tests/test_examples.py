"""Every example under examples/, started the way its README says and called as its README shows.

The commands come from the READMEs themselves: each `$ python -m racetrack_job_wrapper ...`
line, with the variables before it and the directory of the `$ cd` line above it, is run as
a child process (on 127.0.0.1 and a free port instead of the default 0.0.0.0:7000), so a
README whose command stops working fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import EXAMPLES_DIR, REPO_DIR, ClientResponse, JobClient, ProcessJob, free_port, slow

# Folders of examples/ that other work owns; the index and README checks leave them out.
NOT_EXAMPLES = {'deploy', '__pycache__'}


@dataclass(frozen=True)
class ReadmeCommand:
    """One `python -m racetrack_job_wrapper` command of a README: its arguments, directory and variables."""

    args: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)


def readme_commands(name: str) -> list[ReadmeCommand]:
    """The `$ python -m racetrack_job_wrapper ...` lines of examples/<name>/README.md, in order."""
    cwd = REPO_DIR
    commands = []
    for line in (EXAMPLES_DIR / name / 'README.md').read_text().splitlines():
        if line.startswith('$ cd '):
            cwd = REPO_DIR / shlex.split(line[2:])[1]
        elif line.startswith('$ ') and 'python -m racetrack_job_wrapper' in line:
            words = shlex.split(line[2:])
            env = {}
            while '=' in words[0]:  # VAR=value before the command
                key, _, value = words.pop(0).partition('=')
                env[key] = value
            if words[-1] == '&':
                words.pop()
            if words[:3] != ['python', '-m', 'racetrack_job_wrapper']:
                raise AssertionError(f'unexpected command in examples/{name}/README.md: {line}')
            commands.append(ReadmeCommand(words[3:], cwd, env))
    if not commands:
        raise AssertionError(f'examples/{name}/README.md gives no python -m racetrack_job_wrapper command')
    return commands


class ProgramJob(ProcessJob):
    """A job served by a program of its own (`python main.py`), moved to 127.0.0.1 and a free port."""

    def __init__(self, program: str, cwd: Path):
        self.port = free_port()
        # Run the program as `python program` runs it (its directory importable, run as __main__),
        # with serve_job_class given this address instead of its default 0.0.0.0:7000.
        code = (
            'import runpy, sys\n'
            'from racetrack_job_wrapper import standalone\n'
            'serve = standalone.serve_job_class\n'
            f'standalone.serve_job_class = lambda job, **kw: serve(job, **{{**kw, "host": "127.0.0.1", '
            f'"port": {self.port}}})\n'
            f'sys.argv = [{program!r}]\n'
            f'sys.path.insert(0, {str(Path(program).parent)!r})\n'
            f'runpy.run_path({program!r}, run_name="__main__")\n'
        )
        env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get('PYTHONPATH')]))
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - open while the process runs, closed by stop()
        self.output = ''
        self._clients = []
        self.process = subprocess.Popen(
            [sys.executable, '-c', code], cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )


class ExampleTestCase(unittest.TestCase):
    """Starts examples as child processes; every one is stopped after the test."""

    def run_example(
        self,
        command: ReadmeCommand,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        ready: bool = True,
    ) -> ProcessJob:
        """Start a README command (in `cwd` instead of its own directory, with `env` over its variables)."""
        job = ProcessJob(command.args, cwd=cwd or command.cwd, env={**command.env, **(env or {})})
        self.addCleanup(job.stop)
        if ready:
            job.wait_ready()
        else:
            job.wait_listening()
        return job

    def copy_example(self, name: str) -> Path:
        """A copy of examples/<name> in a temporary directory, for examples whose commands write files."""
        directory = Path(tempfile.mkdtemp()) / name
        self.addCleanup(shutil.rmtree, directory.parent, True)
        shutil.copytree(EXAMPLES_DIR / name, directory, ignore=shutil.ignore_patterns('__pycache__', 'model.pkl'))
        return directory

    def wait_for_output(self, job: ProcessJob, text: str, timeout: float = 20.0) -> str:
        """The job's output once it contains `text`."""
        deadline = time.monotonic() + timeout
        while text not in job.read_output():
            if time.monotonic() > deadline:
                self.fail(f'{text!r} not in the output: {job.read_output()}')
            time.sleep(0.02)
        return job.read_output()

    def assert_answer(self, response: ClientResponse, status: int, body: Any) -> None:
        """Status and JSON body, with the body in the message when they differ."""
        self.assertEqual((response.status, response.json()), (status, body), response.body)


class IndexTest(unittest.TestCase):
    def test_every_example_has_a_readme_and_a_row_in_the_index(self):
        index = (EXAMPLES_DIR / 'README.md').read_text()
        linked = set(re.findall(r'\]\(([\w-]+)\)', index))
        folders = {path.name for path in EXAMPLES_DIR.iterdir() if path.is_dir()} - NOT_EXAMPLES
        self.assertEqual(folders - linked, set(), 'folders missing from examples/README.md')
        self.assertEqual(linked - folders - NOT_EXAMPLES, set(), 'rows of examples/README.md without a folder')
        for name in folders:
            readme = (EXAMPLES_DIR / name / 'README.md').read_text()
            for directory in re.findall(r'^\$ cd (\S+)$', readme, re.MULTILINE):
                self.assertEqual(directory, f'examples/{name}', f'examples/{name}/README.md')


class PrimeExampleTest(ExampleTestCase):
    def test_the_guides_prime_job(self):
        client = self.run_example(readme_commands('prime')[0]).client()
        self.assert_answer(client.post('/api/v1/perform', {'number': 7907}), 200, True)
        self.assert_answer(client.post('/api/v1/perform', {'number': 7908}), 200, False)
        self.assert_answer(client.get('/api/v1/parameters'), 200, [{'name': 'number', 'type': 'int'}])
        self.assert_answer(
            client.post('/api/v1/perform', {'number': 'seven'}),
            400,
            {'error': 'number: expected integer, got string', 'type': 'ValidationError'},
        )
        self.assert_answer(client.request('POST', '/api/v1/perform'), 200, True)  # the docs example

    def test_main_py_serves_the_job_with_serve_job_class(self):
        self.assertIn('$ python examples/prime/main.py\n', (EXAMPLES_DIR / 'prime' / 'README.md').read_text())
        job = ProgramJob('examples/prime/main.py', cwd=REPO_DIR)
        self.addCleanup(job.stop)
        job.wait_ready()
        self.assert_answer(job.client().post('/api/v1/perform', {'number': 7907}), 200, True)
        self.assertEqual(job.stop(), 0)


class SupersmartExampleTest(ExampleTestCase):
    def test_job_entrypoint_subclass_with_its_package_and_manifest(self):
        client = self.run_example(readme_commands('supersmart')[0]).client()
        self.assert_answer(client.post('/pub/job/supersmart/1.0.0/api/v1/perform', {'number': 7907}), 200, True)
        self.assert_answer(client.post('/api/v1/perform', {'number': 7909 * 3}), 200, False)
        health = client.get('/health').json()
        self.assertEqual((health['job_name'], health['job_version'], health['status']), ('supersmart', '1.0.0', 'pass'))
        schema = client.get('/openapi.json').json()['paths']['/api/v1/perform']['post']['requestBody']
        self.assertEqual(
            schema['content']['application/json']['schema']['properties']['number'],
            {'type': 'integer', 'description': 'The integer number to check.'},
        )
        # JobEntrypoint's empty defaults count as absent methods: no webview.
        self.assertEqual(client.get('/api/v1/webview/').status, 404)


class AuxiliaryExampleTest(ExampleTestCase):
    def test_v1_and_v2_endpoints(self):
        client = self.run_example(readme_commands('auxiliary')[0]).client()
        self.assert_answer(client.post('/api/v1/perform', {'x': 40, 'y': 2}), 200, 42)
        self.assert_answer(
            client.post('/api/v1/explain', {'x': 1, 'y': 3}), 200, {'x_importance': 0.25, 'y_importance': 0.75}
        )
        value = client.get('/api/v1/random?start=1.5&end=2').json()
        self.assertTrue(1.5 <= value <= 2, value)
        self.assert_answer(client.post('/api/v1/multiply/2.5', 4), 200, 10.0)
        self.assert_answer(client.request('POST', '/api/v1/multiply/2.5'), 200, 5.0)
        self.assert_answer(
            client.get('/api/v1/random?start=x&end=2'),
            400,
            {'error': 'start: expected number, got "x"', 'type': 'ValidationError'},
        )


class StaticExampleTest(ExampleTestCase):
    def test_files_and_a_directory(self):
        client = self.run_example(readme_commands('static')[0]).client()
        folder = EXAMPLES_DIR / 'static'
        expected = {
            '/api/v1/xrai': (folder / 'xrai.yaml', 'application/yaml; charset=utf-8'),
            '/api/v1/manifest': (folder / 'job.yaml', 'application/x-yaml'),
            '/api/v1/docs/readme': (folder / 'README.md', 'text/markdown; charset=utf-8'),
            '/api/v1/assets/sub/notes.txt': (folder / 'docs' / 'sub' / 'notes.txt', 'text/plain; charset=utf-8'),
            '/api/v1/assets/index.html': (folder / 'docs' / 'index.html', 'text/html; charset=utf-8'),
        }
        for path, (file, content_type) in expected.items():
            response = client.get(path)
            self.assertEqual(
                (response.status, response.headers['content-type'], response.body),
                (200, content_type, file.read_bytes()),
                path,
            )
        self.assertEqual(client.get('/api/v1/assets/').status, 404)


class FlaskWebviewExampleTest(ExampleTestCase):
    BASE_URL = '/pub/job/python-ui-flask/0.0.1/api/v1/webview'

    def test_page_post_and_static_folder(self):
        client = self.run_example(readme_commands('webview')[0]).client()
        home = client.get('/')
        self.assertEqual((home.status, home.headers['location']), (307, self.BASE_URL))
        page = client.get('/api/v1/webview/')
        self.assertEqual((page.status, page.headers['content-type']), (200, 'text/html; charset=utf-8'))
        self.assertIn(f'<link rel="stylesheet" href="{self.BASE_URL}/static/style.css">', page.body.decode())
        self.assert_answer(
            client.post('/api/v1/webview/postme', {'name': 'webview'}), 200, {'hello': {'name': 'webview'}}
        )
        style = client.get(self.BASE_URL + '/static/style.css')
        self.assertEqual(
            (style.status, style.body), (200, (EXAMPLES_DIR / 'webview' / 'static' / 'style.css').read_bytes())
        )


class FastAPIWebviewExampleTest(ExampleTestCase):
    PREFIX = '/pub/job/python-ui-fastapi/0.0.1'

    def test_page_links_follow_the_mount_the_request_came_through(self):
        client = self.run_example(readme_commands('webview-fastapi')[0]).client()
        home = client.get('/')
        self.assertEqual((home.status, home.headers['location']), (307, self.PREFIX + '/api/v1/webview'))
        for root_path in (self.PREFIX + '/api/v1/webview', '/api/v1/webview'):
            page = client.get(root_path + '/')
            self.assertEqual((page.status, page.headers['content-type']), (200, 'text/html; charset=utf-8'))
            self.assertIn(f'<p id="base">{root_path}</p>', page.body.decode())
            self.assertIn(f'href="{root_path}/static/style.css"', page.body.decode())

    def test_json_endpoint_static_folder_and_no_fastapi_docs(self):
        client = self.run_example(readme_commands('webview-fastapi')[0]).client()
        self.assert_answer(
            client.post('/api/v1/webview/greet', {'name': 'Ann', 'times': 2}),
            200,
            {'greeting': 'Hello, Ann! Hello, Ann!'},
        )
        refused = client.post('/api/v1/webview/greet', {'times': 2})
        self.assertEqual((refused.status, refused.json()['detail'][0]['loc']), (422, ['body', 'name']))
        style = client.get('/api/v1/webview/static/style.css')
        self.assertEqual(
            (style.status, style.body), (200, (EXAMPLES_DIR / 'webview-fastapi' / 'static' / 'style.css').read_bytes())
        )
        self.assertEqual(client.get('/api/v1/webview/docs').status, 404)


class MetricsExampleTest(ExampleTestCase):
    def test_the_jobs_gauges_and_its_own_counter(self):
        client = self.run_example(readme_commands('metrics')[0]).client()
        for _ in range(2):
            value = client.post('/api/v1/perform').json()
            self.assertTrue(0 <= value < 1, value)
        text = client.get('/metrics').body.decode()
        self.assertIn('\njob_guesses_total 2.0\n', text)
        self.assertIn('\n# HELP job_is_crazy Whether your job is crazy or not\n# TYPE job_is_crazy gauge\n', text)
        self.assertRegex(text, r'\njob_is_crazy\{color="blue"\} [0-9.e+-]+\n')
        self.assertIn('\nendpoint_requests_started_total{endpoint="/perform"} 2.0\n', text)


class EnvSecretExampleTest(ExampleTestCase):
    def test_without_the_secret_file_with_it_and_with_the_environment_over_runtime_env(self):
        directory = self.copy_example('env-secret')  # the README's `cp` writes a file
        plain, with_file, from_environment = readme_commands('env-secret')
        job = self.run_example(plain, cwd=directory)
        self.assert_answer(
            job.client().post('/api/v1/perform'),
            200,
            {'debug': True, 'model_zoo': 'zoo', 'api_token_configured': False},
        )
        self.assertIn("copy the template '.env.runtime.dist' to '.env.runtime'", job.read_output())
        job.stop()

        shutil.copy(directory / '.env.runtime.dist', directory / '.env.runtime')
        job = self.run_example(with_file, cwd=directory)
        self.assert_answer(
            job.client().post('/api/v1/perform'), 200, {'debug': True, 'model_zoo': 'zoo', 'api_token_configured': True}
        )
        self.assertEqual(job.client().get('/health').json()['job_name'], 'python-env-secret')
        job.stop()

        self.assertEqual(from_environment.env, {'DJANGO_DEBUG': 'false'})
        job = self.run_example(from_environment, cwd=directory)
        self.assert_answer(
            job.client().post('/api/v1/perform'),
            200,
            {'debug': False, 'model_zoo': 'zoo', 'api_token_configured': True},
        )


class LoggingExampleTest(ExampleTestCase):
    HEADERS = {'X-Caller-Name': 'alice', 'X-Request-Tracing-Id': 'trace-42'}

    def test_text_lines_carry_the_tracing_id_and_caller_name(self):
        job = self.run_example(readme_commands('logging')[0])
        self.assert_answer(job.client().post('/api/v1/perform', {'name': 'Bob'}, self.HEADERS), 200, 'Hello, Bob!')
        self.wait_for_output(job, ' INFO  job: greeting Bob tracing_id=trace-42 caller_name=alice\n')

    def test_structured_lines(self):
        command = readme_commands('logging')[1]
        self.assertEqual(command.env, {'LOG_STRUCTURED': 'true'})
        job = self.run_example(command)
        client = job.client()
        self.assert_answer(client.post('/api/v1/perform', {'name': 'Bob'}, self.HEADERS), 200, 'Hello, Bob!')
        self.assert_answer(
            client.post('/api/v1/perform', {'name': ' '}, {**self.HEADERS, 'X-Request-Tracing-Id': 'trace-43'}),
            400,
            {'error': 'name must not be empty', 'type': 'ValueError'},
        )
        self.wait_for_output(job, '"msg": "POST /api/v1/perform 400 ')
        records = [json.loads(line) for line in job.read_output().splitlines() if line.startswith('{')]
        job_records = [
            {key: value for key, value in r.items() if key != 'time'} for r in records if r['logger'] == 'job'
        ]
        self.assertEqual(
            job_records,
            [
                {
                    'lvl': 'INFO',
                    'msg': 'greeting Bob',
                    'logger': 'job',
                    'name_length': 3,
                    'tracing_id': 'trace-42',
                    'caller_name': 'alice',
                },
                {
                    'lvl': 'WARNING',
                    'msg': 'refusing an empty name',
                    'logger': 'job',
                    'tracing_id': 'trace-43',
                    'caller_name': 'alice',
                },
            ],
        )


class ConcurrencyExampleTest(ExampleTestCase):
    def test_one_call_at_a_time_the_next_one_waits(self):
        job = self.run_example(readme_commands('concurrency')[0])
        probe = job.client()

        def wait_for_gauge(name: str, value: float) -> None:
            deadline = time.monotonic() + 20
            while True:
                found = re.search(rf'^{name} (\S+)$', probe.get('/metrics').body.decode(), re.MULTILINE)
                if float(found.group(1)) == value:
                    return
                self.assertLess(time.monotonic(), deadline, f'{name} never reached {value}')
                time.sleep(0.02)

        answers: dict[str, ClientResponse] = {}

        def call(text: str, seconds: float) -> None:
            client = JobClient(job.port)
            try:
                answers[text] = client.post('/api/v1/perform', {'text': text, 'seconds': seconds})
            finally:
                client.close()

        # The first call thinks for the job's longest time, 5 s, so the second one surely finds it running.
        first = threading.Thread(target=call, args=('first', 5.0))
        first.start()
        wait_for_gauge('request_calls_running', 1.0)
        second = threading.Thread(target=call, args=('second', 0.0))
        second.start()
        wait_for_gauge('request_calls_queued', 1.0)
        first.join(30)
        second.join(30)
        self.assertEqual(
            {text: (r.status, r.json()) for text, r in answers.items()},
            {'first': (200, 'FIRST'), 'second': (200, 'SECOND')},
        )
        wait_for_gauge('request_calls_queued', 0.0)


class ChainExampleTest(ExampleTestCase):
    def test_the_averager_calls_the_adder_with_the_tracing_id_and_caller(self):
        adder_command, averager_command = readme_commands('chain')
        adder = self.run_example(adder_command)
        self.assertEqual(averager_command.env['PUB_URL'], 'http://127.0.0.1:7001/pub')
        averager = self.run_example(averager_command, env={'PUB_URL': f'http://127.0.0.1:{adder.port}/pub'})
        client = averager.client()
        headers = {'X-Caller-Name': 'alice', 'X-Request-Tracing-Id': 'chain-1'}
        self.assert_answer(client.post('/api/v1/perform', {'numbers': [1, 2, 6]}, headers), 200, 3.0)
        self.assert_answer(
            client.post('/api/v1/perform', {'numbers': []}),
            400,
            {'error': 'numbers must not be empty', 'type': 'ValueError'},
        )
        self.wait_for_output(averager, 'averager: the adder says 9 tracing_id=chain-1 caller_name=alice\n')
        self.wait_for_output(adder, 'adder: adding 3 numbers tracing_id=chain-1 caller_name=alice\n')


class AsyncExampleTest(ExampleTestCase):
    def test_coroutines_answer_calls_at_once(self):
        job = self.run_example(readme_commands('async')[0])
        client = job.client()
        self.assert_answer(
            client.post('/api/v1/perform', {'items': ['apples', 'pears', 'plums', 'figs']}),
            200,
            {'apples': 12, 'pears': 0, 'plums': 7, 'figs': 0},
        )
        self.assert_answer(client.post('/api/v1/restock', {'item': 'pears'}), 200, 'pears ordered')
        answers: list[ClientResponse] = []

        def call() -> None:
            other = JobClient(job.port)
            try:
                answers.append(other.post('/api/v1/perform', {'items': ['plums']}))
            finally:
                other.close()

        threads = [threading.Thread(target=call) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        self.assertEqual([(r.status, r.json()) for r in answers], [(200, {'plums': 7})] * 5)


class SlowLoadingExampleTest(ExampleTestCase):
    def test_while_loading_live_but_not_ready(self):
        # Ten minutes of loading: the test looks at the probes long before it ends, then stops the job.
        job = self.run_example(readme_commands('slow-loading')[0], env={'MODEL_LOAD_SECONDS': '600'}, ready=False)
        client = job.client()
        self.assert_answer(client.get('/live'), 200, {'live': True, 'deployment_timestamp': None})
        self.assert_answer(client.get('/ready'), 500, {'ready': False})
        health = client.get('/health')
        self.assertEqual((health.status, health.json()['status'], health.json()['error']), (500, 'fail', None))
        refused = client.post('/api/v1/perform', {'text': 'good'})
        self.assertEqual(
            (refused.status, refused.headers['retry-after'], refused.json()['type']), (503, '1', 'ServiceUnavailable')
        )
        self.assertEqual(job.stop(), 0)  # SIGTERM while loading

    def test_ready_once_loaded(self):
        job = self.run_example(readme_commands('slow-loading')[0], env={'MODEL_LOAD_SECONDS': '0.5'})
        client = job.client()
        self.assertEqual(client.get('/health').json()['status'], 'pass')
        self.assert_answer(client.post('/api/v1/perform', {'text': 'a great day after a bad night'}), 200, 1)
        self.wait_for_output(job, 'job: model loaded')  # log lines are written by a thread of their own


class NumpyModelExampleTest(ExampleTestCase):
    def test_without_the_pickle_the_job_is_not_live_and_says_why(self):
        directory = self.copy_example('numpy-model')
        job = self.run_example(readme_commands('numpy-model')[0], cwd=directory, ready=False)
        client = job.client()
        deadline = time.monotonic() + 20
        while (live := client.get('/live')).status == 200:  # until the load has failed
            self.assertLess(time.monotonic(), deadline, 'the load did not fail')
            time.sleep(0.02)
        self.assertEqual(live.status, 500)
        message = f'model.pkl not found in {directory.resolve()}: run `python train.py` there first'
        self.assertRegex(
            live.json()['error'],
            rf'^FileNotFoundError: {re.escape(message)}, cause=FileNotFoundError \(at job\.py:\d+\)$',
        )

    def test_train_then_serve_the_pickled_model(self):
        directory = self.copy_example('numpy-model')
        self.assertIn('$ python train.py\n', (EXAMPLES_DIR / 'numpy-model' / 'README.md').read_text())
        trained = subprocess.run(
            [sys.executable, 'train.py'], cwd=directory, capture_output=True, text=True, timeout=60, check=True
        )
        self.assertTrue(trained.stdout.startswith('model.pkl written: coef='), trained.stdout)
        client = self.run_example(readme_commands('numpy-model')[0], cwd=directory).client()
        houses = [[100, 3], [55.5, 2]]
        response = client.post('/api/v1/perform', {'houses': houses})
        self.assertEqual(response.status, 200, response.body)
        # The training data is 3 * area + 10 * rooms + 50 with a little noise.
        for (area, rooms), price in zip(houses, response.json(), strict=True):
            self.assertAlmostEqual(price, 3 * area + 10 * rooms + 50, delta=1.0)
        self.assert_answer(
            client.post('/api/v1/perform', {'houses': [[100, 3, 1]]}),
            400,
            {'error': 'houses[0]: expected an array of 2 items, got 3', 'type': 'ValidationError'},
        )
        self.assert_answer(client.post('/api/v1/perform', {'houses': []}), 200, [])


@slow
class WorkersExampleTest(ExampleTestCase):
    def test_two_worker_processes_answer(self):
        command = readme_commands('workers')[0]
        self.assertEqual(command.args[-2:], ['--workers', '2'])
        job = self.run_example(command)
        pids: set[int] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2:
            self.assertLess(time.monotonic(), deadline, f'only {pids} answered')
            client = JobClient(job.port)  # a new connection each time: either worker may accept it
            try:
                response = client.post('/api/v1/perform', {'n': 100})
            finally:
                client.close()
            if response.status == 503:  # that worker is still loading the job
                time.sleep(0.02)
                continue
            self.assertEqual((response.status, response.json()['primes']), (200, 25), response.body)
            pids.add(response.json()['pid'])
        self.assertNotIn(job.process.pid, pids)


if __name__ == '__main__':
    unittest.main()


class StreamingExampleTest(ExampleTestCase):
    def test_tokens_as_json_lines_and_as_events(self):
        job = self.run_example(readme_commands('streaming')[0])
        body = json.dumps({'prompt': 'the quick brown fox', 'tokens': 4})
        whole = job.client().request('POST', '/api/v1/perform', body)
        self.assertEqual(whole.json(), ['the', 'quick', 'brown', 'fox'])
        response = job.client().request('POST', '/api/v1/perform', body, {'Accept': 'application/x-ndjson'})
        self.assertEqual(response.headers['content-type'], 'application/x-ndjson')
        self.assertEqual(response.body, b'"the"\n"quick"\n"brown"\n"fox"\n')
        events = job.client().request('POST', '/api/v1/perform', body, {'Accept': 'text/event-stream'})
        self.assertEqual(events.body, b'data: "the"\n\ndata: "quick"\n\ndata: "brown"\n\ndata: "fox"\n\n')
        page = job.client().get('/api/v1/page')
        self.assertEqual(page.status, 200)
        self.assertIn(b"'Accept': 'text/event-stream'", page.body)


class DeadlinesExampleTest(ExampleTestCase):
    def test_a_sync_and_an_async_job_stop_at_their_deadline(self):
        job = self.run_example(readme_commands('deadlines')[0])
        client = job.client()
        self.assert_answer(client.post('/api/v1/perform', {'steps': 2, 'step_seconds': 0.5}), 200, 2)
        self.assert_answer(
            client.post('/api/v1/perform', {'steps': 10, 'step_seconds': 0.5}),
            504,
            {'error': '/perform did not finish before its deadline', 'type': 'Timeout'},
        )
        self.assert_answer(
            client.post('/api/v1/slow_async', {'seconds': 5}),
            504,
            {'error': '/slow_async did not finish before its deadline', 'type': 'Timeout'},
        )
        self.wait_for_output(job, 'slow_async stopped')
        budget = client.post('/api/v1/budget', {}, {'X-Request-Timeout': '0.5'}).json()
        self.assertGreater(budget, 0)
        self.assertLessEqual(budget, 0.5)


class BatchingExampleTest(ExampleTestCase):
    def test_concurrent_calls_share_batches_and_an_empty_text_fails_alone(self):
        job = self.run_example(readme_commands('batching')[0])
        self.assert_answer(job.client().post('/api/v1/perform', {'text': 'a fine day for a batch'}), 200, 0.3132)
        texts = ['', *(f'call {i}' for i in range(11))]
        clients = [job.client() for _ in texts]
        start = threading.Barrier(len(texts))

        def call(index: int) -> ClientResponse:
            start.wait()
            return clients[index].post('/api/v1/perform', {'text': texts[index]})

        with ThreadPoolExecutor(len(texts)) as pool:
            results = list(pool.map(call, range(len(texts))))
        self.assert_answer(results[0], 400, {'error': 'text is empty', 'type': 'ValueError'})
        self.assertEqual({result.status for result in results[1:]}, {200})
        metrics = job.client().get('/metrics').body.decode()
        samples = dict(line.split(' ', 1) for line in metrics.splitlines() if line.startswith('batch_size_'))
        self.assertEqual(float(samples['batch_size_sum']), 1 + len(texts))
        self.assertLess(float(samples['batch_size_count']), 1 + len(texts), 'no two calls shared a batch')


class AsyncCallsExampleTest(ExampleTestCase):
    def test_accepted_at_once_polled_refused_and_cancelled(self):
        directory = self.copy_example('async-calls')  # the calls are stored under the working directory
        job = self.run_example(readme_commands('async-calls')[0], cwd=directory)
        client = job.client()
        prefer = {'Prefer': 'respond-async'}
        accepted = client.post('/api/v1/perform', {'pages': 3, 'seconds_per_page': 0.2}, prefer)
        self.assertEqual((accepted.status, accepted.json()['status']), (202, 'queued'))
        location = accepted.headers['location']
        self.assertEqual(location, f'/api/v1/calls/{accepted.json()["id"]}')
        deadline = time.monotonic() + 20
        while (state := client.get(location).json())['status'] != 'succeeded':
            self.assertLess(time.monotonic(), deadline, state)
            time.sleep(0.05)
        self.assertEqual(state['result'], {'pages': 3, 'words': 750})
        self.assertEqual(state['progress'], {'fraction': 1.0, 'message': 'page 3 of 3'})
        self.assert_answer(
            client.post('/api/v1/perform', {'pages': 'many'}, prefer),
            400,
            {'error': 'pages: expected integer, got string', 'type': 'ValidationError'},
        )
        keyed = {**prefer, 'Idempotency-Key': 'report-42'}
        first = client.post('/api/v1/perform', {'pages': 10}, keyed)
        self.assertEqual(client.post('/api/v1/perform', {'pages': 10}, keyed).json()['id'], first.json()['id'])
        self.assertEqual(client.post('/api/v1/perform', {'pages': 2}, keyed).json()['type'], 'IdempotencyKeyReused')
        self.assertIn(client.request('DELETE', first.headers['location']).status, (200, 202))
        deadline = time.monotonic() + 20
        while (state := client.get(first.headers['location']).json())['status'] != 'cancelled':
            self.assertLess(time.monotonic(), deadline, state)
            time.sleep(0.05)
        self.assertTrue((directory / '.racetrack-calls' / 'calls.sqlite3').exists())
