"""Measurements taken on a running server or an installed venv: one function per figure."""

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

POLL_INTERVAL = 0.005
LUA_SCRIPT = Path(__file__).parent / 'post_perform.lua'


class ProbeError(Exception):
    """A measurement could not be taken; the message goes into the table cell's footnote."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A server process started in its own process group, so it is stopped with all children."""

    proc: subprocess.Popen
    port: int
    log_path: Path
    started_at: float
    ready_s: float = 0.0

    def log_tail(self, lines: int = 2) -> str:
        """Return the last lines the server wrote, for error messages."""
        try:
            text = self.log_path.read_text(errors='replace').strip().splitlines()
        except OSError:
            return ''
        return ' | '.join(' '.join(line.split()) for line in text[-lines:])

    def stop(self) -> None:
        """Terminate the process group, then kill it if it lingers."""
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        # Children that outlive a leader which exited early still belong to the group.
        _signal_group(self.proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start_server(argv: list[str], port: int, log_path: Path, cwd: Path, env: dict[str, str] | None = None) -> Server:
    """Spawn `argv` in a new session; stdout and stderr go to `log_path`."""
    with open(log_path, 'wb') as log:
        started_at = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return Server(proc, port, log_path, started_at)


def wait_ready(server: Server, timeout: float = 30.0, interval: float = POLL_INTERVAL) -> float:
    """Poll GET /ready every `interval` (5 ms); return seconds from spawn to the first 200."""
    deadline = server.started_at + timeout
    while time.perf_counter() < deadline:
        if server.proc.poll() is not None:
            raise ProbeError(f'exited with {server.proc.returncode}: {server.log_tail()}')
        try:
            conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=1)
            try:
                conn.request('GET', '/ready')
                if conn.getresponse().status == 200:
                    return time.perf_counter() - server.started_at
            finally:
                conn.close()
        except OSError:
            pass
        time.sleep(interval)
    raise ProbeError(f'not ready after {timeout:.0f} s: {server.log_tail()}')


def check_perform(port: int) -> None:
    """POST a + b once and insist on 200 with the sum, so throughput counts real answers."""
    status, body = _request(port, 'POST', '/api/v1/perform', b'{"a": 1, "b": 2}')
    if status != 200 or json.loads(body) != 3:
        raise ProbeError(f'perform answered {status} {body[:80]!r}')


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        headers = {'Content-Type': 'application/json'} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def process_tree_rss(pid: int) -> int:
    """Return VmRSS in bytes summed over `pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = Path(f'/proc/{entry}/stat').read_text()
            except OSError:
                continue
            # The command name may hold spaces and parentheses; fields resume after the last ')'.
            ppid = int(stat.rsplit(')', 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        total += _vm_rss(current)
    return total


def _vm_rss(pid: int) -> int:
    return _proc_kib(Path(f'/proc/{pid}/status'), 'VmRSS:') * 1024


def process_tree_pss(pid: int) -> int:
    """Return the proportional set size in bytes (shared pages split among sharers) of `pid` and its children."""
    children = Path(f'/proc/{pid}/task/{pid}/children').read_text().split()
    return sum(_pss(current) for current in [pid, *(int(child) for child in children)])


def _pss(pid: int) -> int:
    return _proc_kib(Path(f'/proc/{pid}/smaps_rollup'), 'Pss:') * 1024


def _proc_kib(path: Path, field: str) -> int:
    """The kB figure of `field` in a /proc file; 0 when the process is gone."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def post_latencies(
    port: int, body: bytes | None, count: int, path: str = '/api/v1/perform'
) -> tuple[list[float], bytes]:
    """Seconds of each of `count` sequential POSTs on one keep-alive connection, after one warm-up; the last answer.

    A body of None posts `{}`. ProbeError when an answer is not 200.
    """
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=120)
    seconds, answer = [], b''
    try:
        for _ in range(count + 1):
            started = time.perf_counter()
            connection.request(
                'POST', path, body=body if body is not None else b'{}', headers={'Content-Type': 'application/json'}
            )
            response = connection.getresponse()
            answer = response.read()
            seconds.append(time.perf_counter() - started)
            if response.status != 200:
                raise ProbeError(f'POST {path} answered {response.status}: {answer[:200]!r}')
    finally:
        connection.close()
    return seconds[1:], answer


@dataclass
class WrkResult:
    """Throughput and latency of one wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(port: int, connections: int, duration: float) -> WrkResult:
    """Run wrk with one thread (the server keeps the other core) and keep-alive connections."""
    argv = [
        'wrk',
        '-t1',
        f'-c{connections}',
        f'-d{duration:g}s',
        '--timeout',
        '10s',
        '-s',
        str(LUA_SCRIPT),
        f'http://127.0.0.1:{port}',
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    match = re.search(r'^WRKJSON (.*)$', out.stdout, re.MULTILINE)
    if not match:
        raise ProbeError(f'wrk failed: {(out.stderr or out.stdout).strip()[:200]}')
    data = json.loads(match.group(1))
    if data['requests'] == 0:
        raise ProbeError('wrk completed no requests')
    errors = sum(data[k] for k in ('connect', 'read', 'write', 'status', 'timeout'))
    return WrkResult(
        rps=data['requests'] / (data['duration_us'] / 1e6),
        p50_ms=data['p50_us'] / 1000,
        p99_ms=data['p99_us'] / 1000,
        errors=errors,
    )


def get_latency(port: int, path: str, count: int = 200) -> float:
    """Return the median milliseconds of `count` sequential GETs on one keep-alive connection."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    samples = []
    try:
        for _ in range(count + 5):
            start = time.perf_counter()
            conn.request('GET', path)
            response = conn.getresponse()
            response.read()
            samples.append(time.perf_counter() - start)
            if response.status != 200:
                raise ProbeError(f'GET {path} answered {response.status}')
    finally:
        conn.close()
    # The first few requests build caches (OpenAPI document, templates): not the steady state.
    return statistics.median(samples[5:]) * 1000


def import_time_ms(python: Path, module: str, cwd: Path) -> float:
    """Return the cumulative `-X importtime` of `module` in milliseconds, in a fresh interpreter."""
    out = subprocess.run(
        [str(python), '-X', 'importtime', '-c', f'import {module}'], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    if out.returncode != 0:
        raise ProbeError(f'import {module} failed: {out.stderr.strip().splitlines()[-1:]}')
    for line in reversed(out.stderr.splitlines()):
        parts = [p.strip() for p in line.removeprefix('import time:').split('|')]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1000
    raise ProbeError(f'no importtime line for {module}')
