import datetime
import enum
import json
import unittest
from dataclasses import dataclass
from typing import Annotated, Optional

from openapi_spec_validator import validate

from racetrack_job_wrapper.endpoint_config import Query
from racetrack_job_wrapper.endpoints import describe_endpoint, describe_parameters
from racetrack_job_wrapper.openapi import build_openapi


class Mode(enum.Enum):
    SUM = 'sum'
    MEAN = 'mean'


@dataclass
class Point:
    x: float
    y: float = 0.0


class AdderJob:
    def perform(
        self, numbers: list[float], mode: Mode = Mode.SUM, weight: Optional[float] = None, origin: Point = Point(0.0)
    ) -> float:
        """
        Add numbers up.
        :param numbers: The numbers to add.
        :param mode: How to combine them.
        """
        return sum(numbers)

    def explain(self, x: float, y: float) -> dict[str, float]:
        """Explain feature importance."""
        return {'x': x, 'y': y}

    def scale(self, path: int, factor: Annotated[float, Query(description='Multiplier', example=3.0)] = 2.0) -> float:
        return path * factor


class LooseJob:
    def perform(self, a, b=1, **kwargs):
        return a


def adder_document():
    job = AdderJob()
    specs = [
        describe_endpoint('/perform', 'POST', job.perform, example={'numbers': [40, 2]}),
        describe_endpoint(
            '/explain',
            'POST',
            job.explain,
            example={'x': 1, 'y': 2},
            options={'summary': 'Why', 'tags': ['extra'], 'deprecated': True, 'operation_id': 'why'},
        ),
        describe_endpoint('/scale/{path}', 'GET', job.scale, fastapi_rules=True),
    ]
    return build_openapi(specs, title='Job - adder', version='1.2.3', base_path='/pub/job/adder/1.2.3')


