"""Auxiliary endpoints v1 and v2: binding, markers, errors, limiter, metrics, docs.

Most tests call the job in process through `JobTestClient`; real sockets are kept where they are
the point: one guide example through the real server, the limiter shared across connections, and
start-up errors as a running server reports them on /live.
"""

from __future__ import annotations

import asyncio
import threading
import time
import unittest
from http import HTTPMethod
from typing import Annotated

import racetrack_job_wrapper
from racetrack_job_wrapper import endpoint_config
from racetrack_job_wrapper.endpoint_config import Body, EndpointConfig, Path, Query
from racetrack_job_wrapper.testing import JobTestClient
from tests.support import ServerTestCase, load_example


def load_error(running) -> str:
    """The load failure reported by /live, without its `, cause=Type (at file:line)` suffix."""
    return running.runner.health.error.rsplit(', cause=', 1)[0]


class PydanticUndefinedType:
    """Stands in for pydantic's "no default" sentinel type, recognised by name."""


_UNDEFINED = PydanticUndefinedType()


class FastAPIParam:
    """The attributes FastAPI's Body/Query/Path objects carry; recognised by class name only."""

    def __init__(self, default=_UNDEFINED, *, description=None, example=_UNDEFINED, examples=None):
        self.default = default
        self.description = description
        self.example = example
        self.examples = examples


# Same class names as fastapi.Body / fastapi.Query / fastapi.Path, defined here so FastAPI is never needed.
FastBody = type('Body', (FastAPIParam,), {})
FastQuery = type('Query', (FastAPIParam,), {})
FastPath = type('Path', (FastAPIParam,), {})


class AuxJob:
    def __init__(self):
        self.calls = 0

    def perform(self, x: float, y: float) -> float:
        return x + y

    def auxiliary_endpoints(self):
        return {
            '/explain': self.explain,
            'no_slash': self.no_slash,
            '/slow': self.slow,
            '/later': self.later,
            '/refuse': self.refuse,
            '/crash': self.crash,
        }

    def explain(self, x: float, y: float) -> dict[str, float]:
        """
        Explain feature importance of a model result.
        :param x: First element to add.
        :param y: Second element to add.
        """
        result = self.perform(x, y)
        return {'x_importance': x / result, 'y_importance': y / result}

    def no_slash(self) -> str:
        return 'slash added'

    def slow(self, seconds: float) -> bool:
        time.sleep(seconds)
        return True

    async def later(self, value: int) -> dict:
        await asyncio.sleep(0.01)
        return {'value': value, 'path': self.request_context.get().path}

    def refuse(self, value: int) -> None:
        raise ValueError(f'value {value} refused')

    def crash(self) -> None:
        raise RuntimeError('boom')

    def docs_input_examples(self):
        return {'/perform': {'x': 40, 'y': 2}, '/explain': {'x': 1, 'y': 2}}


class V2Job:
    def perform(self) -> str:
        return 'v2'

    def auxiliary_endpoints(self):
        return {'/v1': lambda: 'from v1'}

    def auxiliary_endpoints_v2(self):
        return [
            EndpointConfig(
                '/random',
                HTTPMethod.GET,
                self.random,
                {
                    'tags': ['numbers'],
                    'summary': 'Random number',
                    'description': 'Uniform.',
                    'response_model': 'ignored',
                    'unknown_flag': True,
                },
            ),
            EndpointConfig('multiply/{path}', 'post', self.multiply),
            EndpointConfig('/fast/{item}', 'PUT', self.fast),
            EndpointConfig('/ours/{item}', HTTPMethod.POST, self.ours),
            EndpointConfig('/items', 'GET', self.items),
        ]

    def random(self, start: float, end: float) -> dict:
        return {'start': start, 'end': end, 'types': [type(start).__name__, type(end).__name__]}

    def multiply(self, path: float, factor: float = 2.0) -> float:
        return path * factor

    def fast(
        self,
        item: Annotated[float, FastPath(example=234.21)],
        scale: Annotated[float, FastQuery(example=2.4, description='Scale factor')],
        offset: Annotated[float, FastBody(examples=[1.2])],
    ) -> list:
        return [item, scale, offset]

    def ours(
        self,
        item: Annotated[int, Path(description='Item id')],
        flag: Annotated[bool, Query()] = False,
        note: Annotated[str, Body(examples=['hi'])] = '',
    ) -> list:
        return [item, flag, note]

    def items(self, ids: list[int]) -> list[int]:
        return ids

    def docs_input_examples(self):
        return {'/random': {'start': 1.5, 'end': 2}, 'multiply/{path}': {'factor': 3}}


