"""The event loop thread that runs `async def` job methods and ASGI webview apps."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures


class AsyncRunner:
    """One event loop thread for `async def` job methods; each call runs in the caller's context."""

    def __init__(self) -> None:
        import asyncio  # only jobs with async methods pay for the import

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name='job-event-loop', daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the loop and wait for its result."""
        return self.submit(coroutine).result()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Start a coroutine on the loop in a copy of the caller's context; returns its future at once."""
        return self.start(coroutine)[0]

    def start(self, coroutine: Coroutine[Any, Any, Any]) -> tuple[concurrent.futures.Future[Any], Callable[[], None]]:
        """`submit`, and a function that cancels the task: CancelledError at its next await.

        The future settles when the task really ends, its `finally` blocks run, cancelled or not.
        """
        context = contextvars.copy_context()
        import concurrent.futures  # with asyncio, only for jobs with async methods

        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        tasks: list[asyncio.Task[Any]] = []

        def start() -> None:
            task = self._loop.create_task(coroutine, context=context)
            task.add_done_callback(lambda done: _settle(done, future))
            tasks.append(task)

        def cancel() -> None:
            # Scheduled after start(): callbacks run in order, so the task exists by then.
            self._loop.call_soon_threadsafe(lambda: tasks[0].cancel())

        self._loop.call_soon_threadsafe(start)
        return future, cancel

    def close(self) -> None:
        """Stop the loop thread."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


def _settle(task: asyncio.Task[Any], future: concurrent.futures.Future[Any]) -> None:
    if task.cancelled():
        future.cancel()  # result() raises CancelledError
    elif (error := task.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())
