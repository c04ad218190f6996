"""Side-by-side benchmark: this project vs the PyPI peer vs a bare stdlib floor, interleaved.

Run `python benchmarks/bench.py` (about 12 minutes) or `--quick` (one short round). Prints one
markdown table and writes it to benchmarks/results/latest.md.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import payloads
import preload as preloading
import probes
import sides
from report import SIDES, Figure, Results, render_table

JOBS_DIR = sides.BENCH_DIR / 'jobs'
RESULTS_DIR = sides.BENCH_DIR / 'results'
CONNECTIONS = (1, 16, 64)
CPU_CONNECTIONS = 16
WARMUP_SECONDS = 1
WORKERS_TARGET = 1.7
MB = 1024 * 1024
# Sequential requests per side, case and round for the large-payload cases (after one warm-up).
PAYLOAD_REQUESTS = 5
ARRAY_SIZE = 200_000
RECORD_COUNT = 100_000
PRELOAD_MB = 200  # the preload job's weights: enough to dominate memory, quick to generate
PRELOAD_WORKERS = 4

FIGURES = [
    *[
        f
        for c in CONNECTIONS
        for f in (
            Figure(f'trivial_rps_c{c}', f'trivial job, {c} conn: throughput', 'req/s', 'higher', 0),
            Figure(f'trivial_p50_c{c}', f'trivial job, {c} conn: p50 latency', 'ms', 'lower', 2),
            Figure(f'trivial_p99_c{c}', f'trivial job, {c} conn: p99 latency', 'ms', 'lower', 2),
        )
    ],
    Figure('sleep_rps_c64', 'sleep 10 ms job, 64 conn: throughput', 'req/s', 'higher', 0),
    Figure('sleep_p50_c64', 'sleep 10 ms job, 64 conn: p50 latency', 'ms', 'lower', 2),
    Figure('sleep_p99_c64', 'sleep 10 ms job, 64 conn: p99 latency', 'ms', 'lower', 2),
    Figure('start_ready', 'start: spawn to first 200 from /ready', 'ms', 'lower', 0),
    Figure('rss_idle', 'RSS idle after start', 'MiB', 'lower', 1),
    Figure('rss_c64', 'RSS after the 64-conn trivial run', 'MiB', 'lower', 1),
    Figure('size', 'installed size (site-packages minus empty venv)', 'MiB', 'lower', 3),
    Figure('import_top', f'import time: `import {sides.PACKAGE}`', 'ms', 'lower', 1),
    Figure('import_serving', 'import time: serving module (`.standalone`; floor: its script)', 'ms', 'lower', 1),
    Figure('get_metrics', 'GET /metrics p50 (1 keep-alive conn)', 'ms', 'lower', 3),
    Figure('get_openapi', 'GET /openapi.json p50 (1 keep-alive conn)', 'ms', 'lower', 3),
    Figure('get_docs', 'GET /docs p50 (1 keep-alive conn)', 'ms', 'lower', 3),
    Figure('json_in', '10 MiB JSON body in (small objects), p50 of sequential POSTs', 'ms', 'lower', 1),
    Figure('json_out', f'JSON result out ({RECORD_COUNT:,} small objects), p50', 'ms', 'lower', 1),
    Figure('numpy_out', f'numpy result out ({ARRAY_SIZE:,} floats; floor: .tolist()), p50', 'ms', 'lower', 1),
    Figure('preload_pss_w1', f'preload job ({PRELOAD_MB} MB array): PSS, one process', 'MiB', 'lower', 0),
    Figure('preload_pss_w4', f'preload job: PSS, --workers {PRELOAD_WORKERS}', 'MiB', 'lower', 0),
    Figure('preload_pss_w4p', f'preload job: PSS, --workers {PRELOAD_WORKERS} --preload', 'MiB', 'lower', 0),
    Figure('preload_share', f'preload: PSS of --workers {PRELOAD_WORKERS} --preload / one process', 'x', 'lower', 2),
    Figure('preload_ready_w4', f'preload job: {PRELOAD_WORKERS} workers ready, no --preload', 'ms', 'lower', 0),
    Figure('preload_ready_w4p', f'preload job: {PRELOAD_WORKERS} workers ready, --preload', 'ms', 'lower', 0),
    Figure('cpu_rps_w1', f'CPU job (~2 ms), {CPU_CONNECTIONS} conn, --workers 1', 'req/s', 'higher', 0),
    Figure('cpu_rps_w2', f'CPU job (~2 ms), {CPU_CONNECTIONS} conn, --workers 2', 'req/s', 'higher', 0),
    Figure('cpu_scaling', 'workers scaling: --workers 2 / --workers 1', 'x', 'higher', 2),
]
MEASURE_ERRORS = (probes.ProbeError, sides.SetupError, OSError, ValueError, subprocess.SubprocessError)


def log(message: str) -> None:
    """Report progress on stderr, keeping stdout for the table."""
    print(f'[bench {time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


class Fleet:
    """Starts servers and guarantees each one is stopped, whatever happens."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.running: list[probes.Server] = []

    def start(
        self, side: sides.Side, job: str, workers: int | None = None, env: dict[str, str] | None = None
    ) -> probes.Server:
        """Start `side` on a job file and wait for /ready; raise ProbeError if it never is."""
        port = probes.free_port()
        log_path = self.log_dir / f'{side.name}-{job}-{port}.log'
        argv = side.argv(JOBS_DIR / f'{job}.py', port, workers)
        # The peer looks for a manifest in its working directory; give it an empty one.
        server = probes.start_server(argv, port, log_path, cwd=self.log_dir, env=env)
        self.running.append(server)
        try:
            server.ready_s = probes.wait_ready(server)
        except BaseException:
            self.stop(server)
            raise
        return server

    def stop(self, server: probes.Server) -> None:
        """Stop one server."""
        server.stop()
        if server in self.running:
            self.running.remove(server)

    def stop_all(self) -> None:
        """Stop every server still running."""
        for server in list(self.running):
            self.stop(server)


