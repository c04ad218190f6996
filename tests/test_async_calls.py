"""Async calls (`Prefer: respond-async`) over sockets: lifecycle, cancel, idempotency, webhooks, restarts, Redis."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path
from typing import Any

from openapi_spec_validator import validate

from racetrack_job_wrapper.callstore import SQLITE_FILE, CallRecord, SQLiteCallStore
from racetrack_job_wrapper.manifest import ManifestError
from racetrack_job_wrapper.messages import Request
from racetrack_job_wrapper.settings import JobSettings
from racetrack_job_wrapper.testing import JobTestClient
from tests.support import JobClient, ProcessJob, ServerTestCase, free_port, wait_until

ASYNC = {'Prefer': 'respond-async'}
FINAL = ('succeeded', 'failed', 'cancelled')


class Job:
    """Doubles numbers; holds a call (`hold`) until the test releases it; refuses negatives and 13."""

    def __init__(self) -> None:
        self.ran: list[int] = []
        self.release = threading.Event()
        self.seen: dict[str, Any] = {}

    def perform(self, x: int, hold: bool = False) -> int:
        request = self.request_context.get()
        self.ran.append(x)
        self.seen.setdefault('tracing_ids', []).append(request.headers.get('X-Request-Tracing-Id'))
        if hold:
            request.report_progress(0.5, 'halfway')
            while not self.release.wait(0.01):
                if request.cancelled():
                    self.seen['sync_cancelled'] = True
                    request.check()
        if x < 0:
            raise ValueError('x must not be negative')
        if x == 13:
            raise RuntimeError('unlucky')
        return x * 2

    def auxiliary_endpoints(self) -> dict[str, Any]:
        return {'/wait': self.wait}

    async def wait(self, seconds: float) -> str:
        """An async def: a DELETE cancels it at its await."""
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.seen['async_cancelled'] = True
            raise
        return 'waited'


class AsyncCallTestCase(ServerTestCase):
    """A job served in this process with its call store in a temporary directory."""

    extra: dict[str, Any] = {}

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix='async-calls-')
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        self.job = Job()
        self.running = self.start(
            self.job, {'name': 'doubler', 'version': '1.0.0', 'jobtype_extra': self.extra}, cwd=self.dir
        )
        self.addCleanup(self.job.release.set)  # before the server stops: it waits for the calls it runs
        self.client = self.running.client()

    def submit(self, payload: Any, path: str = '/api/v1/perform', headers: dict[str, str] | None = None) -> str:
        """POST an async call; its Location."""
        response = self.client.post(path, payload, {**ASYNC, **(headers or {})})
        self.assertEqual(response.status, 202, response.body)
        return response.headers['location']

    def wait_for(self, location: str, statuses: tuple[str, ...] = FINAL, timeout: float = 20.0) -> dict[str, Any]:
        """GET the call until its status is one of `statuses`; its last state."""
        state: dict[str, Any] = {}

        def reached() -> bool:
            state.update(self.client.get(location).json())
            return state['status'] in statuses

        self.assertTrue(wait_until(reached, timeout), f'the call stayed {state.get("status")}: {state}')
        return state


class LifecycleTest(AsyncCallTestCase):
    def test_202_then_the_result_the_sync_call_answers(self):
        sync = self.client.post('/api/v1/perform', {'x': 21})
        response = self.client.post('/api/v1/perform', {'x': 21}, ASYNC)
        self.assertEqual(response.status, 202)
        call_id = response.json()['id']
        self.assertEqual(response.json(), {'id': call_id, 'status': 'queued'})
        self.assertEqual(len(call_id), 32)
        self.assertEqual(response.headers['location'], f'/api/v1/calls/{call_id}')
        self.assertEqual(response.headers['preference-applied'], 'respond-async')
        state = self.wait_for(response.headers['location'])
        self.assertEqual((state['status'], state['status_code'], state['result']), ('succeeded', 200, sync.json()))
        self.assertEqual(state['endpoint'], 'POST /api/v1/perform')
        self.assertRegex(state['created_at'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
        self.assertLessEqual(state['created_at'], state['started_at'])
        self.assertLessEqual(state['started_at'], state['finished_at'])
        self.assertEqual(self.job.ran, [21, 21])

    def test_the_location_keeps_the_public_prefix(self):
        response = self.client.post('/pub/job/doubler/1.0.0/api/v1/perform', {'x': 1}, ASYNC)
        call_id = response.json()['id']
        self.assertEqual(response.headers['location'], f'/pub/job/doubler/1.0.0/api/v1/calls/{call_id}')
        self.assertEqual(self.wait_for(response.headers['location'])['result'], 2)
        self.assertEqual(self.client.get(f'/api/v1/calls/{call_id}').json()['result'], 2)

    def test_failures_keep_the_sync_status_and_error(self):
        for payload, status, error in (
            ({'x': -1}, 400, {'error': 'x must not be negative', 'type': 'ValueError'}),
            ({'x': 13}, 500, {'error': 'unlucky', 'type': 'RuntimeError'}),
        ):
            with self.subTest(payload=payload):
                sync = self.client.post('/api/v1/perform', payload)
                self.assertEqual((sync.status, sync.json()), (status, error))
                state = self.wait_for(self.submit(payload))
                self.assertEqual((state['status'], state['status_code'], state['error']), ('failed', status, error))
                self.assertNotIn('result', state)

    def test_a_bad_input_is_refused_at_once_and_stores_nothing(self):
        response = self.client.post('/api/v1/perform', {'x': 'many'}, ASYNC)
        self.assertEqual(response.status, 400)
        self.assertEqual(response.json()['type'], 'ValidationError')
        missing = self.client.post('/api/v1/perform', {}, ASYNC)
        self.assertEqual((missing.status, missing.json()['type']), (400, 'InvalidPayload'))
        self.assertFalse((self.dir / '.racetrack-calls').exists(), 'no call was stored, so no store was made')
        self.assertEqual(self.job.ran, [])

    def test_without_prefer_nothing_changes(self):
        response = self.client.post('/api/v1/perform', {'x': 2}, {'Prefer': 'return=minimal'})
        self.assertEqual((response.status, response.json()), (200, 4))
        self.assertNotIn('preference-applied', response.headers)

    def test_auxiliary_endpoints_and_the_tracing_id(self):
        location = self.submit({'seconds': 0.01}, '/api/v1/wait')
        self.assertEqual(self.wait_for(location)['result'], 'waited')
        response = self.client.post('/api/v1/perform', {'x': 3}, {**ASYNC, 'X-Request-Tracing-Id': 'trace-42'})
        self.assertEqual(response.headers['x-request-tracing-id'], 'trace-42')
        self.wait_for(response.headers['location'])
        self.assertEqual(self.job.seen['tracing_ids'], ['trace-42'])

    def test_unknown_calls_are_404_and_finished_ones_cannot_be_cancelled(self):
        for method in ('GET', 'DELETE'):
            response = self.client.request(method, '/api/v1/calls/' + 'ab' * 16)
            self.assertEqual(response.status, 404)
            self.assertEqual(response.json()['type'], 'NotFound')
        location = self.submit({'x': 5})
        self.wait_for(location)
        refused = self.client.request('DELETE', location)
        self.assertEqual(refused.status, 409)
        self.assertEqual(
            refused.json(),
            {'error': f'async call {location.rsplit("/", 1)[1]} has already succeeded; it cannot be cancelled',
             'type': 'CallFinished'},
        )  # fmt: skip

    def test_progress_shows_while_running_then_a_sync_def_is_cancelled(self):
        location = self.submit({'x': 7, 'hold': True})
        state = self.wait_for(location, ('running',))
        self.assertTrue(wait_until(lambda: 'progress' in self.client.get(location).json()))
        self.assertEqual(self.client.get(location).json()['progress'], {'fraction': 0.5, 'message': 'halfway'})
        cancel = self.client.request('DELETE', location)
        self.assertEqual(cancel.status, 202)
        self.assertEqual((cancel.json()['status'], cancel.json()['cancel_requested']), ('running', True))
        state = self.wait_for(location)
        self.assertEqual(state['status'], 'cancelled')
        self.assertEqual(state['error'], {'error': 'the call was cancelled', 'type': 'Cancelled'})
        self.assertTrue(self.job.seen.get('sync_cancelled'))

    def test_an_async_def_is_cancelled_at_its_await(self):
        location = self.submit({'seconds': 30}, '/api/v1/wait')
        self.wait_for(location, ('running',))
        self.assertEqual(self.client.request('DELETE', location).status, 202)
        self.assertEqual(self.wait_for(location)['status'], 'cancelled')
        self.assertTrue(self.job.seen.get('async_cancelled'))

    def test_metrics_count_calls_by_status_and_their_queue_time(self):
        for payload in ({'x': 1}, {'x': 2}, {'x': -1}):
            self.wait_for(self.submit(payload))
        metrics = self.client.get('/metrics').body.decode()
        for line in (
            'async_calls{status="queued"} 0.0',
            'async_calls{status="running"} 0.0',
            'async_calls{status="succeeded"} 2.0',
            'async_calls{status="failed"} 1.0',
            'async_calls{status="cancelled"} 0.0',
            'async_call_queue_seconds_count 3.0',
        ):
            self.assertIn(line + '\n', metrics)


class QueueTest(AsyncCallTestCase):
    """One call at a time (max_concurrency 1): the runner's place is shared with synchronous calls."""

    extra = {'max_concurrency': 1, 'calls_max': 3}

    def test_a_cancelled_queued_call_never_runs(self):
        first = self.submit({'x': 1, 'hold': True})
        self.wait_for(first, ('running',))
        second = self.submit({'x': 2})
        time.sleep(0.3)  # time enough to be claimed, if a place were free
        self.assertEqual(self.client.get(second).json()['status'], 'queued')
        cancelled = self.client.request('DELETE', second)
        self.assertEqual((cancelled.status, cancelled.json()['status']), (200, 'cancelled'))
        self.job.release.set()
        self.assertEqual(self.wait_for(first)['result'], 2)
        third = self.submit({'x': 3})
        self.assertEqual(self.wait_for(third)['result'], 6)
        self.assertEqual(self.job.ran, [1, 3])  # 2 never ran
        self.assertEqual(self.client.get(second).json()['status'], 'cancelled')

    def test_a_full_store_of_unfinished_calls_refuses_more(self):
        self.wait_for(self.submit({'x': 1}))  # finished: pruned to make room
        self.submit({'x': 2, 'hold': True})
        self.submit({'x': 3})
        self.submit({'x': 4})
        refused = self.client.post('/api/v1/perform', {'x': 5}, ASYNC)
        self.assertEqual(refused.status, 503)
        self.assertEqual(refused.headers['retry-after'], '5')
        self.assertEqual(refused.json()['type'], 'TooManyCalls')
        self.assertIn('jobtype_extra.calls_max', refused.json()['error'])


