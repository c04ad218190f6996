"""GET /metrics: the existing implementation's names, ours, the job's gauges; promtool and a real Prometheus.

Scrapes whose subject is what the app counts and renders run in process through `JobTestClient`;
real sockets stay for one scrape through the real server, the queue and the limiter across
connections, refusals of malformed HTTP and of connections, the server's own registry, and the
tools that scrape a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from racetrack_job_wrapper import __version__
from racetrack_job_wrapper.metrics import DURATION_BUCKETS, JobGaugeCollector, JobMetrics
from racetrack_job_wrapper.settings import JobSettings
from racetrack_job_wrapper.standalone import JobRunner
from racetrack_job_wrapper.testing import JobTestClient
from tests.support import EXAMPLES_DIR, JobClient, ProcessJob, ServerTestCase, free_port, raw_exchange, slow


class SleepJob:
    def perform(self, seconds: float = 0.0) -> float:
        time.sleep(seconds)
        return seconds


class FailingJob:
    def perform(self, kind: str = 'ok') -> str:
        if kind == 'bug':
            raise RuntimeError('bug in the job')
        return kind


class GaugeJob:
    def __init__(self, entries=None, error: Exception | None = None):
        self.entries = entries
        self.error = error

    def perform(self) -> int:
        return 1

    def metrics(self):
        if self.error is not None:
            raise self.error
        return self.entries


def samples(client: JobClient | JobTestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    response = client.get('/metrics')
    assert response.status == 200, response.body
    found = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met in time')
        time.sleep(0.01)


class BuiltinMetricsTest(ServerTestCase):
    # The one scrape through the real server: the commons_* counts are the server's own request
    # counting, which the other tests see in process.
    def test_names_of_the_existing_implementation_and_ours(self):
        client = self.serve(FailingJob, environ={'JOB_NAME': 'adder', 'JOB_VERSION': '1.2.3'})
        self.assertEqual(client.post('/api/v1/perform', {}).status, 200)
        self.assertEqual(client.get('/live').status, 200)
        before = time.time()
        found = samples(client)
        perform = (('endpoint', '/perform'),)
        self.assertEqual(found[('requests_started_total', ())], 1)
        self.assertEqual(found[('requests_done_total', ())], 1)
        self.assertEqual(found[('endpoint_requests_started_total', perform)], 1)
        self.assertEqual(found[('request_duration_count', perform)], 1)
        self.assertEqual(found[('request_duration_bucket', perform + (('le', '1000.0'),))], 1)
        self.assertEqual(found[('request_duration_bucket', perform + (('le', '+Inf'),))], 1)
        self.assertEqual(found[('request_internal_errors_total', perform)], 0)
        self.assertLess(before - found[('last_call_timestamp', ())], 5)
        # The scrape itself is started but not done while it is being answered.
        self.assertEqual(found[('commons_requests_started_total', ())], 3)
        self.assertEqual(found[('commons_requests_done_total', ())], 2)
        self.assertEqual(found[('commons_request_duration_count', ())], 2)
        self.assertEqual(found[('commons_internal_server_errors_total', ())], 0)
        self.assertEqual(found[('log_lines_dropped_total', ())], 0)
        self.assertEqual(found[('request_calls_running', ())], 0)
        self.assertEqual(found[('request_calls_queued', ())], 0)
        self.assertEqual(found[('request_queue_wait_seconds_count', ())], 0)
        self.assertEqual(found[('requests_rejected_total', (('reason', 'queue_full'),))], 0)
        info = (('job_name', 'adder'), ('job_version', '1.2.3'), ('wrapper_version', __version__))
        self.assertEqual(found[('racetrack_job_info', info)], 1)

    def test_duration_buckets_are_1ms_to_1000s(self):
        self.assertEqual(DURATION_BUCKETS[0], 0.001)
        self.assertEqual(DURATION_BUCKETS[-2:], (1000.0, float('inf')))
        self.assertEqual(len(DURATION_BUCKETS), 25)


class BuiltinMetricsInProcessTest(unittest.TestCase):
    def test_job_errors_are_counted(self):
        client = self.enterContext(JobTestClient(FailingJob, {}))
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            self.assertEqual(client.post('/api/v1/perform', {'kind': 'bug'}).status, 500)
        found = samples(client)
        self.assertEqual(found[('request_internal_errors_total', (('endpoint', '/perform'),))], 1)
        self.assertEqual(found[('commons_internal_server_errors_total', ())], 1)
        self.assertEqual(found[('requests_done_total', ())], 1)

    def test_openmetrics_when_the_scraper_asks_for_it(self):
        client = self.enterContext(JobTestClient(FailingJob, {}))
        plain = client.get('/metrics')
        self.assertEqual(plain.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8')
        openmetrics = client.get('/metrics', headers={'Accept': 'application/openmetrics-text; version=1.0.0'})
        self.assertEqual(openmetrics.status, 200)
        self.assertTrue(openmetrics.headers['content-type'].startswith('application/openmetrics-text; version=1.0.0'))
        self.assertTrue(openmetrics.body.endswith(b'# EOF\n'))
        self.assertIn(b'\n# TYPE racetrack_job info\n', openmetrics.body)

    def test_scrapes_and_probes_are_not_job_calls(self):
        client = self.enterContext(JobTestClient(FailingJob, {}))
        for _ in range(3):
            client.get('/metrics')
            client.get('/ready')
        self.assertEqual(samples(client)[('requests_started_total', ())], 0)

    def test_metric_objects_take_the_registry_as_a_parameter(self):
        first, second = CollectorRegistry(), CollectorRegistry()
        JobMetrics(first).requests_started.inc()
        JobMetrics(second)
        self.assertEqual(first.get_sample_value('requests_started_total'), 1)
        self.assertEqual(second.get_sample_value('requests_started_total'), 0)
        default = JobRunner.__init__.__defaults__
        self.assertIn(REGISTRY, default)


class QueueMetricsTest(ServerTestCase):
    def test_queue_wait_is_kept_apart_from_call_duration(self):
        running = self.start(SleepJob, {'jobtype_extra': {'max_concurrency': 1}})
        metrics = running.runner.registry
        first = threading.Thread(target=lambda: running.client().post('/api/v1/perform', {'seconds': 0.5}))
        first.start()
        wait_for(lambda: metrics.get_sample_value('request_calls_running') == 1)
        second = threading.Thread(target=lambda: running.client().post('/api/v1/perform', {'seconds': 0}))
        second.start()
        wait_for(lambda: metrics.get_sample_value('request_calls_queued') == 1)
        first.join(10)
        second.join(10)
        value = metrics.get_sample_value
        self.assertEqual(value('request_queue_wait_seconds_count'), 2)
        self.assertGreater(value('request_queue_wait_seconds_sum'), 0.3)  # the second call waited for the first
        # Durations are the 0.5 s call and a 0 s call: queue time would push the sum past 0.8.
        self.assertLess(value('request_duration_sum', {'endpoint': '/perform'}), 0.75)
        self.assertEqual(value('request_calls_queued'), 0)
        self.assertEqual(value('request_calls_running'), 0)


class RejectionMetricsTest(ServerTestCase):
    def test_requests_refused_before_job_code_count_by_status(self):
        running = self.start(
            SleepJob,
            {'jobtype_extra': {'max_concurrency': 1, 'max_concurrency_queue': 0}},
            max_body_bytes=100,
            max_header_fields=5,
        )
        port = running.port
        busy = threading.Thread(target=lambda: running.client().post('/api/v1/perform', {'seconds': 0.5}))
        busy.start()
        wait_for(lambda: running.runner.registry.get_sample_value('request_calls_running') == 1)
        self.assertEqual(running.client().post('/api/v1/perform', {}).status, 429)
        busy.join(10)
        self.assertIn(
            b' 413 ', raw_exchange(port, b'POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n')
        )
        many = b''.join(b'X-%d: 1\r\n' % i for i in range(6))
        self.assertIn(b' 431 ', raw_exchange(port, b'GET /live HTTP/1.1\r\nHost: x\r\n' + many + b'\r\n'))
        self.assertIn(b' 400 ', raw_exchange(port, b'GET /live\r\n\r\n'))
        self.assertIn(b' 400 ', raw_exchange(port, b'GET /live HTTP/1.1\r\n\r\n'))  # no Host
        found = samples(running.client())
        counts = {labels[0][1]: value for (name, labels), value in found.items() if name == 'requests_rejected_total'}
        self.assertEqual(
            counts,
            {
                'bad_request': 2,
                'unauthorized': 0,
                'timeout': 0,
                'body_too_large': 1,
                'uri_too_long': 0,
                'queue_full': 1,
                'deadline': 0,
                'headers_too_large': 1,
                'not_implemented': 0,
                'http_version': 0,
                'connection_limit': 0,
                'evicted': 0,
                'shutting_down': 0,
            },
        )
        # A refused request is not a job call, nor is a bad payload a rejection.
        self.assertEqual(found[('requests_started_total', ())], 1)

    def test_connections_over_the_cap(self):
        running = self.start(SleepJob, max_connections=1)
        holder = running.client()
        self.assertEqual(holder.get('/live').status, 200)  # keeps its connection open, idle
        self.assertIn(b' 200 ', raw_exchange(running.port, b'GET /live HTTP/1.1\r\nHost: x\r\n\r\n'))
        wait_for(lambda: running.runner.server.connection_count() == 0)  # the holder evicted, that one closed
        with socket.create_connection(('127.0.0.1', running.port)) as busy:  # a request in progress: never evicted
            busy.sendall(
                b'POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n'
            )
            self.assertEqual(busy.recv(100), b'HTTP/1.1 100 Continue\r\n\r\n')  # its head is read
            self.assertIn(b' 503 ', raw_exchange(running.port, b'GET /live HTTP/1.1\r\nHost: x\r\n\r\n'))
        value = running.runner.registry.get_sample_value
        self.assertEqual(value('requests_rejected_total', {'reason': 'evicted'}), 1)  # the idle holder
        self.assertEqual(value('requests_rejected_total', {'reason': 'connection_limit'}), 1)


class AccessControlMetricsTest(unittest.TestCase):
    def test_refusals_of_access_control_but_not_the_jobs_own_errors(self):
        client = self.enterContext(JobTestClient(FailingJob, {}, environ={'JOB_AUTH_TOKENS': 'tok-1'}))
        self.assertEqual(client.post('/api/v1/perform', {}).status, 401)
        self.assertEqual(client.post('/api/v1/perform', {}, headers={'X-Racetrack-Auth': 'wrong'}).status, 401)
        self.assertEqual(client.post('/api/v1/perform', {'x': 1}, headers={'X-Racetrack-Auth': 'tok-1'}).status, 400)
        self.assertEqual(client.get('/nowhere', headers={'X-Racetrack-Auth': 'tok-1'}).status, 404)
        value = client.registry.get_sample_value
        self.assertEqual(value('requests_rejected_total', {'reason': 'unauthorized'}), 2)
        self.assertEqual(value('requests_rejected_total', {'reason': 'bad_request'}), 0)


class JobGaugesTest(unittest.TestCase):
    def test_the_guides_metrics_are_gauges(self):
        entries = [
            {
                'name': 'job_is_crazy',
                'description': 'Whether your job is crazy or not',
                'value': 0.5,
                'labels': {'color': 'blue'},
            },
            {'name': 'job_is_crazy', 'value': 2, 'labels': {'color': 'red'}},
            {'name': 'job_plain', 'value': 7},
            {'name': 'job_unknown_yet', 'value': None},
        ]
        body = self.enterContext(JobTestClient(GaugeJob(entries), {})).get('/metrics').body.decode()
        self.assertIn(
            '# HELP job_is_crazy Whether your job is crazy or not\n# TYPE job_is_crazy gauge\n'
            'job_is_crazy{color="blue"} 0.5\njob_is_crazy{color="red"} 2.0\n',
            body,
        )
        self.assertIn('# TYPE job_plain gauge\njob_plain 7.0\n', body)
        self.assertNotIn('job_unknown_yet', body)

    def test_values_are_read_at_scrape_time(self):
        job = GaugeJob([{'name': 'job_level', 'value': 1}])
        client = self.enterContext(JobTestClient(job, {}))
        self.assertIn('job_level 1.0\n', client.get('/metrics').body.decode())
        job.entries = [{'name': 'job_level', 'value': 2}]
        self.assertIn('job_level 2.0\n', client.get('/metrics').body.decode())

    def test_bad_entries_are_logged_and_skipped(self):
        entries = [
            {'value': 1},
            {'name': 'job_no_value'},
            {'name': '1st_job', 'value': 1},
            {'name': 'job_text', 'value': 'high'},
            {'name': 'job_bad_label', 'value': 1, 'labels': {'bad-label': 'x'}},
            {'name': 'requests_started_total', 'value': 1},
            'job_not_a_dict',
            {'name': 'job_good', 'value': 3, 'labels': {'a': 'x'}},
            {'name': 'job_good', 'value': 4, 'labels': {'b': 'x'}},
            {'name': 'job_good', 'value': 5, 'labels': {'a': 'x'}},
        ]
        client = self.enterContext(JobTestClient(GaugeJob(entries), {}))
        with self.assertLogs('racetrack_job_wrapper.metrics', 'ERROR') as logs:
            response = client.get('/metrics')
        self.assertEqual(response.status, 200)
        body = response.body.decode()
        self.assertIn('# TYPE job_good gauge\njob_good{a="x"} 3.0\n', body)
        self.assertEqual([line for line in body.splitlines() if line.startswith('job_')], ['job_good{a="x"} 3.0'])
        self.assertIn('requests_started_total 0.0\n', body)
        messages = [record.getMessage() for record in logs.records]
        self.assertEqual(len(messages), 9)
        self.assertIn('metrics() entry #0 is skipped: "name" field is missing', messages[0])
        self.assertEqual(
            messages[1], 'metrics() entry #1 is skipped: "value" field is missing for metric \'job_no_value\''
        )
        self.assertIn("'1st_job' is not a valid Prometheus metric name", messages[2])
        self.assertIn("value of metric 'job_text' must be a number, got str 'high'", messages[3])
        self.assertIn("'bad-label' is not a valid label name for metric 'job_bad_label'", messages[4])
        self.assertIn("'requests_started_total' collides with a metric the server exports", messages[5])
        self.assertIn('expected a dict with "name" and "value", got str', messages[6])
        self.assertIn("metric 'job_good' has labels ['b'] here but ['a'] in an earlier entry", messages[7])
        self.assertIn("metric 'job_good' with labels {'a': 'x'} is listed twice", messages[8])

    def test_an_exception_in_metrics_leaves_the_rest_of_the_scrape(self):
        client = self.enterContext(JobTestClient(GaugeJob(error=ZeroDivisionError('division by zero')), {}))
        with self.assertLogs('racetrack_job_wrapper.metrics', 'ERROR') as logs:
            response = client.get('/metrics')
        self.assertEqual(response.status, 200)
        self.assertIn(b'requests_started_total 0.0\n', response.body)
        self.assertEqual(
            logs.records[0].getMessage(), 'metrics() of the job raised; its metrics are left out of this scrape'
        )
        self.assertIn('ZeroDivisionError: division by zero', logs.output[0])
        self.assertEqual(client.post('/api/v1/perform', {}).status, 200)

    def test_metrics_returning_something_else_than_a_list_is_logged(self):
        client = self.enterContext(JobTestClient(GaugeJob({'name': 'job_x', 'value': 1}), {}))
        with self.assertLogs('racetrack_job_wrapper.metrics', 'ERROR') as logs:
            self.assertEqual(client.get('/metrics').status, 200)
        self.assertEqual(logs.records[0].getMessage(), 'metrics() of the job must return a list of dicts, got dict')

    def test_registering_does_not_call_the_job(self):
        calls = []
        registry = CollectorRegistry(auto_describe=True)
        registry.register(JobGaugeCollector(lambda: calls.append(1) or []))
        self.assertEqual(calls, [])


class ServerRegistryTest(unittest.TestCase):
    # On a real server: the test hands JobRunner the registry the job counts on, which
    # JobTestClient (a registry of its own per client) cannot be given.
    def test_metrics_a_job_defines_on_the_servers_registry_appear(self):
        registry = CollectorRegistry()
        settings = JobSettings()

        class OwnCounterJob:
            def __init__(self):
                self.counter = Counter('job_own_things', 'Things counted by the job', registry=registry)

            def perform(self) -> int:
                self.counter.inc()
                return 1

        runner = JobRunner(OwnCounterJob, settings, registry=registry)
        runner.bind('127.0.0.1', 0)
        thread = threading.Thread(target=runner.run_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 30)
        self.addCleanup(runner.stop)
        self.assertTrue(runner.loaded.wait(30))
        client = JobClient(runner.server.server_address[1])
        self.addCleanup(client.close)
        client.post('/api/v1/perform', {})
        self.assertIn(b'\njob_own_things_total 1.0\n', client.get('/metrics').body)


# CI installs the tools, so there a missing tool fails the test instead of skipping it.
@unittest.skipUnless(
    os.environ.get('CI') or (shutil.which('promtool') and shutil.which('prometheus')),
    'needs the Debian package prometheus (installed by .ci/run)',
)
@slow
class PrometheusToolsTest(unittest.TestCase):
    """The guide's metrics example in a child process, on the default registry, checked by Prometheus' own tools."""

    @classmethod
    def setUpClass(cls):
        cls.job = ProcessJob([str(EXAMPLES_DIR / 'metrics' / 'job.py') + ':Job'], env={'JOB_NAME': 'guesser'})
        try:
            cls.job.wait_ready()
        except BaseException:
            cls.job.stop()
            raise
        cls.client = cls.job.client()
        for _ in range(3):
            assert cls.client.post('/api/v1/perform', {}).status == 200

    @classmethod
    def tearDownClass(cls):
        cls.job.stop()

    def test_promtool_accepts_the_exposition(self):
        body = self.client.get('/metrics').body
        self.assertIn(b'\njob_guesses_total 3.0\n', body)  # the job's own prometheus_client counter
        self.assertIn(b'\njob_is_crazy{color="blue"} ', body)
        self.assertIn(b'\nprocess_resident_memory_bytes ', body)  # the default registry's collectors
        result = subprocess.run(['promtool', 'check', 'metrics'], input=body, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout + result.stderr, b'')

    def test_a_real_prometheus_scrapes_and_answers_a_query(self):
        port = free_port()
        with tempfile.TemporaryDirectory() as directory:
            config = Path(directory) / 'prometheus.yml'
            config.write_text(
                'global:\n  scrape_interval: 1s\n'
                'scrape_configs:\n  - job_name: guesser\n'
                f'    static_configs:\n      - targets: ["127.0.0.1:{self.job.port}"]\n'
            )
            with open(Path(directory) / 'prometheus.log', 'wb') as log:
                server = subprocess.Popen(
                    [
                        'prometheus',
                        f'--config.file={config}',
                        f'--storage.tsdb.path={directory}/data',
                        f'--web.listen-address=127.0.0.1:{port}',
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                try:
                    result = self._query_until_found(port, 'requests_started_total{job="guesser"}', server)
                finally:
                    server.terminate()
                    try:
                        server.wait(30)
                    except subprocess.TimeoutExpired:
                        server.kill()
                        server.wait()
            if result is None:
                self.fail('Prometheus did not report the counter: ' + (Path(directory) / 'prometheus.log').read_text())
        self.assertEqual(len(result), 1)
        self.assertEqual(result[0]['metric']['__name__'], 'requests_started_total')
        self.assertEqual(result[0]['metric']['instance'], f'127.0.0.1:{self.job.port}')
        self.assertEqual(result[0]['value'][1], '3')

    def _query_until_found(self, port: int, query: str, server: subprocess.Popen, timeout: float = 60.0):
        url = f'http://127.0.0.1:{port}/api/v1/query?' + urllib.parse.urlencode({'query': query})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with opener.open(url, timeout=5) as response:
                    answer = json.loads(response.read())
                if answer['status'] == 'success' and answer['data']['result']:
                    return answer['data']['result']
            except OSError:
                pass
            time.sleep(0.25)
        return None


if __name__ == '__main__':
    unittest.main()
