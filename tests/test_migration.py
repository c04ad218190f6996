"""Jobs written for racetrack-job-runner, served here: the same status and JSON wherever it answers 200.

Each job below is written the way that implementation's users write theirs (subclassing
`JobEntrypoint`, FastAPI `Body` markers, webview-only classes); every request goes over a
real socket. Annotations are objects here, not strings, as in most jobs: the module does
not import `annotations` from `__future__`.
"""

import dataclasses
import os
import shutil
import tempfile
import unittest
from http import HTTPMethod
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional

from racetrack_job_wrapper.endpoint_config import EndpointConfig
from racetrack_job_wrapper.entrypoint import JobEntrypoint
from tests.support import ServerTestCase

try:
    import fastapi
except ImportError:  # FastAPI is a test dependency; CI installs it, so there it must be present
    if os.environ.get('CI') == 'true':
        raise
    fastapi = None


class AdderEntrypoint(JobEntrypoint):
    def perform(self, numbers: List[float], radix: int = 10) -> float:
        """
        Add numbers.

        Integers stay integers.
        :param numbers: Numbers to add.
        :param radix: Radix of the numbers.
        :return: Sum of the numbers.
        """
        return sum(numbers)

    def docs_input_example(self) -> dict:
        return {'numbers': [300, 60, 5], 'radix': 10}


class PlainAdder:
    def perform(self, numbers: List[float], radix: int = 10) -> float:
        return sum(numbers)


class BareEntrypoint(JobEntrypoint):
    def perform(self, numbers: List[float], radix: int = 10) -> float:
        return sum(numbers)


class EntrypointBaseTest(ServerTestCase):
    def test_subclass_with_only_perform_is_served_as_a_plain_class(self):
        bare, plain = self.serve(BareEntrypoint), self.serve(PlainAdder)
        for path in ('/api/v1/parameters', '/openapi.json', '/api/v1/webview/', '/api/v1/xrai'):
            with self.subTest(path=path):
                ours, theirs = bare.get(path), plain.get(path)
                self.assertEqual((ours.status, ours.body), (theirs.status, theirs.body))
        self.assertEqual(bare.post('/api/v1/perform', {'numbers': [1, 2]}).json(), 3)

        def metric_names(client) -> set[str]:
            text = client.get('/metrics').body.decode()
            return {line.split(' ')[2] for line in text.splitlines() if line.startswith('# TYPE')}

        self.assertEqual(metric_names(bare), metric_names(plain))

    def test_abstract_perform_is_required_as_in_the_base(self):
        class NoPerform(JobEntrypoint):
            pass

        with self.assertRaises(TypeError):
            NoPerform()  # type: ignore[abstract]

    def test_examples_and_docs_of_a_subclass(self):
        client = self.serve(AdderEntrypoint, manifest={'name': 'adder', 'version': '0.0.1'})
        operation = client.get('/openapi.json').json()['paths']['/api/v1/perform']['post']
        # The whole docstring, as the existing implementation shows it.
        self.assertEqual(
            operation['description'],
            'Add numbers.\n\nIntegers stay integers.\n:param numbers: Numbers to add.\n'
            ':param radix: Radix of the numbers.\n:return: Sum of the numbers.',
        )
        self.assertEqual(operation['summary'], 'Add numbers.')
        body = operation['requestBody']['content']['application/json']
        self.assertEqual(body['example'], {'numbers': [300, 60, 5], 'radix': 10})
        self.assertEqual(body['schema']['properties']['numbers']['description'], 'Numbers to add.')
        docs = client.get('/pub/job/adder/0.0.1/docs')
        self.assertEqual(docs.status, 200)
        self.assertIn(b'Swagger UI', docs.body)

    def test_an_empty_body_calls_perform_with_its_docs_example(self):
        client = self.serve(AdderEntrypoint)
        response = client.request('POST', '/api/v1/perform')
        self.assertEqual((response.status, response.json()), (200, 365))
        self.assertEqual(client.post('/api/v1/perform', {'numbers': [1]}).json(), 1)


class HealthTest(ServerTestCase):
    def test_job_version_is_null_when_nothing_names_it(self):
        self.assertIsNone(self.serve(PlainAdder).get('/health').json()['job_version'])
        health = self.serve(PlainAdder, manifest={'version': '0.1.0'}).get('/health').json()
        self.assertEqual(health['job_version'], '0.1.0')
        health = self.serve(PlainAdder, environ={'JOB_VERSION': '0.2.0'}).get('/health').json()
        self.assertEqual(health['job_version'], '0.2.0')


