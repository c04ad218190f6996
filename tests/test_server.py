"""The core job server over real sockets: perform, parameters, probes, prefixes, errors, context, loading."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import socket
import threading
import time
import unittest
from typing import Optional
from unittest import mock

from racetrack_job_wrapper import standalone
from tests.support import ServerTestCase, raw_exchange


class AddJob:
    def perform(self, numbers: list[float], radix: int = 10, *, label: Optional[str] = None) -> float:
        """Sum numbers."""
        if radix < 0:
            raise ValueError('radix must not be negative')
        return sum(numbers)


class Color(enum.Enum):
    RED = 'red'


@dataclasses.dataclass
class Point:
    x: int
    when: datetime.date


class Unserializable:
    pass


class KitchenSinkJob:
    def perform(self, kind: str = 'all'):
        if kind == 'object':
            return Unserializable()
        if kind == 'nan':
            return float('nan')
        if kind == 'type-error':
            return len(5)  # a bug inside the job: a 500, not a 400
        if kind == 'crash':
            raise RuntimeError('boom')
        return {
            'point': Point(1, datetime.date(2024, 1, 2)),
            'moment': datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            'amount': decimal.Decimal('1.5'),
            'color': Color.RED,
            'tags': {'b'},
            'pair': (1, 2),
            'custom': Custom(),
            'model': ModelLike(),
        }


class Custom:
    def __to_json__(self):
        return {'custom': True}


class ModelLike:
    def model_dump(self, mode: str = 'python'):
        return {'mode': mode}


class AsyncJob:
    async def perform(self, delay: float = 0.0) -> dict:
        await asyncio.sleep(delay)
        request = self.request_context.get()
        return {
            'caller': request.headers.get('x-caller'),
            'method': request.method,
            'path': request.path,
            'query': request.query,
            'extra': self.request_extra.get(),
        }


class ContextJob:
    def perform(self) -> dict:
        request = self.request_context.get()
        self.request_extra.get()['seen'] = True
        return {
            'caller': request.headers.get('X-CALLER'),
            'path': request.path,
            'query': request.query,
            'extra': self.request_extra.get(),
        }


class PerformTest(ServerTestCase):
    def test_perform_returns_json_result(self):
        client = self.serve(AddJob)
        response = client.post('/api/v1/perform', {'numbers': [1, 2.5]})
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers['content-type'], 'application/json')
        self.assertEqual(response.json(), 3.5)

    def test_empty_body_means_no_arguments(self):
        client = self.serve(KitchenSinkJob())
        response = client.request('POST', '/api/v1/perform', body=b'')
        self.assertEqual(response.status, 200)
        self.assertEqual(response.json()['color'], 'red')

    def test_results_are_made_serializable(self):
        client = self.serve(KitchenSinkJob())
        self.assertEqual(
            client.post('/api/v1/perform', {}).json(),
            {
                'point': {'x': 1, 'when': '2024-01-02'},
                'moment': '2024-01-02T03:04:05+00:00',
                'amount': 1.5,
                'color': 'red',
                'tags': ['b'],
                'pair': [1, 2],
                'custom': {'custom': True},
                'model': {'mode': 'json'},
            },
        )

    def test_unserializable_result_is_500_naming_the_type(self):
        client = self.serve(KitchenSinkJob())
        response = client.post('/api/v1/perform', {'kind': 'object'})
        self.assertEqual(response.status, 500)
        self.assertEqual(response.json()['type'], 'SerializationError')
        self.assertIn('tests.test_server.Unserializable', response.json()['error'])
        response = client.post('/api/v1/perform', {'kind': 'nan'})
        self.assertEqual(response.status, 500)
        self.assertIn('nan', response.json()['error'])

    def test_async_perform_is_awaited_with_request_context(self):
        client = self.serve(AsyncJob())
        response = client.request(
            'POST', '/pub/job/x/1/api/v1/perform?a=1', json_body={'delay': 0.01}, headers={'X-Caller': 'alice'}
        )
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.json(),
            {'caller': 'alice', 'method': 'POST', 'path': '/api/v1/perform', 'query': 'a=1', 'extra': {}},
        )

    def test_request_context_headers_are_case_insensitive_and_extra_is_fresh(self):
        client = self.serve(ContextJob())
        for _ in range(2):
            response = client.request('POST', '/api/v1/perform?x=y', body=b'{}', headers={'x-caller': 'bob'})
            self.assertEqual(
                response.json(), {'caller': 'bob', 'path': '/api/v1/perform', 'query': 'x=y', 'extra': {'seen': True}}
            )

    def test_parameters_in_signature_order(self):
        client = self.serve(AddJob)
        response = client.get('/api/v1/parameters')
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.json(),
            [
                {'name': 'numbers', 'type': 'list[float]'},
                {'name': 'radix', 'default_value': 10, 'type': 'int'},
                {'name': 'label', 'default_value': None, 'type': 'Optional[str]'},
            ],
        )


class ErrorsTest(ServerTestCase):
    def setUp(self):
        self.client = self.serve(AddJob)

    def assert_error(self, response, status, error_type, fragment):
        self.assertEqual(response.status, status, response.body)
        body = response.json()
        self.assertEqual(set(body), {'error', 'type'})
        self.assertEqual(body['type'], error_type)
        self.assertIn(fragment, body['error'])

    def test_value_error_from_job_is_400(self):
        response = self.client.post('/api/v1/perform', {'numbers': [1], 'radix': -1})
        self.assert_error(response, 400, 'ValueError', 'radix must not be negative')

    def test_missing_parameter_is_400_naming_it(self):
        self.assert_error(self.client.post('/api/v1/perform', {}), 400, 'InvalidPayload', "'numbers'")

    def test_unexpected_parameter_is_400_naming_it(self):
        response = self.client.post('/api/v1/perform', {'numbers': [1], 'colour': 'red'})
        self.assert_error(response, 400, 'InvalidPayload', "unexpected parameter 'colour'")

    def test_malformed_json_is_400(self):
        response = self.client.request('POST', '/api/v1/perform', body=b'{"numbers": [1,')
        self.assert_error(response, 400, 'InvalidJSON', 'not valid JSON')

    def test_array_body_is_400(self):
        response = self.client.request('POST', '/api/v1/perform', body=b'[1, 2]')
        self.assert_error(response, 400, 'InvalidPayload', 'got an array')

    def test_wrong_encoding_is_400(self):
        response = self.client.request('POST', '/api/v1/perform', body='{"numbers": "é"}'.encode('latin-1'))
        self.assert_error(response, 400, 'InvalidJSON', 'UTF-8')

    def test_unknown_path_is_404(self):
        self.assert_error(self.client.get('/api/v1/nothing'), 404, 'NotFound', '/api/v1/nothing')

    def test_wrong_method_is_405_with_allow(self):
        response = self.client.get('/api/v1/perform')
        self.assert_error(response, 405, 'MethodNotAllowed', 'GET')
        self.assertEqual(response.headers['allow'], 'OPTIONS, POST')

    def test_server_keeps_serving_on_one_connection_after_every_error(self):
        for payload in (b'{', b'[]', b'{"numbers": [1], "radix": -1}', b'{"x": 1}'):
            self.assertEqual(self.client.request('POST', '/api/v1/perform', body=payload).status, 400)
        self.assertEqual(self.client.post('/api/v1/perform', {'numbers': [2, 3]}).json(), 5)

    def test_bug_inside_job_is_500_and_server_keeps_serving(self):
        client = self.serve(KitchenSinkJob())
        with self.assertLogs('racetrack_job_wrapper', 'ERROR') as logs:
            response = client.post('/api/v1/perform', {'kind': 'type-error'})
        self.assert_error(response, 500, 'TypeError', 'len()')
        self.assertIn('Traceback', '\n'.join(logs.output))
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            self.assert_error(client.post('/api/v1/perform', {'kind': 'crash'}), 500, 'RuntimeError', 'boom')
        self.assertEqual(client.post('/api/v1/perform', {}).status, 200)

    def test_error_responses_leave_keep_alive_connection_usable(self):
        # Two requests in one write: the first one's 404 must not leave its body unread.
        body = b'{"numbers": [1]}'
        first = b'POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s' % (len(body), body)
        second = b'POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' % (
            len(body),
            body,
        )
        reply = raw_exchange(self.client.port, first + second)
        self.assertEqual(reply.count(b'HTTP/1.1 '), 2)
        self.assertTrue(reply.startswith(b'HTTP/1.1 404 '))
        self.assertIn(b'HTTP/1.1 200 OK', reply)
        self.assertTrue(reply.endswith(b'\r\n\r\n1'))  # sum([1]): an int given for list[float] stays one


class ProbesTest(ServerTestCase):
    def test_probes_and_health_when_ready(self):
        environ = {'JOB_NAME': 'adder', 'JOB_VERSION': '1.2.3'}
        client = self.serve(AddJob, environ=environ)
        self.assertEqual(client.get('/live').status, 200)
        self.assertEqual(client.get('/live').json()['live'], True)
        self.assertEqual(client.get('/ready').json(), {'ready': True})
        health = client.get('/health')
        self.assertEqual(health.status, 200)
        self.assertEqual(health.json()['job_name'], 'adder')
        self.assertEqual(health.json()['job_version'], '1.2.3')
        self.assertEqual(health.json()['status'], 'pass')
        self.assertEqual(
            set(health.json()),
            {
                'service',
                'job_name',
                'live',
                'ready',
                'status',
                'error',
                'job_version',
                'git_version',
                'deployed_by_racetrack_version',
                'deployment_timestamp',
                'job_type_version',
            },
        )

    def test_every_route_answers_under_both_prefixes(self):
        client = self.serve(AddJob)
        for prefix in ('', '/pub/job/anything/0.1', '/pub/fatman/other/latest'):
            self.assertEqual(client.get(prefix + '/ready').status, 200, prefix)
            self.assertEqual(client.post(prefix + '/api/v1/perform', {'numbers': [1]}).json(), 1, prefix)

    def test_root_redirects_to_docs_under_the_job_prefix(self):
        client = self.serve(AddJob, manifest={'name': 'adder', 'version': '2.0.0'})
        for path in ('/', '/pub/job/adder/2.0.0/'):
            response = client.get(path)
            self.assertEqual(response.status, 307, path)
            self.assertEqual(response.headers['location'], '/pub/job/adder/2.0.0/docs')
        # Without its slash, the prefix first gains it, as in the existing implementation.
        response = client.get('/pub/job/adder/2.0.0')
        self.assertEqual((response.status, response.headers['location']), (307, '/pub/job/adder/2.0.0/'))


class LoadingTest(ServerTestCase):
    def test_slow_loading_job_answers_probes_then_serves(self):
        release = threading.Event()

        class SlowJob:
            def __init__(self):
                release.wait(10)

            def perform(self):
                return 'ok'

        running = self.start(SlowJob, wait=False)
        client = running.client()
        self.assertEqual(client.get('/live').status, 200)
        self.assertEqual(client.get('/ready').status, 500)
        self.assertEqual(client.get('/ready').json(), {'ready': False})
        response = client.post('/api/v1/perform', {})
        self.assertEqual(response.status, 503)
        self.assertEqual(response.headers['retry-after'], '1')
        self.assertEqual(response.json()['type'], 'ServiceUnavailable')
        release.set()
        self.assertTrue(running.runner.loaded.wait(10))
        self.assertEqual(client.get('/ready').status, 200)
        self.assertEqual(client.post('/api/v1/perform', {}).json(), 'ok')

    def test_docs_while_loading_is_a_page_that_reloads_itself_and_the_log_tells_the_progress(self):
        release = threading.Event()

        class SlowJob:
            def __init__(self):
                release.wait(10)

            def perform(self):
                return 'ok'

        with (
            mock.patch.object(standalone, 'LOADING_REPORT_INTERVAL', 0.2),
            self.assertLogs('racetrack_job_wrapper.standalone', 'INFO') as logs,
        ):
            running = self.start(SlowJob, wait=False)
            client = running.client()
            page = client.get('/docs')
            self.assertEqual(page.status, 503)
            self.assertEqual(page.headers['content-type'], 'text/html; charset=utf-8')
            self.assertEqual(page.headers['retry-after'], '2')
            self.assertIn(b'<meta http-equiv="refresh" content="2">', page.body)
            self.assertIn(b'the job is still loading', page.body)
            self.assertIn("frame-ancestors 'none'", page.headers['content-security-policy'])
            time.sleep(0.5)
            release.set()
            self.assertTrue(running.runner.loaded.wait(10))
        messages = [record.getMessage() for record in logs.records]
        self.assertIn('loading the job: creating an instance of SlowJob', messages)
        self.assertTrue(any(message.startswith('still loading the job (') for message in messages), messages)
        self.assertRegex(messages[-1], r'^the job is ready in \d+\.\d s$')
        page = client.get('/docs')
        self.assertEqual(page.status, 200)
        self.assertIn(b'swagger-ui-bundle.js', page.body)

    def test_failed_load_keeps_running_and_reports_where(self):
        class BrokenJob:
            def __init__(self):
                raise KeyError('model.pkl')

            def perform(self):
                return None

        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            client = self.serve(BrokenJob)
        live = client.get('/live')
        self.assertEqual(live.status, 500)
        self.assertEqual(live.json()['live'], False)
        self.assertRegex(live.json()['error'], r"^KeyError: 'model.pkl', cause=KeyError \(at .*test_server.py:\d+\)$")
        self.assertEqual(client.get('/ready').status, 500)
        self.assertEqual(client.get('/health').json()['status'], 'fail')
        self.assertEqual(client.post('/api/v1/perform', {}).status, 503)

    def test_args_in_perform_load_and_stay_empty(self):
        class VarArgsJob:
            def perform(self, *numbers, scale: int = 1):
                return [scale, *numbers]

        client = self.serve(VarArgsJob)
        # Arguments arrive by name, so `*numbers` never receives any; listed as the existing implementation lists it.
        self.assertEqual(client.post('/api/v1/perform', {'scale': 2}).json(), [2])
        self.assertEqual(
            client.get('/api/v1/parameters').json(),
            [{'name': 'numbers', 'type': 'List[None]'}, {'name': 'scale', 'default_value': 1, 'type': 'int'}],
        )


class ShutdownTest(ServerTestCase):
    def test_drain_finishes_requests_in_flight_and_refuses_new_ones(self):
        started = threading.Event()

        class SlowCall:
            def perform(self, seconds: float = 0.5):
                started.set()
                time.sleep(seconds)
                return 'done'

        running = self.start(SlowCall)
        results = {}

        def call():
            results['slow'] = running.client().post('/api/v1/perform', {'seconds': 0.5})

        thread = threading.Thread(target=call)
        thread.start()
        self.assertTrue(started.wait(5))
        idle = running.client()
        self.assertEqual(idle.get('/ready').status, 200)  # an idle keep-alive connection
        running.runner.stop()
        self.assertEqual(running.runner.health.ready, False)
        thread.join(10)
        running.thread.join(10)
        self.assertFalse(running.thread.is_alive())
        self.assertEqual(results['slow'].status, 200)
        self.assertEqual(results['slow'].json(), 'done')
        self.assertEqual(results['slow'].headers['connection'], 'close')
        with self.assertRaises(OSError):
            idle.get('/ready')


class SlowReaderTest(ServerTestCase):
    def test_a_client_that_does_not_read_its_large_answer_holds_up_nobody(self):
        class BigJob:
            def perform(self, size: int = 1) -> str:
                return 'x' * size

        client = self.serve(BigJob())
        body = b'{"size": 16000000}'
        request = b'POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s' % (len(body), body)
        with socket.create_connection(('127.0.0.1', client.port)) as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(request)  # and never reads the 16 MB answer
            time.sleep(0.5)
            started = time.monotonic()
            for _ in range(20):
                self.assertEqual(client.post('/api/v1/perform', {'size': 3}).json(), 'xxx')
            self.assertLess(time.monotonic() - started, 5)


if __name__ == '__main__':
    unittest.main()
