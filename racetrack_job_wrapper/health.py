"""`HealthState`: whether the job is live and ready, and why not; the probe endpoints' bodies."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

@dataclass
class HealthState:
    """Live / ready / error of one server; written by the loader and the shutdown path, read by probes."""

    live: bool = True
    ready: bool = False
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_ready(self) -> None:
        """The job is loaded and serving."""
        with self._lock:
            self.ready, self.error = True, None

    def set_error(self, error: str) -> None:
        """Loading failed: not live, not ready, with the reason."""
        with self._lock:
            self.live, self.ready, self.error = False, False, error

    def set_draining(self) -> None:
        """Shutting down: still live, no longer ready, so load balancers stop sending."""
        with self._lock:
            self.ready = False


def live_body(health: HealthState, environ: Mapping[str, str] = os.environ) -> tuple[int, dict[str, Any]]:
    """Status and body of `/live`."""
    body: dict[str, Any] = {'live': health.live, 'deployment_timestamp': environ.get('JOB_DEPLOYMENT_TIMESTAMP')}
    if health.error:
        body['error'] = health.error
    return (200 if health.live else 500), body


def ready_body(health: HealthState) -> tuple[int, dict[str, Any]]:
    """Status and body of `/ready`."""
    return (200 if health.ready else 500), {'ready': health.ready}


def health_body(health: HealthState, job_name: str, job_version: str | None,
                environ: Mapping[str, str] = os.environ) -> tuple[int, dict[str, Any]]:
    """Status and body of `/health`."""
    status = 'pass' if health.live and health.ready else 'fail'
    body: dict[str, Any] = {
        'service': 'job',
        'job_name': job_name,
        'status': status,
        'live': health.live,
        'ready': health.ready,
        'error': health.error,
        'job_version': job_version,
        'git_version': environ.get('GIT_VERSION'),
        'deployed_by_racetrack_version': environ.get('DEPLOYED_BY_RACETRACK_VERSION'),
        'deployment_timestamp': environ.get('JOB_DEPLOYMENT_TIMESTAMP'),
        'job_type_version': environ.get('JOB_TYPE_VERSION'),
    }
    return (200 if status == 'pass' else 500), body