def attempt(results: Results, keys: list[str], side: str, action: Callable[[], None]) -> bool:
    """Run one measurement; on failure mark `keys` of `side` as errors and carry on."""
    try:
        action()
        return True
    except MEASURE_ERRORS as exc:
        for key in keys:
            results.fail(key, side, f'{type(exc).__name__}: {exc}')
        log(f'{side}: {keys[0]}...: {exc}')
        return False


def record_wrk(results: Results, prefix: str, side: str, port: int, conns: int, seconds: float) -> None:
    """Run wrk and record throughput, p50 and p99 under `prefix`."""
    run = probes.run_wrk(port, conns, seconds)
    results.add(f'{prefix}_rps_c{conns}', side, run.rps)
    results.add(f'{prefix}_p50_c{conns}', side, run.p50_ms)
    results.add(f'{prefix}_p99_c{conns}', side, run.p99_ms)
    if run.errors:
        results.notes.append(
            f'{side}, {prefix} job at {conns} conn: {run.errors} socket/status errors reported by wrk in one round'
        )


def server_rss_mb(server: probes.Server) -> float:
    """Return the server's process-tree RSS in MiB; a dead server has none to report."""
    if server.proc.poll() is not None:
        raise probes.ProbeError(f'server exited with {server.proc.returncode}')
    return probes.process_tree_rss(server.proc.pid) / MB


def start_all(
    fleet: Fleet,
    active: dict[str, sides.Side],
    job: str,
    results: Results,
    keys: list[str],
    on_start: Callable[[str, probes.Server], None] | None = None,
) -> dict[str, probes.Server]:
    """Start each side in turn on `job`; a side that fails gets `keys` marked as errors."""
    servers = {}
    for name, side in active.items():

        def launch() -> None:
            server = fleet.start(side, job)
            if on_start:
                on_start(name, server)
            probes.check_perform(server.port)
            servers[name] = server

        attempt(results, keys, name, launch)
    for name, server in servers.items():
        attempt(results, keys, name, lambda: probes.run_wrk(server.port, 16, WARMUP_SECONDS))
    return servers


