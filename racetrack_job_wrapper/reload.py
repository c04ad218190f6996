"""`--reload`: watch the job's directory and, when its code changes, serve the job imported afresh.

For development. The directory is polled once a second (file modification times, the standard
library only). A change imports the job's own modules again as new module objects and swaps the
new app in on the same listening socket: requests in flight finish on the job that took them.
A reload that fails leaves the previous job serving and says why in one log line.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.registry import Collector

from racetrack_job_wrapper.health import HealthState
from racetrack_job_wrapper.loader import describe_failure, is_file_reference
from racetrack_job_wrapper.tracing import ActiveRequests

logger = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0  # seconds between two looks at the files
# Directories never watched, nor their modules re-imported: caches, virtual environments, tools.
SKIPPED_DIRECTORIES = frozenset({'__pycache__', '.venv', 'venv', 'node_modules', 'site-packages', 'dist-packages'})
_OWN_PACKAGE = __name__.partition('.')[0]
_RETIRE_POLL = 0.2  # seconds between looks at whether the previous job's requests are over

Stamps = dict[Path, tuple[int, int]]  # file -> (modification time in ns, size)


def job_directory(reference: str) -> Path:
    """The directory to watch for `file.py[:Class]` (the file's) or `package.module[:Class]` (the module's).

    Found without importing anything: the working directory when the module is not found.
    """
    target = reference.partition(':')[0]
    if is_file_reference(target):
        return Path(target).resolve().parent
    locations: list[str] | None = [os.getcwd(), *sys.path]
    spec = None
    for part in target.split('.'):
        spec = importlib.machinery.PathFinder.find_spec(part, locations)
        if spec is None:
            return Path.cwd()
        locations = list(spec.submodule_search_locations or [])
    if spec is not None and spec.has_location and spec.origin:
        return Path(spec.origin).resolve().parent
    if spec is not None and spec.submodule_search_locations:  # a namespace package: its first portion
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return Path.cwd()


def class_reference(job_class: type) -> tuple[str, Path]:
    """A reference that imports `job_class` afresh (`module:Class`, or `file.py:Class` for a script), and its directory.

    Raises ValueError for a class that is not defined at the top level of a file.
    """
    module = sys.modules.get(job_class.__module__)
    file = getattr(module, '__file__', None)
    if not file or job_class.__qualname__ != job_class.__name__:
        raise ValueError(
            f'reload needs a job class defined at the top level of a file; {job_class.__qualname__} '
            f'of {job_class.__module__} is not'
        )
    # A script's class is imported from its file, under the file's name: the script's own
    # `if __name__ == '__main__':` block does not run again.
    target = str(Path(file).resolve()) if job_class.__module__ == '__main__' else job_class.__module__
    return f'{target}:{job_class.__name__}', Path(file).resolve().parent


def _skipped(name: str) -> bool:
    return name.startswith('.') or name in SKIPPED_DIRECTORIES


def scan(directory: Path, extra: Iterable[Path] = ()) -> Stamps:
    """The `.py` files under `directory` (skipped directories left out) and the `extra` files that exist, stamped."""
    stamps: Stamps = {}
    paths = list(extra)
    for root, directories, files in os.walk(directory):
        directories[:] = [name for name in directories if not _skipped(name)]
        paths.extend(Path(root, name) for name in files if name.endswith('.py') and not name.startswith('.'))
    for path in paths:
        try:
            stat = path.stat()
        except OSError:  # gone since it was listed, or a dangling link (an editor's lock file)
            continue
        stamps[path] = (stat.st_mtime_ns, stat.st_size)
    return stamps


def changed_files(before: Stamps, after: Stamps) -> list[Path]:
    """The files added, removed or modified between two scans, sorted."""
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def job_modules(directory: Path) -> dict[str, ModuleType]:
    """The modules in `sys.modules` loaded from files under `directory`, but for this library's and skipped ones."""
    directory = directory.resolve()
    found: dict[str, ModuleType] = {}
    for name, module in list(sys.modules.items()):
        if name == '__main__' or name == _OWN_PACKAGE or name.startswith(_OWN_PACKAGE + '.'):
            continue
        file = getattr(module, '__file__', None)
        if not isinstance(file, str):
            continue
        try:
            relative = Path(os.path.realpath(file)).relative_to(directory)
        except ValueError:
            continue
        if not any(_skipped(part) for part in relative.parts[:-1]):
            found[name] = module
    return found


@contextlib.contextmanager
def fresh_modules(directory: Path, registry: CollectorRegistry = REGISTRY) -> Iterator[None]:
    """Within the block, the job's modules under `directory` are absent from `sys.modules`, so they import afresh.

    The metrics those modules hold on `registry` (prometheus_client's default, where a job's own
    `Counter(...)` lands) are unregistered, as importing them again registers them again; those
    the new modules still hold (the same object, made by a module not imported again) are
    registered back. When the block raises, the previous modules and metrics are put back and
    whatever the failed import registered under their names is removed.
    """
    previous = job_modules(directory)
    held = _referenced(previous.values(), _registered(registry))
    for name in previous:
        del sys.modules[name]
    for collector in held:
        registry.unregister(collector)
    importlib.invalidate_caches()  # files added since the last import are found
    try:
        yield
    except BaseException:
        for name in job_modules(directory):
            del sys.modules[name]
        sys.modules.update(previous)
        _remove_clashing(registry, held)
        _register(registry, held)
        raise
    _register(registry, _referenced(job_modules(directory).values(), held))


def _registered(registry: CollectorRegistry) -> dict[Collector, list[str]]:
    # prometheus_client has no public listing of what is registered; its registry keeps it here.
    with registry._lock:
        return {collector: list(names) for collector, names in registry._collector_to_names.items()}


