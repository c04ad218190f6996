"""JSON-heavy requests end to end over HTTP: the project with orjson, without it, and the stdlib floor.

Run `python benchmarks/json_codec.py` (about 2 minutes; `--rounds`, `--requests` to change it).
It needs numpy and orjson in the running interpreter (`pip install -e '.[test]'`) and serves
the working tree (PYTHONPATH), not the venv `bench.py` installs. Sides, interleaved round by
round so that machine noise hits them alike:

- **orjson**: `python -m racetrack_job_wrapper`, orjson installed;
- **stdlib**: the same, started with `sys.modules['orjson'] = None`, so the import fails;
- **floor**: `floor_server.py` (stdlib `json.loads` / `json.dumps`, nothing else);
- **before** (with `--before REF`): the project as committed at REF (`git archive`), orjson
  installed but not yet used.

Figures, each the median over the rounds of the per-round median of sequential requests on one
keep-alive connection:

- **array**: `perform()` returns a numpy array of 200,000 floats (standard normal, so a few dozen
  of them are below 1e-4 and written with an exponent); the floor's job returns `.tolist()`,
  the least a server must do for `json.dumps`;
- **records** and **floats**: a 10 MB request body, a list of small objects or one list of floats,
  posted to a job that returns how many items it got.

Every side's answers are checked: the array's floats must read back equal, and the project with
orjson must send exactly the stdlib side's bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import payloads
import probes

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
JOBS_DIR = BENCH_DIR / 'jobs'
ARRAY_SIZE = 200_000

# The project started with orjson made unimportable, as a job environment without the extra is.
WITHOUT_ORJSON = (
    "import sys, runpy; sys.modules['orjson'] = None; sys.argv[0] = 'racetrack_job_wrapper'; "
    "runpy.run_module('racetrack_job_wrapper', run_name='__main__')"
)


def log(message: str) -> None:
    """Progress on stderr; stdout keeps the table."""
    print(f'[json_codec {time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


class Side:
    """One server under test and how it is started."""

    def __init__(self, name: str, argv_for: Callable[[Path, int], list[str]], env: dict[str, str]):
        self.name = name
        self.argv_for = argv_for
        self.env = env


def project_side(name: str, source: Path, without_orjson: bool) -> Side:
    """The project from `source`, with orjson importable or not."""

    def argv(job: Path, port: int) -> list[str]:
        launcher = ['-c', WITHOUT_ORJSON] if without_orjson else ['-m', 'racetrack_job_wrapper']
        return [sys.executable, *launcher, f'{job}:Job', '--port', str(port), '--host', '127.0.0.1']

    pythonpath = os.pathsep.join(filter(None, [str(source), os.environ.get('PYTHONPATH')]))
    return Side(name, argv, {'PYTHONPATH': pythonpath})


def floor_side() -> Side:
    """The stdlib floor."""

    def argv(job: Path, port: int) -> list[str]:
        return [sys.executable, str(BENCH_DIR / 'floor_server.py'), str(job), '--port', str(port)]

    return Side('floor', argv, {})


def export_commit(ref: str, directory: Path) -> Path:
    """The package as committed at `ref`, unpacked into `directory` (read-only use of git)."""
    archive = subprocess.run(
        ['git', '-C', str(REPO_ROOT), 'archive', ref, 'racetrack_job_wrapper', 'static_swagger'],
        check=True,
        capture_output=True,
    ).stdout
    directory.mkdir()
    subprocess.run(['tar', '-x', '-C', str(directory)], input=archive, check=True)
    return directory


def measure(
    side: Side, job: Path, body: bytes | None, count: int, log_dir: Path, env: dict[str, str]
) -> tuple[float, bytes]:
    """Start `side` on `job`, time `count` requests, stop it; the median in ms and the last answer."""
    port = probes.free_port()
    server = probes.start_server(
        side.argv_for(job, port),
        port,
        log_dir / f'{side.name}-{job.stem}-{port}.log',
        cwd=log_dir,
        env={**side.env, **env},
    )
    try:
        probes.wait_ready(server, timeout=60)
        seconds, answer = probes.post_latencies(port, body, count)
    finally:
        server.stop()
    return statistics.median(seconds) * 1000, answer


def check_answers(figure: str, answers: dict[str, bytes], expected_count: int | None) -> list[str]:
    """What is wrong with the answers of one figure, if anything."""
    problems = []
    if figure == 'array':
        reference = json.loads(answers['floor'])
        for name, answer in answers.items():
            if json.loads(answer) != reference:
                problems.append(f"{name}: the floats differ from the floor's")
        if 'stdlib' in answers and 'orjson' in answers and answers['stdlib'] != answers['orjson']:
            problems.append('orjson and stdlib sides sent different bytes')
    else:
        for name, answer in answers.items():
            if json.loads(answer) != expected_count:
                problems.append(f'{name}: counted {answer!r}, expected {expected_count}')
    return problems


def main() -> int:
    """Measure, print the table, exit 1 if any answer was wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds (default 3)')
    parser.add_argument('--requests', type=int, default=15, help='timed requests per side and figure (default 15)')
    parser.add_argument('--before', metavar='REF', help='also measure the project as committed at REF (e.g. HEAD)')
    args = parser.parse_args()
    try:
        import numpy  # the array job needs it in the servers' interpreter
        import orjson
    except ImportError as e:
        raise SystemExit(f'needs numpy and orjson: {e}') from None

    with tempfile.TemporaryDirectory(prefix='json-codec-bench-') as temp:
        work = Path(temp)
        sides = [project_side('orjson', REPO_ROOT, False), project_side('stdlib', REPO_ROOT, True), floor_side()]
        if args.before:
            before = export_commit(args.before, work / 'before')
            sides.insert(2, project_side('before', before, False))
        bodies = {'records': payloads.records_body(), 'floats': payloads.floats_body()}
        figures = {
            'array': (None, None),
            'records': (bodies['records'], payloads.item_count(bodies['records'])),
            'floats': (bodies['floats'], payloads.item_count(bodies['floats'])),
        }
        medians: dict[str, dict[str, list[float]]] = {figure: {side.name: [] for side in sides} for figure in figures}
        problems: list[str] = []
        for round_index in range(args.rounds):
            for figure, (body, expected_count) in figures.items():
                answers = {}
                for side in sides:
                    job = JOBS_DIR / ('numpy_result.py' if figure == 'array' else 'count.py')
                    # The floor's job returns `.tolist()`, the least json.dumps needs.
                    env = {'BENCH_ARRAY_SIZE': str(ARRAY_SIZE), 'BENCH_AS_LIST': '1' if side.name == 'floor' else '0'}
                    log(f'round {round_index + 1}/{args.rounds}: {figure} on {side.name}')
                    ms, answers[side.name] = measure(side, job, body, args.requests, work, env)
                    medians[figure][side.name].append(ms)
                problems += check_answers(figure, answers, expected_count)

    names = [side.name for side in sides]
    lines = [
        f'# JSON codec benchmark ({args.rounds} rounds x {args.requests} requests: median ms per request, '
        'min..max of the round medians)',
        '',
        f'- Python {sys.version.split()[0]}, orjson {orjson.__version__}, numpy {numpy.__version__}, '
        f'nproc {os.cpu_count()}',
        f'- array: {ARRAY_SIZE:,} float64 returned; records / floats: request bodies of '
        f'{len(bodies["records"]) / 2**20:.1f} / {len(bodies["floats"]) / 2**20:.1f} MiB',
        '',
        '| figure | '
        + ' | '.join(f'{name} ms' for name in names)
        + ' | '
        + ' | '.join(f'{name}/floor' for name in names if name != 'floor')
        + ' | orjson/stdlib |',
        '| --- |' + ' ---: |' * (2 * len(names)),
    ]
    for figure, by_side in medians.items():
        value = {name: statistics.median(samples) for name, samples in by_side.items()}
        cells = [f'{value[name]:.1f} ({min(by_side[name]):.1f}..{max(by_side[name]):.1f})' for name in names]
        ratios = [f'{value[name] / value["floor"]:.2f}x' for name in names if name != 'floor']
        lines.append(
            f'| {figure} | '
            + ' | '.join(cells)
            + ' | '
            + ' | '.join(ratios)
            + f' | {value["orjson"] / value["stdlib"]:.2f}x |'
        )
    if problems:
        lines += ['', 'Wrong answers:', *[f'- {problem}' for problem in sorted(set(problems))]]
    print('\n'.join(lines))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
