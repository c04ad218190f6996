"""A local cluster under load: three replicas behind HAProxy, scraped by Prometheus, rolled one by one.

examples/deploy/local-cluster's own configuration files are used, with free ports: HAProxy's
through its environment variables, Prometheus' through a targets.json beside a copy of its
prometheus.yml. Each replica is replaced on its own port once it has exited, so neither HAProxy
nor Prometheus is reconfigured during a rollout: HAProxy's checks of /ready take the replica out
and put its successor back, and Prometheus sees a counter reset on the same target.

Phases, under one steady load that opens a connection per request:
1. steady: all three up; Prometheus' sum(rate(requests_done_total[30s])) against the load's own
   count over the same 30 s window, which holds no restart;
2. rollout of replicas started with --shutdown-delay 3: no request fails;
3. rollout of replicas started without it: requests fail (HAProxy still sends to a replica that
   has stopped accepting until two checks have failed).
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from racetrack_job_wrapper.metrics import JobMetrics
from tests.support import EXAMPLES_DIR, REPO_DIR, free_port, slow

CLUSTER_DIR = EXAMPLES_DIR / 'deploy' / 'local-cluster'
JOB = f'{EXAMPLES_DIR / "prime" / "job.py"}:Job'
SERVERS = ('replica1', 'replica2', 'replica3')  # HAProxy's names, in haproxy.cfg
DONE_METRIC = 'requests_done_total'
SHUTDOWN_DELAY = 3.0
RATE = 150.0  # requests per second the load sends through HAProxy
LOAD_THREADS = 6
WINDOW = 30.0  # seconds of the steady phase's rate window, as in the query
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, timeout: float = 5.0) -> bytes:
    """GET a URL directly (no proxy from the environment)."""
    with _OPENER.open(url, timeout=timeout) as response:
        return response.read()


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    """Poll `condition` until it returns true; AssertionError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, http.client.HTTPException, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f'timed out waiting for {what}')


