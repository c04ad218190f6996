"""Hardening proof, run by hand: a long mixed-error soak, SIGTERM under load, slow-header floods.

Soak: 100,000 POSTs over 32 keep-alive connections; 10% bad JSON (expect 400), 10% asking
the job to raise ValueError (expect 400), the rest valid (expect 200 and the right sum).
Every unexpected status, wrong body or broken connection is counted; p99 latency and the
server's RSS growth are reported. SIGTERM: load at 32 connections, SIGTERM mid-run; every
request whose bytes were fully sent must get a complete response. Flood and reconnecting
flood: 1,200 slow-header connections from one address (see slow_headers.py), the second
reopening each one the server closes; every ordinary call beside them must get its 200.

    python benchmarks/soak.py [--target project|peer|floor] [--requests N] [--workers N]
        [--only soak|sigterm|flood|reconnecting-flood ...]
"""

import argparse
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import probes
import sides
import slow_headers

JOB = sides.BENCH_DIR / 'jobs' / 'flaky.py'
MB = 1024 * 1024
RSS_GROWTH_LIMIT_MB = 10
WARMUP_REQUESTS = 2000
RECV_TIMEOUT = 15.0


class ConnectionLost(Exception):
    """The server closed or reset the connection before a complete response arrived."""

    def __init__(self, partial: bool):
        super().__init__('partial response' if partial else 'no response bytes')
        self.partial = partial


class RawClient:
    """One keep-alive HTTP/1.1 connection, spoken byte by byte so nothing is hidden or retried."""

    def __init__(self, port: int):
        self.port = port
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=RECV_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b''

    def request_bytes(self, body: bytes) -> bytes:
        """Return a complete POST /api/v1/perform request carrying `body`."""
        head = (
            f'POST /api/v1/perform HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n'
            f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n'
        )
        return head.encode() + body

    def send(self, data: bytes) -> None:
        """Send every byte or raise OSError."""
        self.sock.sendall(data)

    def receive(self) -> tuple[int, dict[str, str], bytes]:
        """Read one response framed by Content-Length; raise ConnectionLost if cut short."""
        while b'\r\n\r\n' not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get('content-length', 0))
        while len(self.buffer) < length:
            self._fill(partial=True)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def _fill(self, partial: bool = False) -> None:
        try:
            chunk = self.sock.recv(65536)
        except (TimeoutError, ConnectionError) as exc:
            raise ConnectionLost(partial or bool(self.buffer)) from exc
        if not chunk:
            raise ConnectionLost(partial or bool(self.buffer))
        self.buffer += chunk

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def make_case(index: int) -> tuple[bytes, int, float | None]:
    """Return (body, expected status, expected result) for request number `index`."""
    if index % 10 == 0:
        return b'{"a": 1, "b":', 400, None
    if index % 10 == 1:
        return json.dumps({'a': index, 'b': 1, 'fail': True}).encode(), 400, None
    return json.dumps({'a': index, 'b': 1}).encode(), 200, index + 1


@dataclass
class SoakStats:
    """Per-thread counts, merged at the end so threads share nothing but the work counter."""

    done: int = 0
    unexpected: int = 0
    reconnects: int = 0
    latencies: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        """Count an unexpected outcome and keep the first few for the report."""
        self.unexpected += 1
        if len(self.examples) < 5:
            self.examples.append(text)


def soak_worker(port: int, counter: itertools.count, total: int, stats: SoakStats) -> None:
    """Take request numbers from `counter` until `total`, checking every answer."""
    client = None
    for index in counter:
        if index >= total:
            break
        body, want_status, want_result = make_case(index)
        try:
            if client is None:
                client = RawClient(port)
            start = time.perf_counter()
            client.send(client.request_bytes(body))
            status, headers, payload = client.receive()
            stats.latencies.append(time.perf_counter() - start)
        except (OSError, ConnectionLost, ValueError) as exc:
            stats.problem(f'#{index}: {type(exc).__name__}: {exc}')
            client = _drop(client)
            continue
        stats.done += 1
        if status != want_status:
            stats.problem(f'#{index}: status {status}, expected {want_status}: {payload[:80]!r}')
        elif want_result is not None and json.loads(payload) != want_result:
            stats.problem(f'#{index}: body {payload[:80]!r}, expected {want_result}')
        if headers.get('connection', '').lower() == 'close':
            stats.reconnects += 1
            client = _drop(client)
    _drop(client)


