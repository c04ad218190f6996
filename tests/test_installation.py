"""The start-up warning when racetrack-job-runner is installed in the same environment."""

from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path

from racetrack_job_wrapper.installation import find_conflicting_install
from tests.support import REPO_DIR, ProcessJob

WARNING = (
    'racetrack-job-runner 1.18.0 is installed in this environment too ({path}): it ships the same'
    ' racetrack_job_wrapper package and racetrack_job_runner command, so the two are mixed. Run'
    ' `pip uninstall racetrack-job-runner`, then `pip install --force-reinstall --no-deps'
    ' racetrack-job-wrapper`: the uninstall deletes files both share.'
)


class FindTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)

    def test_finds_its_metadata_directory_only(self):
        (self.dir / 'racetrack_job_wrapper-0.1.0.dist-info').mkdir()
        (self.dir / 'racetrack_job_runner_extras-1.0.dist-info').mkdir()
        self.assertIsNone(find_conflicting_install([str(self.dir), '/nonexistent', str(REPO_DIR / 'x.zip')]))
        for name in ('racetrack_job_runner-1.18.0.dist-info', 'racetrack_job_runner-1.18.0-py3.11.egg-info'):
            with self.subTest(name=name):
                (self.dir / name).mkdir()
                self.assertEqual(find_conflicting_install(['/nonexistent', str(self.dir)]), self.dir / name)
                (self.dir / name).rmdir()

    def test_the_check_is_cheap(self):
        started = time.perf_counter()
        for _ in range(10):
            find_conflicting_install()
        self.assertLess((time.perf_counter() - started) / 10, 0.01)  # importlib.metadata's import alone: ~12 ms


class StartUpWarningTest(unittest.TestCase):
    def serve_with_path_entry(self, directory_name: str) -> tuple[list[str], Path]:
        """Serve a job with a path entry holding `directory_name`; its output lines naming the other distribution."""
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        site = Path(tmp.name, 'site')
        (site / directory_name).mkdir(parents=True)
        Path(tmp.name, 'job.py').write_text('class Job:\n    def perform(self) -> int:\n        return 1\n')
        job = ProcessJob(['job.py:Job'], cwd=tmp.name, env={'PYTHONPATH': str(site)})
        try:
            job.wait_ready()
        finally:
            job.stop()
        return [line for line in job.read_output().splitlines() if 'racetrack-job-runner' in line], site

    def test_one_warning_when_racetrack_job_runner_is_installed_too(self):
        lines, site = self.serve_with_path_entry('racetrack_job_runner-1.18.0.dist-info')
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(' WARN  racetrack_job_wrapper.installation: ', lines[0])
        self.assertTrue(
            lines[0].endswith(WARNING.format(path=site / 'racetrack_job_runner-1.18.0.dist-info')), lines[0]
        )

    def test_no_warning_for_this_distribution(self):
        self.assertEqual(self.serve_with_path_entry('racetrack_job_wrapper-0.1.0.dist-info')[0], [])


if __name__ == '__main__':
    unittest.main()
