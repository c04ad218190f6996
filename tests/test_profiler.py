"""The memray profiler endpoints: a real capture over a socket, and the clear error without memray."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import unittest
from pathlib import Path

from racetrack_job_wrapper.messages import HTTPError, Request
from racetrack_job_wrapper.profiler import NOT_INSTALLED, MemoryProfiler, create_profiler, profiler_routes
from racetrack_job_wrapper.settings import ObservabilitySettings
from tests.support import ProcessJob

BASE = '/api/v1/profiler/memray'
ALLOCATING_JOB = """
class Job:
    def __init__(self):
        self.kept = []

    def perform(self) -> int:
        self.kept.append([1] * 1_000_000)  # 8 MB that stay: the biggest allocation of the capture
        return len(self.kept)
"""
# Found before the real package, so `import memray` fails as where memray is not installed.
NO_MEMRAY = "raise ModuleNotFoundError(\"No module named 'memray'\", name='memray')\n"


def require_memray() -> None:
    """memray is a test dependency: missing, it skips the test locally and fails it in CI."""
    if importlib.util.find_spec('memray') is None:
        if os.environ.get('CI') == 'true':
            raise AssertionError('memray is not installed, and CI=true: install the test extra')
        raise unittest.SkipTest('memray is not installed')


class ProfiledJobTestCase(unittest.TestCase):
    def start_job(self, env: dict[str, str]) -> ProcessJob:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        (self.dir / 'job.py').write_text(ALLOCATING_JOB)
        # TMPDIR: the capture file goes to the test's directory, removed with it.
        job = ProcessJob(['job.py:Job'], cwd=self.dir, env={'MEMRAY_PROFILER': 'true', 'TMPDIR': str(self.dir), **env})
        self.addCleanup(job.stop)
        job.wait_ready()
        return job


class MemrayCaptureTest(ProfiledJobTestCase):
    def setUp(self):
        require_memray()

    def test_start_allocate_stop_and_fetch_the_reports(self):
        import memray

        job = self.start_job({})
        client = job.client()
        running = client.get(BASE + '/report')  # tracking began at start-up: the capture is being written
        self.assertEqual(running.status, 200)
        self.assertTrue(running.body.startswith(b'memray'), running.body[:16])
        for path in ('/start', '/stop', '/start'):  # a second start or stop does nothing
            response = client.post(BASE + path)
            self.assertEqual((response.status, response.body), (200, b'null'), path)
        for _ in range(3):
            self.assertEqual(client.post('/api/v1/perform').status, 200)
        self.assertEqual(client.post(BASE + '/stop').body, b'null')

        report = client.get(BASE + '/report')
        self.assertEqual(report.status, 200)
        self.assertEqual(report.headers['content-type'], 'application/octet-stream')
        self.assertEqual(report.headers['content-disposition'], 'inline; filename="memray-report.bin"')
        capture = self.dir / 'downloaded.bin'
        capture.write_bytes(report.body)
        reader = memray.FileReader(str(capture))
        self.assertTrue(reader.metadata.trace_python_allocators)
        biggest = max(reader.get_high_watermark_allocation_records(), key=lambda record: record.size)
        function, filename, _ = biggest.stack_trace()[0]
        self.assertEqual((function, Path(filename).name), ('perform', 'job.py'))
        self.assertGreaterEqual(biggest.size, 8_000_000)

        flamegraph = client.get(BASE + '/flamegraph')
        self.assertEqual(flamegraph.status, 200)
        self.assertEqual(flamegraph.headers['content-type'], 'text/html; charset=utf-8')
        self.assertEqual(flamegraph.headers['content-disposition'], 'inline; filename="memray-flamegraph.html"')
        self.assertTrue(flamegraph.body.lstrip().startswith(b'<!DOCTYPE html>'))
        self.assertIn(b'job.py', flamegraph.body)

        stats = client.get(BASE + '/stats')
        self.assertEqual(stats.status, 200)
        self.assertEqual(stats.headers['content-type'], 'text/plain; charset=utf-8')
        text = stats.body.decode()
        self.assertIn('Total allocations', text)
        self.assertRegex(text, r'- perform:.*job\.py:7 -> ')
        self.assertEqual(client.get(f'/pub/job/job/latest{BASE}/stats').status, 200)
        self.assertEqual(client.get(BASE + '/start').status, 405)


class WithoutMemrayTest(ProfiledJobTestCase):
    def test_one_warning_and_501_from_every_endpoint(self):
        fake = tempfile.TemporaryDirectory()
        self.addCleanup(fake.cleanup)
        Path(fake.name, 'memray.py').write_text(NO_MEMRAY)
        job = self.start_job({'PYTHONPATH': fake.name})
        client = job.client()
        for method, path in (
            ('POST', '/start'),
            ('POST', '/stop'),
            ('GET', '/report'),
            ('GET', '/flamegraph'),
            ('GET', '/stats'),
        ):
            with self.subTest(path=path):
                response = client.request(method, BASE + path)
                self.assertEqual(response.status, 501)
                self.assertEqual(response.json(), {'error': NOT_INSTALLED, 'type': 'ProfilerUnavailable'})
        self.assertEqual(client.post('/api/v1/perform').json(), 1)
        job.stop()
        warnings = [line for line in job.read_output().splitlines() if 'memray is not installed' in line]
        self.assertEqual(len(warnings), 1, job.read_output())
        self.assertIn('WARN', warnings[0])
        self.assertIn('pip install memray; the profiler endpoints answer 501 until then', warnings[0])


class ProfilerUnitTest(unittest.TestCase):
    def routes(self, profiler: MemoryProfiler) -> dict[str, dict]:
        return {route.path: route.handlers for route in profiler_routes(profiler, '/api/v1')}

    def test_disabled_by_default(self):
        self.assertIsNone(create_profiler(ObservabilitySettings()))
        self.assertIsNone(create_profiler(ObservabilitySettings.from_environ({'MEMRAY_PROFILER': 'no'})))
        settings = ObservabilitySettings.from_environ({'MEMRAY_PROFILER': 'TRUE', 'MEMRAY_LEAKS': 'yes'})
        self.assertEqual((settings.memray_profiler, settings.memray_leaks), (True, True))

    def test_routes_under_the_api_prefix(self):
        routes = self.routes(MemoryProfiler(None, Path('/nonexistent/report.bin')))
        self.assertEqual(
            {path: sorted(handlers) for path, handlers in routes.items()},
            {
                BASE + '/start': ['POST'],
                BASE + '/stop': ['POST'],
                BASE + '/report': ['GET'],
                BASE + '/flamegraph': ['GET'],
                BASE + '/stats': ['GET'],
            },
        )

    def test_without_memray_start_and_stop_do_nothing_and_endpoints_answer_501(self):
        profiler = MemoryProfiler(None, Path('/nonexistent/report.bin'))
        profiler.start()
        profiler.stop()
        with self.assertRaises(HTTPError) as caught:
            self.routes(profiler)[BASE + '/stop']['POST'](Request('POST', BASE + '/stop'))
        self.assertEqual((caught.exception.status, caught.exception.error_type), (501, 'ProfilerUnavailable'))

    def test_no_report_yet_is_400(self):
        require_memray()
        import memray

        with tempfile.TemporaryDirectory() as directory:
            profiler = MemoryProfiler(memray, Path(directory) / 'report.bin')
            for path in ('/report', '/flamegraph', '/stats'):
                with self.subTest(path=path):
                    with self.assertRaises(HTTPError) as caught:
                        self.routes(profiler)[BASE + path]['GET'](Request('GET', BASE + path))
                    self.assertEqual((caught.exception.status, caught.exception.error_type), (400, 'ValueError'))
                    self.assertEqual(
                        caught.exception.detail,
                        f'memory report not found at {directory}/report.bin: start the profiler first',
                    )


if __name__ == '__main__':
    unittest.main()
