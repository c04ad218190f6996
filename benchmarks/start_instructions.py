"""Instructions (callgrind) from spawn to the first 200 of `/ready`, the project's and the floor's, and the imports.

Counts repeat within a fraction of a percent on a busy machine, where start-up times swing by
half. Needs valgrind (`apt-get install valgrind`) and the bench's venvs (made as bench.py makes
them); takes about a minute.

    python benchmarks/start_instructions.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from probes import free_port, start_server, wait_ready  # noqa: E402
from sides import Side, floor_side, project_side  # noqa: E402

JOB = BENCH_DIR / 'jobs' / 'trivial.py'
FLOOR_IMPORTS = 'import http.server, json, argparse, inspect, pathlib'


def _callgrind(argv: list[str]) -> list[str]:
    return ['valgrind', '--tool=callgrind', *argv]


def _total(out: Path) -> int:
    found = re.search(r'^totals: (\d+)', out.read_text(), re.M)
    if not found:
        raise RuntimeError(f'no totals in {out}')
    return int(found.group(1))


def to_ready(side: Side, work: Path) -> int:
    """Instructions until `/ready` first answers 200 (callgrind dumps its counts at that moment)."""
    port = free_port()
    out = work / f'{side.name}.out'
    argv = _callgrind([f'--callgrind-out-file={out}', *side.argv(JOB, port)])
    # Run from the scratch directory: from the repository, `import racetrack_job_wrapper` would
    # find the source tree before the installed package.
    server = start_server(argv, port, work / f'{side.name}.log', cwd=work)
    try:
        # Polled seldom: each 503 a loading server answers counts towards its start.
        wait_ready(server, timeout=300, interval=0.2)
        subprocess.run(['callgrind_control', '--dump', str(server.proc.pid)], capture_output=True, check=True)
    finally:
        server.stop()
    return _total(Path(f'{out}.1'))


def of_code(python: Path, code: str, work: Path) -> int:
    """Instructions of `python -c code`, the interpreter's start included."""
    out = work / 'code.out'
    subprocess.run(
        _callgrind([f'--callgrind-out-file={out}', str(python), '-c', code]),
        capture_output=True,
        cwd=work,
        timeout=300,
        check=True,
    )
    return _total(out)


def main() -> None:
    """Print the counts, in millions, with their ratios to the floor's start."""
    project, floor = project_side(False), floor_side(False)
    with tempfile.TemporaryDirectory(prefix='bench-instructions-') as tmp:
        work = Path(tmp)
        floor_start = to_ready(floor, work)
        rows = [
            ('floor: spawn to the first 200 of /ready', floor_start),
            ('project: spawn to the first 200 of /ready', to_ready(project, work)),
            (f"the floor's imports ({FLOOR_IMPORTS})", of_code(project.python, FLOOR_IMPORTS, work)),
            ('  and logging', of_code(project.python, f'{FLOOR_IMPORTS}, logging', work)),
            ('  and prometheus_client', of_code(project.python, f'{FLOOR_IMPORTS}, prometheus_client', work)),
            ('  and both', of_code(project.python, f'{FLOOR_IMPORTS}, logging, prometheus_client', work)),
            ('import racetrack_job_wrapper.cli', of_code(project.python, 'import racetrack_job_wrapper.cli', work)),
        ]
    for name, count in rows:
        print(f"{name:<64} {count / 1e6:8.1f} M  {count / floor_start:5.2f}x the floor's start")


if __name__ == '__main__':
    main()
