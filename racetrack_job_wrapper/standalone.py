"""Public entry points: `serve_job_class` and `serve_job_instance` block and serve a job over HTTP."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from prometheus_client import REGISTRY, CollectorRegistry

from racetrack_job_wrapper.access import AccessObserver
from racetrack_job_wrapper.app import App, JobComponents, build_job_app, build_loading_app
from racetrack_job_wrapper.calls import AsyncCallCollector
from racetrack_job_wrapper.debug import debug_threads_route, install_dump_signal
from racetrack_job_wrapper.health import HealthState
from racetrack_job_wrapper.installation import warn_if_conflicting_install
from racetrack_job_wrapper.loader import describe_failure
from racetrack_job_wrapper.logs import configure_logs
from racetrack_job_wrapper.manifest import (
    ManifestError,
    apply_runtime_env,
    manifest_file,
    read_manifest,
    validate_build_settings,
)
from racetrack_job_wrapper.metrics import JobGaugeCollector, JobMetrics, metrics_route, register_job_metrics
from racetrack_job_wrapper.records import replace
from racetrack_job_wrapper.reload import Reloader, class_reference, close_when_done
from racetrack_job_wrapper.routing import API_PREFIX
from racetrack_job_wrapper.server import JobServer, exit_unable_to_listen, listen_url
from racetrack_job_wrapper.settings import JobSettings, ObservabilitySettings, ServerOptions, apply_options

if TYPE_CHECKING:
    from racetrack_job_wrapper.profiler import MemoryProfiler
    from racetrack_job_wrapper.workers import WorkerSlot

logger = logging.getLogger(__name__)

DEFAULT_HOST = '0.0.0.0'
DEFAULT_PORT = 7000
LOADING_REPORT_INTERVAL = 10.0  # seconds between "still loading" lines


def serve_job_class(
    entrypoint_class: type,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    manifest_path: str | None = None,
    workers: int = 1,
    reload: bool = False,
    preload: bool = False,
    **options: Unpack[ServerOptions],
) -> int:
    """Serve probes at once, instantiate the job in the background, then serve it; blocks until stopped.

    `reload=True` (development) imports the class's module afresh whenever a `.py` file in its
    directory changes; the class must be defined at the top level of its file (ValueError if not).
    `preload=True` with `workers` above 1 instantiates the class once, before the workers fork.
    """
    if not reload:
        return serve(
            entrypoint_class,
            host=host,
            port=port,
            manifest_path=manifest_path,
            workers=workers,
            preload=preload,
            **options,
        )
    reference, directory = class_reference(entrypoint_class)

    def load() -> type:
        from racetrack_job_wrapper.loader import load_job_class

        return load_job_class(reference)

    return serve(
        load,
        host=host,
        port=port,
        manifest_path=manifest_path,
        workers=workers,
        reload=True,
        reload_dir=directory,
        **options,
    )


def serve_job_instance(
    entrypoint: object,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    manifest_path: str | None = None,
    workers: int = 1,
    **options: Unpack[ServerOptions],
) -> int:
    """Serve an already created job instance (each worker process gets a copy); blocks until stopped."""
    return serve(lambda: entrypoint, host=host, port=port, manifest_path=manifest_path, workers=workers, **options)


def serve(
    load: Callable[[], object],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    manifest_path: str | None = None,
    workers: int = 1,
    log_level: str | None = None,
    reload: bool = False,
    reload_dir: str | Path | None = None,
    preload: bool = False,
    **options: Unpack[ServerOptions],
) -> int:
    """Run a server whose job is produced by `load()` (called in the background); returns an exit code.

    SIGTERM and SIGINT drain the server: /ready turns 500, accepting goes on for the shutdown
    delay, then stops, and requests in flight finish within the grace period; a second SIGINT
    cuts them. The exit code is 0 when none was cut. With `workers` above 1, that many
    processes serve the port, each calling `load()` itself. An unusable manifest (or
    JOB_AUTH_TOKENS) is logged and raises SystemExit(2) before anything listens, an address
    that cannot be listened on SystemExit(1): a start-up error stops the process, with its
    reason in one log line. `log_level` wins over LOG_LEVEL.

    With `reload` (development), `load()` is called again whenever a `.py` file under
    `reload_dir` (the working directory by default) changes, the job's modules there imported
    afresh, and the new job replaces the old on the same socket; one process only (ValueError
    with `workers` above 1).

    With `preload` and `workers` above 1, the parent process calls `load()` (and instantiates
    the class) once, before it listens, and forks the workers from it: they share the job's
    memory copy-on-write, and a restarted worker starts with the job loaded. A job that
    started threads while loading (a fork copies none) or initialised CUDA is refused, exit 2.
    """
    if reload and workers != 1:
        raise ValueError(f'reload serves the job in one process; it cannot be used with {workers} workers')
    configure_logs(log_level)
    warn_if_conflicting_install()
    try:
        settings = prepare_settings(manifest_path)
    except ManifestError as e:
        logger.error('invalid job configuration: %s', e)
        raise SystemExit(2) from None
    # Read again now that the manifest's runtime_env is applied: it may set LOG_* and the header names.
    observability = ObservabilitySettings.from_environ()
    if log_level:
        observability = replace(observability, log_level=log_level)
    configure_logs(settings=observability)
    settings = apply_options(settings, options)
    if workers != 1:
        from racetrack_job_wrapper.workers import serve_workers

        loaded: list[object] = []  # with preload: the job, loaded here before the workers fork
        worker_load = (lambda: loaded[0]) if preload else load

        def make_worker(listener: socket.socket, scrape_registry: CollectorRegistry, slot: WorkerSlot) -> JobRunner:
            runner = JobRunner(
                worker_load, settings, observability=observability, scrape_registry=scrape_registry, slot=slot
            )
            runner.bind(host, port, listener=listener)
            return runner

        def preload_job() -> None:
            loaded.append(load_for_fork(load))

        return serve_workers(
            make_worker, host, port, workers, settings.limits, preload=preload_job if preload else None
        )
    if preload:
        logger.warning('preload shares one loaded job among --workers; with one process it changes nothing')
    runner = JobRunner(load, settings, observability=observability)
    if reload:
        directory = Path(reload_dir) if reload_dir is not None else Path.cwd()
        runner.reloader = Reloader(directory, runner.reload, runner.health, manifest_file(manifest_path))
    try:
        runner.bind(host, port)
    except OSError as e:
        exit_unable_to_listen(host, port, e)
    logger.info('serving at %s', listen_url(host, runner.server.server_address[1]))
    return runner.run_forever(install_signals=True)


# Threads of this library's that run before the workers fork; each worker starts its own again.
_OWN_THREADS = frozenset({'log-writer', 'access-log'})


def load_for_fork(load: Callable[[], object]) -> object:
    """Load (and instantiate) the job in the process the workers fork from; SystemExit when it cannot be shared.

    A failed load is one log line and exit 1. A job that started threads (a fork copies only
    the thread calling it) or initialised CUDA (a forked CUDA context is unusable) is refused
    with exit 2, naming what to change.
    """
    started = time.monotonic()
    logger.info('preloading the job before the workers start')
    try:
        entrypoint = load()
        if isinstance(entrypoint, type):
            entrypoint = entrypoint()
    except BaseException as e:  # SystemExit from a job module too
        logger.error('the job failed to load: %s', describe_failure(e))
        raise SystemExit(1) from None
    threads = sorted(
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and thread.name not in _OWN_THREADS
    )
    if threads:
        logger.error(
            'cannot preload: the job started threads while loading (%s), which the forked workers '
            'would not have; start them on first use, or serve without --preload',
            ', '.join(threads),
        )
        raise SystemExit(2)
    torch = sys.modules.get('torch')
    cuda = getattr(torch, 'cuda', None)
    if cuda is not None and getattr(cuda, 'is_initialized', lambda: False)():
        logger.error('cannot preload: the job initialised CUDA, which does not survive a fork; serve without --preload')
        raise SystemExit(2)
    logger.info('the job is loaded in %.1f s; the workers share it', time.monotonic() - started)
    return entrypoint


def prepare_settings(manifest_path: str | None = None) -> JobSettings:
    """Read the manifest, apply its runtime env (before the job is imported), and validate its settings.

    Raises ManifestError naming the field and value.
    """
    manifest = read_manifest(manifest_path)
    validate_build_settings(manifest)
    apply_runtime_env(manifest)
    return JobSettings.from_manifest(manifest)


class JobRunner:
    """One server's life: bind, serve probes, load the job in the background, drain on a signal.

    Metrics are created on `registry`; `/metrics` exposes `scrape_registry` (the same one
    unless several worker processes share their metrics).
    """

    def __init__(
        self,
        load: Callable[[], object],
        settings: JobSettings,
        registry: CollectorRegistry = REGISTRY,
        cwd: Path | None = None,
        observability: ObservabilitySettings | None = None,
        scrape_registry: CollectorRegistry | None = None,
        slot: WorkerSlot | None = None,
    ):
        self.load = load
        self.cwd = cwd
        self.settings = settings
        self.limits = settings.limits
        self.registry = registry
        self.scrape_registry = registry if scrape_registry is None else scrape_registry
        self.slot = slot  # this process's place among --workers processes, or None
        self.observability = observability if observability is not None else ObservabilitySettings()
        self.health = HealthState()
        self.metrics = JobMetrics(registry, settings.name, settings.version)
        self.observer = AccessObserver(self.metrics, self.observability)
        self.profiler: MemoryProfiler | None = None
        if self.observability.memray_profiler:
            # Imported only here: the profiler's reporters need subprocess and tempfile, 1.5 ms of every start.
            from racetrack_job_wrapper.profiler import create_profiler

            self.profiler = create_profiler(self.observability)
        if self.scrape_registry is not registry:
            # An Info metric keeps its labels in memory, not in the files the workers share.
            self.scrape_registry.register(self.metrics.info)
        self.server: JobServer = None  # type: ignore[assignment]  # made by bind(), before any use
        self.loaded = threading.Event()
        self._drained: threading.Thread | None = None
        self._delay_over = threading.Event()  # set when the shutdown delay ends, or is cut short
        self._clean_exit = True
        self._components: JobComponents | None = None
        self._job_collector: JobGaugeCollector | None = None
        self._calls_collector: AsyncCallCollector | None = None
        self.reloader: Reloader | None = None  # watches the job's files (`--reload`), started by run_forever()

    def bind(self, host: str, port: int, listener: socket.socket | None = None) -> None:
        """Create the listening socket (or take a shared one) and start answering probes."""
        self.server = JobServer(
            (host, port), build_loading_app(self.health, self.settings), self.limits, self.observer, listener=listener
        )

    def start_loading(self) -> None:
        """Import and instantiate the job in a background thread."""
        threading.Thread(target=self._load, name='job-loader', daemon=True).start()

    def _load(self) -> None:
        started = time.monotonic()
        threading.Thread(target=self._report_loading, args=(started,), name='load-progress', daemon=True).start()
        try:
            app, self._components, entrypoint = self.build(self.load())
            self._job_collector = register_job_metrics(self.scrape_registry, entrypoint)
        except BaseException as e:  # SystemExit from a job module counts as a failed load, too
            self.health.set_error(describe_failure(e))
            logger.exception('the job failed to load: %s', self.health.error)
        else:
            if not self.server.draining:  # during a shutdown delay it serves, though not ready
                self.server.app = app
                self.serve_calls(self._components)
                self.health.set_ready()
                if self.slot is not None and self.health.ready:
                    self.slot.set_ready()
                logger.info('the job is ready in %.1f s', time.monotonic() - started)
        finally:
            self.loaded.set()

    def build(self, entrypoint: object) -> tuple[App, JobComponents, object]:
        """The app serving `entrypoint` (a class is instantiated first), what to close with it, and the instance."""
        if isinstance(entrypoint, type):
            logger.info('loading the job: creating an instance of %s', entrypoint.__name__)
            entrypoint = entrypoint()
        extra_routes = [metrics_route(self.scrape_registry)]
        if self.observability.debug_threads:
            extra_routes.append(debug_threads_route(self.observer.active))
        if self.profiler is not None:
            from racetrack_job_wrapper.profiler import profiler_routes  # loaded with the profiler, above

            extra_routes.extend(profiler_routes(self.profiler, API_PREFIX))
        app, components = build_job_app(
            entrypoint, self.settings, self.health, self.metrics, extra_routes, cwd=self.cwd
        )
        return app, components, entrypoint

    def serve_calls(self, components: JobComponents) -> None:
        """Start the async calls of the job now served; its `async_calls` gauge replaces the last job's on /metrics."""
        calls = components.calls
        if calls is None:
            return
        if self._calls_collector is not None:
            self.scrape_registry.unregister(self._calls_collector)
        self.scrape_registry.register(calls.collector)
        self._calls_collector = calls.collector
        components.start()

    def reload(self) -> None:
        """Load the job again and serve it in place of the one serving; raises, that one serving on, if it cannot.

        The listening socket stays open; requests in flight finish on the job that took them,
        whose event loop (for `async def` methods) is closed once they have.
        """
        app, components, entrypoint = self.build(self.load())
        if self.server.draining:
            components.close()
            return
        previous_collector = self._job_collector
        if previous_collector is not None:
            self.scrape_registry.unregister(previous_collector)
        try:
            self._job_collector = register_job_metrics(self.scrape_registry, entrypoint)
        except BaseException:
            components.close()
            if previous_collector is not None:
                self.scrape_registry.register(previous_collector)
            raise
        previous, self._components = self._components, components
        self.server.app = app
        if previous is not None and previous.calls is not None:
            previous.calls.stop_claiming()  # the new job's runner takes the queued calls
        self.serve_calls(components)
        if previous is not None:
            close_when_done(previous.close, self.observer.active)

    def _report_loading(self, started: float) -> None:
        """Say every `LOADING_REPORT_INTERVAL` seconds that the job is still loading, so a slow load shows."""
        while not self.loaded.wait(LOADING_REPORT_INTERVAL):
            logger.info('still loading the job (%.0f s so far)', time.monotonic() - started)

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT start a graceful drain, SIGUSR1 log a thread dump (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        install_dump_signal(self.observer.active)

    def run_forever(self, install_signals: bool = False) -> int:
        """Serve until drained; returns 0 when every accepted request was answered."""
        if install_signals:
            self.install_signal_handlers()
        if self.profiler is not None:
            self.profiler.start()  # before the job loads, so its import and start-up are in the capture
        self.start_loading()
        if self.reloader is not None:
            self.reloader.start(self.loaded)
        if self.slot is not None:
            # A worker started while others serve accepts only once it serves too: connections wait
            # in the shared backlog for a worker that answers them, not for a 503 from this one. One
            # whose job failed to load accepts only when no other serves, so probes can report it.
            while self.slot.peers_ready() and self._drained is None and not self.health.ready:
                time.sleep(0.05)
        try:
            self.server.serve_forever(poll_interval=0.2)
        finally:
            if self._drained is not None:
                self._drained.join()
            self.server.server_close()
            if self._components is not None:
                self._components.close()
            if self.profiler is not None:
                self.profiler.stop()
            self.observer.access_log.flush()
        return 0 if self._clean_exit else 1

    def stop(self) -> None:
        """Begin a graceful shutdown from any thread (what SIGTERM does)."""
        if self._drained is not None:
            return
        if self.reloader is not None:
            self.reloader.stop()
        self.health.set_draining()
        self.server.keep_alive = False
        if self._components is not None and self._components.calls is not None:
            self._components.calls.stop_claiming()
        self._drained = threading.Thread(target=self._shut_down, name='drain', daemon=True)
        self._drained.start()

    def _shut_down(self) -> None:
        started = time.monotonic()
        delay = self.limits.shutdown_delay
        if delay:
            logger.info('shutting down: /ready reports 500; serving on for %.1fs (shutdown delay)', delay)
            self._delay_over.wait(delay)
        logger.info(
            'shutting down: stopped accepting; draining %d connection(s) (grace period %.0fs)',
            self.server.connection_count(),
            self.limits.grace_period,
        )
        drain_started = time.monotonic()
        self._clean_exit = self.server.drain()
        calls = self._components.calls if self._components is not None else None
        if calls is not None:
            # Async calls running here get what is left of the grace period, as requests do.
            left = max(0.0, self.limits.grace_period - (time.monotonic() - drain_started))
            self._clean_exit = calls.wait_idle(left) and self._clean_exit
        now = time.monotonic()
        logger.info('shutdown done in %.1fs (drain %.1fs)', now - started, now - drain_started)

    def stop_now(self) -> None:
        """Cut a shutdown short (a second Ctrl-C): no delay left, requests still running are cut."""
        self.stop()
        logger.warning('stopping now: requests still running are cut')
        self._delay_over.set()
        self.server.cut_short()

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only SIGINT cuts a shutdown short: a supervisor's repeated SIGTERM must not cut requests.
        if self._drained is not None and signum == signal.SIGINT:
            self.stop_now()
        else:
            self.stop()
