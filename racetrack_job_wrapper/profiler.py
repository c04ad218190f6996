"""Memory profiling with memray (MEMRAY_PROFILER=true): tracking from start-up, endpoints to stop it and fetch reports.

memray is imported only when the profiler is enabled. Its reporters (`memray stats`,
`memray flamegraph`) run as `python -m memray` with this interpreter, so they read the
capture with the memray that wrote it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from racetrack_job_wrapper.messages import HTTPError, Request, Response, json_response
from racetrack_job_wrapper.routing import Handler, Route
from racetrack_job_wrapper.settings import ObservabilitySettings

logger = logging.getLogger(__name__)

REPORT_FILENAME = 'memray-report.bin'
FLAMEGRAPH_FILENAME = 'memray-flamegraph.html'
PROFILER_PATH = '/profiler/memray'
NOT_INSTALLED = (
    'the memory profiler is enabled (MEMRAY_PROFILER=true), but memray is not installed;'
    ' install it with: pip install memray'
)


class MemoryProfiler:
    """One memray capture at a time into `report_path`, or none when memray is missing; thread-safe.

    memray allows one active tracker per process, so a process has one profiler.
    """

    def __init__(self, memray: ModuleType | None, report_path: Path, leaks: bool = False):
        self.memray = memray
        self.report_path = report_path
        self.leaks = leaks
        self._tracker: Any = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """Whether memray is installed."""
        return self.memray is not None

    def start(self) -> None:
        """Begin a new capture, replacing the last report; nothing when one runs already or memray is missing."""
        with self._lock:
            if self._tracker is not None or self.memray is None:
                return
            if self.report_path.is_file():
                logger.warning('deleting the previous memory report %s', self.report_path)
                self.report_path.unlink()  # memray refuses to write over a file
            tracker = self.memray.Tracker(self.report_path, trace_python_allocators=True)
            tracker.__enter__()
            self._tracker = tracker
        logger.info('memory profiler started, writing to %s', self.report_path)

    def stop(self) -> None:
        """End the capture, completing the report; nothing when none runs."""
        with self._lock:
            tracker, self._tracker = self._tracker, None
            if tracker is None:
                return
            tracker.__exit__(None, None, None)
        logger.info('memory profiler stopped, report saved to %s', self.report_path)

    def report(self) -> bytes:
        """The capture file as memray wrote it (still growing while the capture runs)."""
        return self._report_path().read_bytes()

    def flamegraph(self) -> bytes:
        """The HTML flame graph of the capture: peak memory, or leaks with MEMRAY_LEAKS=true."""
        report = self._report_path()
        with tempfile.TemporaryDirectory(prefix='racetrack-memray-') as directory:
            output = Path(directory) / FLAMEGRAPH_FILENAME
            self._run_reporter('flamegraph', *(['--leaks'] if self.leaks else []), '-o', str(output), str(report))
            return output.read_bytes()

    def stats(self) -> str:
        """`memray stats` of the capture: totals, a histogram, the largest allocating places."""
        return self._run_reporter('stats', str(self._report_path()))

    def _report_path(self) -> Path:
        if not self.report_path.is_file():
            raise HTTPError(
                400, f'memory report not found at {self.report_path}: start the profiler first', error_type='ValueError'
            )
        return self.report_path

    def _run_reporter(self, *arguments: str) -> str:
        command = [sys.executable, '-m', 'memray', *arguments]
        done = subprocess.run(command, capture_output=True, text=True, encoding='utf-8', errors='replace')
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise HTTPError(
                500,
                f'memray {arguments[0]} failed with exit code {done.returncode}{": " + detail[-1] if detail else ""}',
                error_type='ProfilerError',
            )
        return done.stdout


def create_profiler(settings: ObservabilitySettings, directory: str | None = None) -> MemoryProfiler | None:
    """The profiler MEMRAY_PROFILER asks for, or None; warns once when memray is not installed.

    The report is `racetrack-memray-report-<pid>.bin` in `directory` (the temporary
    directory by default): worker processes each keep their own.
    """
    if not settings.memray_profiler:
        return None
    memray: ModuleType | None
    try:
        import memray
    except ImportError:
        logger.warning('%s; the profiler endpoints answer 501 until then', NOT_INSTALLED)
        memray = None
    path = Path(directory or tempfile.gettempdir()) / f'racetrack-memray-report-{os.getpid()}.bin'
    return MemoryProfiler(memray, path, leaks=settings.memray_leaks)


def profiler_routes(profiler: MemoryProfiler, api_prefix: str) -> list[Route]:
    """`POST .../start`, `POST .../stop`, `GET .../report`, `.../flamegraph`, `.../stats` under `api_prefix`.

    Without memray every one of them answers 501: the deployment lacks the feature,
    asking again will not help (503 would say it might).
    """

    def start(_: Request) -> Response:
        profiler.start()
        return json_response(None)

    def stop(_: Request) -> Response:
        profiler.stop()
        return json_response(None)

    def report(_: Request) -> Response:
        return Response(profiler.report(), 200, 'application/octet-stream', _inline(REPORT_FILENAME))

    def flamegraph(_: Request) -> Response:
        return Response(profiler.flamegraph(), 200, 'text/html; charset=utf-8', _inline(FLAMEGRAPH_FILENAME))

    def stats(_: Request) -> Response:
        return Response(profiler.stats().encode(), 200, 'text/plain; charset=utf-8')

    def guarded(handler: Handler) -> Handler:
        def answer(request: Request) -> Response:
            if not profiler.available:
                raise HTTPError(501, NOT_INSTALLED, error_type='ProfilerUnavailable')
            return handler(request)

        return answer

    base = api_prefix + PROFILER_PATH
    return [
        Route(base + '/start', {'POST': guarded(start)}, 'the memory profiler'),
        Route(base + '/stop', {'POST': guarded(stop)}, 'the memory profiler'),
        Route(base + '/report', {'GET': guarded(report)}, 'the memory profiler'),
        Route(base + '/flamegraph', {'GET': guarded(flamegraph)}, 'the memory profiler'),
        Route(base + '/stats', {'GET': guarded(stats)}, 'the memory profiler'),
    ]


def _inline(filename: str) -> dict[str, str]:
    return {'Content-Disposition': f'inline; filename="{filename}"'}
