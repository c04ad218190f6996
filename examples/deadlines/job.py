"""Jobs that stop when their deadline passes or their client leaves, instead of working for nobody."""

import asyncio
import time


class Job:
    def perform(self, steps: int = 10, step_seconds: float = 0.5) -> int:
        """A plain `def` looks at its request's deadline between steps: cancelling it is cooperative.

        :param steps: how many steps to do
        :param step_seconds: how long each step takes
        """
        request = self.request_context.get()
        done = 0
        for _ in range(steps):
            request.check()  # raises CallCancelled once the deadline has passed or the client left
            time.sleep(step_seconds)
            done += 1
        return done

    async def slow_async(self, seconds: float = 5.0) -> str:
        """An `async def` is cancelled for it: CancelledError arrives at its next await."""
        try:
            await asyncio.sleep(seconds)
            return 'finished'
        finally:
            print('slow_async stopped', flush=True)  # runs on cancellation too

    def budget(self) -> float | None:
        """The seconds this call has left, which a chain call would carry as X-Request-Timeout."""
        return self.request_context.get().remaining()

    def docs_input_examples(self) -> dict:
        # Calls that finish within the deadline; ask for more steps or seconds to see a 504.
        return {'/perform': {'steps': 2, 'step_seconds': 0.1}, '/slow_async': {'seconds': 0.1}}

    def auxiliary_endpoints(self) -> dict:
        return {'/slow_async': self.slow_async, '/budget': self.budget}