class OpenAPITest(unittest.TestCase):
    def test_documents_validate(self):
        validate(adder_document())
        loose = build_openapi(
            [describe_endpoint('/perform', 'POST', LooseJob().perform)], title='Job - loose', version='0.0.1'
        )
        validate(loose)
        json.dumps(loose, allow_nan=False)

    def test_info_servers_security(self):
        document = adder_document()
        self.assertEqual(document['openapi'], '3.1.0')
        self.assertEqual(document['info'], {'title': 'Job - adder', 'version': '1.2.3'})
        self.assertEqual(
            document['servers'],
            [
                {'url': '/pub/job/adder/1.2.3', 'description': 'through the Racetrack gateway'},
                {'url': '/', 'description': 'the job directly'},
            ],
        )
        self.assertEqual(
            document['components']['securitySchemes'],
            {
                'RacetrackAuth': {
                    'type': 'apiKey',
                    'in': 'header',
                    'name': 'X-Racetrack-Auth',
                    'description': 'Racetrack authentication token, checked by the Racetrack gateway '
                    'in front of the job (and by the job itself when run with JOB_AUTH_TOKENS).',
                }
            },
        )
        self.assertEqual(document['security'], [{'RacetrackAuth': []}])

    def test_paths(self):
        self.assertEqual(
            sorted((path, sorted(methods)) for path, methods in adder_document()['paths'].items()),
            [
                ('/', ['get']),
                ('/api/v1/explain', ['post']),
                ('/api/v1/parameters', ['get']),
                ('/api/v1/perform', ['post']),
                ('/api/v1/scale/{path}', ['get']),
                ('/health', ['get']),
                ('/live', ['get']),
                ('/metrics', ['get']),
                ('/ready', ['get']),
            ],
        )

    def test_perform_request_body(self):
        document = adder_document()
        perform = document['paths']['/api/v1/perform']['post']
        self.assertEqual(perform['summary'], 'Add numbers up.')
        self.assertEqual(
            perform['description'],
            'Add numbers up.\n:param numbers: The numbers to add.\n:param mode: How to combine them.',
        )
        self.assertEqual(perform['operationId'], 'post_perform')
        self.assertEqual(
            perform['requestBody'],
            {
                'required': True,
                'content': {
                    'application/json': {
                        'schema': {
                            'type': 'object',
                            'properties': {
                                'numbers': {
                                    'type': 'array',
                                    'items': {'type': 'number'},
                                    'description': 'The numbers to add.',
                                },
                                'mode': {
                                    '$ref': '#/components/schemas/Mode',
                                    'description': 'How to combine them.',
                                    'default': 'sum',
                                },
                                'weight': {'anyOf': [{'type': 'number'}, {'type': 'null'}], 'default': None},
                                'origin': {'$ref': '#/components/schemas/Point', 'default': {'x': 0.0, 'y': 0.0}},
                            },
                            'required': ['numbers'],
                            'additionalProperties': False,
                        },
                        'example': {'numbers': [40, 2]},
                    }
                },
            },
        )
        self.assertEqual(
            perform['responses']['200'],
            {'description': 'The result of the call', 'content': {'application/json': {'schema': {'type': 'number'}}}},
        )
        self.assertEqual(
            perform['responses']['400']['content'],
            {'application/json': {'schema': {'$ref': '#/components/schemas/Error'}}},
        )
        self.assertEqual(
            document['components']['schemas']['Mode'], {'title': 'Mode', 'type': 'string', 'enum': ['sum', 'mean']}
        )
        self.assertEqual(document['components']['schemas']['Point']['required'], ['x'])

    def test_options_override(self):
        explain = adder_document()['paths']['/api/v1/explain']['post']
        self.assertEqual(
            (explain['summary'], explain['tags'], explain['deprecated'], explain['operationId']),
            ('Why', ['extra'], True, 'why'),
        )
        self.assertEqual(
            explain['responses']['200']['content']['application/json']['schema'],
            {'type': 'object', 'additionalProperties': {'type': 'number'}},
        )

    def test_query_and_path_parameters(self):
        scale = adder_document()['paths']['/api/v1/scale/{path}']['get']
        self.assertNotIn('requestBody', scale)
        self.assertEqual(
            scale['parameters'],
            [
                {'name': 'path', 'in': 'path', 'required': True, 'schema': {'type': 'integer'}},
                {
                    'name': 'factor',
                    'in': 'query',
                    'required': False,
                    'schema': {'type': 'number', 'default': 2.0},
                    'description': 'Multiplier',
                    'example': 3.0,
                },
            ],
        )
        self.assertEqual(scale['summary'], 'Scale path')

    def test_unannotated_and_kwargs(self):
        document = build_openapi(
            [describe_endpoint('/perform', 'POST', LooseJob().perform)], title='Job - loose', version='0.0.1'
        )
        body = document['paths']['/api/v1/perform']['post']['requestBody']
        self.assertEqual(
            body,
            {
                'required': True,
                'content': {
                    'application/json': {
                        'schema': {'type': 'object', 'properties': {'a': {}, 'b': {'default': 1}}, 'required': ['a']}
                    }
                },
            },
        )
        self.assertEqual(document['servers'], [{'url': '/', 'description': 'the job directly'}])

    def test_operation_ids_are_unique(self):
        def same(x: int) -> int:
            return x

        specs = [
            describe_endpoint('/perform', 'POST', same),
            describe_endpoint('/a', 'POST', same, options={'operation_id': 'post_perform'}),
        ]
        document = build_openapi(specs, title='t', version='1')
        ids = [operation['operationId'] for methods in document['paths'].values() for operation in methods.values()]
        self.assertEqual(
            ids,
            [
                'post_perform',
                'post_perform_2',
                'get_parameters',
                'get_home',
                'get_live',
                'get_ready',
                'get_health',
                'get_metrics',
            ],
        )
        validate(document)

    def test_a_default_has_one_json_form_in_the_document_and_the_parameters_listing(self):
        def report(day: datetime.date = datetime.date(2024, 1, 2), note: object = object()) -> str:
            return str(day)

        spec = describe_endpoint('/perform', 'POST', report)
        document = build_openapi([spec], title='t', version='1')
        properties = document['paths']['/api/v1/perform']['post']['requestBody']['content']['application/json'][
            'schema'
        ]['properties']
        self.assertEqual(properties['day'], {'default': '2024-01-02'})
        self.assertEqual(properties['note'], {})  # no JSON form: no default in the document
        listed = {entry['name']: entry['default_value'] for entry in describe_parameters(spec)}
        self.assertEqual(listed['day'], '2024-01-02')
        self.assertRegex(listed['note'], r'^<object object at 0x[0-9a-f]+>$')  # ...and its repr in the listing


