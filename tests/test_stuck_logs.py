"""A log stream that never drains (stderr piped to a reader that stopped reading): requests answered, memory flat."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path

from tests.support import REPO_DIR, JobClient, free_port

FAILING_JOB = """
class Job:
    def perform(self, fail: bool = False) -> str:
        if fail:
            raise RuntimeError('asked to fail')  # logged with its traceback
        return 'ok'
"""
CONNECTIONS = 8
REQUESTS = 2500  # per connection; every tenth one fails
PROMPT = 5.0  # seconds within which every request must be answered
MAX_RSS_GROWTH_MB = 30


class StuckLogStreamTest(unittest.TestCase):
    def setUp(self):
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        Path(directory.name, 'job.py').write_text(textwrap.dedent(FAILING_JOB))
        self.port = free_port()
        env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(REPO_DIR), os.environ.get('PYTHONPATH')]))}
        command = ['-m', 'racetrack_job_wrapper', 'job.py:Job', '--host', '127.0.0.1', '--port', str(self.port)]
        # Both pipes are never read: once their buffers fill, every write to them blocks.
        self.process = subprocess.Popen(
            [sys.executable, *command],
            cwd=directory.name,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(self.stop)
        self.wait_ready()

    def stop(self) -> None:
        # Closing the pipes turns the blocked writes into errors, so the drain at exit can finish.
        self.process.stdout.close()
        self.process.stderr.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wait_ready(self) -> None:
        client = JobClient(self.port, timeout=2)
        deadline = time.monotonic() + 20
        try:
            while True:
                self.assertIsNone(self.process.poll(), 'the job process exited')
                try:
                    if client.get('/ready').status == 200:
                        return
                except OSError:
                    client.close()
                self.assertLess(time.monotonic(), deadline, 'the job did not become ready')
                time.sleep(0.05)
        finally:
            client.close()

    def rss_mb(self) -> float:
        for line in Path(f'/proc/{self.process.pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
        raise AssertionError('no VmRSS for the job process')

    def send(self, count: int) -> list[str]:
        """`count` requests on each of CONNECTIONS keep-alive connections; the problems seen, if any."""
        problems: list[str] = []

        def serve() -> None:
            client = JobClient(self.port, timeout=PROMPT)
            try:
                for index in range(count):
                    fail = index % 10 == 9
                    started = time.monotonic()
                    response = client.post('/api/v1/perform', {'fail': fail})
                    took = time.monotonic() - started
                    if response.status != (500 if fail else 200) or took > PROMPT:
                        problems.append(f'request {index}: {response.status} after {took:.1f}s')
                        return
            except OSError as e:  # the socket timeout: a request not answered within PROMPT
                problems.append(f'{type(e).__name__}: {e}')
            finally:
                client.close()

        threads = [threading.Thread(target=serve) for _ in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return problems

    def test_requests_are_answered_and_memory_stays_bounded(self):
        self.assertEqual(self.send(100), [])  # warm up, before measuring memory
        before = self.rss_mb()
        self.assertEqual(self.send(REQUESTS), [])
        growth = self.rss_mb() - before
        self.assertLess(growth, MAX_RSS_GROWTH_MB, f'RSS grew {growth:.1f} MB over {CONNECTIONS * REQUESTS} requests')
        metrics = JobClient(self.port, timeout=PROMPT)
        try:
            text = metrics.get('/metrics').body.decode()
        finally:
            metrics.close()
        (dropped,) = [line for line in text.splitlines() if line.startswith('log_lines_dropped_total ')]
        self.assertGreater(float(dropped.split()[1]), 0)


if __name__ == '__main__':
    unittest.main()