class ParametersTest(ServerTestCase):
    def test_type_names_and_order_as_the_existing_implementation_gives_them(self):
        class Job:
            def perform(
                self,
                numbers: List[float],
                items: list[int],
                raw,
                mapping: Dict[str, int],
                text: 'str',
                either: int | None,
                radix: int = 10,
                *,
                flag: bool = False,
                opt: Optional[str] = None,
                kw: int,
                **rest,
            ):
                return 0

        self.assertEqual(
            self.serve(Job).get('/api/v1/parameters').json(),
            [
                {'name': 'numbers', 'type': 'List'},
                {'name': 'items', 'type': 'list'},
                {'name': 'raw', 'type': None},
                {'name': 'mapping', 'type': 'Dict'},
                {'name': 'text', 'type': 'str'},
                {'name': 'either', 'type': 'int | None'},
                {'name': 'radix', 'default_value': 10, 'type': 'int'},
                {'name': 'flag', 'default_value': False, 'type': 'bool'},
                {'name': 'opt', 'default_value': None, 'type': 'Optional'},
                {'name': 'kw', 'default_value': None, 'type': 'int'},
            ],
        )


class WebviewOnlyTest(ServerTestCase):
    """A class with a webview and no perform, like the `docs-formatter` sample."""

    class Formatter:
        def webview_app(self, base_url: str):
            def app(environ, start_response):
                start_response('200 OK', [('Content-Type', 'text/plain')])
                return [f'page {environ["PATH_INFO"]}'.encode()]

            return app

    def test_loads_and_serves_its_webview(self):
        running = self.start(self.Formatter, manifest={'name': 'docs-formatter', 'version': '1'})
        client = running.client()
        self.assertEqual(client.get('/ready').status, 200)
        page = client.get('/api/v1/webview/')
        self.assertEqual((page.status, page.body), (200, b'page /pub/job/docs-formatter/1/api/v1/webview/'))
        for response in (client.post('/api/v1/perform', {}), client.get('/api/v1/parameters')):
            self.assertEqual(response.status, 400)
            self.assertEqual(response.json()['type'], 'ValueError')
            self.assertIn('no perform() method', response.json()['error'])
        paths = client.get('/openapi.json').json()['paths']
        self.assertEqual(list(paths['/api/v1/perform']), ['post'])
        self.assertEqual(list(paths['/api/v1/perform']['post']['responses']), ['400'])


class DocumentedEndpointsTest(ServerTestCase):
    def test_static_files_and_the_webview_are_listed_in_the_openapi_document(self):
        root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root, True)
        (root / 'assets' / 'sub').mkdir(parents=True)
        (root / 'assets' / 'index.html').write_text('<b>hi</b>')
        (root / 'assets' / 'sub' / 'x.txt').write_text('x')
        (root / 'xrai.yaml').write_text('a: 1\n')

        class Job(JobEntrypoint):
            def perform(self):
                return 1

            def static_endpoints(self):
                return {'/xrai': 'xrai.yaml', '/manifest': ('xrai.yaml', 'application/x-yaml'), '/assets': 'assets'}

            def webview_app(self, base_url):
                def app(environ, start_response):
                    start_response('200 OK', [('Content-Type', 'text/html')])
                    return [b'page']

                return app

        paths = self.serve(Job, cwd=root).get('/openapi.json').json()['paths']
        for path, content_type in (
            ('/api/v1/xrai', 'application/yaml'),
            ('/api/v1/manifest', 'application/x-yaml'),
            ('/api/v1/assets/index.html', 'text/html'),
            ('/api/v1/assets/sub/x.txt', 'text/plain'),
        ):
            with self.subTest(path=path):
                self.assertEqual(list(paths[path]['get']['responses']['200']['content']), [content_type])
        self.assertNotIn('/api/v1/assets', paths)
        webview = paths['/api/v1/webview/{path}']['get']
        self.assertEqual([parameter['name'] for parameter in webview['parameters']], ['path'])


