"""Trivial job: the cost of the wrapper with almost no work inside."""


class Job:
    """Adds two numbers."""

    def perform(self, a: float, b: float) -> float:
        """Return a + b."""
        return a + b
