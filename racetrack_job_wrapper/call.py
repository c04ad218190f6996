"""Chain calls: a job calling another job through Racetrack's Pub, carrying the request's identity along."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from racetrack_job_wrapper.messages import Request
from racetrack_job_wrapper.settings import AUTH_HEADER, REQUEST_TIMEOUT_HEADER, ObservabilitySettings
from racetrack_job_wrapper.tracing import current_trace

PREDECESSOR_HEADER = 'X-Recordkeeper-Predecessor-Id'
# Methods whose payload travels as query parameters, the way this server reads their arguments.
QUERY_METHODS = frozenset({'GET', 'HEAD', 'DELETE'})
_MAX_ERROR_BODY = 64 * 1024


def call_job(
    entrypoint: object,
    job_name: str,
    path: str = '/api/v1/perform',
    payload: dict[str, Any] | None = None,
    version: str = 'latest',
    method: str = 'POST',
    timeout: float | None = 10,
) -> Any:
    """Call another job's endpoint and return its JSON result.

    The URL is `{PUB_URL}/job/{job_name}/{version}{path}`. The call carries `X-Racetrack-Auth`
    (from AUTH_TOKEN), the current request's tracing id and caller name, its W3C trace context
    and Recordkeeper predecessor id. `timeout` is seconds of network inactivity (None waits
    forever). Raises RuntimeError naming the job, version, status and the callee's error.

    Made while serving a request with a deadline, the call carries what is left of it in
    `X-Request-Timeout` and waits no longer than that; once the deadline has passed it is not
    made at all: CallCancelled is raised, which the server answers with the request's 504.
    """
    settings = ObservabilitySettings.from_environ()
    request = build_request(entrypoint, settings, job_name, path, payload, version, method)
    incoming = _incoming_request(entrypoint)
    if incoming is not None and incoming.deadline is not None:
        incoming.check()  # CallCancelled once the deadline has passed (or the client left)
        remaining = incoming.remaining() or 0.0
        request.add_header(REQUEST_TIMEOUT_HEADER, f'{remaining:.3f}')
        timeout = remaining if timeout is None else min(timeout, remaining)
    return _send(request, timeout, f'job "{job_name}" version "{version}"', settings.job_name)


async def call_job_async(
    entrypoint: object,
    job_name: str,
    path: str = '/api/v1/perform',
    payload: dict[str, Any] | None = None,
    version: str = 'latest',
    method: str = 'POST',
    timeout: float | None = 10,
) -> Any:
    """`call_job` as a coroutine; the blocking call runs in a worker thread with this request's context."""
    return await asyncio.to_thread(call_job, entrypoint, job_name, path, payload, version, method, timeout)


call_job_coroutine = call_job_async  # the existing implementation's name


def build_request(
    entrypoint: object,
    settings: ObservabilitySettings,
    job_name: str,
    path: str,
    payload: dict[str, Any] | None,
    version: str,
    method: str,
) -> urllib.request.Request:
    """The HTTP request of a chain call; ValueError for a bad argument, RuntimeError without PUB_URL."""
    for name, value in (('job_name', job_name), ('version', version)):
        if (
            not isinstance(value, str)
            or not value
            or any(ch in value for ch in '/?#')
            or not value.isprintable()
            or any(ch.isspace() for ch in value)
        ):
            raise ValueError(f'call_job: {name} must be a non-empty name without spaces or "/?#", got {value!r}')
    if payload is not None and not isinstance(payload, dict):
        raise ValueError(f'call_job: payload must be a dict of parameters or None, got {type(payload).__name__}')
    if not settings.pub_url:
        raise RuntimeError(
            f'cannot call job "{job_name}": the PUB_URL environment variable is not set '
            '(Racetrack sets it; locally, point it at a Pub, e.g. http://127.0.0.1:7000/pub)'
        )
    method = method.upper()
    url = f'{settings.pub_url}/job/{job_name}/{version}{path if path.startswith("/") else "/" + path}'
    body = None
    if method in QUERY_METHODS:
        if payload:
            url += ('&' if '?' in url else '?') + urllib.parse.urlencode(payload, doseq=True)
    elif payload is not None:
        body = json.dumps(payload).encode()
    return urllib.request.Request(url, data=body, headers=outgoing_headers(entrypoint, settings), method=method)


def outgoing_headers(entrypoint: object, settings: ObservabilitySettings) -> dict[str, str]:
    """Headers a chain call made now carries: auth, tracing id, caller name, trace context, predecessor id."""
    headers = {'Accept': 'application/json', 'Content-Type': 'application/json'}
    if settings.auth_token:
        headers[AUTH_HEADER] = settings.auth_token
    incoming = _incoming_headers(entrypoint)
    trace = current_trace()
    if trace is not None:
        forwarded = {
            settings.tracing_header: trace.tracing_id,
            settings.caller_header: trace.caller_name,
            'traceparent': trace.traceparent,
            'tracestate': trace.tracestate,
        }
    else:  # called outside a request this server traced: pass on what the request carried, if any
        forwarded = {name: incoming.get(name) for name in (settings.tracing_header, settings.caller_header)}
    forwarded[PREDECESSOR_HEADER] = _predecessor_id(entrypoint) or incoming.get(PREDECESSOR_HEADER)
    headers.update({name: value for name, value in forwarded.items() if value})
    return headers


def _incoming_request(entrypoint: object) -> Request | None:
    """The request the job is serving now, if the call is made while it serves one."""
    variable = getattr(entrypoint, 'request_context', None)
    request = variable.get(None) if variable is not None else None
    return request if isinstance(request, Request) else None


def _incoming_headers(entrypoint: object) -> Any:
    request = _incoming_request(entrypoint)
    return request.headers if request is not None else {}


def _predecessor_id(entrypoint: object) -> str | None:
    """A predecessor id the job set for this request in `request_extra` wins over the incoming header."""
    variable = getattr(entrypoint, 'request_extra', None)
    extra = variable.get(None) if variable is not None else None
    return extra.get(PREDECESSOR_HEADER) if isinstance(extra, dict) else None


def _send(request: urllib.request.Request, timeout: float | None, callee: str, caller_job: str) -> Any:
    by = f' by job "{caller_job}"' if caller_job else ''
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as e:
        detail = _error_detail(e)
        raise RuntimeError(f'call to {callee}{by} failed with {e.code} {e.reason}: {detail}') from e
    except TimeoutError as e:
        raise RuntimeError(f'call to {callee}{by} timed out after {timeout}s ({request.full_url})') from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, socket.timeout)):
            raise RuntimeError(f'call to {callee}{by} timed out after {timeout}s ({request.full_url})') from e
        raise RuntimeError(f'call to {callee}{by} failed: cannot reach {request.full_url}: {e.reason}') from e
    except OSError as e:
        raise RuntimeError(f'call to {callee}{by} failed: {type(e).__name__}: {e}') from e
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except ValueError as e:
        raise RuntimeError(f'call to {callee}{by} returned a body that is not JSON: {data[:200]!r}') from e


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The callee's error body: its `error` and `type` when it is this server's JSON shape, else the text."""
    try:
        body = error.read(_MAX_ERROR_BODY)
    except OSError:
        return '(no body)'
    text = body.decode('utf-8', errors='replace').strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text or '(no body)'
    if isinstance(parsed, dict) and 'error' in parsed:
        kind = f' ({parsed["type"]})' if parsed.get('type') else ''
        return f'{parsed["error"]}{kind}'
    return text
