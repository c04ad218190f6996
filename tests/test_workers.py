"""`--workers N` in real processes: both workers serve, a dead one is replaced, metrics add up, SIGTERM drains all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

from racetrack_job_wrapper.settings import Limits
from racetrack_job_wrapper.workers import Supervisor
from tests.support import REPO_DIR, JobClient, ProcessJob, slow

PID_JOB = """
    import os
    import time

    class Job:
        def __init__(self):
            if os.path.exists('slow-start'):
                time.sleep(3)

        def perform(self, seconds: float = 0.0) -> int:
            time.sleep(seconds)
            return os.getpid()
"""


def children_of(pid: int) -> set[int]:
    """Process ids whose parent is `pid`, from /proc."""
    found = set()
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
        except OSError:
            continue
        # The command name in parentheses may contain spaces; the parent id is the second field after it.
        if int(stat.rpartition(')')[2].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text."""
    match = re.search(rf'^{re.escape(name)} (\S+)$', text, re.MULTILINE)
    if match is None:
        raise AssertionError(f'{name} not in:\n{text}')
    return float(match.group(1))


@slow
class WorkersTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: subprocess.run(['rm', '-rf', str(self.tmp)]))
        (self.tmp / 'job.py').write_text(textwrap.dedent(PID_JOB))
        self.tempdir = self.tmp / 'tempdir'
        self.tempdir.mkdir()

    def start(self, workers: int = 2, env: dict[str, str] | None = None) -> ProcessJob:
        job = ProcessJob(
            ['job.py:Job', '--workers', str(workers)], cwd=self.tmp, env={'TMPDIR': str(self.tempdir), **(env or {})}
        )
        self.addCleanup(job.stop)
        job.wait_ready()
        return job

    def call_until_every_worker_answered(
        self, job: ProcessJob, workers: set[int] | None = None, timeout: float = 20.0
    ) -> tuple[set[int], int]:
        """Call perform on fresh connections until `workers` (or any two pids) answered; returns (pids, calls)."""
        seen: set[int] = set()
        calls = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            client = JobClient(job.port)
            try:
                response = client.post('/api/v1/perform')
            finally:
                client.close()
            if response.status == 503:  # that worker is still loading the job: not a job call
                time.sleep(0.02)
                continue
            self.assertEqual(response.status, 200, response.body)
            calls += 1
            seen.add(response.json())
            if (workers is not None and workers <= seen) or (workers is None and len(seen) == 2):
                return seen, calls
        raise AssertionError(f'only {seen} answered in {calls} calls')

    def pinned_clients(self, job: ProcessJob) -> dict[int, JobClient]:
        """One keep-alive connection to each of the two workers, keyed by worker pid."""
        self.call_until_every_worker_answered(job)
        pinned: dict[int, JobClient] = {}
        deadline = time.monotonic() + 20
        while len(pinned) < 2 and time.monotonic() < deadline:
            client = job.client()
            pid = client.post('/api/v1/perform').json()
            if pid in pinned:
                client.close()
            else:
                pinned[pid] = client
        self.assertEqual(len(pinned), 2)
        return pinned

    def test_both_workers_answer_and_are_children_of_the_supervisor(self):
        job = self.start()
        pids, _ = self.call_until_every_worker_answered(job)
        self.assertEqual(children_of(job.process.pid), pids)
        self.assertNotIn(job.process.pid, pids)

    def test_metrics_are_totals_across_workers(self):
        job = self.start()
        pids, calls = self.call_until_every_worker_answered(job)
        for _ in range(10):
            client = JobClient(job.port)
            self.assertEqual(client.post('/api/v1/perform').status, 200)
            client.close()
        calls += 10
        # Whichever worker answers the scrape, the totals are the same.
        for _ in range(6):
            client = JobClient(job.port)
            text = client.get('/metrics').body.decode()
            client.close()
            self.assertEqual(metric(text, 'requests_done_total'), calls)
            self.assertEqual(metric(text, 'requests_started_total'), calls)
            self.assertEqual(metric(text, 'request_calls_running'), 0)
            self.assertIn('racetrack_job_info{job_name="job",job_version="latest"', text)
            self.assertEqual(metric(text, 'request_duration_count{endpoint="/perform"}'), calls)
            self.assertNotIn('pid=', text)

    def test_killed_worker_is_replaced_and_its_counts_are_kept(self):
        job = self.start()
        pids, calls = self.call_until_every_worker_answered(job)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        survivor = pids - {victim}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            children = children_of(job.process.pid)
            if len(children) == 2 and victim not in children:
                break
            time.sleep(0.05)
        replacement = children_of(job.process.pid) - survivor
        self.assertEqual(len(replacement), 1, job.read_output())
        self.assertNotIn(victim, replacement)
        _, more = self.call_until_every_worker_answered(job, workers=survivor | replacement)
        client = JobClient(job.port)
        self.assertEqual(metric(client.get('/metrics').body.decode(), 'requests_done_total'), calls + more)
        client.close()
        self.assertIn(f'(pid {victim}) ended with signal SIGKILL', job.read_output())

    def test_a_restarted_worker_accepts_only_once_its_job_is_loaded(self):
        job = self.start()
        pids, _ = self.call_until_every_worker_answered(job)
        (self.tmp / 'slow-start').write_text('')
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        answers: list[tuple[int, int]] = []
        deadline = time.monotonic() + 2.5  # the replacement takes 3 s to load
        while time.monotonic() < deadline:
            client = JobClient(job.port)
            try:
                answers.append((client.get('/ready').status, client.post('/api/v1/perform').status))
            finally:
                client.close()
        # Every connection went to the worker that serves: no 503 from the loading one, /ready steady.
        self.assertGreater(len(answers), 20)
        self.assertEqual(set(answers), {(200, 200)})
        replacement = children_of(job.process.pid) - pids
        self.assertEqual(len(replacement), 1)
        self.call_until_every_worker_answered(job, workers=(pids - {victim}) | replacement)

    def test_sigterm_drains_every_worker_and_exits_zero(self):
        job = self.start()
        metrics_dirs = list(self.tempdir.glob('racetrack-job-metrics-*'))
        self.assertEqual(len(metrics_dirs), 1)
        pinned = self.pinned_clients(job)
        results: dict[int, object] = {}

        def call(pid: int, client: JobClient) -> None:
            results[pid] = client.post('/api/v1/perform', {'seconds': 1.0})

        threads = [threading.Thread(target=call, args=item) for item in pinned.items()]
        for thread in threads:
            thread.start()
        time.sleep(0.4)
        job.process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(10)
        self.assertEqual(job.process.wait(30), 0, job.read_output())
        self.assertEqual(
            {pid: (response.status, response.json()) for pid, response in results.items()},
            {pid: (200, pid) for pid in pinned},
        )
        self.assertEqual(children_of(job.process.pid), set())
        self.assertFalse(metrics_dirs[0].exists())

    def test_start_up_lines_are_written_once_and_every_line_names_its_process(self):
        job = self.start()
        pids, _ = self.call_until_every_worker_answered(job)
        job.stop()
        lines = job.read_output().splitlines()
        self.assertEqual(sum('with 2 worker processes' in line for line in lines), 1, lines)
        self.assertEqual(sum('worker 0 started' in line for line in lines), 1, lines)
        logged = {int(pid) for pid in re.findall(r'^\S+ \w+ +\[(\d+)\] ', '\n'.join(lines), re.MULTILINE)}
        self.assertEqual(logged, pids | {job.process.pid})
        self.assertTrue(all(re.match(r'^\S+ \w+ +\[\d+\] ', line) for line in lines if line[:4].isdigit()), lines)

    def test_sigusr1_to_the_supervisor_dumps_every_worker(self):
        job = self.start()
        pids, _ = self.call_until_every_worker_answered(job)
        job.process.send_signal(signal.SIGUSR1)

        def dumps() -> int:
            return sum(line.endswith('thread dump (SIGUSR1):') for line in job.read_output().splitlines())

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and dumps() < 2:
            time.sleep(0.05)
        time.sleep(0.2)
        self.assertEqual(dumps(), 2)
        self.assertIsNone(job.process.poll())
        self.assertEqual(children_of(job.process.pid), pids)

    def test_given_metrics_directory_is_wiped_and_kept(self):
        given = self.tmp / 'metrics'
        given.mkdir()
        (given / 'counter_12345.db').write_bytes(b'stale')
        job = self.start(env={'PROMETHEUS_MULTIPROC_DIR': str(given)})
        self.call_until_every_worker_answered(job)
        self.assertNotIn('counter_12345.db', os.listdir(given))
        self.assertEqual(job.stop(), 0)
        self.assertTrue(given.is_dir())
        self.assertEqual(list(self.tempdir.iterdir()), [])

    def test_a_metrics_directory_that_cannot_be_written_is_a_start_up_error(self):
        (self.tmp / 'a-file').write_text('')
        unusable = self.tmp / 'a-file' / 'metrics'  # under a regular file: no directory can be made there
        result = subprocess.run(
            [sys.executable, '-m', 'racetrack_job_wrapper', 'job.py:Job', '--workers', '2', '--port', '0'],
            capture_output=True,
            text=True,
            cwd=self.tmp,
            timeout=30,
            env={**os.environ, 'PYTHONPATH': str(REPO_DIR), 'PROMETHEUS_MULTIPROC_DIR': str(unusable)},
        )
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn(
            f'cannot start the workers: PROMETHEUS_MULTIPROC_DIR {unusable} cannot hold the metrics', result.stderr
        )
        self.assertNotIn('Traceback', result.stderr)

    def test_workers_must_be_positive(self):
        result = subprocess.run(
            [sys.executable, '-m', 'racetrack_job_wrapper', 'job.py:Job', '--workers', '0'],
            capture_output=True,
            text=True,
            cwd=self.tmp,
            timeout=30,
            env={**os.environ, 'PYTHONPATH': str(REPO_DIR)},
        )
        self.assertEqual(result.returncode, 2)
        self.assertIn('--workers: must be at least 1, got 0', result.stderr)


@slow
class SupervisorTest(unittest.TestCase):
    def test_failed_fork_is_retried_later_with_growing_delay(self):
        supervisor = Supervisor(mock.Mock(), mock.Mock(), 1, Limits(grace_period=1.0), metrics_dir=mock.Mock())
        before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        with (
            mock.patch('os.fork', side_effect=BlockingIOError(11, 'Resource temporarily unavailable')),
            self.assertLogs('racetrack_job_wrapper.workers', 'ERROR') as logs,
        ):
            started = time.monotonic()
            supervisor._spawn(0)
            first = supervisor._restarts[0] - started
            supervisor._spawn(0)
            second = supervisor._restarts[0] - started
        self.assertEqual(supervisor._children, {})
        self.assertEqual(signal.pthread_sigmask(signal.SIG_BLOCK, []), before)
        self.assertAlmostEqual(first, 0.2, delta=0.05)
        self.assertAlmostEqual(second, 0.4, delta=0.05)
        self.assertIn(
            'cannot start worker 0: [Errno 11] Resource temporarily unavailable; trying again in 0.2s', logs.output[0]
        )


if __name__ == '__main__':
    unittest.main()
