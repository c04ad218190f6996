"""Multi-process mode: worker processes share one listening socket; the parent supervises them.

The parent binds the socket, then forks the workers; each worker loads the job itself and
serves with its own threads, so N workers use N cores for Python code. The parent serves
nothing: it restarts a worker that dies, and on SIGTERM or SIGINT it passes SIGTERM on,
closes its copy of the socket after the shutdown delay (as each worker does) and waits for
every worker to drain.

Metrics of all workers add up through prometheus_client's multiprocess mode: every worker
writes its values to files in one directory (PROMETHEUS_MULTIPROC_DIR), and `/metrics`,
whichever worker answers it, reads them all.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import mmap
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from racetrack_job_wrapper.logs import flush_logs, show_pid_in_lines
from racetrack_job_wrapper.server import exit_unable_to_listen, listen_url, shared_listener
from racetrack_job_wrapper.settings import Limits

logger = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = 'PROMETHEUS_MULTIPROC_DIR'
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# Passed on to every worker (SIGUSR1: log a thread dump) instead of ending the supervisor.
_FORWARDED_SIGNALS = {signal.SIGUSR1} if hasattr(signal, 'SIGUSR1') else set()
_POLL_SECONDS = 0.1
_EARLY_DEATH_SECONDS = 5.0  # a worker that dies sooner than this after its start delays the next restart
_MAX_RESTART_DELAY = 10.0
_KILL_AFTER_GRACE = 5.0  # seconds past the grace period before a worker that still runs is killed


class Worker(Protocol):
    """What a worker process runs: a server that installs its signal handlers, serves, and can be stopped."""

    def install_signal_handlers(self) -> None: ...

    def run_forever(self) -> int: ...

    def stop(self) -> None: ...


class ReadyBoard:
    """Which worker slots have their job loaded, in memory the parent and every worker share.

    A restarted worker reads it to wait for its job before it accepts, so that clients keep
    going to the workers that can serve them; the parent clears a slot when its worker dies.
    """

    def __init__(self, count: int):
        self._cells = mmap.mmap(-1, count)  # anonymous and shared with every forked child

    def mark(self, slot: int, ready: bool) -> None:
        """Record whether the worker in `slot` serves its job."""
        self._cells[slot] = 1 if ready else 0

    def others_ready(self, slot: int) -> bool:
        """Whether a worker in another slot serves its job."""
        return any(self._cells[other] for other in range(len(self._cells)) if other != slot)


@dataclass(frozen=True)
class WorkerSlot:
    """A worker's place among its peers: whether any of them serves, and telling them it does."""

    index: int
    board: ReadyBoard

    def peers_ready(self) -> bool:
        """Whether another worker serves the job now."""
        return self.board.others_ready(self.index)

    def set_ready(self) -> None:
        """Tell the peers that this worker serves the job."""
        self.board.mark(self.index, True)


WorkerFactory = Callable[[socket.socket, CollectorRegistry, WorkerSlot], Worker]


def serve_workers(
    make_worker: WorkerFactory,
    host: str,
    port: int,
    count: int,
    limits: Limits,
    preload: Callable[[], None] | None = None,
) -> int:
    """Bind `host:port` and run `count` workers made by `make_worker(listener, scrape_registry, slot)`.

    Blocks until stopped. `preload()`, when given, runs in this process before the first fork
    (it loads the job once, for every worker to share its memory copy-on-write).

    Returns 0 when every worker drained cleanly, 1 otherwise.
    """
    if count < 1:
        raise ValueError(f'workers must be at least 1, got {count}')
    try:
        metrics_dir = MetricsDirectory()
    except OSError as e:
        logger.error('cannot start the workers: %s', e)
        raise SystemExit(2) from None
    show_pid_in_lines()
    if preload is not None:
        try:
            preload()
        except BaseException:
            metrics_dir.close()
            raise
        # The collector would write to every object it walks, copying the pages the workers share.
        gc.freeze()
    try:
        listener = shared_listener((host, port))
    except OSError as e:
        metrics_dir.close()
        exit_unable_to_listen(host, port, e)
    logger.info('serving at %s with %d worker processes', listen_url(host, listener.getsockname()[1]), count)
    try:
        return Supervisor(make_worker, listener, count, limits, metrics_dir).run()
    finally:
        listener.close()
        metrics_dir.close()


