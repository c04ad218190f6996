"""Dynamic batching: concurrent perform calls grouped into one `perform_batch()` call."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from racetrack_job_wrapper.asyncloop import AsyncRunner
from racetrack_job_wrapper.endpoints import EndpointSpec
from racetrack_job_wrapper.messages import CallCancelled, JobDefinitionError, Request
from racetrack_job_wrapper.records import replace

logger = logging.getLogger(__name__)


class _Waiting:
    """One perform call in a batch: its arguments, and its outcome once the batch has run."""

    __slots__ = ('kwargs', 'request', 'arrived', 'done', 'result', 'error')

    def __init__(self, kwargs: dict[str, Any], request: Request | None):
        self.kwargs = kwargs
        self.request = request
        self.arrived = time.monotonic()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class Batcher:
    """Stands in for `perform`: each call waits to join a batch, and one thread runs the batches in turn.

    The first call of a batch waits up to `max_wait` seconds for company; a batch closes
    earlier when `max_size` calls have joined. While a batch runs, the calls that arrive
    meanwhile gather for the next one, so under load the batches fill without waiting. One
    batch runs at a time: a vectorised model is one device, and the next batch is formed
    while this one runs. The thread starts with the first call, so nothing runs before a
    `--preload` fork.
    """

    def __init__(
        self,
        perform_batch: Callable[[list[dict[str, Any]]], Any],
        *,
        max_size: int,
        max_wait: float,
        observe_size: Callable[[float], None],
        current_request: Callable[[], Request | None],
        async_runner: AsyncRunner | None = None,
    ):
        self._perform_batch = perform_batch
        self._is_async = inspect.iscoroutinefunction(perform_batch)
        self._max_size = max_size
        self._max_wait = max_wait
        self._observe_size = observe_size
        self._current_request = current_request
        self._async_runner = async_runner
        self._waiting: list[_Waiting] = []
        self._arrived = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        if self._is_async and async_runner is None:
            raise ValueError('an async perform_batch needs an AsyncRunner')

    def __call__(self, **kwargs: Any) -> Any:
        """One perform call: wait for its batch to run, then return its own result or raise its own error."""
        waiting = _Waiting(kwargs, self._current_request())
        with self._arrived:
            if self._closed:
                raise CallCancelled('the server is shutting down')
            if self._thread is None:
                self._thread = threading.Thread(target=self._run_batches, name='perform-batch', daemon=True)
                self._thread.start()
            self._waiting.append(waiting)
            self._arrived.notify()
        waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error
        return waiting.result

    def close(self) -> None:
        """Stop the batch thread once the batches already formed have run."""
        with self._arrived:
            self._closed = True
            self._arrived.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run_batches(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Waiting] | None:
        with self._arrived:
            while not self._waiting:
                if self._closed:
                    return None
                self._arrived.wait()
            closes_at = self._waiting[0].arrived + self._max_wait
            while len(self._waiting) < self._max_size and not self._closed:
                left = closes_at - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            batch = self._waiting[: self._max_size]
            del self._waiting[: self._max_size]
            return batch

    def _run(self, batch: list[_Waiting]) -> None:
        live = []
        for waiting in batch:
            # A call cancelled while it waited (deadline, client gone) is left out of the batch.
            if waiting.request is not None and waiting.request.cancelled():
                waiting.settle(error=CallCancelled(f'the call was cancelled: {waiting.request.cancel_reason}'))
            else:
                live.append(waiting)
        if not live:
            return
        self._observe_size(len(live))
        try:
            results = self._call([waiting.kwargs for waiting in live])
        except BaseException as e:  # the whole batch failed: each of its calls answers that error
            for waiting in live:
                waiting.settle(error=e)
            return
        for waiting, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                waiting.settle(error=result)
            else:
                waiting.settle(result=result)

    def _call(self, calls: list[dict[str, Any]]) -> list[Any]:
        results = self._perform_batch(calls)
        if self._is_async:
            results = self._async_runner.run(results)  # type: ignore[union-attr]  # __init__ checks
        if not isinstance(results, (list, tuple)) or len(results) != len(calls):
            got = f'{len(results)} results' if isinstance(results, (list, tuple)) else type(results).__name__
            raise TypeError(f'perform_batch() must return a list of one result per call: got {got} for {len(calls)}')
        return list(results)


def batched_perform(
    spec: EndpointSpec,
    entrypoint: Any,
    *,
    max_size: int,
    max_wait_ms: float,
    observe_size: Callable[[float], None],
    current_request: Callable[[], Request | None],
    async_runner: AsyncRunner | None,
) -> tuple[EndpointSpec, Batcher] | None:
    """The perform endpoint answered through `perform_batch()`, or None when the job has none or batching is off.

    `perform` keeps defining the parameters, their validation and the docs: only the handler
    changes, to the batcher.
    """
    perform_batch = getattr(entrypoint, 'perform_batch', None)
    if perform_batch is None or max_size <= 1:
        return None
    if not callable(perform_batch):
        raise JobDefinitionError('perform_batch must be a method taking a list of calls', where=entrypoint)
    if spec.is_async_generator or inspect.isgeneratorfunction(spec.handler):
        raise JobDefinitionError('a streaming perform() cannot be batched: remove perform_batch', where=perform_batch)
    batcher = Batcher(
        perform_batch,
        max_size=max_size,
        max_wait=max_wait_ms / 1000,
        observe_size=observe_size,
        current_request=current_request,
        async_runner=async_runner,
    )
    logger.info('perform calls are batched: up to %d per perform_batch() call, waiting %g ms', max_size, max_wait_ms)
    return replace(spec, handler=batcher, is_async=False), batcher