def round_trivial(fleet: Fleet, active: dict[str, sides.Side], results: Results, seconds: float) -> None:
    """Start-up, idle memory, throughput at 1/16/64 connections, memory after, GET latencies."""
    wrk_keys = [f'trivial_{m}_c{c}' for c in CONNECTIONS for m in ('rps', 'p50', 'p99')]
    get_keys = {'get_metrics': '/metrics', 'get_openapi': '/openapi.json', 'get_docs': '/docs'}
    all_keys = [*wrk_keys, 'start_ready', 'rss_idle', 'rss_c64', *get_keys]

    def on_start(name: str, server: probes.Server) -> None:
        results.add('start_ready', name, server.ready_s * 1000)
        time.sleep(1.0)  # let start-up work finish before calling it idle
        results.add('rss_idle', name, server_rss_mb(server))

    servers = start_all(fleet, active, 'trivial', results, all_keys, on_start)
    for conns in CONNECTIONS:
        for name, server in servers.items():
            keys = [k for k in wrk_keys if k.endswith(f'_c{conns}')]
            attempt(results, keys, name, lambda: record_wrk(results, 'trivial', name, server.port, conns, seconds))
            if conns == 64:
                attempt(results, ['rss_c64'], name, lambda: results.add('rss_c64', name, server_rss_mb(server)))
    for key, path in get_keys.items():
        for name, server in servers.items():
            if active[name].kind == 'floor':
                continue
            attempt(results, [key], name, lambda: results.add(key, name, probes.get_latency(server.port, path)))
    fleet.stop_all()


def round_sleeper(fleet: Fleet, active: dict[str, sides.Side], results: Results, seconds: float) -> None:
    """Throughput and latency of an I/O-bound job at 64 connections."""
    keys = ['sleep_rps_c64', 'sleep_p50_c64', 'sleep_p99_c64']
    servers = start_all(fleet, active, 'sleeper', results, keys)
    for name, server in servers.items():
        attempt(results, keys, name, lambda: record_wrk(results, 'sleep', name, server.port, 64, seconds))
    fleet.stop_all()


def round_cpu(fleet: Fleet, project: sides.Side, results: Results, seconds: float) -> None:
    """The project's CPU-bound throughput with one and two worker processes."""
    rps = {}
    for workers in (1, 2):
        key = f'cpu_rps_w{workers}'

        def measure() -> None:
            server = fleet.start(project, 'cpu', workers)
            try:
                probes.check_perform(server.port)
                probes.run_wrk(server.port, CPU_CONNECTIONS, WARMUP_SECONDS)
                rps[workers] = probes.run_wrk(server.port, CPU_CONNECTIONS, seconds).rps
                results.add(key, 'project', rps[workers])
            finally:
                fleet.stop(server)

        attempt(results, [key, 'cpu_scaling'], 'project', measure)
    if len(rps) == 2:
        results.add('cpu_scaling', 'project', rps[2] / rps[1])


def round_payloads(fleet: Fleet, active: dict[str, sides.Side], results: Results, body: bytes, numpy_dir: Path) -> None:
    """Large JSON in and out, and a numpy result: the median of sequential requests on one connection."""
    env = {'PYTHONPATH': str(numpy_dir), 'BENCH_ARRAY_SIZE': str(ARRAY_SIZE), 'BENCH_RECORD_COUNT': str(RECORD_COUNT)}
    cases = [
        ('json_in', 'count', body, payloads.item_count(body)),
        ('json_out', 'records', None, RECORD_COUNT),
        ('numpy_out', 'numpy_result', None, ARRAY_SIZE),
    ]
    for key, job, request_body, expected in cases:
        for name, side in active.items():

            def measure() -> None:
                # The floor's job returns a list, the least json.dumps needs; the others the array.
                server = fleet.start(side, job, env={**env, 'BENCH_AS_LIST': '1' if side.kind == 'floor' else '0'})
                try:
                    seconds, answer = probes.post_latencies(server.port, request_body, PAYLOAD_REQUESTS)
                    got = json.loads(answer)
                    if (len(got) if isinstance(got, list) else got) != expected:
                        raise probes.ProbeError(f'{job} answered {answer[:80]!r}..., expected {expected} items')
                    results.add(key, name, statistics.median(seconds) * 1000)
                finally:
                    fleet.stop(server)

            attempt(results, [key], name, measure)


