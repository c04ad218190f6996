"""Chain calls: job A calls job B (a child process) through PUB_URL; identity headers travel, errors surface."""

from __future__ import annotations

import json
import os
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from racetrack_job_wrapper.call import build_request, call_job, call_job_async, call_job_coroutine
from racetrack_job_wrapper.loader import load_job_class
from racetrack_job_wrapper.settings import ObservabilitySettings
from tests.support import EXAMPLES_DIR, ProcessJob, ServerTestCase, free_port

CALLEE_JOB = """
import logging
import time

logger = logging.getLogger('callee')
SEEN = ('X-Racetrack-Auth', 'X-Request-Tracing-Id', 'X-Caller-Name', 'X-Recordkeeper-Predecessor-Id',
        'traceparent', 'tracestate')


class Job:
    def perform(self, mode: str = 'ok', seconds: float = 0) -> dict:
        logger.info('callee runs %s', mode)
        if mode == 'bad':
            raise ValueError('mode bad is refused')
        if mode == 'bug':
            raise RuntimeError('callee bug')
        time.sleep(seconds)
        headers = self.request_context.get().headers
        return {name: headers.get(name) for name in SEEN}
"""
TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'


class CallerJob:
    def perform(self, mode: str = 'ok', seconds: float = 0, timeout: float = 10) -> dict:
        return call_job(self, 'callee', payload={'mode': mode, 'seconds': seconds}, timeout=timeout)


class AsyncCallerJob:
    async def perform(self) -> dict:
        return await call_job_async(self, 'callee', payload={'mode': 'ok'}, version='1.0')


class PredecessorJob:
    def perform(self) -> dict:
        self.request_extra.get()['X-Recordkeeper-Predecessor-Id'] = 'set-by-job'
        return call_job(self, 'callee')


class ChainCallTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = tempfile.TemporaryDirectory()
        Path(cls.directory.name, 'callee.py').write_text(CALLEE_JOB)
        cls.callee = ProcessJob(
            ['callee.py:Job'],
            cwd=cls.directory.name,
            env={'LOG_STRUCTURED': 'true', 'LOG_CALLER_NAME': 'true', 'JOB_NAME': 'callee'},
        )
        try:
            cls.callee.wait_ready()
        except BaseException:
            cls.callee.stop()
            cls.directory.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.callee.stop()
        cls.directory.cleanup()

    def setUp(self):
        environ = {
            'PUB_URL': f'http://127.0.0.1:{self.callee.port}/pub',
            'AUTH_TOKEN': 'secret-token',
            'JOB_NAME': 'caller',
        }
        patcher = mock.patch.dict(os.environ, environ)
        patcher.start()
        self.addCleanup(patcher.stop)

    def callee_lines(self, tracing_id: str, count: int) -> list[dict]:
        """The callee's JSON log lines with a tracing id, waiting for `count` of them."""
        deadline = time.monotonic() + 10
        while True:
            lines = [json.loads(line) for line in self.callee.read_output().splitlines() if line.startswith('{')]
            found = [line for line in lines if line.get('tracing_id') == tracing_id]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def test_identity_headers_reach_the_callee_and_its_logs(self):
        client = self.serve(CallerJob)
        response = client.post(
            '/api/v1/perform',
            {},
            {
                'X-Request-Tracing-Id': 'chain-1',
                'X-Caller-Name': 'alice',
                'traceparent': TRACEPARENT,
                'tracestate': 'congo=t61',
                'X-Recordkeeper-Predecessor-Id': 'rk-1',
            },
        )
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(
            response.json(),
            {
                'X-Racetrack-Auth': 'secret-token',
                'X-Request-Tracing-Id': 'chain-1',
                'X-Caller-Name': 'alice',
                'X-Recordkeeper-Predecessor-Id': 'rk-1',
                'traceparent': TRACEPARENT,
                'tracestate': 'congo=t61',
            },
        )
        job_line, access_line = self.callee_lines('chain-1', 2)
        self.assertEqual(
            (job_line['logger'], job_line['msg'], job_line['caller_name']), ('callee', 'callee runs ok', 'alice')
        )
        self.assertEqual(access_line['logger'], 'racetrack_job_wrapper.access')
        self.assertTrue(access_line['msg'].startswith('POST /pub/job/callee/latest/api/v1/perform 200 '))
        self.assertEqual((access_line['caller_name'], access_line['traceparent']), ('alice', TRACEPARENT))

    def test_a_generated_tracing_id_is_forwarded(self):
        client = self.serve(CallerJob)
        response = client.post('/api/v1/perform', {})
        tracing_id = response.headers['x-request-tracing-id']
        self.assertEqual(response.json()['X-Request-Tracing-Id'], tracing_id)
        self.assertIsNone(response.json()['X-Caller-Name'])
        self.assertEqual(len(self.callee_lines(tracing_id, 2)), 2)

    def test_a_predecessor_id_set_by_the_job_wins(self):
        client = self.serve(PredecessorJob)
        response = client.post('/api/v1/perform', {}, {'X-Recordkeeper-Predecessor-Id': 'from-header'})
        self.assertEqual(response.json()['X-Recordkeeper-Predecessor-Id'], 'set-by-job')

    def test_the_callees_400_surfaces_in_the_callers_error(self):
        client = self.serve(CallerJob)
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            response = client.post('/api/v1/perform', {'mode': 'bad'})
        self.assertEqual(response.status, 500)
        self.assertEqual(
            response.json(),
            {
                'error': 'call to job "callee" version "latest" by job "caller" failed with '
                '400 Bad Request: mode bad is refused (ValueError)',
                'type': 'RuntimeError',
            },
        )

    def test_the_callees_500_surfaces_in_the_callers_error(self):
        client = self.serve(CallerJob)
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            response = client.post('/api/v1/perform', {'mode': 'bug'})
        self.assertEqual(
            response.json()['error'],
            'call to job "callee" version "latest" by job "caller" failed with '
            '500 Internal Server Error: callee bug (RuntimeError)',
        )

    def test_the_timeout_is_honoured(self):
        client = self.serve(CallerJob)
        started = time.monotonic()
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            response = client.post('/api/v1/perform', {'seconds': 2, 'timeout': 0.3})
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 1.5)
        self.assertEqual(
            response.json()['error'],
            'call to job "callee" version "latest" by job "caller" timed out after '
            f'0.3s (http://127.0.0.1:{self.callee.port}/pub/job/callee/latest/api/v1/perform)',
        )

    def test_async_call_from_an_async_job(self):
        self.assertIs(call_job_coroutine, call_job_async)
        client = self.serve(AsyncCallerJob)
        response = client.post('/api/v1/perform', {}, {'X-Request-Tracing-Id': 'async-chain'})
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(response.json()['X-Request-Tracing-Id'], 'async-chain')

    def test_the_examples_chain(self):
        adder = ProcessJob([str(EXAMPLES_DIR / 'chain' / 'adder.py') + ':Job'])
        self.addCleanup(adder.stop)
        adder.wait_ready()
        with mock.patch.dict(os.environ, {'PUB_URL': f'http://127.0.0.1:{adder.port}/pub'}):
            client = self.serve(load_job_class(str(EXAMPLES_DIR / 'chain' / 'averager.py'), 'Job'))
            self.assertEqual(client.post('/api/v1/perform', {'numbers': [1, 2, 6]}).json(), 3.0)