def _drop(client: RawClient | None) -> None:
    if client is not None:
        client.close()


def run_soak(server: probes.Server, total: int, connections: int) -> bool:
    """Run the mixed-error soak; print the figures; return True when every check passes."""
    pid = server.proc.pid
    rss_ready = probes.process_tree_rss(pid)
    warm = [SoakStats() for _ in range(connections)]
    _run_threads(server.port, WARMUP_REQUESTS, warm)
    rss_start = probes.process_tree_rss(pid)
    stats = [SoakStats() for _ in range(connections)]
    began = time.perf_counter()
    _run_threads(server.port, total, stats)
    elapsed = time.perf_counter() - began
    rss_end = probes.process_tree_rss(pid)
    latencies = sorted(x for s in stats for x in s.latencies)
    unexpected = sum(s.unexpected for s in stats) + sum(s.unexpected for s in warm)
    growth = (rss_end - rss_start) / MB
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float('nan')
    print(
        f'soak: {sum(s.done for s in stats)} responses to {total} requests in {elapsed:.1f} s '
        f'({total / elapsed:.0f} req/s), {connections} connections'
    )
    print(
        f'soak: unexpected responses: {unexpected} (must be 0); '
        f'server-initiated reconnects: {sum(s.reconnects for s in stats)}'
    )
    for example in [e for s in warm + stats for e in s.examples][:5]:
        print(f'soak:   {example}')
    if latencies:
        print(f'soak: latency p50 {statistics.median(latencies) * 1000:.2f} ms, p99 {p99:.2f} ms')
    print(
        f'soak: RSS ready {rss_ready / MB:.1f} MiB, after {WARMUP_REQUESTS} warm-up requests '
        f'{rss_start / MB:.1f} MiB, at end {rss_end / MB:.1f} MiB: growth {growth:+.1f} MiB '
        f'(limit {RSS_GROWTH_LIMIT_MB})'
    )
    return unexpected == 0 and growth < RSS_GROWTH_LIMIT_MB


