"""Dynamic batching, run by hand: perform throughput at 64 connections with and without perform_batch().

The job stands for a vectorised model on one device: every model call costs 5 ms whatever
its size (a fixed sleep, as a kernel launch or a round trip to an accelerator would), plus a
numpy matrix product of 0.05 ms per item (calibrated at start-up). `perform` calls the model
with one item; `perform_batch` calls it once with all the items of its batch. One lock is the
device, so without batching the model calls queue one after another. The same job is served
with `batch_max_size: 32` (`batch_max_wait_ms: 5`, the defaults) and with `batch_max_size: 1`
(batching off), and wrk posts `{"a": 1, "b": 2}` over 64 keep-alive connections, interleaved
over the rounds.

    python benchmarks/batching.py [--rounds 3] [--seconds 8]
"""

import argparse
import http.client
import statistics
import sys
import tempfile
from pathlib import Path

import probes

JOB = '''
import threading
import time

import numpy

CALL_SECONDS = 0.005
ITEM_SECONDS = 0.00005
WEIGHTS = numpy.random.default_rng(0).standard_normal((512, 512))


def _calibrate() -> int:
    """Rows of features whose product with WEIGHTS takes ITEM_SECONDS, per item."""
    rows = numpy.ones((256, 512))
    started = time.perf_counter()
    for _ in range(20):
        rows @ WEIGHTS
    per_row = (time.perf_counter() - started) / 20 / 256
    return max(1, round(ITEM_SECONDS / per_row))


ROWS_PER_ITEM = _calibrate()


class Job:
    def __init__(self) -> None:
        self.device = threading.Lock()

    def model(self, features: numpy.ndarray) -> numpy.ndarray:
        """One call of the model on a batch of items: a fixed cost, then a vectorised product."""
        with self.device:
            time.sleep(CALL_SECONDS)
            rows = numpy.repeat(features, ROWS_PER_ITEM, axis=0) @ WEIGHTS
            return rows.reshape(len(features), ROWS_PER_ITEM, -1)[:, 0, 0]

    def perform(self, a: float, b: float) -> float:
        return float(self.model(numpy.full((1, 512), a + b))[0])

    def perform_batch(self, calls: list[dict]) -> list[float]:
        features = numpy.array([[call['a'] + call['b']] * 512 for call in calls], dtype=float)
        return [float(score) for score in self.model(features)]
'''
REPO = Path(__file__).resolve().parent.parent
CONNECTIONS = 64
MODES = {'batched': 32, 'unbatched': 1}


def mean_batch_size(port: int) -> float:
    """Calls per perform_batch() call so far, from the batch_size histogram (0 when nothing was batched)."""
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    connection.request('GET', '/metrics')
    text = connection.getresponse().read().decode()
    connection.close()
    samples = dict(line.split(' ', 1) for line in text.splitlines() if line.startswith('batch_size_'))
    count = float(samples.get('batch_size_count', 0))
    return float(samples['batch_size_sum']) / count if count else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--seconds', type=float, default=8.0)
    args = parser.parse_args()
    results: dict[str, list[probes.WrkResult]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix='batching-') as tmp:
        (Path(tmp) / 'job.py').write_text(JOB)
        for _ in range(args.rounds):
            for mode, max_size in MODES.items():
                manifest = Path(tmp) / f'{mode}.yaml'
                manifest.write_text(f'name: batching\njobtype_extra:\n  batch_max_size: {max_size}\n')
                port = probes.free_port()
                argv = [sys.executable, '-m', 'racetrack_job_wrapper', 'job.py:Job', '--port', str(port)]
                argv += ['--manifest-path', str(manifest)]
                env = {'PYTHONPATH': str(REPO), 'OPENBLAS_NUM_THREADS': '1'}
                server = probes.start_server(argv, port, Path(tmp) / f'{mode}.log', Path(tmp), env=env)
                try:
                    probes.wait_ready(server)
                    probes.run_wrk(port, CONNECTIONS, 1)  # warm-up
                    result = probes.run_wrk(port, CONNECTIONS, args.seconds)
                    mean_batch = mean_batch_size(port)
                finally:
                    server.stop()
                if result.errors:
                    raise probes.ProbeError(f'{mode}: {result.errors} errors')
                results[mode].append(result)
                print(
                    f'{mode}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, '
                    f'mean batch {mean_batch:.1f} calls'
                )
    medians = {mode: statistics.median(r.rps for r in runs) for mode, runs in results.items()}
    for mode, runs in results.items():
        low, high = min(r.rps for r in runs), max(r.rps for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        print(f'{mode}: median {medians[mode]:,.0f} req/s ({low:,.0f}..{high:,.0f}), p99 {p99:.1f} ms')
    print(f'batched/unbatched: {medians["batched"] / medians["unbatched"]:.1f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