class CallErrorsTest(ServerTestCase):
    def test_without_pub_url(self):
        with mock.patch.dict(os.environ, {'PUB_URL': ''}), self.assertRaises(RuntimeError) as raised:
            call_job(object(), 'other')
        self.assertEqual(
            str(raised.exception),
            'cannot call job "other": the PUB_URL environment variable is not set (Racetrack sets '
            'it; locally, point it at a Pub, e.g. http://127.0.0.1:7000/pub)',
        )

    def test_unreachable_pub(self):
        port = free_port()
        with (
            mock.patch.dict(os.environ, {'PUB_URL': f'http://127.0.0.1:{port}/pub', 'JOB_NAME': ''}),
            self.assertRaises(RuntimeError) as raised,
        ):
            call_job(object(), 'other', version='2.0')
        self.assertTrue(
            str(raised.exception).startswith(
                f'call to job "other" version "2.0" failed: cannot reach http://127.0.0.1:{port}/pub/job/other/2.0'
                '/api/v1/perform: '
            ),
            str(raised.exception),
        )

    def test_bad_arguments(self):
        settings = ObservabilitySettings(pub_url='http://pub')
        for name, version, message in (
            ('', 'latest', 'job_name must be a non-empty name'),
            ('a/b', 'latest', "got 'a/b'"),
            ('a', 'x y', 'version must be'),
        ):
            with self.assertRaises(ValueError) as raised:
                build_request(object(), settings, name, '/api/v1/perform', None, version, 'POST')
            self.assertIn(message, str(raised.exception))
        with self.assertRaisesRegex(ValueError, 'payload must be a dict of parameters or None, got list'):
            build_request(object(), settings, 'a', '/api/v1/perform', [1], 'latest', 'POST')

    def test_request_shape(self):
        settings = ObservabilitySettings(pub_url='http://pub:7005/pub', auth_token='tok')
        post = build_request(object(), settings, 'adder', 'api/v1/perform', {'numbers': [1]}, '1.2', 'post')
        self.assertEqual(
            (post.full_url, post.get_method(), post.data),
            ('http://pub:7005/pub/job/adder/1.2/api/v1/perform', 'POST', b'{"numbers": [1]}'),
        )
        self.assertEqual(post.get_header('X-racetrack-auth'), 'tok')
        get = build_request(object(), settings, 'adder', '/api/v1/lookup', {'key': 'a b', 'n': [1, 2]}, 'latest', 'GET')
        self.assertEqual(
            (get.full_url, get.get_method(), get.data),
            ('http://pub:7005/pub/job/adder/latest/api/v1/lookup?key=a+b&n=1&n=2', 'GET', None),
        )


if __name__ == '__main__':
    unittest.main()
