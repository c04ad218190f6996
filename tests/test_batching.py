"""Dynamic batching: concurrent perform calls over real sockets, grouped into perform_batch() calls."""

from __future__ import annotations

import asyncio
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from racetrack_job_wrapper.messages import JobDefinitionError
from racetrack_job_wrapper.settings import JobSettings, ManifestError
from racetrack_job_wrapper.testing import JobTestClient
from tests.support import ClientResponse, JobClient, ServerTestCase


def batching(max_size: int = 8, max_wait_ms: float = 200) -> dict[str, Any]:
    return {'jobtype_extra': {'batch_max_size': max_size, 'batch_max_wait_ms': max_wait_ms}}


class DoublingJob:
    """Doubles numbers, a batch at a time; a negative number is refused, alone."""

    def __init__(self) -> None:
        self.batches: list[list[float]] = []
        self.perform_calls = 0

    def perform(self, x: float) -> float:
        """Twice x."""
        self.perform_calls += 1
        return 2 * x

    def perform_batch(self, calls: list[dict[str, Any]]) -> list[Any]:
        self.batches.append([call['x'] for call in calls])
        time.sleep(0.02)  # one device: calls that arrive meanwhile gather for the next batch
        return [ValueError(f'{call["x"]} is negative') if call['x'] < 0 else 2 * call['x'] for call in calls]


class FailingBatchJob:
    def perform(self, x: int) -> int:
        return x

    def perform_batch(self, calls: list[dict[str, Any]]) -> list[Any]:
        if len(calls) > 100:
            return []
        raise RuntimeError('the device is gone')


class ShortBatchJob:
    def perform(self, x: int) -> int:
        return x

    def perform_batch(self, calls: list[dict[str, Any]]) -> list[Any]:
        return [call['x'] for call in calls][:-1]


class AsyncBatchJob:
    def perform(self, x: int) -> int:
        return x

    async def perform_batch(self, calls: list[dict[str, Any]]) -> list[Any]:
        await asyncio.sleep(0.01)
        return [call['x'] + 1 for call in calls]