def _run_threads(port: int, total: int, stats: list[SoakStats]) -> None:
    counter = itertools.count()
    threads = [threading.Thread(target=soak_worker, args=(port, counter, total, s), daemon=True) for s in stats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@dataclass
class DrainStats:
    """What one connection saw around SIGTERM."""

    sent: int = 0
    completed: int = 0
    completed_after_signal: int = 0
    lost_silent: int = 0
    lost_partial: int = 0
    send_failed: int = 0
    refused: int = 0
    statuses_after_signal: dict[int, int] = field(default_factory=dict)


def drain_worker(port: int, signalled: threading.Event, stop: threading.Event, stats: DrainStats, offset: int) -> None:
    """Load one connection until the server refuses us or `stop` is set."""
    client = None
    for index in itertools.count(offset, 1000):
        if stop.is_set():
            break
        if client is None:
            try:
                client = RawClient(port)
            except OSError:
                stats.refused += 1  # a new connection refused is not an accepted request
                break
        body, _, _ = make_case(index)
        try:
            client.send(client.request_bytes(body))
        except OSError:
            stats.send_failed += 1
            client = _drop(client)
            continue
        stats.sent += 1
        after = signalled.is_set()
        try:
            status, headers, _ = client.receive()
        except ConnectionLost as lost:
            if lost.partial:
                stats.lost_partial += 1
            else:
                stats.lost_silent += 1
            client = _drop(client)
            continue
        stats.completed += 1
        if after or signalled.is_set():
            stats.completed_after_signal += 1
            stats.statuses_after_signal[status] = stats.statuses_after_signal.get(status, 0) + 1
        if headers.get('connection', '').lower() == 'close':
            client = _drop(client)
    _drop(client)


def run_sigterm(server: probes.Server, connections: int, load_seconds: float, grace: float) -> bool:
    """Send SIGTERM while loaded; return True when sent == completed and the server exited."""
    signalled, stop = threading.Event(), threading.Event()
    stats = [DrainStats() for _ in range(connections)]
    threads = [
        threading.Thread(target=drain_worker, daemon=True, args=(server.port, signalled, stop, s, n))
        for n, s in enumerate(stats)
    ]
    for thread in threads:
        thread.start()
    time.sleep(load_seconds)
    signalled.set()
    sent_at = time.perf_counter()
    os.kill(server.proc.pid, signal.SIGTERM)
    try:
        code = server.proc.wait(timeout=grace)
        exit_text = f'exited with {code} after {time.perf_counter() - sent_at:.2f} s'
    except subprocess.TimeoutExpired:
        code, exit_text = None, f'still running {grace:.0f} s after SIGTERM'
    stop.set()
    for thread in threads:
        thread.join(timeout=RECV_TIMEOUT + 5)
    total = {
        name: sum(getattr(s, name) for s in stats)
        for name in (
            'sent',
            'completed',
            'completed_after_signal',
            'lost_silent',
            'lost_partial',
            'send_failed',
            'refused',
        )
    }
    statuses: dict[int, int] = {}
    for s in stats:
        for status, count in s.statuses_after_signal.items():
            statuses[status] = statuses.get(status, 0) + count
    print(f'sigterm: {connections} connections, SIGTERM after {load_seconds:g} s; server {exit_text}')
    print(
        f'sigterm: requests fully sent {total["sent"]}, complete responses '
        f'{total["completed"]} (must be equal); lost with no response bytes '
        f'{total["lost_silent"]}, lost mid-response {total["lost_partial"]}'
    )
    print(
        f'sigterm: answered after SIGTERM {total["completed_after_signal"]} {statuses}; '
        f'send failures {total["send_failed"]}; new connections refused {total["refused"]}'
    )
    return total['sent'] == total['completed'] and code is not None


def run_flood(server: probes.Server, connections: int, duration: float, reconnect: bool) -> bool:
    """Slow-header flood beside an ordinary client; passes when every ordinary call got its 200."""
    result = slow_headers.run_flood(server.port, connections, duration, reconnect=reconnect)
    print(f'{"reconnecting " if reconnect else ""}flood of {connections}: {result.summary()}')
    return result.calls > 0 and result.ok == result.calls


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    """Start the target server, run the soak and the SIGTERM drill, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--target', choices=('project', 'peer', 'floor'), default='project')
    parser.add_argument('--requests', type=int, default=100_000)
    parser.add_argument('--connections', type=int, default=32)
    parser.add_argument('--workers', type=int, help='pass --workers N to the project')
    parser.add_argument('--sigterm-after', type=float, default=3.0, help='seconds of load')
    parser.add_argument('--grace', type=float, default=30.0, help='seconds to wait for exit')
    parser.add_argument('--flood-connections', type=int, default=1200)
    parser.add_argument('--flood-seconds', type=float, default=40.0)
    phases = ('soak', 'sigterm', 'flood', 'reconnecting-flood')
    parser.add_argument('--only', nargs='+', choices=phases, default=phases, help='phases to run (all)')
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    make_side = {'project': sides.project_side, 'peer': sides.peer_side, 'floor': sides.floor_side}[args.target]
    side = make_side(False)
    passed = True
    with tempfile.TemporaryDirectory(prefix='soak-') as tmp:
        for phase in args.only:
            port = probes.free_port()
            argv = side.argv(JOB, port, args.workers)
            server = probes.start_server(argv, port, Path(tmp) / f'{phase}.log', Path(tmp))
            try:
                probes.wait_ready(server)
                if phase == 'soak':
                    ok = run_soak(server, args.requests, args.connections)
                elif phase == 'sigterm':
                    ok = run_sigterm(server, args.connections, args.sigterm_after, args.grace)
                else:
                    reconnect = phase == 'reconnecting-flood'
                    ok = run_flood(server, args.flood_connections, args.flood_seconds, reconnect)
                print(f'{phase}: {"PASS" if ok else "FAIL"}')
                passed = passed and ok
            finally:
                server.stop()
    return 0 if passed else 1


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print('interrupted; the server was stopped')
        sys.exit(130)