class Replica:
    """`python -m racetrack_job_wrapper` on a given port (this checkout on the path), its output in a file."""

    def __init__(self, port: int, shutdown_delay: float, log_dir: Path):
        self.port = port
        self.shutdown_delay = shutdown_delay
        flags = ['--shutdown-delay', str(shutdown_delay)] if shutdown_delay else []
        env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get('PYTHONPATH')]))
        self.log_path = log_dir / f'replica-{port}-{time.monotonic_ns()}.log'
        with open(self.log_path, 'wb') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'racetrack_job_wrapper', JOB, '--host', '127.0.0.1', '--port', str(port)]
                + flags,
                cwd=log_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f'replica exited with {self.process.returncode}: {self.log_path.read_text()}')
            connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=2)
            try:
                connection.request('GET', '/ready')
                return connection.getresponse().status == 200
            finally:
                connection.close()

        wait_for(ready, f'replica on port {self.port} to be ready')

    def stop(self) -> int:
        """SIGTERM and wait for the exit code (killed after 60 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@dataclass(frozen=True)
class Outcome:
    """One request of the load: wall-clock start and end, and whether it got its 200 `true`."""

    start: float
    end: float
    ok: bool
    detail: str = ''


class Load:
    """Paced requests through HAProxy from a few threads, one connection per request."""

    def __init__(self, port: int, rate: float = RATE, threads: int = LOAD_THREADS):
        self.port = port
        self.interval = threads / rate  # each thread's pace
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n / rate,), daemon=True) for n in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, offset: float) -> None:
        next_at = time.monotonic() + offset
        while not self._stop.is_set():
            pause = next_at - time.monotonic()
            if pause > 0 and self._stop.wait(pause):
                return
            outcome = self._request()
            with self._lock:
                self.outcomes.append(outcome)
            next_at = max(next_at + self.interval, time.monotonic())  # late: no catch-up burst

    def _request(self) -> Outcome:
        start = time.time()
        connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
        try:
            connection.request(
                'POST',
                '/api/v1/perform',
                body=b'{"number": 7907}',
                headers={'Content-Type': 'application/json', 'Connection': 'close'},
            )
            response = connection.getresponse()
            body = response.read()
            ok = response.status == 200 and body == b'true'
            return Outcome(start, time.time(), ok, '' if ok else f'HTTP {response.status}')
        except (OSError, http.client.HTTPException) as e:
            return Outcome(start, time.time(), False, type(e).__name__)
        finally:
            connection.close()

    def between(self, start: float, end: float) -> list[Outcome]:
        """The requests that started in [start, end)."""
        with self._lock:
            return [outcome for outcome in self.outcomes if start <= outcome.start < end]


@unittest.skipUnless(
    os.environ.get('CI') or (shutil.which('haproxy') and shutil.which('prometheus')),
    'needs haproxy and prometheus (installed by .ci/run)',
)
@slow
class RollingUpdateTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix='cluster-test-')
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        self.ports = [free_port() for _ in SERVERS]
        self.replicas = [self.start_replica(port, SHUTDOWN_DELAY) for port in self.ports]
        self.frontend_port, self.stats_port, self.prometheus_port = free_port(), free_port(), free_port()
        self.start_haproxy()
        self.start_prometheus()
        for replica in self.replicas:
            replica.wait_ready()

    def start_replica(self, port: int, shutdown_delay: float) -> Replica:
        replica = Replica(port, shutdown_delay, self.dir)
        self.addCleanup(replica.stop)
        return replica

    def start_process(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.dir / f'{name}.log', 'wb') as log:
            process = subprocess.Popen(args, cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT)

        def stop() -> None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

        self.addCleanup(stop)
        return process

    def log(self, name: str) -> str:
        return (self.dir / f'{name}.log').read_text(errors='replace')

    def start_haproxy(self) -> None:
        env = {
            **os.environ,
            'JOB_FRONTEND': f'127.0.0.1:{self.frontend_port}',
            'HAPROXY_STATS': f'127.0.0.1:{self.stats_port}',
            **{f'REPLICA{n}': f'127.0.0.1:{port}' for n, port in enumerate(self.ports, 1)},
        }
        self.haproxy = self.start_process('haproxy', ['haproxy', '-db', '-f', str(CLUSTER_DIR / 'haproxy.cfg')], env)

    def start_prometheus(self) -> None:
        config = self.dir / 'prometheus.yml'
        shutil.copy(CLUSTER_DIR / 'prometheus.yml', config)
        targets = [{'targets': [f'127.0.0.1:{port}' for port in self.ports], 'labels': {'cluster': 'test'}}]
        (self.dir / 'targets.json').write_text(json.dumps(targets))
        self.prometheus = self.start_process(
            'prometheus',
            [
                'prometheus',
                f'--config.file={config}',
                f'--storage.tsdb.path={self.dir / "data"}',
                f'--web.listen-address=127.0.0.1:{self.prometheus_port}',
            ],
        )

    def server_states(self) -> dict[str, str]:
        """HAProxy's status of each replica (UP, DOWN, UP 1/2 ...), from its stats CSV."""
        text = fetch(f'http://127.0.0.1:{self.stats_port}/stats;csv').decode().removeprefix('# ')
        return {row['svname']: row['status'] for row in csv.DictReader(io.StringIO(text)) if row['svname'] in SERVERS}

    def wait_haproxy_up(self, names: tuple[str, ...] = SERVERS) -> None:
        wait_for(lambda: all(self.server_states()[name] == 'UP' for name in names), f'HAProxy to see {names} UP')

    def query(self, expression: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query of Prometheus' HTTP API; its result vector."""
        parameters = {'query': expression, **({'time': f'{at:.3f}'} if at is not None else {})}
        url = f'http://127.0.0.1:{self.prometheus_port}/api/v1/query?' + urllib.parse.urlencode(parameters)
        answer = json.loads(fetch(url))
        if answer['status'] != 'success':
            raise AssertionError(f'Prometheus refused {expression}: {answer}')
        return answer['data']['result']

    def roll(self, index: int, new_delay: float) -> int:
        """SIGTERM one replica, start its successor on the same port once it exited, wait for HAProxy; exit code."""
        code = self.replicas[index].stop()
        self.replicas[index] = self.start_replica(self.ports[index], new_delay)
        self.replicas[index].wait_ready()
        self.wait_haproxy_up((SERVERS[index],))
        return code

    def rollout(self, new_delay: float) -> tuple[float, float, list[int]]:
        """Replace every replica in turn; the phase's wall-clock bounds and the old replicas' exit codes."""
        start = time.time()
        codes = [self.roll(index, new_delay) for index in range(len(self.replicas))]
        time.sleep(1.0)  # requests started just before the last replica came back have ended
        return start, time.time(), codes

    def test_rollouts_under_load(self):
        registry = CollectorRegistry()
        JobMetrics(registry)
        self.assertIn(f'\n# TYPE {DONE_METRIC} counter\n', generate_latest(registry).decode())
        wait_for(lambda: self.haproxy.poll() is None and self.server_states(), 'HAProxy: ' + self.log('haproxy'))
        self.wait_haproxy_up()
        wait_for(
            lambda: sum(float(s['value'][1]) for s in self.query('up{job="job"}')) == len(SERVERS),
            'Prometheus to scrape every replica: ' + self.log('prometheus'),
        )
        load = Load(self.frontend_port)
        load.start()
        self.addCleanup(load.stop)

        # 1. Steady phase: every replica's series exists (scraped with load on it) before the window opens.
        wait_for(lambda: len(self.query(f'{DONE_METRIC} > 0')) == len(SERVERS), 'every replica to serve')
        time.sleep(2.0)
        window_end = time.time() + WINDOW
        time.sleep(WINDOW + 3.0)  # the scrapes up to window_end are stored
        (total,) = self.query(f'sum(rate({DONE_METRIC}[{WINDOW:.0f}s]))', at=window_end)
        per_replica = self.query(f'rate({DONE_METRIC}[{WINDOW:.0f}s])', at=window_end)
        steady = load.between(window_end - WINDOW - 10.0, window_end)
        done = [o for o in steady if window_end - WINDOW < o.end <= window_end and o.ok]
        client_rate = len(done) / WINDOW
        prometheus_rate = float(total['value'][1])

        # 2. and 3. Rollouts: replicas with the delay (replaced by ones without), then ones without it.
        delayed_start, delayed_end, delayed_codes = self.rollout(new_delay=0.0)
        plain_start, plain_end, plain_codes = self.rollout(new_delay=SHUTDOWN_DELAY)
        load.stop()
        delayed = load.between(delayed_start, delayed_end)
        plain = load.between(plain_start, plain_end)
        delayed_failed = [o for o in delayed if not o.ok]
        plain_failed = [o for o in plain if not o.ok]
        print(
            f'\ncluster: steady {len(done)} requests in {WINDOW:.0f} s = {client_rate:.2f}/s by the client, '
            f'{prometheus_rate:.2f}/s by Prometheus ({prometheus_rate / client_rate - 1:+.2%}); '
            f'rollout with --shutdown-delay {SHUTDOWN_DELAY:g}: {len(delayed)} sent, {len(delayed_failed)} failed; '
            f'without: {len(plain)} sent, {len(plain_failed)} failed '
            f'{dict(Counter(o.detail for o in delayed_failed + plain_failed))}',
            file=sys.stderr,
        )

        self.assertEqual([o for o in steady if not o.ok], [])
        self.assertEqual(len(per_replica), len(SERVERS))
        self.assertTrue(all(float(series['value'][1]) > 0 for series in per_replica), per_replica)
        self.assertLessEqual(abs(prometheus_rate - client_rate), 0.05 * client_rate, (prometheus_rate, client_rate))
        self.assertEqual(delayed_codes + plain_codes, [0] * 6)  # every replica drained without cutting a call
        self.assertGreater(len(delayed), 0)
        self.assertEqual(delayed_failed, [], 'a request failed while replicas with the shutdown delay were rolled')
        self.assertGreater(len(plain_failed), 0, 'no request failed while replicas without the delay were rolled')
        self.assertEqual(self.server_states(), dict.fromkeys(SERVERS, 'UP'))


if __name__ == '__main__':
    unittest.main()
