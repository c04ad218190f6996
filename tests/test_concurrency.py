"""max_concurrency and max_concurrency_queue with real concurrent clients on loopback."""

from __future__ import annotations

import socket
import threading
import time
import unittest
from typing import Callable

from racetrack_job_wrapper.limiter import ConcurrencyLimiter
from racetrack_job_wrapper.messages import ClientDisconnected, HTTPError
from tests.support import ClientResponse, JobClient, RunningJob, ServerTestCase


class GatedJob:
    """Every call records its tag when it starts, then waits until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started: list[str] = []
        self._lock = threading.Lock()

    def perform(self, tag: str) -> str:
        return self._run(tag)

    def auxiliary_endpoints(self):
        return {'/aux': self.aux}

    def aux(self, tag: str) -> str:
        return self._run('aux:' + tag)

    def _run(self, tag: str) -> str:
        with self._lock:
            self.started.append(tag)
        if not self.gate.wait(30):
            raise RuntimeError('the test never opened the gate')
        return tag


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met in time')
        time.sleep(0.01)


class Caller:
    """One request on its own connection and thread; `.response` once answered."""

    def __init__(self, port: int, path: str, tag: str, barrier: threading.Barrier | None = None):
        self.client = JobClient(port)
        self.response: ClientResponse | None = None
        self.error: BaseException | None = None
        self._path, self._tag, self._barrier = path, tag, barrier
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            if self._barrier is not None:
                self._barrier.wait(10)
            self.response = self.client.post(self._path, {'tag': self._tag})
        except BaseException as e:  # reported by join()
            self.error = e

    def join(self) -> ClientResponse:
        self.thread.join(30)
        self.client.close()
        if self.error is not None:
            raise self.error
        assert self.response is not None, 'no answer in time'
        return self.response


class ConcurrencyTest(ServerTestCase):
    def start_gated(self, **extra) -> tuple[RunningJob, GatedJob]:
        job = GatedJob()
        self.addCleanup(job.gate.set)  # never leave a server thread blocked after a failure
        running = self.start(job, {'jobtype_extra': extra})
        return running, job

    def gauge(self, running: RunningJob, name: str) -> float:
        return running.runner.registry.get_sample_value(name)

    def call(self, running: RunningJob, tag: str, path: str = '/api/v1/perform') -> Caller:
        return Caller(running.port, path, tag)

    def queue_reaches(self, running: RunningJob, count: int) -> None:
        wait_until(lambda: self.gauge(running, 'request_calls_queued') == count)

    def test_waiting_calls_start_first_come_first_served(self):
        running, job = self.start_gated(max_concurrency=1)
        callers = [self.call(running, 'c0')]
        wait_until(lambda: job.started == ['c0'])
        for index in range(1, 6):
            callers.append(self.call(running, f'c{index}'))
            self.queue_reaches(running, index)  # each one queued before the next is sent
        self.assertEqual(job.started, ['c0'])
        job.gate.set()
        self.assertEqual([caller.join().json() for caller in callers], ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'])
        self.assertEqual(job.started, ['c0', 'c1', 'c2', 'c3', 'c4', 'c5'])
        self.assertEqual(self.gauge(running, 'request_calls_queued'), 0)
        self.assertEqual(self.gauge(running, 'request_calls_running'), 0)

    def test_perform_and_auxiliary_endpoints_share_the_limit(self):
        running, job = self.start_gated(max_concurrency=1)
        callers = [self.call(running, 'p0')]
        wait_until(lambda: job.started == ['p0'])
        callers.append(self.call(running, 'a0', '/api/v1/aux'))
        self.queue_reaches(running, 1)  # the auxiliary call waits for perform's slot
        callers.append(self.call(running, 'p1'))
        self.queue_reaches(running, 2)
        self.assertEqual(self.gauge(running, 'request_calls_running'), 1)
        job.gate.set()
        self.assertEqual([caller.join().status for caller in callers], [200, 200, 200])
        self.assertEqual(job.started, ['p0', 'aux:a0', 'p1'])

    def test_full_queue_is_429_naming_both_limits_with_retry_after(self):
        running, job = self.start_gated(max_concurrency=1, max_concurrency_queue=2)
        callers = [self.call(running, 'c0')]
        wait_until(lambda: job.started == ['c0'])
        callers += [self.call(running, 'c1'), self.call(running, 'c2')]
        self.queue_reaches(running, 2)
        client = running.client()
        for path in ('/api/v1/perform', '/api/v1/aux'):
            refused = client.post(path, {'tag': 'late'})
            self.assertEqual(refused.status, 429)
            self.assertEqual(
                refused.json(),
                {
                    'error': 'too many requests: the job runs 1 call(s) at a time (max_concurrency) and 2 are'
                    ' waiting, the queue limit (max_concurrency_queue) is 2',
                    'type': 'TooManyRequests',
                },
            )
            # No call has finished yet, so the estimate has no duration to go on: the minimum.
            self.assertEqual(refused.headers['retry-after'], '1')
        job.gate.set()
        self.assertEqual([caller.join().json() for caller in callers], ['c0', 'c1', 'c2'])
        self.assertEqual(client.post('/api/v1/perform', {'tag': 'again'}).json(), 'again')
        self.assertEqual(
            running.runner.registry.get_sample_value('requests_rejected_total', {'reason': 'queue_full'}), 2
        )

    def test_burst_never_overshoots_the_queue_bound(self):
        running, job = self.start_gated(max_concurrency=1, max_concurrency_queue=5)
        barrier = threading.Barrier(30)
        callers = [Caller(running.port, '/api/v1/perform', f'c{index}', barrier) for index in range(30)]
        # Nothing finishes while the gate is shut: one runs, five wait, the other 24 are refused.
        wait_until(lambda: sum(caller.response is not None for caller in callers) == 24)
        self.assertEqual([caller.response.status for caller in callers if caller.response], [429] * 24)
        self.assertEqual(self.gauge(running, 'request_calls_queued'), 5)
        self.assertEqual(self.gauge(running, 'request_calls_running'), 1)
        self.assertEqual(len(job.started), 1)
        job.gate.set()
        statuses = [caller.join().status for caller in callers]
        self.assertEqual((statuses.count(200), statuses.count(429)), (6, 24))
        self.assertEqual(len(job.started), 6)
        self.assertEqual(
            running.runner.registry.get_sample_value('requests_rejected_total', {'reason': 'queue_full'}), 24
        )

    def test_client_that_disconnects_while_queued_frees_its_place(self):
        running, job = self.start_gated(max_concurrency=1, max_concurrency_queue=1)
        first = self.call(running, 'first')
        wait_until(lambda: job.started == ['first'])
        body = b'{"tag": "gone"}'
        quitter = socket.create_connection(('127.0.0.1', running.port), timeout=10)
        quitter.sendall(
            b'POST /api/v1/perform HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
            b'Content-Length: %d\r\n\r\n%s' % (len(body), body)
        )
        self.queue_reaches(running, 1)
        with self.assertNoLogs('racetrack_job_wrapper.app', 'ERROR'):
            quitter.close()
            self.queue_reaches(running, 0)
            # The place is free again: the next call waits instead of being refused.
            after = self.call(running, 'after')
            self.queue_reaches(running, 1)
            job.gate.set()
            self.assertEqual((first.join().json(), after.join().json()), ('first', 'after'))
        self.assertEqual(job.started, ['first', 'after'])

    def test_probes_metrics_and_docs_answer_while_job_calls_are_saturated(self):
        running, job = self.start_gated(max_concurrency=1, max_concurrency_queue=0)
        busy = self.call(running, 'busy')
        wait_until(lambda: job.started == ['busy'])
        client = running.client()
        for path in ('/live', '/ready', '/health', '/metrics', '/docs', '/openapi.json', '/api/v1/parameters'):
            self.assertEqual(client.get(path).status, 200, path)
        self.assertEqual(client.get('/').status, 307)
        self.assertEqual(client.post('/api/v1/perform', {'tag': 'x'}).status, 429)
        metrics = client.get('/metrics').body.decode()
        self.assertIn('\nrequest_calls_running 1.0\n', metrics)
        self.assertIn('\nrequest_calls_queued 0.0\n', metrics)
        job.gate.set()
        self.assertEqual(busy.join().json(), 'busy')

    def test_bad_input_is_refused_before_taking_a_place(self):
        running, job = self.start_gated(max_concurrency=1, max_concurrency_queue=0)
        busy = self.call(running, 'busy')
        wait_until(lambda: job.started == ['busy'])
        client = running.client()
        response = client.post('/api/v1/perform', {'wrong': 1})
        self.assertEqual(response.status, 400)
        self.assertEqual(response.json()['type'], 'InvalidPayload')
        job.gate.set()
        busy.join()


class LimiterTest(unittest.TestCase):
    """Retry-After estimation and hand-over, without sockets."""

    def test_retry_after_grows_with_call_duration_and_queue_length(self):
        limiter = ConcurrencyLimiter(1, 0)
        limiter.acquire()
        limiter.release(4.0)
        limiter.acquire()
        with self.assertRaises(HTTPError) as caught:
            limiter.acquire()
        self.assertEqual(caught.exception.headers, {'Retry-After': '4'})
        two = ConcurrencyLimiter(2, 0)
        two.acquire()
        two.release(3.0)
        two.acquire()
        two.acquire()
        with self.assertRaises(HTTPError) as caught:
            two.acquire()
        self.assertEqual(caught.exception.headers, {'Retry-After': '2'})  # ceil(1/2 * 3.0)

    def test_disconnected_waiter_leaves_the_queue(self):
        limiter = ConcurrencyLimiter(1, 1)
        limiter.acquire()
        with self.assertRaises(ClientDisconnected):
            limiter.acquire(lambda: True)
        limiter.release(0.1)
        self.assertEqual(limiter.acquire(), 0.0)  # the slot is free: nobody is left waiting


if __name__ == '__main__':
    unittest.main()
