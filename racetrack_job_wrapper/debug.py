"""Hang diagnosis: every thread's stack with the request it serves, on SIGUSR1 or at GET /debug/threads."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import traceback
from typing import Any

from racetrack_job_wrapper.messages import Request, Response
from racetrack_job_wrapper.routing import Route
from racetrack_job_wrapper.tracing import ActiveRequests

logger = logging.getLogger(__name__)


def format_thread_dump(active: ActiveRequests) -> str:
    """Every thread's stack, threads serving a request first, each with its method, path, tracing id and age."""
    frames = sys._current_frames()
    serving = active.snapshot()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    now = time.monotonic()
    order = sorted(frames, key=lambda ident: (ident not in serving, names.get(ident, ''), ident))
    busy = sum(1 for ident in frames if ident in serving)
    parts = [f'{len(frames)} threads, {busy} serving a request']
    for ident in order:
        title = f'Thread {names.get(ident, "?")!r} (id {ident})'
        trace = serving.get(ident)
        if trace is not None:
            title += (
                f' serving {trace.method} {trace.path} tracing_id={trace.tracing_id} for {now - trace.started:.1f}s'
            )
        stack = ''.join(traceback.format_stack(frames[ident])).rstrip('\n')
        parts.append(f'{title}\n{stack}')
    return '\n\n'.join(parts) + '\n'


def install_dump_signal(active: ActiveRequests) -> bool:
    """Log a thread dump on SIGUSR1; False where there is no SIGUSR1 or this is not the main thread."""
    if not hasattr(signal, 'SIGUSR1') or threading.current_thread() is not threading.main_thread():
        return False

    def on_signal(signum: int, frame: Any) -> None:
        # Logged from a new thread: a signal handler that logs can interrupt a handler holding its lock.
        threading.Thread(target=_log_dump, args=(active,), name='thread-dump', daemon=True).start()

    signal.signal(signal.SIGUSR1, on_signal)
    return True


def _log_dump(active: ActiveRequests) -> None:
    logger.warning('thread dump (SIGUSR1):\n%s', format_thread_dump(active))


def debug_threads_route(active: ActiveRequests) -> Route:
    """`GET /debug/threads`: the thread dump as plain text."""

    def threads(_: Request) -> Response:
        return Response(
            format_thread_dump(active).encode(), 200, 'text/plain; charset=utf-8', {'Cache-Control': 'no-store'}
        )

    return Route('/debug/threads', {'GET': threads}, 'the built-in /debug/threads')
