"""I/O-bound job: waits 10 ms, as a call to a slow backend would."""

import time


class Job:
    """Sleeps 10 ms, then adds two numbers."""

    def perform(self, a: float, b: float) -> float:
        """Sleep 10 ms and return a + b."""
        time.sleep(0.010)
        return a + b