def round_preload(project: sides.Side, results: Results, log_dir: Path, numpy_dir: Path) -> None:
    """PSS of the preload job as one process, as workers, and as preloaded workers (the project only)."""
    env = {'PYTHONPATH': str(numpy_dir)}
    pss = {}
    for workers, preload in ((1, False), (PRELOAD_WORKERS, False), (PRELOAD_WORKERS, True)):
        key = f'preload_pss_w{workers}{"p" if preload else ""}'

        def measure() -> None:
            ready, pss[key] = preloading.measure(project.python, workers, preload, PRELOAD_MB, log_dir, env)
            results.add(key, 'project', pss[key])
            if workers > 1:
                results.add(key.replace('pss', 'ready'), 'project', ready * 1000)

        attempt(results, [key], 'project', measure)
    if 'preload_pss_w1' in pss and f'preload_pss_w{PRELOAD_WORKERS}p' in pss:
        results.add('preload_share', 'project', pss[f'preload_pss_w{PRELOAD_WORKERS}p'] / pss['preload_pss_w1'])


def round_imports(active: dict[str, sides.Side], results: Results) -> None:
    """Cold-interpreter import time of the package and of its serving module."""
    for name, side in active.items():
        for which, module in side.import_modules().items():
            key = f'import_{which}'
            if module is None:
                continue
            attempt(
                results,
                [key],
                name,
                lambda: results.add(key, name, probes.import_time_ms(side.python, module, cwd=sides.BENCH_DIR)),
            )


def prepare_sides(names: list[str], fresh: bool, results: Results) -> dict[str, sides.Side]:
    """Install each requested side; a side that fails to install reports `error` everywhere."""
    makers = {'project': sides.project_side, 'peer': sides.peer_side, 'floor': sides.floor_side}
    active = {}
    for name in names:
        log(f'preparing {name} venv')
        try:
            active[name] = makers[name](fresh)
        except MEASURE_ERRORS as exc:
            for figure in FIGURES:
                results.fail(figure.key, name, f'setup: {exc}')
            log(f'{name}: setup failed: {exc}')
    return active


def measure_sizes(active: dict[str, sides.Side], fresh: bool, results: Results) -> None:
    """Installed size is deterministic: measured once, not per round."""
    empty = sides.empty_venv(fresh)
    for name, side in active.items():
        attempt(results, ['size'], name, lambda: results.add('size', name, sides.installed_bytes(side, empty) / MB))


def header_lines(args: argparse.Namespace, seconds: float, rounds: int) -> list[str]:
    """Return the run's context: when, where, with what."""
    cpu = next(
        (
            line.split(':', 1)[1].strip()
            for line in Path('/proc/cpuinfo').read_text().splitlines()
            if line.startswith('model name')
        ),
        platform.processor() or 'unknown',
    )
    wrk = subprocess.run(['wrk', '-v'], capture_output=True, text=True)
    wrk_version = (wrk.stdout or wrk.stderr).strip().splitlines()[0]
    commit = (
        subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, cwd=sides.REPO_ROOT
        ).stdout.strip()
        or 'none'
    )
    dirty = subprocess.run(
        ['git', 'status', '--porcelain', '--', sides.PACKAGE, 'pyproject.toml'],
        capture_output=True,
        text=True,
        cwd=sides.REPO_ROOT,
    ).stdout.strip()
    if dirty:
        commit += ' + uncommitted changes'
    now = datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')
    return [
        '# racetrack_job_wrapper benchmark',
        '',
        f'- date: {now}; project commit: {commit} (working tree, non-editable install)',
        f'- machine: nproc {os.cpu_count()}, {cpu}',
        f'- Python {platform.python_version()}; {wrk_version.split(" [")[0]}; peer {sides.PEER_REQUIREMENT}',
        f'- {rounds} interleaved rounds; wrk -t1, keep-alive, {seconds:g} s per run '
        f'after a {WARMUP_SECONDS} s warm-up; POST /api/v1/perform `{{"a": 1, "b": 2}}`',
    ]