def _referenced(modules: Iterable[ModuleType], collectors: dict[Collector, list[str]]) -> dict[Collector, list[str]]:
    """Those of `collectors` (with their names) the modules hold as globals, or as attributes of their classes."""
    by_id = {id(collector): collector for collector in collectors}
    found: dict[Collector, list[str]] = {}
    for module in modules:
        values: list[Any] = list(vars(module).values())
        classes = [value for value in values if isinstance(value, type) and value.__module__ == module.__name__]
        for cls in classes:
            values.extend(vars(cls).values())
        for value in values:
            collector = by_id.get(id(value))
            if collector is not None:
                found[collector] = collectors[collector]
    return found


def _remove_clashing(registry: CollectorRegistry, held: dict[Collector, list[str]]) -> None:
    """Unregister what shares a name with `held`: what a failed import registered again."""
    names = {name for collector_names in held.values() for name in collector_names}
    for collector, registered_names in _registered(registry).items():
        if names.intersection(registered_names):
            registry.unregister(collector)


def _register(registry: CollectorRegistry, collectors: Iterable[Collector]) -> None:
    for collector in collectors:
        try:
            registry.register(collector)
        except ValueError as e:
            logger.warning('a metric of the previous job could not be registered again: %s', e)


def drop_bytecode(paths: Iterable[Path]) -> None:
    """Remove the cached bytecode of changed `.py` files.

    The cache is checked against the source's size and modification time in whole seconds, so
    an edit of the same size within the second the cache was written would import stale code.
    """
    for path in paths:
        if path.suffix == '.py':
            with contextlib.suppress(OSError, ValueError):
                os.unlink(importlib.util.cache_from_source(str(path)))


def close_when_done(close: Callable[[], None], active: ActiveRequests) -> None:
    """Call `close` in a thread once every request being served now has finished (the previous job's resources)."""
    serving = active.snapshot()

    def wait_and_close() -> None:
        while True:
            now = active.snapshot()
            if not any(now.get(thread) is trace for thread, trace in serving.items()):
                break
            time.sleep(_RETIRE_POLL)
        close()

    threading.Thread(target=wait_and_close, name='job-retire', daemon=True).start()


def _shown(path: Path) -> str:
    """A path relative to the working directory when inside it, as the logs and probes show job files."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith('..') else relative


class Reloader:
    """Polls the job's files and has the job served afresh when one changes; stops with `stop()`.

    `reload_job()` imports, instantiates and swaps in the new job, raising (the previous job
    serving on) when it cannot. A change of the manifest is only logged: the settings it holds
    are applied once, at start-up, so it needs a restart.
    """

    def __init__(
        self,
        directory: Path,
        reload_job: Callable[[], None],
        health: HealthState,
        manifest: Path | None = None,
        interval: float = WATCH_INTERVAL,
        registry: CollectorRegistry = REGISTRY,
    ):
        self.directory = directory.resolve()
        self.manifest = manifest.resolve() if manifest is not None else None
        self.interval = interval
        self._reload_job = reload_job
        self._health = health
        self._registry = registry
        self._stopped = threading.Event()
        self._stamps: Stamps = {}
        health.track_reloads()

    def start(self, loaded: threading.Event) -> None:
        """Take note of the files now and watch them in a thread; changes are acted on once `loaded` is set."""
        self._stamps = self._scan()
        logger.info('reload: watching %s for changes', self.directory)
        threading.Thread(target=self._watch, args=(loaded,), name='job-reloader', daemon=True).start()

    def stop(self) -> None:
        """Stop watching (a shutdown): no reload starts from now on."""
        self._stopped.set()

    def _scan(self) -> Stamps:
        return scan(self.directory, [self.manifest] if self.manifest is not None else [])

    def _watch(self, loaded: threading.Event) -> None:
        while not loaded.wait(self.interval):  # a change during the first load is seen once it is over
            if self._stopped.is_set():
                return
        while not self._stopped.wait(self.interval):
            try:
                self.check()
            except Exception:  # the watcher must outlive a surprise: the next look may go well
                logger.exception('reload: watching the job files failed')

    def check(self) -> bool:
        """Look at the files once and act on what changed; True when the job was reloaded."""
        stamps = self._scan()
        changed = changed_files(self._stamps, stamps)
        self._stamps = stamps
        if self.manifest in changed:
            logger.warning(
                'reload: %s changed; the manifest is read at start-up only, restart to apply it', _shown(self.manifest)
            )
        code = [path for path in changed if path != self.manifest]
        return bool(code) and self.reload(code)

    def reload(self, changed: list[Path]) -> bool:
        """Import and serve the job afresh because `changed` files changed; False (logged) when that fails."""
        if self._stopped.is_set():  # shutting down: the job serving now finishes the work
            return False
        started = time.monotonic()
        shown = ', '.join(_shown(path) for path in changed[:3])
        more = f' and {len(changed) - 3} more' if len(changed) > 3 else ''
        logger.info('reloading: %s%s changed', shown, more)
        drop_bytecode(changed)
        try:
            with fresh_modules(self.directory, self._registry):
                self._reload_job()
        except BaseException as e:  # SystemExit from a job module is a failed reload, too
            reason = describe_failure(e)
            serving = self._health.set_reload_failed(reason)
            still = 'the previous job serves on' if serving else 'no job serves'
            logger.error('reload failed, %s: %s', still, reason)
            return False
        self._health.set_reloaded()
        logger.info('reloaded in %.1f s', time.monotonic() - started)
        return True
