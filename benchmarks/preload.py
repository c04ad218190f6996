"""`--preload` memory, run by hand: total PSS of 4 workers holding a 500 MB numpy array, with and without it.

Starts the job three ways from this checkout: one process (`--workers 1`), `--workers 4`, and
`--workers 4 --preload`. For each it waits until every worker has answered, then sums the
proportional set size (`Pss` of /proc/<pid>/smaps_rollup: shared pages split among their
sharers) over the parent and its workers, and reports it with the time to all workers ready.

    python benchmarks/preload.py [--megabytes 500] [--workers 4]
"""

import argparse
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path

import probes

JOB = """
import os

import numpy


class Job:
    def __init__(self):
        # A model's weights: read-only once loaded.
        self.weights = numpy.random.default_rng(0).random({count})

    def perform(self):
        return {{'pid': os.getpid(), 'sum': float(self.weights[:1000].sum())}}
"""
REPO = Path(__file__).resolve().parent.parent


def pss_kib(pid: int) -> int:
    for line in Path(f'/proc/{pid}/smaps_rollup').read_text().splitlines():
        if line.startswith('Pss:'):
            return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    children = Path(f'/proc/{pid}/task/{pid}/children').read_text().split()
    return [pid, *(int(child) for child in children)]


def measure(job: Path, workers: int, preload: bool) -> tuple[float, float]:
    """(seconds until every worker answered, total PSS in MiB)."""
    port = probes.free_port()
    argv = [sys.executable, '-m', 'racetrack_job_wrapper', f'{job}:Job', '--port', str(port), '--workers', str(workers)]
    argv += ['--preload'] if preload else []
    log = job.parent / f'server-{port}.log'
    server = probes.start_server(argv, port, log, job.parent, env={'PYTHONPATH': str(REPO)})
    try:
        seen: set[int] = set()
        deadline = time.perf_counter() + 600
        while len(seen) < workers:
            if time.perf_counter() > deadline or server.proc.poll() is not None:
                raise RuntimeError(f'not all workers answered: {server.log_tail(5)}')
            try:
                connection = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
                connection.request('POST', '/api/v1/perform', '{}', {'Content-Type': 'application/json'})
                response = connection.getresponse()
                if response.status == 200:
                    seen.add(json.loads(response.read())['pid'])
                connection.close()
            except OSError:
                time.sleep(0.05)
        ready = time.perf_counter() - server.started_at
        time.sleep(1.0)  # settle
        total = sum(pss_kib(pid) for pid in process_tree(server.proc.pid)) / 1024
        return ready, total
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--megabytes', type=int, default=500)
    parser.add_argument('--workers', type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='preload-') as tmp:
        job = Path(tmp) / 'job.py'
        job.write_text(JOB.format(count=args.megabytes * 1024 * 1024 // 8))
        one_ready, one = measure(job, 1, False)
        plain_ready, plain = measure(job, args.workers, False)
        shared_ready, shared = measure(job, args.workers, True)
    print(f'one process: PSS {one:,.0f} MiB, ready in {one_ready:.1f} s')
    print(f'--workers {args.workers}: PSS {plain:,.0f} MiB ({plain / one:.2f}x one), all ready in {plain_ready:.1f} s')
    print(
        f'--workers {args.workers} --preload: PSS {shared:,.0f} MiB ({shared / one:.2f}x one), '
        f'all ready in {shared_ready:.1f} s'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
