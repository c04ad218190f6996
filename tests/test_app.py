"""The app's request path, in two kinds of test.

`RequestPathTest` calls the job as a client would, through `JobTestClient` (the path job
authors' tests take: manifest, settings, routing, access control, validation, errors, redirects,
security headers, CORS). `AppTest` is a unit test of `App` itself: it looks at the `Request`
after `App.handle` (the refusal's reason, the matched route, the base path) or builds a bare
`App` on a `Router`.
"""

import json
import unittest
from contextlib import nullcontext
from typing import Any

from prometheus_client import CollectorRegistry

from racetrack_job_wrapper.app import App, build_job_app
from racetrack_job_wrapper.health import HealthState
from racetrack_job_wrapper.messages import ClientDisconnected, Headers, Request, Response
from racetrack_job_wrapper.metrics import JobMetrics
from racetrack_job_wrapper.routing import Route, Router
from racetrack_job_wrapper.settings import JobSettings
from racetrack_job_wrapper.testing import JobTestClient


class Job:
    def perform(self, numbers: list[float]) -> float:
        """Add numbers."""
        if not numbers:
            raise ValueError('numbers must not be empty')
        if numbers == [13]:
            raise RuntimeError('unlucky')
        return sum(numbers)


MANIFEST = {'name': 'adder', 'version': '1.0', 'public_endpoints': ['/api/v1/perform']}
AUTH = {'X-Racetrack-Auth': 'secret'}


def handle(app: Any, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body).encode() if body is not None else b''
    target, _, query = path.partition('?')
    return app.handle(Request(method, target, query, Headers((headers or {}).items()), data, raw_path=target))


class RequestPathTest(unittest.TestCase):
    def setUp(self) -> None:
        client = JobTestClient(Job, MANIFEST, environ={'JOB_AUTH_TOKENS': 'secret'})
        self.client = self.enterContext(client)

    def test_perform_validates_converts_and_answers(self) -> None:
        response = self.client.perform(numbers=[40, '2'])
        self.assertEqual((response.status, response.json()), (200, 42))

    def test_errors_have_one_shape(self) -> None:
        cases = [
            ({'numbers': []}, 400, {'error': 'numbers must not be empty', 'type': 'ValueError'}),
            ({'numbers': [13]}, 500, {'error': 'unlucky', 'type': 'RuntimeError'}),
            ({'numbers': ['x']}, 400, {'error': 'numbers[0]: expected number, got string', 'type': 'ValidationError'}),
        ]
        for payload, status, expected in cases:
            with self.subTest(payload=payload):
                with self.assertLogs('racetrack_job_wrapper', 'ERROR') if status == 500 else nullcontext():
                    response = self.client.perform(**payload)
                self.assertEqual((response.status, response.json()), (status, expected))

    def test_redirects(self) -> None:
        cases = [
            ('/pub/job/adder/1.0', '/pub/job/adder/1.0/'),
            ('/', '/pub/job/adder/1.0/docs'),
            ('/api/v1/parameters/?a=1', '/api/v1/parameters?a=1'),
        ]
        for path, location in cases:
            with self.subTest(path=path):
                response = self.client.get(path, headers=AUTH)
                self.assertEqual((response.status, response.headers.get('location')), (307, location))

    def test_wrong_method_and_unknown_path(self) -> None:
        response = self.client.get('/api/v1/perform', headers=AUTH)
        self.assertEqual((response.status, response.headers.get('allow')), (405, 'OPTIONS, POST'))
        response = self.client.get('/nowhere', headers=AUTH)
        self.assertEqual((response.status, response.json()['type']), (404, 'NotFound'))

    def test_json_answers_are_nosniff_and_the_docs_page_may_not_be_framed(self) -> None:
        for response in (
            self.client.perform(numbers=[1]),
            self.client.get('/api/v1/parameters', headers=AUTH),
            self.client.get('/nowhere', headers=AUTH),
        ):
            self.assertEqual(response.headers.get('x-content-type-options'), 'nosniff')
        page = self.client.get('/docs', headers=AUTH)
        self.assertIn("frame-ancestors 'none'", page.headers.get('content-security-policy', ''))
        self.assertIn("default-src 'self'", page.headers.get('content-security-policy', ''))

    def test_cors_lets_any_origin_read_but_never_with_credentials(self) -> None:
        for origin in ('https://a.example', 'null'):
            response = self.client.post('/api/v1/perform', {'numbers': [1]}, headers={'Origin': origin})
            self.assertEqual(response.headers.get('access-control-allow-origin'), '*')
            self.assertNotIn('access-control-allow-credentials', response.headers)


class AppTest(unittest.TestCase):
    def setUp(self) -> None:
        settings = JobSettings(
            name='adder', version='1.0', auth_tokens=('secret',), public_endpoints=('/api/v1/perform',)
        )
        health = HealthState()
        health.set_ready()
        self.app, components = build_job_app(Job(), settings, health, JobMetrics(CollectorRegistry()))
        self.addCleanup(components.close)

    def test_a_refusal_records_its_reason_on_the_request(self) -> None:
        request = Request('GET', '/metrics', raw_path='/metrics')
        response = self.app.handle(request)
        self.assertEqual((response.status, request.rejected), (401, 'unauthorized'))
        request = Request('GET', '/metrics', headers=Headers([('X-Racetrack-Auth', 'secret')]), raw_path='/metrics')
        self.assertEqual(self.app.handle(request).status, 404)  # no metrics route in this app: routed, not refused
        self.assertIsNone(request.rejected)

    def test_the_route_that_matched_is_on_the_request(self) -> None:
        request = Request(
            'POST',
            '/pub/job/adder/1.0/api/v1/perform',
            body=b'{"numbers": [1]}',
            raw_path='/pub/job/adder/1.0/api/v1/perform',
        )
        self.assertEqual(self.app.handle(request).status, 200)
        self.assertEqual((request.base_path, request.path), ('/pub/job/adder/1.0', '/api/v1/perform'))
        self.assertIsNotNone(request.route)
        self.assertEqual(request.route.path, '/api/v1/perform')  # type: ignore[union-attr]

    def test_a_client_gone_while_queued_is_not_answered(self) -> None:
        def gone(_: Request) -> Response:
            raise ClientDisconnected()

        app = App(Router([Route('/call', {'GET': gone}, 'a queued call')]), JobSettings())
        with self.assertRaises(ClientDisconnected):
            handle(app, 'GET', '/call')


if __name__ == '__main__':
    unittest.main()
