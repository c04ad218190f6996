"""Faults stay with the request that caused them: failing jobs, lost clients, and shutdown under load."""

from __future__ import annotations

import signal
import socket
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path

from tests.support import ProcessJob, RawConnection, ServerTestCase, wait_until

PERFORM = b'POST /api/v1/perform HTTP/1.1\r\nHost: t\r\n'


def post(body: bytes) -> bytes:
    return PERFORM + b'Content-Length: %d\r\n\r\n' % len(body) + body


class GatedJob:
    """perform(mode): 'hold' waits for the gate, 'raise' fails, anything else answers at once."""

    def __init__(self):
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[str] = []
        self.finished: list[str] = []

    def perform(self, mode: str = 'ok'):
        self.calls.append(mode)
        if mode == 'hold':
            self.entered.set()
            self.gate.wait(20)
        if mode == 'raise':
            raise RuntimeError('the job broke')
        self.finished.append(mode)
        return mode


class JobFaultTest(ServerTestCase):
    def test_hanging_and_raising_calls_affect_only_their_own_request(self):
        job = GatedJob()
        running = self.start(job)
        hung = RawConnection(running.port, timeout=20)
        self.addCleanup(hung.close)
        hung.send(post(b'{"mode": "hold"}'))
        self.assertTrue(job.entered.wait(5))
        client = running.client()
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            failed = client.post('/api/v1/perform', {'mode': 'raise'})
        self.assertEqual((failed.status, failed.json()), (500, {'error': 'the job broke', 'type': 'RuntimeError'}))
        self.assertEqual(client.post('/api/v1/perform', {'mode': 'ok'}).json(), 'ok')
        job.gate.set()
        self.assertEqual(hung.read_response().json(), 'hold')

    def test_client_leaving_while_its_call_runs_costs_nothing(self):
        job = GatedJob()
        running = self.start(job)
        with RawConnection(running.port) as conn:
            conn.send(post(b'{"mode": "hold"}'))
            self.assertTrue(job.entered.wait(5))
        with self.assertNoLogs('racetrack_job_wrapper', 'ERROR'):
            job.gate.set()  # the job keeps running to its end; writing its answer fails quietly
            self.assertTrue(wait_until(lambda: running.runner.server.connection_count() == 0))
        self.assertEqual(job.finished, ['hold'])
        self.assertEqual(running.client().post('/api/v1/perform', {}).json(), 'ok')

    def test_client_leaving_while_queued_frees_its_place(self):
        job = GatedJob()
        running = self.start(job, {'jobtype_extra': {'max_concurrency': 1, 'max_concurrency_queue': 1}})
        holder = RawConnection(running.port, timeout=20)
        self.addCleanup(holder.close)
        holder.send(post(b'{"mode": "hold"}'))
        self.assertTrue(job.entered.wait(5))
        with RawConnection(running.port) as leaver:
            leaver.send(post(b'{"mode": "left"}'))
            time.sleep(0.3)  # queued behind the holder
        client = running.client()
        self.assertEqual(_queued(client), 1.0)
        with self.assertNoLogs('racetrack_job_wrapper', 'ERROR'):
            # Its queue place is freed within the limiter's polling interval (0.2 s).
            self.assertTrue(wait_until(lambda: _queued(client) == 0.0, 3))
        waiter = RawConnection(running.port, timeout=20)
        self.addCleanup(waiter.close)
        waiter.send(post(b'{"mode": "after"}'))
        time.sleep(0.3)
        job.gate.set()
        self.assertEqual(holder.read_response().json(), 'hold')
        self.assertEqual(waiter.read_response().json(), 'after')
        self.assertEqual(job.calls, ['hold', 'after'])

    def test_a_failing_docs_example_fails_the_load_and_says_so(self):
        class BadExample:
            def docs_input_example(self):
                raise KeyError('example.json')

            def perform(self, x: int = 1):
                return x

        # As in the existing implementation: the job does not report ready with a broken declaration.
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            client = self.serve(BadExample)
        self.assertIn("docs_input_example() raised KeyError: 'example.json'", client.get('/live').json()['error'])
        self.assertEqual(client.get('/ready').status, 500)
        self.assertEqual(client.post('/api/v1/perform', {'x': 2}).status, 503)


def _queued(client) -> float:
    """Calls waiting in the concurrency queue, from /metrics."""
    for line in client.get('/metrics').body.decode().splitlines():
        if line.startswith('request_calls_queued '):
            return float(line.split()[1])
    raise AssertionError('no request_calls_queued metric')


