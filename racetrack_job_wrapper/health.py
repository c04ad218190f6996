"""`HealthState`: whether the job is live and ready, and why not; the probe endpoints' bodies."""

from __future__ import annotations

import threading
from typing import Any

from racetrack_job_wrapper.settings import JobSettings


class HealthState:
    """Live / ready / error of one server; written by the loader and the shutdown path, read by probes."""

    def __init__(self) -> None:
        self.live = True
        self.ready = False
        self.error: str | None = None
        self.stopping = False
        # With `--reload` only (None otherwise): reloads that served the job afresh, and why the last one failed.
        self.reloads: int | None = None
        self.reload_error: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f'HealthState(live={self.live}, ready={self.ready}, error={self.error!r}, stopping={self.stopping})'

    def set_ready(self) -> None:
        """The job is loaded and serving (and ready, unless shutting down already)."""
        with self._lock:
            self.ready, self.error = not self.stopping, None

    def set_error(self, error: str) -> None:
        """Loading failed: not live, not ready, with the reason."""
        with self._lock:
            self.live, self.ready, self.error = False, False, error

    def track_reloads(self) -> None:
        """Count reloads from now on (`--reload`): `/health` then shows `reloads` and `reload_error`."""
        with self._lock:
            self.reloads = self.reloads or 0

    def set_reloaded(self) -> None:
        """A reload serves the job afresh: counted, and its error (or a failed load's) cleared."""
        with self._lock:
            self.reloads = (self.reloads or 0) + 1
            self.live, self.ready, self.error, self.reload_error = True, not self.stopping, None, None

    def set_reload_failed(self, error: str) -> bool:
        """A reload failed with `error`; True when a job loaded before serves on (else `error` is the load error)."""
        with self._lock:
            self.reload_error = error
            if self.error is None:
                return True
            self.error = error
            return False

    def set_draining(self) -> None:
        """Shutting down: still live, no longer ready (for good), so load balancers stop sending."""
        with self._lock:
            self.ready, self.stopping = False, True


def live_body(health: HealthState, settings: JobSettings) -> tuple[int, dict[str, Any]]:
    """Status and body of `/live`."""
    body: dict[str, Any] = {'live': health.live, 'deployment_timestamp': settings.deployment.deployment_timestamp}
    if health.error:
        body['error'] = health.error
    return (200 if health.live else 500), body


def ready_body(health: HealthState) -> tuple[int, dict[str, Any]]:
    """Status and body of `/ready`."""
    return (200 if health.ready else 500), {'ready': health.ready}


def health_body(health: HealthState, settings: JobSettings) -> tuple[int, dict[str, Any]]:
    """Status and body of `/health`; `job_version` is null when nothing names the version."""
    status = 'pass' if health.live and health.ready else 'fail'
    deployment = settings.deployment
    body: dict[str, Any] = {
        'service': 'job',
        'job_name': settings.name,
        'status': status,
        'live': health.live,
        'ready': health.ready,
        'error': health.error,
        'job_version': settings.version if settings.version_given else None,
        'git_version': deployment.git_version,
        'deployed_by_racetrack_version': deployment.deployed_by_racetrack_version,
        'deployment_timestamp': deployment.deployment_timestamp,
        'job_type_version': deployment.job_type_version,
    }
    if health.reloads is not None:
        body['reloads'] = health.reloads
        body['reload_error'] = health.reload_error
    return (200 if status == 'pass' else 500), body
