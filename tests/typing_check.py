"""The public API as a job author uses it, for `mypy --strict tests/typing_check.py` (py.typed is shipped).

Not a test module: nothing here runs; mypy checks that these uses type-check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from http import HTTPMethod
from typing import Annotated, Any

from racetrack_job_wrapper import EndpointConfig
from racetrack_job_wrapper.call import call_job, call_job_async
from racetrack_job_wrapper.endpoint_config import Body, Path, Query
from racetrack_job_wrapper.entrypoint import JobEntrypoint
from racetrack_job_wrapper.messages import Request
from racetrack_job_wrapper.standalone import serve_job_class, serve_job_instance
from racetrack_job_wrapper.utils.quantity import Quantity


class PlainJob:
    """A job that subclasses nothing."""

    def perform(self, numbers: list[float]) -> float:
        return sum(numbers)


class Job(JobEntrypoint):
    """A job on the optional base class, with every optional method."""

    def perform(self, x: float, y: float = 1.0) -> float:
        return x + y

    def docs_input_example(self) -> dict[str, Any]:
        return {'x': 1.0, 'y': 2.0}

    def docs_input_examples(self) -> dict[str, dict[str, Any]]:
        return {'/perform': {'x': 1.0}, '/scale/{path}': {'factor': 2.0}}

    def auxiliary_endpoints(self) -> dict[str, Callable[..., Any]]:
        return {'/explain': self.explain}

    def auxiliary_endpoints_v2(self) -> list[EndpointConfig]:
        return [
            EndpointConfig('/random', HTTPMethod.GET, self.random, {'tags': ['random']}),
            EndpointConfig('/scale/{path}', 'POST', self.scale),
        ]

    def static_endpoints(self) -> dict[str, str | tuple[str, str]]:
        return {'/readme': 'README.md', '/manifest': ('job.yaml', 'application/yaml')}

    def metrics(self) -> list[dict[str, Any]]:
        return [{'name': 'job_queue_length', 'value': 3, 'labels': {'queue': 'main'}}]

    def webview_app(self, base_url: str) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            start_response('200 OK', [('Content-Type', 'text/plain')])
            return [base_url.encode()]

        return app

    def explain(self, x: float, y: float) -> dict[str, float]:
        return {'x': x / (x + y), 'y': y / (x + y)}

    def random(self, start: Annotated[float, Query(example=1.5)], end: Annotated[float, Query()] = 2.0) -> float:
        return (start + end) / 2

    def scale(
        self,
        path: Annotated[float, Path(description='the number')],
        factor: Annotated[float, Body(embed=True, examples=[1.2])] = 2.0,
    ) -> Quantity:
        return Quantity(f'{path * factor}')


class ChainJob:
    """A job calling another, with and without awaiting, and reading the request it serves."""

    def perform(self, numbers: list[float]) -> float:
        total: float = call_job(self, 'adder', payload={'numbers': numbers}, version='1.0', timeout=None)
        return total / len(numbers)

    def caller(self) -> str | None:
        # The server sets the attribute on the job instance when it loads it.
        context: ContextVar[Request] = self.request_context  # type: ignore[attr-defined]
        return context.get().headers.get('X-Caller-Name')

    async def average(self, numbers: list[float]) -> float:
        total: float = await call_job_async(self, 'adder', '/api/v1/perform', {'numbers': numbers}, method='POST')
        return total / len(numbers)


def main() -> int:
    if Quantity('2Ki') > Quantity('2k'):
        return serve_job_instance(
            Job(), port=7000, max_body_bytes=1024, head_timeout=5.0, cors_allow_origins=['https://example.org']
        )
    return serve_job_class(PlainJob, host='127.0.0.1', manifest_path='job.yaml', workers=2)
