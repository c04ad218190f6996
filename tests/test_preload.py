"""`--workers N --preload` in real processes: the job loaded once in the parent, shared by every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path

from tests.support import REPO_DIR, JobClient, ProcessJob, slow, wait_until

JOB = """
import os


class Job:
    def __init__(self):
        self.loaded_by = os.getpid()

    def perform(self):
        return {'loaded_by': self.loaded_by, 'pid': os.getpid()}
"""


@slow
class PreloadTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)

    def write(self, text: str) -> None:
        (self.tmp / 'job.py').write_text(textwrap.dedent(text))

    def start(self, *flags: str) -> ProcessJob:
        job = ProcessJob(['job.py:Job', '--workers', '2', *flags], cwd=self.tmp)
        self.addCleanup(job.stop)
        job.wait_ready()
        return job

    def answers(self, job: ProcessJob, count: int = 2) -> dict[int, int]:
        """worker pid -> the pid that loaded its job, from fresh connections until `count` workers answered."""
        seen: dict[int, int] = {}
        deadline = time.monotonic() + 20
        while len(seen) < count:
            self.assertLess(time.monotonic(), deadline, seen)
            client = JobClient(job.port)
            answer = client.post('/api/v1/perform', {}).json()
            client.close()
            seen[answer['pid']] = answer['loaded_by']
        return seen

    def test_the_parent_loads_the_job_once_for_every_worker(self):
        self.write(JOB)
        job = self.start('--preload')
        seen = self.answers(job)
        self.assertEqual(set(seen.values()), {job.process.pid})  # loaded by the parent
        self.assertNotIn(job.process.pid, seen)  # served by the workers
        output = job.read_output()
        self.assertIn('preloading the job before the workers start', output)
        self.assertRegex(output, r'the job is loaded in \d+\.\d s; the workers share it')

    def test_without_preload_each_worker_loads_its_own(self):
        self.write(JOB)
        job = self.start()
        seen = self.answers(job)
        self.assertEqual({pid: loader for pid, loader in seen.items()}, {pid: pid for pid in seen})

    def test_a_restarted_worker_is_forked_with_the_job_loaded(self):
        self.write(JOB)
        job = self.start('--preload')
        victim = next(iter(self.answers(job)))
        os.kill(victim, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: 'starting a new one' in job.read_output(), 20))
        deadline = time.monotonic() + 20
        while True:
            seen = self.answers(job)
            if victim not in seen:
                break
            self.assertLess(time.monotonic(), deadline)
        self.assertEqual(set(seen.values()), {job.process.pid})

    def run_refused(self, source: str) -> subprocess.CompletedProcess[str]:
        self.write(source)
        return subprocess.run(
            [sys.executable, '-m', 'racetrack_job_wrapper', 'job.py:Job', '--workers', '2', '--preload', '--port', '0'],
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, 'PYTHONPATH': str(REPO_DIR)},
        )

    def test_a_job_that_starts_threads_while_loading_is_refused(self):
        result = self.run_refused(
            """
            import threading
            import time


            class Job:
                def __init__(self):
                    threading.Thread(target=time.sleep, args=(60,), name='poller', daemon=True).start()

                def perform(self):
                    return 1
            """
        )
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn('cannot preload: the job started threads while loading (poller)', result.stderr)

    def test_a_job_that_fails_to_load_is_one_line_and_exit_1(self):
        result = self.run_refused(
            """
            class Job:
                def __init__(self):
                    raise RuntimeError('no model here')

                def perform(self):
                    return 1
            """
        )
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(
            'the job failed to load: RuntimeError: no model here, cause=RuntimeError (at job.py:4)', result.stderr
        )


if __name__ == '__main__':
    unittest.main()