class IdempotencyTest(AsyncCallTestCase):
    def test_a_repeated_key_gives_the_same_call_another_body_is_422(self):
        headers = {**ASYNC, 'Idempotency-Key': 'order-1'}
        first = self.client.post('/api/v1/perform', {'x': 4}, headers)
        self.wait_for(first.headers['location'])
        again = self.client.post('/api/v1/perform', {'x': 4}, headers)
        self.assertEqual(again.status, 202)
        self.assertEqual(again.headers['location'], first.headers['location'])
        self.assertEqual(again.json(), {'id': first.json()['id'], 'status': 'succeeded'})
        self.assertEqual(self.job.ran, [4])
        other = self.client.post('/api/v1/perform', {'x': 5}, headers)
        self.assertEqual(other.status, 422)
        self.assertEqual(other.json()['type'], 'IdempotencyKeyReused')
        self.assertIn('Idempotency-Key', other.json()['error'])
        elsewhere = self.client.post('/api/v1/wait', {'seconds': 0}, headers)  # keys are per endpoint
        self.assertEqual(elsewhere.status, 202)
        self.assertNotEqual(elsewhere.json()['id'], first.json()['id'])


class Receiver:
    """A local webhook receiver that answers 500 to its first `failures` POSTs, then 200 (or 303 to `redirect_to`)."""

    def __init__(self, failures: int, redirect_to: str | None = None):
        self.failures = failures
        self.redirect_to = redirect_to
        self.received: list[tuple[float, Any]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
                receiver.received.append((time.monotonic(), body))
                if receiver.redirect_to is not None:
                    self.send_response(303)  # what urllib would follow for a POST, as a GET
                    self.send_header('Location', receiver.redirect_to)
                else:
                    self.send_response(500 if len(receiver.received) <= receiver.failures else 200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def do_GET(self) -> None:  # a followed redirect arrives as a GET
                receiver.received.append((time.monotonic(), None))
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}/hook'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookTest(AsyncCallTestCase):
    extra = {'callback_hosts': ['127.0.0.1'], 'callback_retry_seconds': 0.2}

    def test_retried_with_back_off_until_delivered(self):
        receiver = Receiver(failures=2)
        self.addCleanup(receiver.stop)
        location = self.submit({'x': 8}, headers={'X-Callback-Url': receiver.url})
        self.wait_for(location)
        self.assertTrue(wait_until(lambda: self.client.get(location).json()['callback']['delivered'], 20))
        state = self.client.get(location).json()
        self.assertEqual(state['callback'], {'url': receiver.url, 'attempts': 3, 'delivered': True})
        self.assertEqual(len(receiver.received), 3)
        times = [moment for moment, _ in receiver.received]
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        # Back-off: 0.2 s, then 0.4 s (at least; the machine may be slower, never faster).
        self.assertGreaterEqual(gaps[0], 0.2)
        self.assertGreaterEqual(gaps[1], 0.4)
        body = receiver.received[-1][1]
        self.assertEqual((body['id'], body['status'], body['result']), (location.rsplit('/', 1)[1], 'succeeded', 16))
        print(f'\nwebhook: delivered on attempt 3, gaps {gaps[0]:.3f} s and {gaps[1]:.3f} s')

    def test_a_header_url_to_an_unlisted_host_is_refused(self):
        response = self.client.post('/api/v1/perform', {'x': 1}, {**ASYNC, 'X-Callback-Url': 'http://10.0.0.1/x'})
        self.assertEqual(response.status, 400)
        self.assertIn('jobtype_extra.callback_hosts', response.json()['error'])
        scheme = self.client.post('/api/v1/perform', {'x': 1}, {**ASYNC, 'X-Callback-Url': 'file:///etc/passwd'})
        self.assertEqual(scheme.status, 400)
        self.assertEqual(self.job.ran, [])


class WebhookRedirectTest(AsyncCallTestCase):
    extra = {'callback_hosts': ['localhost'], 'callback_retry_seconds': 0.1, 'callback_attempts': 2}

    def test_a_redirect_is_not_followed_to_a_host_not_listed(self):
        unlisted = Receiver(failures=0)
        self.addCleanup(unlisted.stop)
        listed = Receiver(failures=0, redirect_to=unlisted.url)
        self.addCleanup(listed.stop)
        url = listed.url.replace('127.0.0.1', 'localhost')
        location = self.submit({'x': 3}, headers={'X-Callback-Url': url})
        self.wait_for(location)
        self.assertTrue(wait_until(lambda: self.client.get(location).json()['callback']['attempts'] == 2, 20))
        self.assertEqual(self.client.get(location).json()['callback'], {'url': url, 'attempts': 2, 'delivered': False})
        self.assertEqual(len(listed.received), 2)
        self.assertEqual(unlisted.received, [])


class OperatorWebhookTest(AsyncCallTestCase):
    def setUp(self) -> None:
        self.receiver = Receiver(failures=0)
        self.addCleanup(self.receiver.stop)
        self.extra = {'callback_url': self.receiver.url}
        super().setUp()

    def test_the_settings_url_needs_no_listed_host(self):
        location = self.submit({'x': 2})
        self.wait_for(location)
        self.assertTrue(wait_until(lambda: len(self.receiver.received) == 1))
        self.assertEqual(self.receiver.received[0][1]['result'], 4)


class AccessTest(unittest.TestCase):
    """With JOB_AUTH_TOKENS, a call is as readable as the endpoint it was made to."""

    def test_a_call_to_a_public_endpoint_is_public_the_others_need_a_token(self):
        calls_dir = self.enterContext(tempfile.TemporaryDirectory())
        manifest = {'public_endpoints': ['/api/v1/perform'], 'jobtype_extra': {'calls_dir': calls_dir}}
        token = {'X-Racetrack-Auth': 'secret'}
        client = self.enterContext(JobTestClient(Job(), manifest, environ={'JOB_AUTH_TOKENS': 'secret'}))
        public = client.post('/api/v1/perform', {'x': 2}, headers=ASYNC)
        self.assertEqual(public.status, 202)
        self.assertEqual(client.get(public.headers['location']).status, 200)
        self.assertEqual(client.post('/api/v1/wait', {'seconds': 0}, headers=ASYNC).status, 401)
        private = client.post('/api/v1/wait', {'seconds': 0}, headers={**ASYNC, **token})
        self.assertEqual(private.status, 202)
        location = private.headers['location']
        self.assertEqual(client.get(location).status, 401)
        self.assertEqual(client.request('DELETE', location).status, 401)
        self.assertTrue(wait_until(lambda: client.get(location, headers=token).json()['status'] == 'succeeded'))
        self.assertEqual(client.get(location, headers=token).json()['result'], 'waited')
        self.assertEqual(client.get('/api/v1/calls/' + '0' * 32).status, 404)


class RetentionTest(unittest.TestCase):
    def test_finished_calls_older_than_the_retention_are_forgotten_with_their_keys(self):
        store = SQLiteCallStore(Path(self.enterContext(tempfile.TemporaryDirectory())) / SQLITE_FILE)
        self.addCleanup(store.close)

        def add(call_id: str, created: float, key: str | None = None) -> CallRecord:
            record = CallRecord(call_id, 'queued', created, {'method': 'POST'}, idempotency_key=key, fingerprint='f')
            return store.add(record, 100)[0]

        add('old', 100.0, key='POST /api/v1/perform k')
        add('recent', 200.0)
        add('waiting', 300.0)
        for finished_at in (110.0, 210.0):  # 'old' then 'recent': claims take the oldest queued first
            claimed = store.claim('me', 1e12, finished_at)
            assert claimed is not None
            self.assertTrue(store.finish(claimed.id, 'me', 'succeeded', {'status_code': 200, 'result': 1}, finished_at))
        self.assertEqual(store.prune(finished_before=150.0), 1)
        self.assertIsNone(store.get('old'))
        self.assertEqual(store.get('recent').status, 'succeeded')  # type: ignore[union-attr]
        self.assertEqual(store.get('waiting').status, 'queued')  # type: ignore[union-attr]  # never pruned
        again, created = store.add(
            CallRecord('new', 'queued', 300.0, {}, idempotency_key='POST /api/v1/perform k'), 100
        )
        self.assertTrue(created, 'the pruned call still held its idempotency key')


class ProgressAndSettingsTest(unittest.TestCase):
    def test_report_progress_checks_its_fraction_and_is_a_no_op_for_sync_calls(self):
        request = Request('POST', '/api/v1/perform')
        request.report_progress(0.25, 'a quarter')
        for bad in (-0.1, 1.5, float('nan'), True):
            with self.assertRaises(ValueError):
                request.report_progress(bad)

    def test_settings_are_checked_at_start_up(self):
        for extra, message in (
            ({'calls_store': 'mysql://x'}, 'jobtype_extra.calls_store'),
            ({'calls_retention': -1}, 'jobtype_extra.calls_retention'),
            ({'calls_max': 0}, 'jobtype_extra.calls_max'),
            ({'callback_url': 'ftp://x'}, 'jobtype_extra.callback_url'),
            ({'callback_hosts': 'a/b'}, 'jobtype_extra.callback_hosts'),
            ({'calls_idempotent': 'maybe'}, 'jobtype_extra.calls_idempotent'),
            ({'callback_retry_seconds': 0}, 'jobtype_extra.callback_retry_seconds'),
        ):
            with self.subTest(extra=extra), self.assertRaisesRegex(ManifestError, message):
                JobSettings.from_manifest({'jobtype_extra': extra})
        calls = JobSettings.from_manifest({'jobtype_extra': {'calls_store': 'redis://db:6379/1'}}).calls
        self.assertEqual((calls.store, calls.dir, calls.max_calls), ('redis://db:6379/1', '.racetrack-calls', 10000))


class OpenAPITest(ServerTestCase):
    def test_the_document_lists_async_calls_and_validates(self):
        document = self.serve(Job()).get('/openapi.json').json()
        validate(document)
        perform = document['paths']['/api/v1/perform']['post']
        headers = [parameter['name'] for parameter in document['paths']['/api/v1/perform']['parameters']]
        self.assertEqual(headers, ['Prefer', 'Idempotency-Key', 'X-Callback-Url'])
        self.assertIn('Location', perform['responses']['202']['headers'])
        self.assertEqual(set(document['paths']['/api/v1/calls/{call_id}']), {'get', 'delete'})


# A job served by a child process, for restarts and Redis: its first run of `x` takes `hold` seconds, and
# writes `ran-X` (the runs so far and the pid of the server that ran it last).
PROCESS_JOB = """
import os, time
from pathlib import Path

class Job:
    def perform(self, x: int, hold: float = 0.0) -> dict:
        marker = Path('ran-%d' % x)
        runs = int(marker.read_text().split()[0]) + 1 if marker.exists() else 1
        Path('ran-%d.tmp' % x).write_text('%d %d' % (runs, os.getpid()))
        os.replace('ran-%d.tmp' % x, marker)  # whole or not at all, for the test that reads it
        request = self.request_context.get()
        deadline = time.monotonic() + (hold if runs == 1 else 0.0)
        while time.monotonic() < deadline:
            request.check()
            time.sleep(0.01)
        return {'x': x, 'pid': os.getpid(), 'runs': runs}
"""


def write_job(directory: Path, extra: dict[str, Any]) -> None:
    """The child's job.py and its job.yaml with `extra` as jobtype_extra."""
    (directory / 'job.py').write_text(textwrap.dedent(PROCESS_JOB))
    lines = ['name: restarted', 'jobtype_extra:'] + [f'  {key}: {json.dumps(value)}' for key, value in extra.items()]
    (directory / 'job.yaml').write_text('\n'.join(lines) + '\n')


class ProcessTestCase(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix='async-process-')
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)

    def serve(self, port: int | None = None) -> ProcessJob:
        job = ProcessJob(['job.py:Job'] + (['--host', '127.0.0.1', '--port', str(port)] if port else []),
                         cwd=self.dir, port=port)  # fmt: skip
        self.addCleanup(job.stop)
        job.wait_ready()
        return job

    def final_states(self, client: JobClient, locations: list[str], timeout: float = 30.0) -> list[dict[str, Any]]:
        states: dict[str, dict[str, Any]] = {}

        def all_final() -> bool:
            for location in locations:
                if states.get(location, {}).get('status') not in FINAL:
                    states[location] = client.get(location).json()
            return all(state['status'] in FINAL for state in states.values())

        self.assertTrue(wait_until(all_final, timeout), states)
        return [states[location] for location in locations]


