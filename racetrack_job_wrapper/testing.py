"""`JobTestClient`: call a job through the server's whole request path, in the test's own process, without a socket.

    from racetrack_job_wrapper.testing import JobTestClient

    with JobTestClient(Job) as client:
        response = client.perform(number=7907)
        assert response.status == 200 and response.json() is True

The job is loaded as the server loads it: the manifest (`./job.yaml`, a path, or a mapping)
and its settings, the probes, routing, access control, argument validation, the concurrency
cap, serialization, the error shapes and the metrics all take part; only the socket does not.
`check()` (`python -m racetrack_job_wrapper check job.py`) calls every endpoint with its docs
example and says which answered 2xx with a result of their declared type.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from prometheus_client import CollectorRegistry

from racetrack_job_wrapper.app import App, JobComponents
from racetrack_job_wrapper.convert import ValidationError, ValidationMode, build_converter
from racetrack_job_wrapper.endpoints import EndpointSpec
from racetrack_job_wrapper.manifest import read_manifest
from racetrack_job_wrapper.messages import Headers, Request
from racetrack_job_wrapper.metrics import register_job_metrics
from racetrack_job_wrapper.routing import API_PREFIX
from racetrack_job_wrapper.settings import JobSettings, ObservabilitySettings, apply_options
from racetrack_job_wrapper.standalone import JobRunner

_NO_BODY = object()


@dataclass
class TestResponse:
    """Status, headers (names in lower case) and body of one answer; a streamed body is read whole."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode('utf-8', errors='replace')


class JobTestClient:
    """A job loaded as the server loads it, answering requests made in process.

    `job` is a class (instantiated here) or an instance. `manifest` is a mapping, a manifest
    file's path, or None for `./job.yaml` of `cwd` when there is one. Keyword options are the
    server's (`max_concurrency` is the manifest's; limits like `max_body_bytes` are keywords).
    The manifest's `runtime_env` is not put into `os.environ`: a test sets what it needs.
    """

    __test__ = False  # not a test case, whatever a test runner guesses from the name

    def __init__(
        self,
        job: Any,
        manifest: Mapping[str, Any] | str | Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        **options: Any,
    ):
        self._job = job
        self._manifest = manifest
        self._environ = dict(environ or {})
        self._cwd = Path(cwd) if cwd is not None else None
        self._options = options
        self._runner: JobRunner | None = None
        self._app: App | None = None
        self._components: JobComponents | None = None
        self.endpoints: list[EndpointSpec] = []

    def __enter__(self) -> JobTestClient:
        manifest = self._manifest
        if not isinstance(manifest, Mapping):
            manifest = read_manifest(str(manifest) if manifest is not None else None, self._environ, self._cwd)
        settings = apply_options(JobSettings.from_manifest(manifest, self._environ), self._options)
        runner = JobRunner(
            lambda: self._job,
            settings,
            registry=CollectorRegistry(),
            cwd=self._cwd,
            observability=ObservabilitySettings.from_environ(self._environ),
        )
        self._app, self._components, entrypoint = runner.build(self._job)
        register_job_metrics(runner.registry, entrypoint)
        runner.serve_calls(self._components)  # async calls (`Prefer: respond-async`) run as on the server
        runner.health.set_ready()
        self._runner = runner
        self.endpoints = self._components.endpoints
        return self

    def __exit__(self, *exc: object) -> None:
        if self._components is not None:
            self._components.close()
        self._runner = self._app = self._components = None

    @property
    def registry(self) -> CollectorRegistry:
        """The metrics of this job (a registry of its own)."""
        return self._server()[0].registry

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = _NO_BODY,
        *,
        body: bytes = b'',
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        query: Mapping[str, Any] | None = None,
    ) -> TestResponse:
        """Answer one request: `json_body` is sent as JSON, else `body` as it is."""
        runner, app = self._server()
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
        if json_body is not _NO_BODY:
            body = json.dumps(json_body).encode()
            pairs.append(('Content-Type', 'application/json'))
        target, _, query_string = path.partition('?')
        if query:
            query_string = '&'.join(filter(None, [query_string, urlencode(query, doseq=True)]))
        pairs += [('Host', 'testserver'), ('Content-Length', str(len(body)))]
        request = Request(
            method.upper(),
            target,
            query_string,
            Headers(pairs),
            body,
            client=('testclient', 50000),
            raw_path=target,
            server=('testserver', 80),
        )
        observer = runner.observer
        started = time.perf_counter()
        observer.request_started()
        extra = observer.request_received(request)
        response = app.handle(request)
        response.headers.extend(extra)
        data = response.body
        if response.stream is not None:
            try:
                data = b''.join(response.stream)
            finally:
                close = getattr(response.stream, 'close', None)
                if close is not None:
                    close()
        seconds = time.perf_counter() - started
        observer.request_finished(request, request.method, path, response.status, len(data), seconds)
        return TestResponse(response.status, {name.lower(): value for name, value in response.headers}, data)

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        """GET `path` (`query=` for a query string)."""
        return self.request('GET', path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> TestResponse:
        """POST a JSON body (`{}` when none) to `path`."""
        return self.request('POST', path, {} if json_body is None else json_body, **kwargs)

    def perform(self, **kwargs: Any) -> TestResponse:
        """POST `/api/v1/perform` with the keyword arguments as its JSON body."""
        return self.post(f'{API_PREFIX}/perform', kwargs)

    def _server(self) -> tuple[JobRunner, App]:
        if self._runner is None or self._app is None:
            raise RuntimeError('JobTestClient is used inside `with JobTestClient(Job) as client:`')
        return self._runner, self._app


@dataclass
class CheckResult:
    """How one endpoint answered its docs example."""

    method: str
    path: str
    status: int
    problem: str = ''
    skipped: bool = False  # not called: nothing to call it with

    @property
    def ok(self) -> bool:
        """True when it answered 2xx with a result of its declared type (or was not called)."""
        return not self.problem or self.skipped


def check(client: JobTestClient) -> list[CheckResult]:
    """Call every endpoint of a loaded job with its docs example; each answer checked against its declared type."""
    results = []
    for spec in client.endpoints:
        path = API_PREFIX + spec.path
        example = dict(spec.example or {})
        if '{' in spec.path:
            results.append(
                CheckResult(spec.method, path, 0, 'not called: its path parameters need values', skipped=True)
            )
            continue
        if not spec.example and any(param.required for param in spec.params):
            results.append(
                CheckResult(spec.method, path, 0, 'not called: no docs example for its parameters', skipped=True)
            )
            continue
        if spec.method in ('GET', 'DELETE'):
            response = client.request(spec.method, path, query=example)
        else:
            response = client.request(spec.method, path, example)
        result = CheckResult(spec.method, path, response.status)
        if not 200 <= response.status < 300:
            result.problem = f'answered {response.status}: {response.text[:200]}'
        elif spec.has_return_annotation and response.headers.get('content-type', '').startswith('application/json'):
            converter = build_converter(spec.returns, ValidationMode.STRICT)
            if converter is not None:
                try:
                    converter(response.json(), 'result')
                except ValidationError as e:
                    result.problem = f'the result does not match its declared type: {e}'
        results.append(result)
    return results