class ErrorBodyTest(ServerTestCase):
    def test_a_crash_reads_the_message_alone_and_a_value_error_is_400(self):
        class Job(JobEntrypoint):
            def perform(self, mode: str):
                if mode == 'crash':
                    raise RuntimeError('something broke inside the job')
                raise ValueError('nope')

        client = self.serve(Job)
        response = client.post('/api/v1/perform', {'mode': 'crash'})
        self.assertEqual(
            (response.status, response.json()),
            (500, {'error': 'something broke inside the job', 'type': 'RuntimeError'}),
        )
        response = client.post('/api/v1/perform', {'mode': 'refuse'})
        self.assertEqual((response.status, response.json()), (400, {'error': 'nope', 'type': 'ValueError'}))

    def test_a_failed_load_names_its_root_cause_and_the_job_line(self):
        class Job:
            def __init__(self):
                try:
                    {}['model.pkl']
                except KeyError as e:
                    raise RuntimeError('cannot load the model') from e

            def perform(self):
                return 0

        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            client = self.serve(Job)
        live = client.get('/live')
        self.assertEqual(live.status, 500)
        self.assertRegex(
            live.json()['error'],
            r'^RuntimeError: cannot load the model, cause=KeyError \(at .*test_migration.py:\d+\)$',
        )
        # Relative to the working directory: the probe does not show the machine's layout.
        self.assertIn('(at tests/test_migration.py:', live.json()['error'])


class RedirectTest(ServerTestCase):
    def setUp(self):
        self.client = self.serve(
            AdderEntrypoint,
            manifest={'name': 'adder', 'version': '0.0.1', 'jobtype_extra': {'home_page': '/api/v1/parameters'}},
        )

    def test_the_prefix_gains_its_slash_then_opens_the_home_page(self):
        first = self.client.get('/pub/job/adder/0.0.1')
        self.assertEqual((first.status, first.headers['location']), (307, '/pub/job/adder/0.0.1/'))
        second = self.client.get(first.headers['location'])
        self.assertEqual((second.status, second.headers['location']), (307, '/pub/job/adder/0.0.1/api/v1/parameters'))

    def test_a_trailing_slash_answers_307_keeping_method_body_and_query(self):
        cases = [
            ('POST', '/api/v1/perform/', '/api/v1/perform'),
            ('GET', '/api/v1/parameters/?x=1', '/api/v1/parameters?x=1'),
            ('POST', '/pub/job/adder/0.0.1/api/v1/perform/', '/pub/job/adder/0.0.1/api/v1/perform'),
            ('GET', '//api/v1/parameters//', '/api/v1/parameters'),
        ]
        for method, path, location in cases:
            with self.subTest(path=path):
                response = self.client.request(method, path, json_body={'numbers': [1, 2]})
                self.assertEqual((response.status, response.headers.get('location')), (307, location))
                followed = self.client.request(method, location, json_body={'numbers': [1, 2]})
                self.assertEqual(followed.status, 200)

    def test_unknown_paths_with_a_slash_stay_404(self):
        for path in ('/api/v1/nothing/', '/api/v1/perform/x/'):
            with self.subTest(path=path):
                self.assertEqual(self.client.get(path).status, 404)


class OptionalMethodFailureTest(ServerTestCase):
    def test_an_optional_method_that_raises_fails_the_load_naming_it(self):
        for method in ('auxiliary_endpoints', 'auxiliary_endpoints_v2', 'static_endpoints', 'docs_input_examples'):
            with self.subTest(method=method):

                def broken(self):
                    raise KeyError('config')

                job = type('Job', (), {'perform': lambda self: 1, method: broken})
                with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
                    client = self.serve(job)
                live = client.get('/live')
                self.assertEqual(live.status, 500)
                self.assertRegex(
                    live.json()['error'],
                    rf"^JobDefinitionError: {method}\(\) raised KeyError: 'config', "
                    r'cause=KeyError \(at .*test_migration.py:\d+\)$',
                )
                self.assertEqual(client.get('/ready').status, 500)


class DocsExampleTest(ServerTestCase):
    def load_error(self, example: Any) -> str:
        class Job:
            def perform(self, x: int = 0):
                return x

            def docs_input_examples(self):
                return {'/perform': example}

        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            client = self.serve(Job)
        live = client.get('/live')
        self.assertEqual(live.status, 500)
        return live.json()['error']

    def test_messages_in_the_existing_implementations_words(self):
        self.assertIn(
            'invalid docs input example: input example (for /perform endpoint) is not a dict', self.load_error([1])
        )
        self.assertIn(
            'invalid docs input example: failed to encode input example (for /perform endpoint) to JSON',
            self.load_error({'x': object()}),
        )
        message = self.load_error({'x': 'a' * (1024 * 1024)})
        self.assertRegex(
            message,
            r'invalid docs input example: input example \(for /perform endpoint\) encoded '
            r'to JSON \(\d+ bytes\) exceeds maximum size \(1048576 bytes\)',
        )

    def test_an_example_in_our_serializable_types_loads(self):
        @dataclasses.dataclass
        class Point:
            x: int
            y: int

        class Job:
            def perform(self, point: dict):
                return point

            def docs_input_example(self):
                return {'point': Point(1, 2)}

        client = self.serve(Job)
        body = client.get('/openapi.json').json()['paths']['/api/v1/perform']['post']['requestBody']
        self.assertEqual(body['content']['application/json']['example'], {'point': {'x': 1, 'y': 2}})

    def test_an_example_for_a_path_the_job_does_not_serve_is_ignored(self):
        class Job:
            def perform(self):
                return 1

            def docs_input_examples(self):
                return {'/perform': {}, '/gone': 'not a dict'}

        self.assertEqual(self.serve(Job).post('/api/v1/perform').json(), 1)