class GuideExplainOverSocketTest(ServerTestCase):
    """The user guide's auxiliary endpoints job from examples/auxiliary, served on a real socket."""

    # The one auxiliary-endpoint test through the real server, with its public prefix: the
    # others take the same request path in process.
    def test_explain_example(self):
        client = self.serve(load_example('auxiliary'))
        response = client.post('/api/v1/explain', {'x': 1, 'y': 3})
        self.assertEqual((response.status, response.json()), (200, {'x_importance': 0.25, 'y_importance': 0.75}))
        response = client.post('/pub/job/job/latest/api/v1/explain', {'x': 2, 'y': 2})
        self.assertEqual(response.json(), {'x_importance': 0.5, 'y_importance': 0.5})
        self.assertEqual(client.post('/api/v1/perform', {'x': 40, 'y': 2}).json(), 42)


class GuideExampleTest(unittest.TestCase):
    """The user guide's auxiliary endpoints job from examples/auxiliary."""

    def test_example_v2_endpoints(self):
        client = self.enterContext(JobTestClient(load_example('auxiliary'), {}))
        value = client.get('/api/v1/random?start=1.5&end=2').json()
        self.assertTrue(1.5 <= value <= 2, value)
        self.assertEqual(client.post('/api/v1/multiply/2.5', 4).json(), 10.0)
        self.assertEqual(client.request('POST', '/api/v1/multiply/2.5').json(), 5.0)
        document = client.get('/openapi.json').json()
        self.assertEqual(document['paths']['/api/v1/random']['get']['tags'], ['random'])
        self.assertEqual(
            document['paths']['/api/v1/explain']['post']['requestBody']['content']['application/json']['example'],
            {'x': 1, 'y': 2},
        )


AUX_MANIFEST = {'jobtype_extra': {'max_concurrency': 1, 'max_concurrency_queue': 0}}


class AuxiliaryV1Test(unittest.TestCase):
    def setUp(self):
        self.client = self.enterContext(JobTestClient(AuxJob(), AUX_MANIFEST))

    def test_path_without_leading_slash_gets_one(self):
        self.assertEqual(self.client.post('/api/v1/no_slash').json(), 'slash added')

    def test_binding_errors_name_the_parameter(self):
        response = self.client.post('/api/v1/explain', {'x': 1})
        self.assertEqual(
            (response.status, response.json()),
            (400, {'error': "missing required parameter 'y' for /explain", 'type': 'InvalidPayload'}),
        )
        response = self.client.post('/api/v1/explain', {'x': 1, 'y': 2, 'z': 3})
        self.assertEqual(
            response.json(), {'error': "unexpected parameter 'z'; /explain accepts: x, y", 'type': 'InvalidPayload'}
        )
        response = self.client.post('/api/v1/explain', {'x': 'one', 'y': 2})
        self.assertEqual(
            (response.status, response.json()),
            (400, {'error': 'x: expected number, got string', 'type': 'ValidationError'}),
        )

    def test_value_error_is_400_and_crash_is_500(self):
        response = self.client.post('/api/v1/refuse', {'value': 7})
        self.assertEqual((response.status, response.json()), (400, {'error': 'value 7 refused', 'type': 'ValueError'}))
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            response = self.client.post('/api/v1/crash')
        self.assertEqual((response.status, response.json()), (500, {'error': 'boom', 'type': 'RuntimeError'}))
        self.assertEqual(self.client.post('/api/v1/explain', {'x': 1, 'y': 1}).status, 200)

    def test_async_auxiliary_endpoint_is_awaited(self):
        self.assertEqual(self.client.post('/api/v1/later', {'value': 5}).json(), {'value': 5, 'path': '/api/v1/later'})

    def test_metrics_are_labelled_with_the_endpoint_path(self):
        self.client.post('/api/v1/explain', {'x': 1, 'y': 1})
        self.client.post('/api/v1/explain', {'x': 1, 'y': 1})
        self.client.post('/api/v1/refuse', {'value': 1})
        text = self.client.get('/metrics').body.decode()
        self.assertIn('endpoint_requests_started_total{endpoint="/explain"} 2.0', text)
        self.assertIn('request_internal_errors_total{endpoint="/refuse"} 1.0', text)
        self.assertIn('request_duration_count{endpoint="/explain"} 2.0', text)

    def test_docs_carry_descriptions_and_examples(self):
        document = self.client.get('/openapi.json').json()
        operation = document['paths']['/api/v1/explain']['post']
        self.assertEqual(operation['summary'], 'Explain feature importance of a model result.')
        media = operation['requestBody']['content']['application/json']
        self.assertEqual(media['example'], {'x': 1, 'y': 2})
        self.assertEqual(media['schema']['properties']['x']['description'], 'First element to add.')
        self.assertEqual(
            document['paths']['/api/v1/perform']['post']['requestBody']['content']['application/json']['example'],
            {'x': 40, 'y': 2},
        )
        self.assertIn('/api/v1/no_slash', document['paths'])