class RestartTest(ProcessTestCase):
    def kill_mid_run_and_restart(self, extra: dict[str, Any]) -> tuple[list[dict[str, Any]], float, ProcessJob]:
        """Five calls, one at a time: the first is running, four queued, when the server is killed (-9)."""
        write_job(self.dir, {'max_concurrency': 1, **extra})
        port = free_port()
        first = self.serve(port)
        client = first.client()
        headers = {**ASYNC, 'X-Request-Tracing-Id': 'restart-trace'}
        locations = [client.post('/api/v1/perform', {'x': 0, 'hold': 60}, headers).headers['location']]
        self.assertTrue(wait_until(lambda: client.get(locations[0]).json()['status'] == 'running'))
        locations += [client.post('/api/v1/perform', {'x': x}, ASYNC).headers['location'] for x in range(1, 5)]
        self.assertEqual([client.get(location).json()['status'] for location in locations[1:]], ['queued'] * 4)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        restarted_at = time.monotonic()
        second = self.serve(port)
        states = self.final_states(second.client(), locations)
        recovered = time.monotonic() - restarted_at
        self.assertTrue((self.dir / '.racetrack-calls' / SQLITE_FILE).exists())
        return states, recovered, second

    def test_kill_9_mid_run_every_accepted_call_ends(self):
        states, recovered, _ = self.kill_mid_run_and_restart({})
        interrupted = states[0]
        self.assertEqual(interrupted['status'], 'failed')
        self.assertEqual(
            (interrupted['status_code'], interrupted['error']),
            (503, {'error': 'the server stopped while the call was running', 'type': 'Interrupted'}),
        )
        self.assertEqual([(state['status'], state['result']['x']) for state in states[1:]],
                         [('succeeded', x) for x in range(1, 5)])  # fmt: skip
        print(f'\nrestart (kill -9, 1 running + 4 queued): all 5 final {recovered:.2f} s after the restart began')

    def test_an_idempotent_job_runs_the_interrupted_call_again(self):
        states, recovered, _ = self.kill_mid_run_and_restart({'calls_idempotent': True})
        self.assertEqual([state['status'] for state in states], ['succeeded'] * 5)
        self.assertEqual((states[0]['result']['x'], states[0]['result']['runs']), (0, 2))
        print(f'\nrestart, idempotent: all 5 final {recovered:.2f} s after the restart began')

    def test_sigterm_lets_the_running_call_finish(self):
        write_job(self.dir, {'max_concurrency': 1})
        job = self.serve()
        client = job.client()
        headers = {**ASYNC, 'X-Request-Tracing-Id': 'trace-sigterm'}
        location = client.post('/api/v1/perform', {'x': 9, 'hold': 1.0}, headers).headers['location']
        self.assertTrue(wait_until(lambda: client.get(location).json()['status'] == 'running'))
        job.process.terminate()
        self.assertEqual(job.process.wait(30), 0, job.read_output())
        # The POST's access line and the run's log lines carry the same tracing id.
        lines = [line for line in job.read_output().splitlines() if 'tracing_id=trace-sigterm' in line]
        self.assertTrue(any('POST /api/v1/perform 202' in line for line in lines), lines)
        self.assertTrue(any('async call' in line and 'succeeded' in line for line in lines), lines)
        self.assertEqual((self.dir / 'ran-9').read_text().split()[0], '1')
        again = self.serve()
        state = again.client().get(location).json()
        self.assertEqual((state['status'], state['result']['runs']), ('succeeded', 1))


