"""The user guide's auxiliary endpoints: `/explain` beside `/perform`, and v2 endpoints with GET and a path template."""

import random
from http import HTTPMethod
from typing import Annotated, Callable

from racetrack_job_wrapper.endpoint_config import Body, EndpointConfig, Path, Query


class Job:
    def perform(self, x: float, y: float) -> float:
        """
        Add two numbers.
        :param x: First element to add.
        :param y: Second element to add.
        :return: Sum of the numbers.
        """
        return x + y

    def auxiliary_endpoints(self) -> dict[str, Callable]:
        """Dict of custom endpoint paths (besides "/perform") handled by Entrypoint methods"""
        return {
            '/explain': self.explain,
        }

    def explain(self, x: float, y: float) -> dict[str, float]:
        """
        Explain feature importance of a model result.
        :param x: First element to add.
        :param y: Second element to add.
        :return: Dict of feature importance.
        """
        result = self.perform(x, y)
        return {'x_importance': x / result, 'y_importance': y / result}

    def auxiliary_endpoints_v2(self) -> list[EndpointConfig]:
        """Endpoints with an HTTP method of their choice, query and path parameters."""
        return [
            EndpointConfig('/random', HTTPMethod.GET, self.random, {'tags': ['random'], 'summary': 'A random number'}),
            EndpointConfig('/multiply/{path}', 'POST', self.multiply),
        ]

    def random(self, start: Annotated[float, Query(example=1.5)], end: Annotated[float, Query(example=2)]) -> float:
        """Return a random number between start and end."""
        return random.uniform(start, end)

    def multiply(
        self, path: Annotated[float, Path(example=234.21)], factor: Annotated[float, Body(examples=[1.2])] = 2.0
    ) -> float:
        """Multiply the path segment by a factor from the body."""
        return path * factor

    def docs_input_examples(self) -> dict[str, dict]:
        """Return mapping of Job's endpoints to corresponding exemplary inputs."""
        return {
            '/perform': {'x': 40, 'y': 2},
            '/explain': {'x': 1, 'y': 2},
        }