class SharedLimiterTest(ServerTestCase):
    """The limiter across connections: a call on one holds the only slot while another is refused."""

    def setUp(self):
        self.running = self.start(AuxJob(), AUX_MANIFEST)
        self.client = self.running.client()

    def test_concurrency_limiter_is_shared_with_perform(self):
        results = {}
        thread = threading.Thread(
            target=lambda: results.setdefault(
                'slow', self.running.client().post('/api/v1/slow', {'seconds': 1.0}).status
            )
        )
        thread.start()
        deadline = time.monotonic() + 10
        registry = self.running.runner.registry
        while registry.get_sample_value('request_calls_running') < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        response = self.client.post('/api/v1/perform', {'x': 1, 'y': 2})
        thread.join(10)
        self.assertEqual(response.status, 429)
        self.assertEqual(response.json()['type'], 'TooManyRequests')
        self.assertEqual(results['slow'], 200)


class CollisionJob:
    def perform(self):
        return 1

    def auxiliary_endpoints_v2(self):
        return [EndpointConfig('/parameters', 'GET', self.perform)]


class TwiceJob:
    def perform(self):
        return 1

    def auxiliary_endpoints(self):
        return {'/same': self.perform}

    def auxiliary_endpoints_v2(self):
        return [EndpointConfig('/same', 'POST', self.perform)]


class StartUpErrorTest(ServerTestCase):
    def test_collision_with_builtin_route_names_it(self):
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            running = self.start(CollisionJob)
        self.assertEqual(
            load_error(running),
            'JobDefinitionError: endpoint /parameters collides with the built-in /api/v1/parameters: '
            'both would answer GET /api/v1/parameters',
        )
        self.assertEqual(running.client().get('/live').status, 500)

    def test_same_endpoint_twice_names_it(self):
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            running = self.start(TwiceJob)
        self.assertEqual(load_error(running), 'JobDefinitionError: endpoint POST /same is defined twice')


