"""CPU-bound job: about 2 ms of pure-Python work per call, holding the GIL."""


class Job:
    """Burns CPU in the interpreter, then adds two numbers."""

    def perform(self, a: float, b: float) -> float:
        """Run a fixed pure-Python loop and return a + b."""
        total = 0
        for i in range(_LOOPS):
            total += i * i % 7
        return a + b + (total & 0)


_LOOPS = 27_000