class MetricsDirectory:
    """The directory of prometheus_client's multiprocess files: taken from the environment or made, wiped, removed.

    A directory named by PROMETHEUS_MULTIPROC_DIR is used (and wiped) but not removed; else a
    temporary one is made, named in the environment for the workers, and removed by `close()`.
    """

    def __init__(self) -> None:
        """Make or wipe the directory; OSError naming it when it cannot hold the metric files."""
        given = os.environ.get(MULTIPROC_DIR_ENV)
        self.owned = not given
        self.path = given or tempfile.mkdtemp(prefix='racetrack-job-metrics-')
        try:
            os.makedirs(self.path, exist_ok=True)
            # Files left by an earlier run would be summed with this run's values.
            for stale in Path(self.path).glob('*.db'):
                stale.unlink()
            _check_writable(Path(self.path))
        except OSError as e:
            raise OSError(
                f'{MULTIPROC_DIR_ENV} {self.path} cannot hold the metrics of the workers: {e.strerror or e}'
            ) from None
        os.environ[MULTIPROC_DIR_ENV] = self.path

    def mark_dead(self, pid: int) -> None:
        """Drop a dead worker's live gauges (its counters keep counting towards the totals)."""
        mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]  # untyped in prometheus_client

    def scrape_registry(self) -> CollectorRegistry:
        """A fresh registry whose one collector reads every worker's files."""
        registry = CollectorRegistry()
        MultiProcessCollector(registry, self.path)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        return registry

    def close(self) -> None:
        """Remove the directory if this object made it."""
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)
            os.environ.pop(MULTIPROC_DIR_ENV, None)


# Each worker's metric files start at 1 MiB (prometheus_client's mmap files): a directory without
# room for one is refused at start-up, rather than the workers dying of SIGBUS on their first write.
_PROBE_BYTES = 1 << 20


def _check_writable(directory: Path) -> None:
    probe = directory / f'.write-probe-{os.getpid()}'
    try:
        with probe.open('wb') as file:
            file.write(bytes(_PROBE_BYTES))
            file.flush()
            os.fsync(file.fileno())
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


