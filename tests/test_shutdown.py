"""Shutdown in real processes: the shutdown delay a load balancer needs, and a second Ctrl-C that cuts it short."""

from __future__ import annotations

import signal
import socket
import tempfile
import textwrap
import threading
import unittest
from pathlib import Path

from tests.support import ClientResponse, JobClient, ProcessJob, slow, wait_until

SLOW_JOB = """
import time


class Job:
    def perform(self, seconds: float = 0.0):
        time.sleep(seconds)
        return 'finished'
"""


def refused(port: int) -> bool:
    try:
        socket.create_connection(('127.0.0.1', port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


class ShutdownTestCase(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        (self.tmp / 'job.py').write_text(textwrap.dedent(SLOW_JOB))

    def start(self, *flags: str) -> ProcessJob:
        job = ProcessJob(['job.py:Job', *flags], cwd=self.tmp)
        self.addCleanup(job.stop)
        job.wait_ready()
        return job

    def call_in_background(self, job: ProcessJob, seconds: float) -> dict[str, ClientResponse | OSError]:
        result: dict[str, ClientResponse | OSError] = {}

        def call() -> None:
            try:
                result['response'] = job.client().post('/api/v1/perform', {'seconds': seconds})
            except OSError as e:  # cut: the connection closes without an answer
                result['error'] = e

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 30)
        return result

    def wait_log(self, job: ProcessJob, text: str) -> None:
        self.assertTrue(wait_until(lambda: text in job.read_output()), f'no {text!r} in the log: {job.read_output()}')


@slow
class ShutdownDelayTest(ShutdownTestCase):
    def check_delay_then_drain(self, job: ProcessJob, stop_signal: int = signal.SIGTERM) -> None:
        job.process.send_signal(stop_signal)
        probe = JobClient(job.port)
        self.addCleanup(probe.close)
        # /ready turns 500 at once, while new connections are still accepted and served in full;
        # each answer says Connection: close, so a keep-alive client moves to another replica.
        self.assertTrue(wait_until(lambda: probe.get('/ready').status == 500))
        during = JobClient(job.port)
        self.addCleanup(during.close)
        response = during.post('/api/v1/perform', {'seconds': 0.2})
        self.assertEqual((response.status, response.json()), (200, 'finished'))
        self.assertEqual(response.headers['connection'], 'close')
        self.assertIsNone(job.process.poll())
        # Then accepting stops and the process drains and exits.
        self.assertTrue(wait_until(lambda: refused(job.port)), job.read_output())
        self.assertEqual(job.process.wait(30), 0, job.read_output())

    def test_keeps_serving_through_the_delay_with_ready_500_then_drains(self):
        job = self.start('--shutdown-delay', '3')
        self.check_delay_then_drain(job)
        output = job.read_output()
        self.assertIn('shutting down: /ready reports 500; serving on for 3.0s (shutdown delay)', output)
        self.assertIn('shutting down: stopped accepting; draining', output)
        self.assertRegex(output, r'shutdown done in \d+\.\ds \(drain \d+\.\ds\)')

    def test_a_request_running_when_the_delay_ends_finishes(self):
        job = self.start('--shutdown-delay', '1')
        result = self.call_in_background(job, 2.5)
        self.assertTrue(wait_until(lambda: job.client().get('/metrics').body.count(b'request_calls_running 1') > 0))
        job.process.send_signal(signal.SIGTERM)
        self.assertEqual(job.process.wait(30), 0, job.read_output())
        self.assertEqual((result['response'].status, result['response'].json()), (200, 'finished'))

    def test_workers_keep_serving_through_the_delay(self):
        job = self.start('--workers', '2', '--shutdown-delay', '3')
        self.check_delay_then_drain(job)
        self.assertIn('serving on for 3.0s (shutdown delay), then draining', job.read_output())


@slow
class SecondInterruptTest(ShutdownTestCase):
    def test_a_second_sigint_cuts_the_requests_still_running(self):
        job = self.start()
        result = self.call_in_background(job, 60)
        self.assertTrue(wait_until(lambda: b'request_calls_running 1' in job.client().get('/metrics').body))
        job.process.send_signal(signal.SIGINT)
        self.wait_log(job, 'stopped accepting')
        job.process.send_signal(signal.SIGINT)
        self.assertEqual(job.process.wait(15), 1, job.read_output())
        output = job.read_output()
        self.assertIn('stopping now: requests still running are cut', output)
        self.assertIn('1 request(s) cut: POST /api/v1/perform', output)
        self.assertNotIn('response', result)

    def test_a_second_sigint_ends_the_shutdown_delay(self):
        job = self.start('--shutdown-delay', '60')
        job.process.send_signal(signal.SIGINT)
        self.wait_log(job, 'serving on for 60.0s')
        job.process.send_signal(signal.SIGINT)
        self.assertEqual(job.process.wait(15), 0, job.read_output())

    def test_a_second_sigterm_does_not_cut_anything(self):
        job = self.start()
        result = self.call_in_background(job, 1.5)
        self.assertTrue(wait_until(lambda: b'request_calls_running 1' in job.client().get('/metrics').body))
        job.process.send_signal(signal.SIGTERM)
        self.wait_log(job, 'stopped accepting')
        job.process.send_signal(signal.SIGTERM)
        self.assertEqual(job.process.wait(30), 0, job.read_output())
        self.assertEqual((result['response'].status, result['response'].json()), (200, 'finished'))

    def test_a_second_sigint_reaches_every_worker(self):
        job = self.start('--workers', '2')
        result = self.call_in_background(job, 60)
        self.assertTrue(wait_until(lambda: b'request_calls_running 1' in job.client().get('/metrics').body))
        job.process.send_signal(signal.SIGINT)  # only the parent: it passes SIGTERM on, then SIGINT
        self.wait_log(job, 'shutting down 2 worker(s)')
        self.wait_log(job, 'stopped accepting')
        job.process.send_signal(signal.SIGINT)
        self.assertEqual(job.process.wait(15), 1, job.read_output())
        self.assertIn('1 request(s) cut: POST /api/v1/perform', job.read_output())
        self.assertNotIn('response', result)


if __name__ == '__main__':
    unittest.main()