class WholeBodyTest(ServerTestCase):
    """A lone `Body()` parameter takes the whole JSON body, as FastAPI does."""

    def make_job(self, body_marker: Any, query_marker: Any, path_marker: Any) -> type:
        class Job:
            def perform(self, x: float, y: float) -> float:
                return x + y

            def auxiliary_endpoints_v2(self):
                return [
                    EndpointConfig(
                        '/multiply/{path}', HTTPMethod.POST, self.multiply, other_options=dict(tags=['items'])
                    )
                ]

            def multiply(
                self,
                body: Annotated[float, body_marker(examples=[1.2])],
                query: Annotated[float, query_marker(example=2.4)],
                path: Annotated[float, path_marker(example=234.21)],
            ) -> float:
                return body * query * path

        return Job

    def check(self, client) -> None:
        response = client.request(
            'POST', '/api/v1/multiply/234.21?query=2.4', body=b'1.2', headers={'Content-Type': 'application/json'}
        )
        self.assertEqual((response.status, response.json()), (200, 1.2 * 2.4 * 234.21))
        self.assertEqual(response.body, b'674.5248')
        response = client.request('POST', '/api/v1/multiply/2?query=2', json_body={'body': 1})
        self.assertEqual(response.status, 400)
        self.assertIn('body', response.json()['error'])
        request_body = client.get('/openapi.json').json()['paths']['/api/v1/multiply/{path}']['post']['requestBody']
        self.assertEqual(request_body['content']['application/json']['schema']['type'], 'number')

    def test_our_markers(self):
        from racetrack_job_wrapper.endpoint_config import Body, Path, Query

        self.check(self.serve(self.make_job(Body, Query, Path)))

    @unittest.skipIf(fastapi is None, 'FastAPI is not installed')
    def test_fastapi_markers(self):
        self.check(self.serve(self.make_job(fastapi.Body, fastapi.Query, fastapi.Path)))

    def test_unmarked_scalars_of_a_post_come_from_the_query_and_unknown_fields_are_ignored(self):
        from racetrack_job_wrapper.endpoint_config import Body

        class Job:
            def perform(self):
                return 'done'

            def auxiliary_endpoints_v2(self):
                return [
                    EndpointConfig('/explain', HTTPMethod.POST, self.explain),
                    EndpointConfig('/scale', HTTPMethod.POST, self.scale),
                    EndpointConfig('/random', HTTPMethod.GET, self.random),
                ]

            def random(self) -> float:
                return 4  # FastAPI's response model answers 4.0

            def explain(self, x: Annotated[float, Body()], y: Annotated[float, Body()]) -> dict:
                return {'x_importance': x / (x + y), 'y_importance': y / (x + y)}

            def scale(self, factor: float, values: List[float]) -> list:
                return [factor * value for value in values]

        client = self.serve(Job)
        response = client.post('/api/v1/explain', {'x': 3, 'y': 3, 'unknown_param_xyz': 1})
        self.assertEqual((response.status, response.json()), (200, {'x_importance': 0.5, 'y_importance': 0.5}))
        self.assertEqual(client.post('/api/v1/scale?factor=2', [1, 2]).body, b'[2.0,4.0]')
        self.assertEqual(client.get('/api/v1/random').body, b'4.0')
        # perform keeps refusing what it does not take, as the existing implementation's perform(**payload) does.
        response = client.post('/api/v1/perform', {'x': 1})
        self.assertEqual((response.status, response.json()['type']), (400, 'InvalidPayload'))
        self.assertEqual(client.request('POST', '/api/v1/perform', json_body=[1]).status, 400)

    def test_embed_keeps_the_object_form(self):
        from racetrack_job_wrapper.endpoint_config import Body

        class Job:
            def perform(self):
                return 0

            def auxiliary_endpoints_v2(self):
                return [EndpointConfig('/double', HTTPMethod.POST, self.double)]

            def double(self, factor: Annotated[float, Body(embed=True)]) -> float:
                return factor * 2

        self.assertEqual(self.serve(Job).post('/api/v1/double', {'factor': 2}).json(), 4)


if __name__ == '__main__':
    unittest.main()