class Supervisor:
    """Forks the workers, restarts any that die, and on a stop signal drains them all.

    Runs in the main thread of a process with no other threads (forking copies only the caller).
    """

    def __init__(
        self,
        make_worker: WorkerFactory,
        listener: socket.socket,
        count: int,
        limits: Limits,
        metrics_dir: MetricsDirectory,
    ):
        self._make_worker = make_worker
        self._listener = listener
        self._count = count
        self._limits = limits
        self._metrics_dir = metrics_dir
        self._board = ReadyBoard(count)
        self._pid = os.getpid()
        self._children: dict[int, tuple[int, float]] = {}  # pid -> (slot, started at)
        self._restarts: dict[int, float] = {}  # slot -> when to start it again
        self._early_deaths = [0] * count
        self._stop_signal: int | None = None
        self._interrupted_again = False  # a second SIGINT: the workers cut their shutdown short
        self._close_listener_at = math.inf
        self._deadline = 0.0
        self._killed = False
        self._clean = True

    def run(self) -> int:
        """Start every worker and supervise them until a stop signal; returns the exit code."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in _STOP_SIGNALS}
        previous.update({signum: signal.signal(signum, self._forward) for signum in _FORWARDED_SIGNALS})
        try:
            for slot in range(self._count):
                self._spawn(slot)
            while True:
                if self._stop_signal is not None and not self._deadline:
                    self._begin_stop()
                self._reap()
                if self._deadline:
                    if self._interrupted_again:
                        self._interrupted_again = False
                        self._forward(signal.SIGINT, None)
                    if time.monotonic() >= self._close_listener_at:
                        self._close_listener_at = math.inf
                        logger.info('shutting down: stopped accepting')
                        self._listener.close()  # with the workers' copies closed too, the kernel refuses new ones
                    if not self._children:
                        break
                    if time.monotonic() > self._deadline and not self._killed:
                        self._kill_remaining()
                else:
                    self._restart_due()
                time.sleep(_POLL_SECONDS)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        logger.info('all workers stopped')
        return 0 if self._clean else 1

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only note it: the loop acts within one poll, outside the signal handler.
        if self._stop_signal is not None and signum == signal.SIGINT:
            self._interrupted_again = True
        self._stop_signal = signum

    def _forward(self, signum: int, frame: object) -> None:
        for pid in list(self._children):
            _signal(pid, signum)

    def _begin_stop(self) -> None:
        delay, grace = self._limits.shutdown_delay, self._limits.grace_period
        logger.info(
            'shutting down %d worker(s): serving on for %.1fs (shutdown delay), then draining (grace period %.0fs)',
            len(self._children),
            delay,
            grace,
        )
        now = time.monotonic()
        self._close_listener_at = now + delay
        self._deadline = now + delay + grace + _KILL_AFTER_GRACE
        self._restarts.clear()
        for pid in self._children:
            _signal(pid, signal.SIGTERM)

    def _kill_remaining(self) -> None:
        logger.error(
            '%d worker(s) still running %.0fs after the grace period; killing them',
            len(self._children),
            _KILL_AFTER_GRACE,
        )
        self._clean = False
        self._killed = True
        for pid in self._children:
            _signal(pid, signal.SIGKILL)

    def _reap(self) -> None:
        # Only our own children: a program that calls serve_job_class may have others of its own.
        for pid in list(self._children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            slot, started = self._children.pop(pid)
            self._board.mark(slot, False)
            self._metrics_dir.mark_dead(pid)
            code = os.waitstatus_to_exitcode(status)
            if self._deadline:
                if code != 0:
                    self._clean = False
                    logger.error('worker %d (pid %d) ended with %s', slot, pid, _describe_exit(code))
                continue
            lived = time.monotonic() - started
            delay = self._schedule_restart(slot, early=lived < _EARLY_DEATH_SECONDS)
            logger.error(
                'worker %d (pid %d) ended with %s after %.1fs; starting a new one%s',
                slot,
                pid,
                _describe_exit(code),
                lived,
                f' in {delay:.1f}s' if delay else '',
            )

    def _schedule_restart(self, slot: int, early: bool) -> float:
        """Restart a slot at once, or after a delay that doubles while its workers keep dying early."""
        self._early_deaths[slot] = self._early_deaths[slot] + 1 if early else 0
        delay = min(_MAX_RESTART_DELAY, 0.1 * 2 ** self._early_deaths[slot]) if early else 0.0
        self._restarts[slot] = time.monotonic() + delay
        return delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self._restarts.items()):
            if when <= now:
                del self._restarts[slot]
                self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        flush_logs()  # what is queued now is the parent's to write, not each child's
        # Signals stay blocked across the fork until the worker has its own handlers, so a
        # SIGTERM sent to a new worker is a graceful drain, never a plain death.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS | _FORWARDED_SIGNALS)
        try:
            pid = os.fork()
        except OSError as e:  # out of processes or memory for now: the other workers keep serving
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            delay = self._schedule_restart(slot, early=True)
            logger.error('cannot start worker %d: %s; trying again in %.1fs', slot, e, delay)
            return
        if pid == 0:
            _run_worker(
                self._make_worker, self._listener, self._metrics_dir, WorkerSlot(slot, self._board), self._pid, mask
            )
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._children[pid] = (slot, time.monotonic())
        logger.info('worker %d started (pid %d)', slot, pid)


def _run_worker(
    make_worker: WorkerFactory,
    listener: socket.socket,
    metrics_dir: MetricsDirectory,
    slot: WorkerSlot,
    parent: int,
    mask: set[int | signal.Signals],
) -> None:
    """The body of a forked worker process; never returns."""
    code = 1
    try:
        # prometheus_client chose its value class when the parent imported it, before the
        # directory was named; choose again so this worker's metrics go to the shared files.
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        worker = make_worker(listener, metrics_dir.scrape_registry(), slot)
        worker.install_signal_handlers()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        threading.Thread(target=_watch_parent, args=(parent, worker), name='parent-watch', daemon=True).start()
        code = worker.run_forever()
    except BaseException:
        logger.exception('worker %d failed', os.getpid())
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _watch_parent(parent: int, worker: Worker) -> None:
    """Drain the worker if the supervisor disappears (killed without a chance to stop its workers)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    logger.error('the supervising process %d is gone; stopping', parent)
    worker.stop()


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f'signal {signal.Signals(-code).name}'
        except ValueError:
            return f'signal {-code}'
    return f'exit code {code}'