def parse_args() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds (default 3)')
    parser.add_argument(
        '--duration', type=float, default=8, help='seconds per wrk run (default 8, keeps the run under 15 min)'
    )
    parser.add_argument('--quick', action='store_true', help='smoke run: 1 round, 3 s runs')
    parser.add_argument('--fresh', action='store_true', help='rebuild the venvs')
    parser.add_argument('--sides', default=','.join(SIDES), help='comma-separated subset')
    parser.add_argument('--output', type=Path, help='default results/latest.md (results/quick.md with --quick)')
    return parser.parse_args()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Run every figure for every side, round by round, and write the table."""
    args = parse_args()
    rounds, seconds = (1, 3.0) if args.quick else (args.rounds, args.duration)
    output = args.output or RESULTS_DIR / ('quick.md' if args.quick else 'latest.md')
    signal.signal(signal.SIGTERM, _raise_interrupt)
    began = time.monotonic()
    results = Results()
    names = [n for n in args.sides.split(',') if n in SIDES]
    load_before = Path('/proc/loadavg').read_text().split()[0]
    # The header records the commit that was installed, not whatever HEAD is at the end.
    header = header_lines(args, seconds, rounds)
    active = prepare_sides(names, args.fresh, results)
    measure_sizes(active, args.fresh, results)
    numpy_dir = sides.numpy_dir(args.fresh)
    records = payloads.records_body()
    with tempfile.TemporaryDirectory(prefix='bench-logs-') as log_dir:
        fleet = Fleet(Path(log_dir))
        try:
            for number in range(1, rounds + 1):
                log(f'round {number}/{rounds}: trivial job')
                round_trivial(fleet, active, results, seconds)
                log(f'round {number}/{rounds}: sleep job')
                round_sleeper(fleet, active, results, seconds)
                if 'project' in active:
                    log(f'round {number}/{rounds}: CPU job, --workers 1 and 2')
                    round_cpu(fleet, active['project'], results, seconds)
                log(f'round {number}/{rounds}: large JSON in and out, numpy result')
                round_payloads(fleet, active, results, records, numpy_dir)
                if 'project' in active:
                    log(f'round {number}/{rounds}: preload memory, --workers {PRELOAD_WORKERS}')
                    round_preload(active['project'], results, Path(log_dir), numpy_dir)
                round_imports(active, results)
        finally:
            fleet.stop_all()
    scaling = results.median('cpu_scaling', 'project')
    if scaling is not None:
        verdict = 'meets' if scaling >= WORKERS_TARGET else 'misses'
        results.notes.append(
            f'--workers 2 reaches {scaling:.2f}x of --workers 1: {verdict} the {WORKERS_TARGET}x target'
        )
    load_after = Path('/proc/loadavg').read_text().split()[0]
    results.notes.append(
        f'total run time {time.monotonic() - began:.0f} s; 1-min load average '
        f'{load_before} before, {load_after} after (on {os.cpu_count()} cores, '
        f'anything above ~2 means other processes competed for the CPU)'
    )
    table = render_table(results, FIGURES, header, rounds)
    print(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(table)
    log(f'wrote {output}')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log('interrupted; every server started was stopped')
        sys.exit(130)
