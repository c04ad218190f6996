"""The concurrency cap of job calls: `max_concurrency` at once, `max_concurrency_queue` waiting."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from racetrack_job_wrapper.messages import ClientDisconnected, HTTPError
from racetrack_job_wrapper.metrics import JobMetrics


class DeadlinePassed(Exception):
    """A call's deadline passed while it waited for a place; the invoker answers its 504."""


class ConcurrencyLimiter:
    """At most `max_concurrency` job calls at once; waiting calls are served first-come first-served.

    Admission (check and enqueue) is one step under a lock, so a burst cannot overshoot
    `max_queue`. Thread-safe.
    """

    def __init__(
        self,
        max_concurrency: int,
        max_queue: int | None = None,
        metrics: JobMetrics | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ):
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self._metrics = metrics
        self._stopping = stopping  # true once the server shuts down: a hopeless call then gets 503
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: deque[threading.Event] = deque()
        self._mean_seconds = 0.0  # moving average of call duration, for Retry-After

    def acquire(self, is_disconnected: Callable[[], bool] | None = None, deadline: float | None = None) -> float:
        """Wait for a slot; returns seconds waited.

        Raises HTTPError(429) when the queue is full, or when the estimated wait already ends
        past `deadline` (a `time.monotonic()` value; 503 then while shutting down);
        DeadlinePassed when `deadline` passes while waiting; ClientDisconnected when the
        client left while waiting.
        """
        with self._lock:
            if self._running < self.max_concurrency and not self._waiters:
                self._running += 1
                self._update_gauges()
                return 0.0
            if self.max_queue is not None and len(self._waiters) >= self.max_queue:
                raise HTTPError(
                    429,
                    f'too many requests: the job runs {self.max_concurrency} call(s) at a time '
                    f'(max_concurrency) and {len(self._waiters)} are waiting, the queue limit '
                    f'(max_concurrency_queue) is {self.max_queue}',
                    headers={'Retry-After': str(self._retry_after())},
                    error_type='TooManyRequests',
                    rejected='queue_full',
                )
            if deadline is not None:
                estimate = self.estimated_wait()
                remaining = deadline - time.monotonic()
                if estimate > remaining:
                    # Shutting down, there is no later to retry here: another replica should take it.
                    raise HTTPError(
                        503 if self._stopping() else 429,
                        f'the call cannot finish in time: its estimated wait for a place is {estimate:.3g} s '
                        f'and its deadline is {max(0.0, remaining):.3g} s away',
                        headers={'Retry-After': str(self._retry_after())},
                        error_type='ServiceUnavailable' if self._stopping() else 'TooManyRequests',
                        rejected='deadline',
                    )
            event = threading.Event()
            self._waiters.append(event)
            self._update_gauges()
        started = time.monotonic()
        while not event.wait(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))):
            disconnected = is_disconnected is not None and is_disconnected()
            late = deadline is not None and time.monotonic() >= deadline
            if disconnected or late:
                with self._lock:
                    if not event.is_set():
                        self._waiters.remove(event)
                        self._update_gauges()
                        raise ClientDisconnected() if disconnected else DeadlinePassed()
                # The slot was handed over just now: pass it on.
                self.release(0.0)
                raise ClientDisconnected() if disconnected else DeadlinePassed()
        return time.monotonic() - started

    def estimated_wait(self) -> float:
        """Seconds a call arriving now would wait: the queue ahead of it over the measured drain rate.

        The queue drains at `max_concurrency` calls per mean call duration (a moving average of
        the durations measured as calls end); a call arriving now waits for the queue ahead of
        it and for one of the running calls to end: (queued + 1) / max_concurrency rounds.
        """
        return (len(self._waiters) + 1) / self.max_concurrency * self._mean_seconds

    def release(self, seconds: float) -> None:
        """Free a slot (or hand it to the first waiter)."""
        with self._lock:
            if seconds:
                self._mean_seconds = seconds if not self._mean_seconds else 0.8 * self._mean_seconds + 0.2 * seconds
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._running -= 1
            self._update_gauges()

    def _retry_after(self) -> int:
        return max(1, math.ceil(self.estimated_wait()))

    def _update_gauges(self) -> None:
        if self._metrics is not None:
            self._metrics.calls_queued.set(len(self._waiters))