class BatchingTest(ServerTestCase):
    def at_once(self, port: int, payloads: list[Any]) -> list[ClientResponse]:
        """POST each payload to /perform on its own connection, all at the same moment."""
        start = threading.Barrier(len(payloads))
        clients = [JobClient(port) for _ in payloads]

        def call(index: int) -> ClientResponse:
            start.wait()
            return clients[index].post('/api/v1/perform', payloads[index])

        try:
            with ThreadPoolExecutor(len(payloads)) as pool:
                return list(pool.map(call, range(len(payloads))))
        finally:
            for client in clients:
                client.close()

    def test_concurrent_calls_are_grouped_and_each_gets_its_own_result(self):
        job = DoublingJob()
        running = self.start(job, batching(max_size=8))
        responses = self.at_once(running.port, [{'x': i} for i in range(24)])
        self.assertEqual([(r.status, r.json()) for r in responses], [(200, 2.0 * i) for i in range(24)])
        self.assertGreater(max(len(batch) for batch in job.batches), 1, job.batches)
        self.assertLessEqual(max(len(batch) for batch in job.batches), 8)
        self.assertEqual(sorted(x for batch in job.batches for x in batch), list(range(24)))
        self.assertEqual(job.perform_calls, 0)

    def test_a_failing_item_fails_only_its_own_call(self):
        job = DoublingJob()
        running = self.start(job, batching(max_size=6))
        responses = self.at_once(running.port, [{'x': -1}] + [{'x': i} for i in range(5)])
        self.assertEqual(responses[0].status, 400)
        self.assertEqual(responses[0].json(), {'error': '-1 is negative', 'type': 'ValueError'})
        self.assertEqual([(r.status, r.json()) for r in responses[1:]], [(200, 2.0 * i) for i in range(5)])
        mixed = [batch for batch in job.batches if -1 in batch and len(batch) > 1]
        self.assertTrue(mixed, f'the failing call never shared a batch: {job.batches}')

    def test_a_batch_that_raises_fails_its_calls_and_the_server_goes_on(self):
        running = self.start(FailingBatchJob(), batching(max_size=4))
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            responses = self.at_once(running.port, [{'x': i} for i in range(4)])
        for response in responses:
            self.assertEqual(response.status, 500)
            self.assertEqual(response.json(), {'error': 'the device is gone', 'type': 'RuntimeError'})
        self.assertEqual(running.client().get('/live').status, 200)

    def test_a_wrong_number_of_results_is_a_clear_500(self):
        running = self.start(ShortBatchJob(), batching(max_size=3))
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            responses = self.at_once(running.port, [{'x': i} for i in range(3)])
        for response in responses:
            self.assertEqual(response.status, 500)
            self.assertEqual(response.json()['type'], 'TypeError')
            self.assertIn('perform_batch() must return a list of one result per call', response.json()['error'])

    def test_perform_defines_the_parameters_and_their_validation(self):
        job = DoublingJob()
        client = self.serve(job, batching())
        response = client.post('/api/v1/perform', {'x': 'seven'})
        self.assertEqual(response.status, 400)
        self.assertEqual(response.json()['type'], 'ValidationError')
        self.assertTrue(response.json()['error'].startswith('x: '), response.json())
        self.assertEqual(job.batches, [])
        unbatched = self.serve(DoublingJob(), batching(max_size=1))
        self.assertEqual(client.get('/api/v1/parameters').json(), unbatched.get('/api/v1/parameters').json())
        schema = client.get('/openapi.json').json()['paths']['/api/v1/perform']
        self.assertEqual(schema, unbatched.get('/openapi.json').json()['paths']['/api/v1/perform'])

    def test_batch_max_size_1_turns_batching_off(self):
        job = DoublingJob()
        client = self.serve(job, batching(max_size=1))
        self.assertEqual(client.post('/api/v1/perform', {'x': 3}).json(), 6.0)
        self.assertEqual((job.perform_calls, job.batches), (1, []))

    def test_batch_sizes_are_measured(self):
        job = DoublingJob()
        running = self.start(job, batching(max_size=8))
        self.at_once(running.port, [{'x': i} for i in range(16)])
        metrics = running.client().get('/metrics').body.decode()
        count = _sample(metrics, 'batch_size_count')
        self.assertEqual(count, len(job.batches))
        self.assertEqual(_sample(metrics, 'batch_size_sum'), 16)

    def test_an_async_perform_batch_runs_on_the_event_loop(self):
        running = self.start(AsyncBatchJob(), batching(max_size=4))
        responses = self.at_once(running.port, [{'x': i} for i in range(4)])
        self.assertEqual([r.json() for r in responses], [1, 2, 3, 4])

    def test_a_call_past_its_deadline_while_its_batch_forms_is_a_504_and_left_out(self):
        job = DoublingJob()
        client = self.serve(job, batching(max_size=8, max_wait_ms=600))
        response = client.request('POST', '/api/v1/perform', json_body={'x': 1}, headers={'X-Request-Timeout': '0.2'})
        self.assertEqual(response.status, 504)
        self.assertEqual(response.json()['type'], 'Timeout')
        time.sleep(0.6)
        self.assertEqual(client.post('/api/v1/perform', {'x': 2}).json(), 4.0)
        self.assertNotIn(1, [x for batch in job.batches for x in batch])


class BatchingDefinitionTest(unittest.TestCase):
    def test_settings_are_validated(self):
        self.assertEqual(JobSettings.from_manifest({}).batch_max_size, 32)
        self.assertEqual(JobSettings.from_manifest({}).batch_max_wait_ms, 5.0)
        with self.assertRaisesRegex(ManifestError, r'jobtype_extra\.batch_max_size must be an integer >= 1'):
            JobSettings.from_manifest({'jobtype_extra': {'batch_max_size': 0}})
        with self.assertRaisesRegex(ManifestError, r'jobtype_extra\.batch_max_wait_ms must be a number'):
            JobSettings.from_manifest({'jobtype_extra': {'batch_max_wait_ms': -1}})

    def test_a_streaming_perform_cannot_be_batched(self):
        class StreamingJob:
            def perform(self, n: int) -> Any:
                yield from range(n)

            def perform_batch(self, calls: list[dict[str, Any]]) -> list[Any]:
                return []

        with self.assertRaisesRegex(JobDefinitionError, 'a streaming perform'), JobTestClient(StreamingJob):
            pass


def _sample(metrics: str, name: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(name + ' '))
    return float(line.split()[1])


if __name__ == '__main__':
    unittest.main()
