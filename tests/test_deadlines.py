"""Deadlines that stop the work, cancellation when the client leaves, and admission that refuses hopeless calls."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
import unittest
from unittest import mock

from racetrack_job_wrapper.call import call_job
from racetrack_job_wrapper.messages import CallCancelled
from tests.support import ServerTestCase, wait_until

MAX_CONCURRENCY_1 = {'jobtype_extra': {'max_concurrency': 1}}


class SleepyJob:
    """Sleeps in steps; `cooperative` ones stop when asked."""

    def __init__(self) -> None:
        self.steps_done: list[int] = []
        self.ended = threading.Event()
        self.started_at: list[float] = []
        self.ended_at: list[float] = []

    def perform(self, seconds: float = 1.0, cooperative: bool = False) -> str:
        self.started_at.append(time.monotonic())
        request = self.request_context.get()
        steps = 0
        try:
            for _ in range(int(seconds / 0.05)):
                if cooperative:
                    request.check()
                time.sleep(0.05)
                steps += 1
            return 'done'
        finally:
            self.steps_done.append(steps)
            self.ended_at.append(time.monotonic())
            self.ended.set()

    def remaining(self) -> float | None:
        return self.request_context.get().remaining()

    def auxiliary_endpoints(self) -> dict:
        return {'/remaining': self.remaining}


class AsyncJob:
    def __init__(self) -> None:
        self.finally_ran = threading.Event()
        self.cancelled = threading.Event()

    async def perform(self, seconds: float = 5.0) -> str:
        try:
            await asyncio.sleep(seconds)
            return 'done'
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.finally_ran.set()


class DeadlineTest(ServerTestCase):
    def test_the_504_comes_at_the_deadline_not_when_the_work_ends(self):
        job = SleepyJob()
        client = self.serve(job, request_timeout=0.5)
        started = time.monotonic()
        response = client.post('/api/v1/perform', {'seconds': 3.0})
        elapsed = time.monotonic() - started
        self.assertEqual(response.status, 504)
        self.assertEqual(response.json(), {'error': '/perform did not finish before its deadline', 'type': 'Timeout'})
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertFalse(job.ended.is_set(), 'answered when the work ended, not at the deadline')
        self.assertTrue(job.ended.wait(10))  # a plain def that does not look goes on to its end

    def test_a_cooperative_sync_call_stops_when_its_deadline_passes(self):
        job = SleepyJob()
        client = self.serve(job, request_timeout=0.3)
        self.assertEqual(client.post('/api/v1/perform', {'seconds': 5.0, 'cooperative': True}).status, 504)
        self.assertTrue(job.ended.wait(5))
        self.assertLess(job.steps_done[0], 100)  # stopped long before its 100 steps

    def test_an_async_call_is_cancelled_and_its_finally_runs(self):
        job = AsyncJob()
        running = self.start(job, request_timeout=0.3)
        client = running.client()
        self.assertEqual(client.post('/api/v1/perform', {'seconds': 30}).status, 504)
        self.assertTrue(job.cancelled.wait(5))
        self.assertTrue(job.finally_ran.is_set())
        value = running.runner.registry.get_sample_value
        self.assertTrue(wait_until(lambda: value('request_calls_running') == 0))
        self.assertEqual(value('request_timeouts_total', {'endpoint': '/perform'}), 1)
        # Counted once the answer is sent and logged.
        self.assertTrue(wait_until(lambda: value('requests_rejected_total', {'reason': 'timeout'}) == 1))

    def test_the_slot_is_held_until_the_work_really_ends(self):
        job = SleepyJob()
        running = self.start(job, MAX_CONCURRENCY_1)
        first = running.client().post('/api/v1/perform', {'seconds': 1.5}, headers={'X-Request-Timeout': '0.3'})
        self.assertEqual(first.status, 504)  # answered at 0.3 s; its work goes on to 1.5 s
        self.assertFalse(job.ended.is_set())
        # The next call (no deadline) waits for the first one's work to end, never running beside it.
        self.assertEqual(running.client().post('/api/v1/perform', {'seconds': 0.1}).json(), 'done')
        self.assertEqual(len(job.started_at), 2)
        self.assertGreaterEqual(job.started_at[1], job.ended_at[0])
        value = running.runner.registry.get_sample_value
        self.assertEqual(value('request_overrun_seconds_count', {'endpoint': '/perform'}), 1)
        self.assertGreater(value('request_overrun_seconds_sum', {'endpoint': '/perform'}), 0.5)

    def test_a_call_that_ignores_its_cancellation_is_logged_once(self):
        job = SleepyJob()
        client = self.serve(job, request_timeout=0.2)
        with self.assertLogs('racetrack_job_wrapper.invoke', 'WARNING') as logs:
            for _ in range(2):
                job.ended.clear()
                self.assertEqual(client.post('/api/v1/perform', {'seconds': 1.5}).status, 504)
                self.assertTrue(job.ended.wait(10))
                time.sleep(0.1)
        self.assertEqual(len(logs.records), 1, logs.output)
        self.assertIn('/perform (SleepyJob.perform) ran', logs.output[0])
        self.assertIn('past its deadline: it does not stop when cancelled', logs.output[0])

    def test_a_request_may_lower_its_deadline_but_never_raise_it(self):
        job = SleepyJob()
        client = self.serve(job)  # no request_timeout: only the header sets one
        started = time.monotonic()
        response = client.post('/api/v1/perform', {'seconds': 3.0}, headers={'X-Request-Timeout': '0.3'})
        self.assertEqual(response.status, 504)
        self.assertLess(time.monotonic() - started, 2.5)
        self.assertAlmostEqual(client.post('/api/v1/remaining', {}, headers={'X-Request-Timeout': '7'}).json(), 7, 0)
        self.assertIsNone(client.post('/api/v1/remaining', {}).json())

    def test_the_header_cannot_raise_the_jobs_timeout(self):
        client = self.serve(SleepyJob(), request_timeout=5)
        self.assertLessEqual(client.post('/api/v1/remaining', {}, headers={'X-Request-Timeout': '60'}).json(), 5)

    def test_a_bad_header_is_a_400_naming_it(self):
        client = self.serve(SleepyJob())
        for value in ('soon', '-1', '0', 'nan', 'inf'):
            with self.subTest(value=value):
                response = client.post('/api/v1/perform', {'seconds': 0}, headers={'X-Request-Timeout': value})
                self.assertEqual(response.status, 400)
                self.assertEqual(
                    response.json(),
                    {
                        'error': f'X-Request-Timeout must be a positive number of seconds, got {value!r}',
                        'type': 'InvalidHeader',
                    },
                )


class StartFailureTest(ServerTestCase):
    def test_a_call_that_cannot_start_frees_its_place(self):
        class NoThreads:
            def perform(self) -> str:
                return 'done'

        running = self.start(NoThreads(), MAX_CONCURRENCY_1, request_timeout=5)
        client = running.client()
        start = threading.Thread.start
        failures = [RuntimeError("can't start new thread")]

        def failing_start(thread: threading.Thread) -> None:
            if failures and thread.name == 'call /perform':
                raise failures.pop()
            start(thread)

        with (
            mock.patch.object(threading.Thread, 'start', failing_start),
            self.assertLogs('racetrack_job_wrapper', 'ERROR'),
        ):
            self.assertEqual(client.post('/api/v1/perform', {}).status, 500)
        self.assertEqual(client.post('/api/v1/perform', {}).json(), 'done')  # the place was given back
        self.assertEqual(running.runner.registry.get_sample_value('request_calls_running'), 0)


class ChainBudgetTest(ServerTestCase):
    def test_a_chain_call_carries_the_remaining_budget_and_fails_fast_once_it_is_spent(self):
        callee = self.start(SleepyJob())
        seen: list[object] = []

        class Caller:
            def perform(self, pause: float = 0.0) -> object:
                time.sleep(pause)
                try:
                    seen.append(call_job(self, 'callee', path='/api/v1/remaining', payload={}))
                except CallCancelled as e:
                    seen.append(e)
                    raise
                return seen[-1]

        pub = f'http://127.0.0.1:{callee.port}/pub'
        with mock.patch.dict(os.environ, {'PUB_URL': pub}):
            client = self.serve(Caller(), request_timeout=2)
            budget = client.post('/api/v1/perform', {}).json()
            self.assertGreater(budget, 0.5)
            self.assertLess(budget, 2.0)  # the callee got what was left, not its own unlimited time
            self.assertEqual(client.post('/api/v1/perform', {'pause': 2.5}).status, 504)
            self.assertTrue(wait_until(lambda: len(seen) == 2))
        self.assertIsInstance(seen[1], CallCancelled)  # not made: the budget was spent
        self.assertIn('its deadline passed', str(seen[1]))


class DisconnectTest(ServerTestCase):
    def post_and_leave(self, port: int, body: dict) -> None:
        data = json.dumps(body).encode()
        with socket.create_connection(('127.0.0.1', port)) as sock:
            sock.sendall(
                b'POST /api/v1/perform HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s' % (len(data), data)
            )
            time.sleep(0.3)  # the call is running

    def test_a_client_that_leaves_cancels_its_async_call(self):
        job = AsyncJob()
        running = self.start(job)
        self.post_and_leave(running.port, {'seconds': 30})
        self.assertTrue(job.cancelled.wait(5))
        self.assertTrue(job.finally_ran.is_set())

    def test_a_cooperative_sync_call_sees_its_client_leave(self):
        job = SleepyJob()
        running = self.start(job)
        self.post_and_leave(running.port, {'seconds': 30, 'cooperative': True})
        self.assertTrue(job.ended.wait(5))
        self.assertLess(job.steps_done[0], 600)

    def test_cancel_on_disconnect_false_lets_the_call_finish(self):
        job = AsyncJob()
        running = self.start(job, {'jobtype_extra': {'cancel_on_disconnect': False}})
        self.post_and_leave(running.port, {'seconds': 1.0})
        self.assertTrue(job.finally_ran.wait(5))
        self.assertFalse(job.cancelled.is_set())


class BackpressureTest(ServerTestCase):
    def test_a_call_whose_deadline_passes_while_queued_gets_its_504_and_leaves_the_queue(self):
        job = SleepyJob()
        running = self.start(job, MAX_CONCURRENCY_1)
        busy = threading.Thread(target=lambda: running.client().post('/api/v1/perform', {'seconds': 1.5}))
        busy.start()
        self.addCleanup(busy.join, 10)
        self.assertTrue(wait_until(lambda: len(job.started_at) == 1))
        # No call has ended yet, so the estimated wait is 0: admitted to the queue, then too late.
        response = running.client().post('/api/v1/perform', {'seconds': 0.1}, headers={'X-Request-Timeout': '0.3'})
        self.assertEqual(response.status, 504)
        self.assertEqual(response.json(), {'error': '/perform did not finish before its deadline', 'type': 'Timeout'})
        value = running.runner.registry.get_sample_value
        self.assertEqual(value('request_timeouts_total', {'endpoint': '/perform'}), 1)
        self.assertEqual(value('request_calls_queued'), 0)
        busy.join(10)
        self.assertEqual(len(job.started_at), 1)  # the timed-out call never ran

    def test_a_call_that_cannot_meet_its_deadline_is_refused_before_any_job_code_runs(self):
        job = SleepyJob()
        running = self.start(job, MAX_CONCURRENCY_1)
        client = running.client()
        self.assertEqual(client.post('/api/v1/perform', {'seconds': 1.0}).status, 200)  # the cost is now known
        busy = threading.Thread(target=lambda: running.client().post('/api/v1/perform', {'seconds': 2.0}))
        busy.start()
        self.assertTrue(wait_until(lambda: len(job.started_at) == 2))
        response = client.post('/api/v1/perform', {'seconds': 0.1}, headers={'X-Request-Timeout': '0.5'})
        self.assertEqual(response.status, 429)
        self.assertEqual(response.json()['type'], 'TooManyRequests')
        self.assertIn('its estimated wait for a place is', response.json()['error'])
        self.assertGreaterEqual(int(response.headers['retry-after']), 1)
        self.assertEqual(len(job.started_at), 2)  # the refused call ran no job code
        value = running.runner.registry.get_sample_value
        self.assertTrue(wait_until(lambda: value('requests_rejected_total', {'reason': 'deadline'}) == 1))
        running.runner.health.set_draining()  # shutting down: the same refusal is a 503, for another replica
        stopping = client.post('/api/v1/perform', {'seconds': 0.1}, headers={'X-Request-Timeout': '0.5'})
        self.assertEqual((stopping.status, stopping.json()['type']), (503, 'ServiceUnavailable'))
        # One with time enough waits its turn.
        self.assertEqual(
            client.post('/api/v1/perform', {'seconds': 0.1}, headers={'X-Request-Timeout': '20'}).status, 200
        )
        busy.join(10)


if __name__ == '__main__':
    unittest.main()
