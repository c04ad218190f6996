"""Environment variables of logs, request tracing, debugging, profiling and chain calls, read in one place."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

DEFAULT_TRACING_HEADER = 'X-Request-Tracing-Id'
DEFAULT_CALLER_HEADER = 'X-Caller-Name'
AUTH_HEADER = 'X-Racetrack-Auth'  # the Racetrack token: checked by the gateway (or JOB_AUTH_TOKENS), sent on chain calls
_TRUE = frozenset({'true', 't', 'yes', 'y', '1'})


@dataclass(frozen=True)
class ObservabilitySettings:
    """What the environment says about logs, tracing, debug endpoints, the memory profiler and chain calls."""

    log_level: str = ''                     # LOG_LEVEL as given ('' when unset); logs.configure_logs validates it
    structured_logs: bool = False           # LOG_STRUCTURED: one JSON object per line
    log_caller_name: bool = False           # LOG_CALLER_NAME: add caller_name to request records
    tracing_header: str = DEFAULT_TRACING_HEADER
    caller_header: str = DEFAULT_CALLER_HEADER
    debug_threads: bool = False             # DEBUG_THREADS: serve GET /debug/threads
    pub_url: str = ''                       # PUB_URL: Racetrack's internal Pub, for chain calls
    auth_token: str = ''                    # AUTH_TOKEN: sent as X-Racetrack-Auth on chain calls
    job_name: str = ''                      # JOB_NAME: named in chain call errors
    memray_profiler: bool = False           # MEMRAY_PROFILER: track memory with memray, serve the profiler endpoints
    memray_leaks: bool = False              # MEMRAY_LEAKS: flame graphs show leaked memory, not peak usage

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> 'ObservabilitySettings':
        """Read the settings from `environ` (the process environment by default)."""
        return cls(
            log_level=(environ.get('LOG_LEVEL') or '').strip().lower(),
            structured_logs=_flag(environ, 'LOG_STRUCTURED'),
            log_caller_name=_flag(environ, 'LOG_CALLER_NAME'),
            tracing_header=(environ.get('REQUEST_TRACING_HEADER') or '').strip() or DEFAULT_TRACING_HEADER,
            caller_header=(environ.get('CALLER_NAME_HEADER') or '').strip() or DEFAULT_CALLER_HEADER,
            debug_threads=_flag(environ, 'DEBUG_THREADS'),
            pub_url=(environ.get('PUB_URL') or '').strip().rstrip('/'),
            auth_token=environ.get('AUTH_TOKEN') or '',
            job_name=environ.get('JOB_NAME') or '',
            memray_profiler=_flag(environ, 'MEMRAY_PROFILER'),
            memray_leaks=_flag(environ, 'MEMRAY_LEAKS'),
        )


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return (environ.get(name) or '').strip().lower() in _TRUE