class DrainTest(ServerTestCase):
    def test_requests_in_flight_finish_new_connections_are_refused_exit_clean(self):
        job = GatedJob()
        running = self.start(job)
        held = [RawConnection(running.port, timeout=20) for _ in range(4)]
        for conn in held:
            self.addCleanup(conn.close)
            conn.send(post(b'{"mode": "hold"}'))
        self.assertTrue(wait_until(lambda: len(job.calls) == 4))
        running.runner.stop()
        self.assertTrue(wait_until(lambda: _refused(running.port), 5))
        job.gate.set()
        for conn in held:
            response = conn.read_response()
            self.assertEqual((response.status, response.json()), (200, 'hold'))
            self.assertEqual(response.headers['connection'], 'close')
        running.thread.join(10)
        self.assertFalse(running.thread.is_alive())
        self.assertTrue(running.runner._clean_exit)

    def test_connections_waiting_in_the_listen_backlog_are_served(self):
        running = self.start(GatedJob())
        server = running.runner.server
        accept_one = server.process_request
        gate = threading.Event()

        def busy_accept_loop(request, client_address):
            gate.wait(10)  # the accept loop is busy; later connections queue in the kernel
            accept_one(request, client_address)

        server.process_request = busy_accept_loop
        connections = [RawConnection(running.port) for _ in range(3)]
        for number, conn in enumerate(connections):
            self.addCleanup(conn.close)
            conn.send(post(b'{"mode": "n%d"}' % number))
        running.runner.stop()
        time.sleep(0.3)  # the drain waits for the accept loop to stop
        gate.set()
        for number, conn in enumerate(connections):
            response = conn.read_response()
            self.assertEqual((response.status, response.json()), (200, f'n{number}'))
            if number:  # the first was taken by the accept loop, possibly answered before the drain began
                self.assertEqual(response.headers['connection'], 'close')
            self.assertTrue(conn.closed_by_server())
        running.thread.join(10)
        self.assertTrue(running.runner._clean_exit)

    def test_past_the_grace_period_cut_requests_are_logged_and_the_exit_is_unclean(self):
        job = GatedJob()
        running = self.start(job, grace_period=0.3)
        self.addCleanup(job.gate.set)
        conn = RawConnection(running.port)
        self.addCleanup(conn.close)
        conn.send(post(b'{"mode": "hold"}'))
        self.assertTrue(job.entered.wait(5))
        with self.assertLogs('racetrack_job_wrapper.server', 'ERROR') as logs:
            running.runner.stop()
            running.thread.join(10)
        self.assertRegex(
            logs.output[0],
            r'grace period of 0\.3s over; 1 request\(s\) cut: '
            r'POST /api/v1/perform from 127\.0\.0\.1 for 0\.\d+s',
        )
        self.assertFalse(running.runner._clean_exit)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(('127.0.0.1', port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


class SigtermTest(unittest.TestCase):
    JOB = """
        import time

        class Slow:
            def perform(self, seconds: float = 0.0):
                time.sleep(seconds)
                return seconds
    """

    def start_job(self, *args):
        tmp = Path(tempfile.mkdtemp())
        (tmp / 'slow.py').write_text(textwrap.dedent(self.JOB))
        job = ProcessJob(['slow.py:Slow', *args], cwd=tmp)
        self.addCleanup(job.stop)
        job.wait_ready()
        return job

    def send_slow_calls(self, job, count: int, seconds: float):
        connections = [RawConnection(job.port, timeout=30) for _ in range(count)]
        for conn in connections:
            self.addCleanup(conn.close)
            conn.send(post(b'{"seconds": %a}' % seconds))
        time.sleep(0.3)
        return connections

    def test_sigterm_under_load_answers_every_accepted_request_and_exits_zero(self):
        job = self.start_job()
        connections = self.send_slow_calls(job, 8, 1.0)
        job.process.send_signal(signal.SIGTERM)
        self.assertTrue(wait_until(lambda: _refused(job.port), 5), job.read_output())
        for conn in connections:
            response = conn.read_response()
            self.assertEqual((response.status, response.json()), (200, 1.0))
        self.assertEqual(job.process.wait(30), 0, job.read_output())

    def test_sigterm_past_the_grace_period_logs_the_cut_requests_and_exits_1(self):
        job = self.start_job('--grace-period', '0.5')
        self.send_slow_calls(job, 2, 10.0)
        started = time.monotonic()
        job.process.send_signal(signal.SIGTERM)
        self.assertEqual(job.process.wait(30), 1, job.read_output())
        self.assertLess(time.monotonic() - started, 5)
        output = job.read_output()
        self.assertIn('2 request(s) cut: POST /api/v1/perform from 127.0.0.1', output)


if __name__ == '__main__':
    unittest.main()