class AuxiliaryV2Test(unittest.TestCase):
    def setUp(self):
        with self.assertLogs('racetrack_job_wrapper.app', 'WARNING') as logs:
            self.client = self.enterContext(JobTestClient(V2Job(), {}))
        self.warnings = logs.output

    def test_get_arguments_from_query_string_converted_by_annotation(self):
        response = self.client.get('/api/v1/random?start=1.5&end=2')
        self.assertEqual(response.json(), {'start': 1.5, 'end': 2.0, 'types': ['float', 'float']})
        response = self.client.get('/api/v1/random?start=abc&end=2')
        self.assertEqual(
            (response.status, response.json()),
            (400, {'error': 'start: expected number, got "abc"', 'type': 'ValidationError'}),
        )
        response = self.client.get('/api/v1/random?start=1')
        self.assertEqual(
            response.json(), {'error': "missing required parameter 'end' for /random", 'type': 'InvalidPayload'}
        )

    def test_list_query_parameter_takes_every_value(self):
        self.assertEqual(self.client.get('/api/v1/items?ids=1&ids=2&ids=3').json(), [1, 2, 3])

    def test_wrong_method_is_405(self):
        response = self.client.post('/api/v1/random', {})
        self.assertEqual(response.status, 405)
        self.assertEqual(response.headers['allow'], 'GET, HEAD, OPTIONS')

    def test_path_template_passes_the_segment(self):
        # As FastAPI binds it, an unmarked scalar of a POST comes from the query string.
        self.assertEqual(self.client.post('/api/v1/multiply/1.5?factor=3').json(), 4.5)
        self.assertEqual(self.client.request('POST', '/pub/job/job/latest/api/v1/multiply/2').json(), 4.0)
        response = self.client.post('/api/v1/multiply/two')
        self.assertEqual(
            (response.status, response.json()),
            (400, {'error': 'path: expected number, got "two"', 'type': 'ValidationError'}),
        )

    def test_fastapi_markers_by_class_name(self):
        # The lone body parameter takes the whole body, as in FastAPI.
        response = self.client.request('PUT', '/api/v1/fast/3.5?scale=2', 1.5)
        self.assertEqual(response.json(), [3.5, 2.0, 1.5])
        response = self.client.request('PUT', '/api/v1/fast/3.5?scale=2', {'offset': 1})
        self.assertEqual(
            (response.status, response.json()),
            (400, {'error': 'offset: expected number, got object', 'type': 'ValidationError'}),
        )

    def test_own_markers(self):
        self.assertEqual(self.client.post('/api/v1/ours/7?flag=true', 'n').json(), [7, True, 'n'])
        self.assertEqual(self.client.request('POST', '/api/v1/ours/7').json(), [7, False, ''])

    def test_both_forms_are_served(self):
        self.assertEqual(self.client.post('/api/v1/v1').json(), 'from v1')
        self.assertEqual(self.client.get('/api/v1/random?start=0&end=0').status, 200)

    def test_unknown_options_warn_and_known_reach_the_docs(self):
        self.assertEqual(
            self.warnings,
            [
                'WARNING:racetrack_job_wrapper.app:auxiliary endpoint /random: ignoring unsupported other_options '
                'response_model, unknown_flag'
            ],
        )
        document = self.client.get('/openapi.json').json()
        operation = document['paths']['/api/v1/random']['get']
        self.assertEqual(
            (operation['tags'], operation['summary'], operation['description']),
            (['numbers'], 'Random number', 'Uniform.'),
        )
        self.assertEqual(
            [(p['name'], p['in'], p.get('example')) for p in operation['parameters']],
            [('start', 'query', 1.5), ('end', 'query', 2)],
        )
        self.assertNotIn('requestBody', operation)

    def test_marker_examples_and_descriptions_reach_the_docs(self):
        paths = self.client.get('/openapi.json').json()['paths']
        fast = paths['/api/v1/fast/{item}']['put']
        self.assertEqual(
            [(p['name'], p['in'], p['example']) for p in fast['parameters']],
            [('item', 'path', 234.21), ('scale', 'query', 2.4)],
        )
        self.assertEqual(fast['parameters'][1]['description'], 'Scale factor')
        body = fast['requestBody']['content']['application/json']['schema']
        self.assertEqual((body['type'], body['examples']), ('number', [1.2]))
        ours = paths['/api/v1/ours/{item}']['post']
        self.assertEqual(ours['parameters'][0]['description'], 'Item id')
        self.assertEqual(ours['requestBody']['content']['application/json']['schema']['examples'], ['hi'])
        multiply = paths['/api/v1/multiply/{path}']['post']
        self.assertNotIn('requestBody', multiply)
        self.assertEqual(
            [(p['name'], p['in'], p.get('example')) for p in multiply['parameters']],
            [('path', 'path', None), ('factor', 'query', 3)],
        )


class ImportTest(unittest.TestCase):
    def test_endpoint_config_importable_from_root_and_module(self):
        self.assertIs(racetrack_job_wrapper.EndpointConfig, endpoint_config.EndpointConfig)
        config = EndpointConfig('/x', HTTPMethod.GET, print)
        self.assertEqual(config.other_options, {})
        self.assertEqual((Body.__name__, Query.__name__, Path.__name__), ('Body', 'Query', 'Path'))


if __name__ == '__main__':
    unittest.main()
