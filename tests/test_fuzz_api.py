"""Property-based requests from the job's own OpenAPI document (schemathesis CLI): no 5xx, responses match."""

import enum
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional, TypedDict

from racetrack_job_wrapper.endpoint_config import EndpointConfig, Query
from tests.support import ServerTestCase, slow


class Unit(enum.Enum):
    METRE = 'm'
    FOOT = 'ft'


@dataclass
class Point:
    x: float
    y: float = 0.0


class Stats(TypedDict):
    count: int
    smallest: Optional[float]


class FuzzedJob:
    def perform(
        self,
        numbers: list[float],
        mode: Literal['min', 'count'] = 'min',
        origin: Optional[Point] = None,
        tags: Optional[set[str]] = None,
        pair: tuple[int, str] = (0, ''),
    ) -> Stats:
        """Summarise numbers.
        :param numbers: Numbers to summarise.
        :param mode: What to compute.
        """
        smallest = min(numbers, default=None) if mode == 'min' else None
        return {'count': len(numbers) + len(tags or ()), 'smallest': smallest}

    def docs_input_example(self) -> dict:
        return {'numbers': [3, 1.5], 'mode': 'min'}

    def auxiliary_endpoints(self):
        return {'/move': self.move}

    def move(self, point: Point, unit: Unit = Unit.METRE, steps: dict[str, int] | None = None) -> Point:
        """Echo a point, as a dataclass."""
        return Point(point.x, point.y)

    def auxiliary_endpoints_v2(self):
        return [EndpointConfig('/lookup/{key}', 'GET', self.lookup)]

    def lookup(
        self, key: int, flag: Annotated[bool, Query()] = False, ids: Annotated[list[int], Query()] = []
    ) -> dict[str, int | bool | list[int]]:
        """Query and path parameters."""
        return {'key': key, 'flag': flag, 'ids': ids}


def schemathesis_command() -> str | None:
    # Beside this interpreter first: a virtual environment's scripts are there, on PATH or not.
    scripts = str(Path(sys.executable).parent)
    return shutil.which('schemathesis', path=scripts) or shutil.which('schemathesis') or shutil.which('st')


@slow
class FuzzAPITest(ServerTestCase):
    def test_no_server_errors_and_responses_match_the_schema(self):
        command = schemathesis_command()
        if command is None:
            if os.environ.get('CI'):
                self.fail('schemathesis is not installed (pip install schemathesis)')
            self.skipTest('schemathesis is not installed; CI installs it')
        # Its own working directory: the async calls the fuzzing makes (Prefer: respond-async) are stored there.
        job_dir = tempfile.TemporaryDirectory()
        self.addCleanup(job_dir.cleanup)
        job = self.start(FuzzedJob, {'name': 'fuzzed', 'version': '0.1.0'}, cwd=Path(job_dir.name))
        base = f'http://127.0.0.1:{job.port}'
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run(
                [
                    command,
                    'run',
                    f'{base}/openapi.json',
                    '--url',
                    base,
                    '--checks',
                    'not_a_server_error,response_schema_conformance',
                    '--phases',
                    'examples,coverage,fuzzing',
                    '--max-examples',
                    '25',
                    '--seed',
                    '1',
                    # The status of an async call answers only 404 to ids that were never given out:
                    # tests.test_async_calls calls it with real ones.
                    '--exclude-path-regex',
                    '/calls/',
                    # One worker: hypothesis builds strategies with ast.parse, which is not thread-safe
                    # on Python 3.11 ('AST constructor recursion depth mismatch').
                    '--workers',
                    '1',
                    '--no-color',
                    '--generation-database',
                    'none',
                    '--report-dir',
                    tmp,
                ],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=120,
            )
        self.assertEqual(result.returncode, 0, result.stdout[-6000:] + result.stderr[-2000:])
        # perform, /move, /lookup/{key}, /parameters, /, /live, /ready, /health, /metrics
        self.assertRegex(result.stdout, r'Tested: 9\n')
        self.assertIn('No issues found', result.stdout)
        self.assertLess(time.monotonic() - started, 60)


if __name__ == '__main__':
    unittest.main()
