"""`--preload` memory: total PSS of 4 workers holding a 500 MB numpy array, with and without it.

Starts `jobs/weights.py` three ways: one process (`--workers 1`), `--workers 4`, and
`--workers 4 --preload`. For each it waits until every worker has answered, then sums the
proportional set size (`Pss` of /proc/<pid>/smaps_rollup: shared pages split among their
sharers) over the parent and its workers, and reports it with the time to all workers ready.
`bench.py` measures the same (with a smaller array) as its preload rows.

    python benchmarks/preload.py [--megabytes 500] [--workers 4]
"""

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import probes

BENCH_DIR = Path(__file__).resolve().parent
JOB = BENCH_DIR / 'jobs' / 'weights.py'
REPO = BENCH_DIR.parent


def measure(
    python: Path, workers: int, preload: bool, megabytes: int, log_dir: Path, env: dict[str, str] | None = None
) -> tuple[float, float]:
    """(seconds until every worker answered, total PSS in MiB) of `jobs/weights.py` served by `python`."""
    port = probes.free_port()
    argv = [str(python), '-m', 'racetrack_job_wrapper', f'{JOB}:Job', '--port', str(port), '--workers', str(workers)]
    argv += ['--preload'] if preload else []
    log = log_dir / f'preload-{workers}-{preload}-{port}.log'
    server = probes.start_server(argv, port, log, log_dir, env={**(env or {}), 'BENCH_WEIGHTS_MB': str(megabytes)})
    try:
        seen: set[int] = set()
        deadline = time.perf_counter() + 300
        while len(seen) < workers:
            if time.perf_counter() > deadline or server.proc.poll() is not None:
                raise probes.ProbeError(f'not all workers answered: {server.log_tail(5)}')
            try:
                connection = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
                connection.request('POST', '/api/v1/perform', '{}', {'Content-Type': 'application/json'})
                response = connection.getresponse()
                answer = response.read()
                connection.close()
            except OSError:
                time.sleep(0.05)
                continue
            if response.status == 200:
                seen.add(json.loads(answer)['pid'])
            elif b'failed to load' in answer:
                raise probes.ProbeError(f'the job failed to load: {server.log_tail(3)}')
            else:
                time.sleep(0.01)  # a worker still loading answers 503
        ready = time.perf_counter() - server.started_at
        time.sleep(1.0)  # settle
        return ready, probes.process_tree_pss(server.proc.pid) / 2**20
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--megabytes', type=int, default=500)
    parser.add_argument('--workers', type=int, default=4)
    args = parser.parse_args()
    # This checkout, run by this interpreter (which needs numpy).
    env = {'PYTHONPATH': os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))}
    python = Path(sys.executable)
    with tempfile.TemporaryDirectory(prefix='preload-') as tmp:
        logs = Path(tmp)
        one_ready, one = measure(python, 1, False, args.megabytes, logs, env)
        plain_ready, plain = measure(python, args.workers, False, args.megabytes, logs, env)
        shared_ready, shared = measure(python, args.workers, True, args.megabytes, logs, env)
    print(f'one process: PSS {one:,.0f} MiB, ready in {one_ready:.1f} s')
    print(f'--workers {args.workers}: PSS {plain:,.0f} MiB ({plain / one:.2f}x one), all ready in {plain_ready:.1f} s')
    print(
        f'--workers {args.workers} --preload: PSS {shared:,.0f} MiB ({shared / one:.2f}x one), '
        f'all ready in {shared_ready:.1f} s'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