def redis_missing() -> str | None:
    """Why the Redis tests cannot run here, or None."""
    if shutil.which('redis-server') is None:
        return 'redis-server is not installed (apt-get install redis-server)'
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis client is not installed (pip install 'racetrack-job-wrapper[redis]')"
    return None


class RedisTest(ProcessTestCase):
    def setUp(self) -> None:
        missing = redis_missing()
        if missing is not None:
            if os.environ.get('CI') == 'true':
                self.fail(missing)
            self.skipTest(missing)
        super().setUp()
        self.redis_port = free_port()
        data = self.dir / 'redis'
        data.mkdir()
        self.redis = subprocess.Popen(
            ['redis-server', '--port', str(self.redis_port), '--bind', '127.0.0.1', '--save', '', '--appendonly',
             'no', '--dir', str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.addCleanup(self.stop_redis)
        import redis

        client = redis.Redis(port=self.redis_port)
        self.addCleanup(client.close)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        self.assertTrue(wait_until(answers), 'redis-server did not start')

    def stop_redis(self) -> None:
        self.redis.terminate()
        try:
            self.redis.wait(10)
        except subprocess.TimeoutExpired:
            self.redis.kill()
            self.redis.wait()

    def holder(self, x: int) -> int:
        """The pid of the server that runs (or last ran) call `x`."""
        marker = self.dir / f'ran-{x}'
        self.assertTrue(wait_until(marker.exists))
        return int(marker.read_text().split()[1])

    def test_two_servers_share_the_calls(self):
        write_job(self.dir, {'max_concurrency': 1, 'calls_store': f'redis://127.0.0.1:{self.redis_port}/0'})
        one, two = self.serve(), self.serve()
        first, second = one.client(), two.client()
        # Posted to one, seen on two while it runs.
        held = first.post('/api/v1/perform', {'x': 1, 'hold': 60}, ASYNC).headers['location']
        self.assertTrue(wait_until(lambda: second.get(held).json()['status'] == 'running'))
        holder = self.holder(1)
        # One place each: the server running `held` cannot take the next call, the other one does.
        other = first.post('/api/v1/perform', {'x': 2}, ASYNC).headers['location']
        (done,) = self.final_states(second, [other])
        self.assertEqual(done['status'], 'succeeded')
        self.assertEqual({holder, done['result']['pid']}, {one.process.pid, two.process.pid})
        # Cancelled through two, wherever it runs.
        cancel = second.request('DELETE', held)
        self.assertEqual(cancel.status, 202)
        (cancelled,) = self.final_states(first, [held])
        self.assertEqual(cancelled['status'], 'cancelled')
        for client in (first, second):  # the counts of the shared store, on either
            metrics = client.get('/metrics').body.decode()
            self.assertIn('async_calls{status="succeeded"} 1.0\n', metrics)
            self.assertIn('async_calls{status="cancelled"} 1.0\n', metrics)
        # Idempotency keys are shared too.
        headers = {**ASYNC, 'Idempotency-Key': 'shared-1'}
        created = first.post('/api/v1/perform', {'x': 3}, headers)
        repeated = second.post('/api/v1/perform', {'x': 3}, headers)
        self.assertEqual((repeated.status, repeated.json()['id']), (202, created.json()['id']))
        self.assertEqual(second.post('/api/v1/perform', {'x': 4}, headers).status, 422)
        self.final_states(second, [created.headers['location']])

    def test_the_call_of_a_killed_server_is_failed_by_the_other(self):
        write_job(self.dir, {'calls_store': f'redis://127.0.0.1:{self.redis_port}/0'})
        servers = {job.process.pid: job for job in (self.serve(), self.serve())}
        location = next(iter(servers.values())).client().post('/api/v1/perform', {'x': 5, 'hold': 60}, ASYNC)
        victim = servers.pop(self.holder(5))
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        (survivor,) = servers.values()
        (final,) = self.final_states(survivor.client(), [location.headers['location']])
        self.assertEqual((final['status'], final['error']['type']), ('failed', 'Interrupted'))


if __name__ == '__main__':
    unittest.main()
