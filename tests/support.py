"""Test support: real servers on 127.0.0.1, free ports, stopped by each test; a small HTTP client."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from prometheus_client import CollectorRegistry

from racetrack_job_wrapper.settings import JobSettings, ObservabilitySettings, apply_options
from racetrack_job_wrapper.standalone import JobRunner

TESTS_DIR = Path(__file__).resolve().parent
# RJW_QUICK=1 leaves out the slow tests of external tools; in CI (CI=true) every test runs.
QUICK = os.environ.get('RJW_QUICK') == '1' and os.environ.get('CI') != 'true'
slow = unittest.skipIf(QUICK, 'RJW_QUICK=1: a slow external-tool test')
REPO_DIR = TESTS_DIR.parent
EXAMPLES_DIR = REPO_DIR / 'examples'


@dataclass
class ClientResponse:
    """Status, headers (lower-cased names) and body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        """Body parsed as JSON."""
        return json.loads(self.body)


class JobClient:
    """HTTP/1.1 client on one keep-alive connection to a test server."""

    def __init__(self, port: int, host: str = '127.0.0.1', timeout: float = 30.0):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.base_url = f'http://{host}:{port}'
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> ClientResponse:
        """Send one request and read the whole response."""
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body)
            headers.setdefault('Content-Type', 'application/json')
        if isinstance(body, str):
            body = body.encode()
        for attempt in (1, 2):
            connection = self._connect()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # the server closed an idle keep-alive connection: retry once on a new one
                if attempt == 2:
                    raise
        if response.will_close:
            self.close()
        raw = response.getheaders()
        return ClientResponse(response.status, {name.lower(): value for name, value in raw}, data, raw)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> ClientResponse:
        """GET a path."""
        return self.request('GET', path, headers=headers)

    def post(self, path: str, payload: Any = None, headers: Mapping[str, str] | None = None) -> ClientResponse:
        """POST a JSON payload."""
        return self.request('POST', path, json_body=payload if payload is not None else {}, headers=headers)

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._connection

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class RunningJob:
    """A job server running in a thread of the test process."""

    def __init__(self, runner: JobRunner, thread: threading.Thread):
        self.runner = runner
        self.thread = thread
        self.port = runner.server.server_address[1]
        self._clients: list[JobClient] = []

    def client(self) -> JobClient:
        """A new client connection to this server, closed when the server stops."""
        client = JobClient(self.port)
        self._clients.append(client)
        return client

    def stop(self, timeout: float = 30.0) -> None:
        """Close the clients, drain, and wait for the serving thread to end."""
        for client in self._clients:
            client.close()
        self.runner.stop()
        self.thread.join(timeout)


class ServerTestCase(unittest.TestCase):
    """Starts job servers on 127.0.0.1 with fresh metric registries; every one is stopped after the test."""

    def serve(
        self,
        job: Any,
        manifest: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        **limits: Any,
    ) -> JobClient:
        """Serve `job` (a class, an instance, or a zero-argument loader) and return a client."""
        return self.start(job, manifest, wait=wait, environ=environ, cwd=cwd, **limits).client()

    def start(
        self,
        job: Any,
        manifest: Mapping[str, Any] | None = None,
        *,
        wait: bool = True,
        environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        **limits: Any,
    ) -> RunningJob:
        """Serve `job` and return the running server; `cwd` stands in for the working directory."""
        settings = apply_options(JobSettings.from_manifest(dict(manifest or {}), environ or {}), limits)
        load: Callable[[], Any] = job if callable(job) and not hasattr(job, 'perform') else (lambda: job)
        runner = JobRunner(
            load,
            settings,
            registry=CollectorRegistry(),
            cwd=cwd,
            observability=ObservabilitySettings.from_environ(environ or {}),
        )
        runner.bind('127.0.0.1', 0)
        result: dict[str, int] = {}
        thread = threading.Thread(target=lambda: result.setdefault('code', runner.run_forever()), daemon=True)
        thread.start()
        running = RunningJob(runner, thread)
        self.addCleanup(running.stop)
        if wait:
            self.assertTrue(runner.loaded.wait(30), 'the job did not load within 30 s')
        return running


class ProcessJob:
    """A job served by `python -m racetrack_job_wrapper` in a child process."""

    def __init__(
        self,
        args: list[str],
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ):
        """With `port`, the arguments name no address: the caller chose it (through RJW_HOST and RJW_PORT, say)."""
        self.port = free_port() if port is None else port
        address = ['--host', '127.0.0.1', '--port', str(self.port)] if port is None else []
        full_env = {**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})}
        full_env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO_DIR), full_env.get('PYTHONPATH')]))
        # A file, not a pipe: a chatty child must never block on a full pipe nobody reads.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - open while the process runs, closed by stop()
        self.output = ''
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'racetrack_job_wrapper', *args, *address],
            cwd=cwd,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._clients: list[JobClient] = []

    def wait_listening(self, timeout: float = 20.0) -> None:
        """Wait until the port accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f'the job process exited with {self.process.returncode}: {self.read_output()}')
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError('the job process did not listen in time')

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until /ready answers 200."""
        self.wait_listening(timeout)
        client = JobClient(self.port)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if client.get('/ready').status == 200:
                    return
                time.sleep(0.02)
        finally:
            client.close()
        raise AssertionError(f'the job did not become ready: {self.read_output()}')

    def client(self) -> JobClient:
        """A client connection to the child, closed by `stop()`."""
        client = JobClient(self.port)
        self._clients.append(client)
        return client

    def read_output(self) -> str:
        """Everything the child printed so far (all of it once stopped)."""
        if not self._log.closed:
            self._log.seek(0)
            self.output = self._log.read().decode(errors='replace')
        return self.output

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for client in self._clients:
            client.close()
        self.read_output()
        self._log.close()
        return self.process.returncode


def load_example(name: str) -> type:
    """The `Job` class of `examples/<name>/job.py`, imported under a unique module name."""
    module_name = f'example_{name}_job'
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES_DIR / name / 'job.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # Flask finds its templates through the module's entry here
    spec.loader.exec_module(module)
    return module.Job


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes on a new connection and read what comes back until close or timeout."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_until_close:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return b''.join(chunks)


class RawConnection:
    """A raw socket to a test server: send any bytes, read responses one by one, see the close."""

    def __init__(self, port: int, timeout: float = 10.0, source: str = '127.0.0.1'):
        # Any 127.x.y.z is this machine: another `source` is another client address.
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout, source_address=(source, 0))
        self._buffer = bytearray()

    def send(self, data: bytes) -> None:
        """Send bytes as they are."""
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def read_response(self) -> ClientResponse:
        """Read one response (interim 1xx responses included); raises EOFError if the server closed first."""
        while b'\r\n\r\n' not in self._buffer:
            if not self._fill():
                raise EOFError(f'connection closed; received {bytes(self._buffer)!r}')
        end = self._buffer.index(b'\r\n\r\n')
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        status_line, *lines = head.decode('latin-1').split('\r\n')
        raw = [tuple(part.strip() for part in line.split(':', 1)) for line in lines]
        headers = {name.lower(): value for name, value in raw}
        length = int(headers.get('content-length', 0))
        while len(self._buffer) < length:
            if not self._fill():
                raise EOFError('connection closed mid-body')
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return ClientResponse(int(status_line.split(' ')[1]), headers, body, raw)  # type: ignore[arg-type]

    def closed_by_server(self) -> bool:
        """True when the server closed the connection (reads until EOF or the socket timeout)."""
        try:
            while self._fill():
                pass
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
