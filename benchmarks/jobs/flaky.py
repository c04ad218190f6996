"""Soak job: adds two numbers, or raises ValueError when asked to, to mix errors into load."""


class Job:
    """Adds two numbers unless told to fail."""

    def perform(self, a: float, b: float, fail: bool = False) -> float:
        """Return a + b; raise ValueError when `fail` is true."""
        if fail:
            raise ValueError('failing on request')
        return a + b
