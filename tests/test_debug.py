"""Thread dumps: GET /debug/threads (opt-in) and SIGUSR1 show every stack and the request each thread serves."""

from __future__ import annotations

import signal
import tempfile
import threading
import time
import unittest
from pathlib import Path

from racetrack_job_wrapper.debug import format_thread_dump
from racetrack_job_wrapper.tracing import ActiveRequests, RequestTrace
from tests.support import ProcessJob, ServerTestCase


class BlockingJob:
    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()

    def perform(self) -> str:
        self.entered.set()
        self.release.wait(20)
        return 'released'


class DumpTest(unittest.TestCase):
    def test_a_thread_serving_a_request_comes_first_with_its_request(self):
        active = ActiveRequests()
        active.begin(RequestTrace('t-7', method='POST', path='/api/v1/perform', started=time.monotonic() - 2))
        try:
            dump = format_thread_dump(active)
        finally:
            active.end()
        lines = dump.splitlines()
        self.assertRegex(lines[0], r'^\d+ threads, 1 serving a request$')
        self.assertRegex(
            lines[2],
            r"^Thread 'MainThread' \(id \d+\) serving POST /api/v1/perform "
            r'tracing_id=t-7 for 2\.\ds$',
        )
        self.assertIn('in test_a_thread_serving_a_request_comes_first_with_its_request', dump)
        self.assertEqual(active.snapshot(), {})


class DebugThreadsEndpointTest(ServerTestCase):
    def test_shows_the_stuck_request_and_its_stack(self):
        job = BlockingJob()
        running = self.start(job, environ={'DEBUG_THREADS': 'true'})
        caller = threading.Thread(
            target=lambda: running.client().post('/api/v1/perform', {}, {'X-Request-Tracing-Id': 'stuck-1'})
        )
        caller.start()
        self.assertTrue(job.entered.wait(10))
        try:
            response = running.client().get('/debug/threads')
        finally:
            job.release.set()
            caller.join(10)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers['content-type'], 'text/plain; charset=utf-8')
        text = response.body.decode()
        self.assertRegex(
            text,
            r"\nThread '[^']+' \(id \d+\) serving POST /api/v1/perform tracing_id=stuck-1 "
            r'for \d+\.\ds\n',
        )
        stuck = text.split('tracing_id=stuck-1', 1)[1].split('\n\n', 1)[0]
        self.assertIn('in perform\n', stuck)
        self.assertIn('self.release.wait(20)', stuck)
        self.assertIn('serving GET /debug/threads', text)

    def test_off_unless_asked_for(self):
        client = self.serve(BlockingJob())
        self.assertEqual(client.get('/debug/threads').status, 404)


SLEEPY_JOB = """
import time


class Job:
    def perform(self, seconds: float = 0) -> float:
        time.sleep(seconds)
        return seconds
"""


class SignalDumpTest(unittest.TestCase):
    def test_sigusr1_logs_a_dump_and_the_server_keeps_serving(self):
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, 'job.py').write_text(SLEEPY_JOB)
            job = ProcessJob(['job.py:Job'], cwd=directory)
            try:
                job.wait_ready()
                caller = threading.Thread(
                    target=lambda: job.client().post(
                        '/api/v1/perform', {'seconds': 1.5}, {'X-Request-Tracing-Id': 'slow-1'}
                    )
                )
                caller.start()
                time.sleep(0.5)
                job.process.send_signal(signal.SIGUSR1)
                deadline = time.monotonic() + 10
                while 'serve_forever' not in job.read_output() and time.monotonic() < deadline:
                    time.sleep(0.05)
                caller.join(10)
                self.assertEqual(job.client().post('/api/v1/perform', {}).status, 200)
            finally:
                self.assertEqual(job.stop(), 0)
            output = job.read_output()
        self.assertIn('WARN  racetrack_job_wrapper.debug: thread dump (SIGUSR1):\n', output)
        self.assertRegex(output, r'serving POST /api/v1/perform tracing_id=slow-1 for \d\.\ds\n')
        self.assertIn('time.sleep(seconds)', output)
        self.assertIn('in serve_forever', output)


if __name__ == '__main__':
    unittest.main()