class RefusalsTest(unittest.TestCase):
    """401, 413, 429 and 503: where each is documented."""

    def statuses(self, document):
        return {
            (path, method): list(operation['responses'])
            for path, methods in document['paths'].items()
            for method, operation in methods.items()
        }

    def test_where_each_refusal_is_documented(self):
        statuses = self.statuses(adder_document())
        self.assertEqual(
            statuses,
            {
                ('/api/v1/perform', 'post'): ['200', '400', '401', '413', '429', '500', '503'],
                ('/api/v1/explain', 'post'): ['200', '400', '401', '413', '429', '500', '503'],
                # No request body, so no 413.
                ('/api/v1/scale/{path}', 'get'): ['200', '400', '401', '429', '500', '503'],
                ('/api/v1/parameters', 'get'): ['200', '401', '503'],
                ('/', 'get'): ['307', '401', '503'],
                # Probes never need a token.
                ('/live', 'get'): ['200', '500', '503'],
                ('/ready', 'get'): ['200', '500', '503'],
                ('/health', 'get'): ['200', '500', '503'],
                ('/metrics', 'get'): ['200', '401', '503'],
            },
        )

    def test_each_refusal_has_the_error_schema_and_its_headers(self):
        document = adder_document()
        validate(document)
        responses = document['paths']['/api/v1/perform']['post']['responses']
        for status in ('401', '413', '429', '503'):
            with self.subTest(status=status):
                self.assertEqual(
                    responses[status]['content'],
                    {'application/json': {'schema': {'$ref': '#/components/schemas/Error'}}},
                )
        self.assertEqual(list(responses['401']['headers']), ['WWW-Authenticate'])
        self.assertEqual(list(responses['429']['headers']), ['Retry-After'])
        self.assertEqual(list(responses['503']['headers']), ['Retry-After'])
        self.assertNotIn('headers', responses['413'])
        self.assertIn('JOB_AUTH_TOKENS', responses['401']['description'])
        self.assertIn('max_concurrency_queue', responses['429']['description'])
        self.assertIn('67108864 bytes', responses['413']['description'])
        self.assertIn('loading', responses['503']['description'])
        live = document['paths']['/live']['get']['responses']['503']['description']
        self.assertNotIn('loading', live)  # probes answer while the job loads

    def test_public_endpoints_need_no_token(self):
        from racetrack_job_wrapper.auth import AccessPolicy

        job = AdderJob()
        policy = AccessPolicy(('token',), public_endpoints=('/api/v1/perform', '/api/v1/scale'))
        specs = [
            describe_endpoint('/perform', 'POST', job.perform),
            describe_endpoint('/explain', 'POST', job.explain),
            describe_endpoint('/scale/{path}', 'GET', job.scale, fastapi_rules=True),
        ]
        document = build_openapi(specs, title='t', version='1', is_public=policy.is_public, max_body_bytes=1000)
        validate(document)
        paths = document['paths']
        for path, method in (('/api/v1/perform', 'post'), ('/api/v1/scale/{path}', 'get')):
            with self.subTest(path=path):
                self.assertEqual(paths[path][method]['security'], [])
                self.assertNotIn('401', paths[path][method]['responses'])
        explain = paths['/api/v1/explain']['post']
        self.assertNotIn('security', explain)
        self.assertIn('401', explain['responses'])
        self.assertEqual(
            explain['responses']['413']['description'], 'The request body is over max_body_bytes (1000 bytes)'
        )

    def test_a_job_without_perform_keeps_its_placeholder(self):
        document = build_openapi([], title='t', version='1', has_perform=False)
        validate(document)
        self.assertEqual(list(document['paths'])[0], '/api/v1/perform')
        self.assertEqual(list(document['paths']['/api/v1/perform']['post']['responses']), ['400'])

    def test_static_files_and_webview(self):
        document = build_openapi(
            [], title='t', version='1', static_files=[('/xrai', 'application/yaml')], has_webview=True
        )
        validate(document)
        statuses = self.statuses(document)
        self.assertEqual(statuses[('/api/v1/xrai', 'get')], ['200', '304', '401', '404', '503'])
        self.assertEqual(statuses[('/api/v1/webview/{path}', 'get')], ['200', '401', '503'])


if __name__ == '__main__':
    unittest.main()
