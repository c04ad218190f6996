"""Async calls: `Prefer: respond-async` answers 202 at once; the call runs later, its state kept in a store.

A deferred call is the request itself, stored: when a runner thread claims it, the request is
rebuilt and passed to the same route handler a synchronous call goes through, so the
concurrency cap, validation, metrics, serialization and error answers are the same. The status
(`GET /api/v1/calls/{id}`) then holds the status code and JSON body the synchronous call would
have answered.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from racetrack_job_wrapper.auth import AccessPolicy
from racetrack_job_wrapper.callstore import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    CallRecord,
    CallStore,
    StoreFull,
    open_store,
    sqlite_path,
)
from racetrack_job_wrapper.messages import (
    CLIENT_LEFT,
    ClientDisconnected,
    Headers,
    HTTPError,
    Request,
    Response,
    decode_json,
    error_response,
    http_error_response,
    json_response,
)
from racetrack_job_wrapper.metrics import JobMetrics
from racetrack_job_wrapper.routing import API_PREFIX, Route, Router
from racetrack_job_wrapper.settings import (
    AUTH_HEADER,
    CALLBACK_URL_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    PREFER_HEADER,
    JobSettings,
)
from racetrack_job_wrapper.tracing import CURRENT_TRACE, RequestTrace, current_trace
from racetrack_job_wrapper.webhooks import check_callback_url, deliver

logger = logging.getLogger(__name__)

CALLS_PATH = API_PREFIX + '/calls'
DEFAULT_RUNNERS = 4  # calls run at once per process without max_concurrency
LEASE_SECONDS = 10.0  # how long a running call stays claimed without its process renewing it
_RENEW_EVERY = 2.5
_SWEEP_EVERY = 2.0
_PRUNE_EVERY = 60.0
_CLAIM_POLL = 0.5  # seconds between looks for calls queued by other processes
_CANCEL_POLL = 0.2  # seconds between looks at whether a running call was cancelled
_PROGRESS_EVERY = 0.2  # seconds between progress writes of one call; the latest is written later
_MAX_RUNS = 3  # runs of an idempotent call its server died under, before it is failed instead
_MAX_KEY_LENGTH = 255
# Not stored with a call: credentials (checked when it was accepted), what made it async, how
# its answer was to be framed; an async call's result is one JSON document.
_DROPPED_HEADERS = frozenset(
    {
        AUTH_HEADER.lower(),
        'authorization',
        'cookie',
        'proxy-authorization',
        PREFER_HEADER.lower(),
        IDEMPOTENCY_KEY_HEADER.lower(),
        CALLBACK_URL_HEADER.lower(),
        'accept',
        'accept-encoding',
        'connection',
        'keep-alive',
        'content-length',
        'transfer-encoding',
        'expect',
        'te',
        'upgrade',
    }
)
_INTERRUPTED = {
    'status_code': 503,
    'error': {'error': 'the server stopped while the call was running', 'type': 'Interrupted'},
}
_CANCELLED = {'error': {'error': 'the call was cancelled', 'type': 'Cancelled'}}
# Identifies this process among the owners of running calls: a process that restarted under the
# same pid (pid 1 in a container) is told apart from itself.
_PROCESS_NONCE = secrets.token_hex(4)


def wants_async(prefer: str) -> bool:
    """Whether a `Prefer` header asks for `respond-async` (RFC 7240: tokens, comma-separated, with parameters)."""
    return any(item.split(';', 1)[0].strip().lower() == 'respond-async' for item in prefer.split(','))


def timestamp(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with milliseconds, as the status shows times."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + f'{moment.microsecond // 1000:03d}Z'


def call_view(record: CallRecord) -> dict[str, Any]:
    """The status of a call as GET answers it (and its webhook receives it)."""
    stored = record.request
    view: dict[str, Any] = {
        'id': record.id,
        'status': record.status,
        'endpoint': f'{stored.get("method", "")} {stored.get("path", "")}',
        'created_at': timestamp(record.created),
        'started_at': timestamp(record.started),
        'finished_at': timestamp(record.finished),
    }
    if record.progress is not None:
        view['progress'] = record.progress
    if record.cancel_requested and not record.is_final:
        view['cancel_requested'] = True
    if record.outcome is not None:
        view.update(record.outcome)
    if record.callback is not None:
        view['callback'] = record.callback
    return view


class AsyncCalls:
    """The async calls of one job: accepting them (`defer`), the status routes, the runner threads.

    Thread-safe. The store is opened on first need (an async POST, or at `start()` when it
    already holds calls), so a job that never gets an async call writes nothing.
    """

    def __init__(self, settings: JobSettings, metrics: JobMetrics, cwd: Path, public_calls: bool = False):
        self.settings = settings.calls
        self._cwd = cwd
        self._namespace = f'{settings.name}:{settings.version}'
        self._metrics = metrics
        self._runners = settings.max_concurrency or DEFAULT_RUNNERS
        self._grace = settings.limits.grace_period
        self._access = AccessPolicy.from_settings(settings)
        # The app lets anyone reach the calls path when a job endpoint is public; each call is
        # then judged by the endpoint it was made to.
        self._check_endpoint = public_calls and self._access.enabled
        self._owner = f'{socket.gethostname()}/{os.getpid()}/{_PROCESS_NONCE}'
        self._router: Router | None = None
        self._store: CallStore | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()  # no new claims
        self._closed = False
        self._shut = threading.Event()  # set by close(): the housekeeping ends
        self._slots = threading.BoundedSemaphore(self._runners)
        self._running: dict[str, _Run] = {}
        self._threads: list[threading.Thread] = []
        self.collector = AsyncCallCollector(self)

    def attach(self, router: Router) -> None:
        """The router whose handlers run the calls (the app's own)."""
        self._router = router

    def routes(self) -> list[Route]:
        """`GET` and `DELETE /api/v1/calls/{call_id}`."""
        return [Route(CALLS_PATH + '/{call_id}', {'GET': self.status, 'DELETE': self.cancel}, 'the built-in calls')]

    # Accepting

    def defer(self, request: Request) -> Response | None:
        """Store a validated job call that asks `Prefer: respond-async`, and answer 202; None to run it now."""
        prefer = request.headers.get(PREFER_HEADER)
        if prefer is None or not wants_async(prefer):
            return None
        callback_url = request.headers.get(CALLBACK_URL_HEADER)
        if callback_url is not None:
            callback_url = check_callback_url(callback_url.strip(), self.settings.callback_hosts)
        else:
            callback_url = self.settings.callback_url
        key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
        if key is not None:
            key = key.strip()
            if not key or len(key) > _MAX_KEY_LENGTH:
                raise HTTPError(
                    400,
                    f'{IDEMPOTENCY_KEY_HEADER} must hold 1 to {_MAX_KEY_LENGTH} characters, got {len(key)}',
                    error_type='InvalidHeader',
                )
        endpoint = f'{request.method} {request.path}'
        fingerprint = hashlib.sha256(b'\0'.join((endpoint.encode(), request.query.encode(), request.body))).hexdigest()
        record = CallRecord(
            id=secrets.token_hex(16),
            status=QUEUED,
            created=time.time(),
            request=_stored_request(request),
            idempotency_key=None if key is None else f'{endpoint} {key}',
            fingerprint=fingerprint,
            callback=None if callback_url is None else {'url': callback_url, 'attempts': 0, 'delivered': False},
        )
        store = self._open()
        try:
            stored, created = store.add(record, self.settings.max_calls)
        except StoreFull:
            raise HTTPError(
                503,
                f'the job holds {self.settings.max_calls} unfinished async calls (jobtype_extra.calls_max);'
                ' try again later',
                headers={'Retry-After': '5'},
                error_type='TooManyCalls',
                rejected='calls_full',
            ) from None
        if not created and stored.fingerprint != fingerprint:
            raise HTTPError(
                422,
                f'{IDEMPOTENCY_KEY_HEADER} {key!r} was used for another request to {request.path};'
                ' a repeated key must come with the same body and query',
                error_type='IdempotencyKeyReused',
            )
        if created:
            logger.info('async call %s queued for %s', stored.id, endpoint)
            self._wake.set()
        location = f'{request.base_path}{CALLS_PATH}/{stored.id}'
        headers = {'Location': location, 'Preference-Applied': 'respond-async'}
        return json_response({'id': stored.id, 'status': stored.status}, 202, headers)

    def _open(self) -> CallStore:
        """The store, opened (and the runner started) on first use; HTTPError(503) when it cannot be."""
        with self._lock:
            if self._store is None:
                if self._closed:
                    raise HTTPError(503, 'the server is shutting down', error_type='ServiceUnavailable')
                try:
                    self._store = open_store(self.settings, self._cwd, self._namespace)
                except Exception as e:  # no directory, a locked file, Redis down or missing
                    logger.error('the async call store (%s) cannot be opened: %s', self.settings.store, e)
                    raise HTTPError(
                        503,
                        f'the async call store cannot be opened: {type(e).__name__}: {e}',
                        headers={'Retry-After': '5'},
                        error_type='ServiceUnavailable',
                    ) from e
                self._start_threads()
            return self._store

    def _existing_store(self) -> CallStore | None:
        """The store if it is open or has calls to look at; None when no call was ever stored here."""
        if self._store is not None:
            return self._store
        path = sqlite_path(self.settings, self._cwd)
        if path is not None and not path.exists():
            return None
        return self._open()

    # Status and cancel

    def status(self, request: Request) -> Response:
        """`GET /api/v1/calls/{call_id}`: the call's status, and its result or error once final."""
        record = self._find(request)
        return json_response(call_view(record))

    def cancel(self, request: Request) -> Response:
        """`DELETE /api/v1/calls/{call_id}`: a queued call never runs, a running one is cancelled; 409 once final."""
        record = self._find(request)
        store = self._open()
        if record.is_final:
            raise _finished(record)
        changed = store.cancel(record.id, time.time(), _CANCELLED)
        if changed is None:
            raise _not_found(record.id)
        before, after = changed
        if before == QUEUED:
            logger.info('async call %s cancelled before it ran', record.id)
            return json_response(call_view(after))
        if before == RUNNING:
            logger.info('async call %s: cancel requested while it runs', record.id)
            return json_response(call_view(after), 202)
        raise _finished(after)

    def _find(self, request: Request) -> CallRecord:
        call_id = request.path_params['call_id']
        store = self._existing_store()
        record = store.get(call_id) if store is not None and _plausible_id(call_id) else None
        if record is None:
            raise _not_found(call_id)
        if self._check_endpoint:
            # Judged by the endpoint the call was made to: a call to a public endpoint is public.
            probe = Request(request.method, record.request.get('path', ''), headers=request.headers)
            self._access.check(probe)
        return record

    # Running

    def start(self) -> None:
        """Begin running calls when the job is ready: at once if the store already holds some (after a restart)."""
        with contextlib.suppress(HTTPError):  # logged; the next async call tries again
            self._existing_store()

    def _start_threads(self) -> None:
        for target, name in ((self._claim_loop, 'async-calls'), (self._keep_house, 'async-calls-housekeeping')):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _claim_loop(self) -> None:
        store = self._store
        assert store is not None
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=_CLAIM_POLL):
                continue
            try:
                now = time.time()
                record = None if self._stopping.is_set() else store.claim(self._owner, now + LEASE_SECONDS, now)
            except Exception:
                logger.exception('claiming an async call failed')
                record = None
            if record is None:
                self._slots.release()
                self._wake.wait(_CLAIM_POLL)
                self._wake.clear()
                continue
            run = _Run(self, store, record)
            with self._lock:
                self._running[record.id] = run
            threading.Thread(target=run.run, name=f'async call {record.id[:8]}', daemon=True).start()

    def _ended(self, run: _Run) -> None:
        with self._lock:
            self._running.pop(run.record.id, None)
        self._slots.release()
        self._wake.set()  # a place is free: look for more at once

    def _keep_house(self) -> None:
        store = self._store
        assert store is not None
        last_renew = last_sweep = 0.0
        last_prune = time.monotonic()
        while not self._shut.is_set():
            now = time.monotonic()
            try:
                with self._lock:
                    runs = list(self._running.values())
                for run in runs:
                    run.flush_progress()
                if now - last_renew >= _RENEW_EVERY and runs:
                    last_renew = now
                    store.renew(self._owner, [run.record.id for run in runs], time.time() + LEASE_SECONDS)
                if now - last_sweep >= _SWEEP_EVERY and not self._stopping.is_set():
                    last_sweep = now
                    self.sweep(store)
                if now - last_prune >= _PRUNE_EVERY:
                    last_prune = now
                    pruned = store.prune(time.time() - self.settings.retention)
                    if pruned:
                        logger.info('forgot %d async call(s) finished over %.0f s ago', pruned, self.settings.retention)
            except Exception:
                logger.exception('async call housekeeping failed; trying again')
            self._shut.wait(0.25)

    def sweep(self, store: CallStore) -> list[str]:
        """Fail (or queue again, for an idempotent job) the running calls whose server is gone."""
        swept = []
        for record in store.running():
            expired = record.lease_until is None or record.lease_until < time.time()
            if not (expired or self._owner_gone(record.owner)):
                continue
            requeue = self.settings.idempotent and record.runs < _MAX_RUNS
            if store.interrupt(record.id, record.owner, requeue, _INTERRUPTED, time.time()):
                swept.append(record.id)
                if requeue:
                    logger.warning('async call %s: its server stopped while it ran; queued to run again', record.id)
                    self._wake.set()
                else:
                    logger.warning('async call %s failed: its server stopped while it ran', record.id)
        return swept

    def _owner_gone(self, owner: str | None) -> bool:
        """Whether the process that claimed a call is known to be gone (same host, pid not running or reused)."""
        if owner is None:
            return True
        host, _, rest = owner.partition('/')
        pid_text, _, nonce = rest.partition('/')
        if host != socket.gethostname() or not pid_text.isdigit():
            return False  # another host: only its lease tells
        pid = int(pid_text)
        if pid == os.getpid():
            return nonce != _PROCESS_NONCE
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:  # exists, but not ours to signal
            return False
        return False

    def stop_claiming(self) -> None:
        """Take no more calls (a shutdown began); the running ones go on."""
        self._stopping.set()
        self._wake.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call runs here, at most `timeout` seconds; True when none does."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._running:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        """Stop: no more claims, running calls get the grace period, then those left are failed (or queued)."""
        self.stop_claiming()
        with self._lock:
            store = self._store
            self._closed = True
        if store is None:
            return
        if not self.wait_idle(self._grace):
            with self._lock:
                left = list(self._running.values())
            for run in left:
                requeue = self.settings.idempotent and run.record.runs < _MAX_RUNS
                try:
                    store.interrupt(run.record.id, self._owner, requeue, _INTERRUPTED, time.time())
                except Exception:
                    logger.exception('async call %s could not be marked interrupted', run.record.id)
                logger.warning('async call %s was still running at shutdown', run.record.id)
        self._shut.set()
        for thread in self._threads:
            thread.join(2.0)
        store.close()

    def counts(self) -> dict[str, int] | None:
        """Calls by status in the store (shared by every replica using it); None when no call was ever stored."""
        store = self._store
        if store is None:
            path = sqlite_path(self.settings, self._cwd)
            if path is not None and not path.exists():
                return None
            store = self._open()
        return store.counts()

    def dispatch(self, request: Request) -> Response:
        """Run a rebuilt request through the route a synchronous call takes."""
        if self._router is None:
            raise RuntimeError('AsyncCalls.attach() was not called')
        route, handler, request.path_params = self._router.match(request.method, request.path)
        request.route = route
        return handler(request)


class _Run:
    """One claimed call, run in a thread of its own: rebuilt, dispatched, recorded, its webhook sent."""

    def __init__(self, calls: AsyncCalls, store: CallStore, record: CallRecord):
        self.calls = calls
        self.store = store
        self.record = record
        self._cancelled = False
        self._cancel_checked = 0.0
        self._progress: dict[str, Any] | None = None
        self._progress_written = 0.0
        self._progress_lock = threading.Lock()

    def run(self) -> None:
        record, calls = self.record, self.calls
        stored = record.request
        trace = stored.get('trace') or {}
        CURRENT_TRACE.set(
            RequestTrace(
                trace.get('tracing_id') or record.id,
                trace.get('caller_name'),
                trace.get('traceparent'),
                trace.get('tracestate'),
                stored.get('method', ''),
                stored.get('raw_path', ''),
                time.monotonic(),
            )
        )
        try:
            if record.started is not None:
                calls._metrics.async_call_queue.observe(max(0.0, record.started - record.created))
            logger.info('async call %s started (%s %s)', record.id, stored.get('method'), stored.get('path'))
            outcome = self._outcome(self._rebuild())
            if outcome is None:
                return  # not admitted yet: queued again
            self.flush_progress()
            if outcome is _CANCELLED:
                status = CANCELLED
            else:
                status = SUCCEEDED if 200 <= outcome['status_code'] < 300 else FAILED
            finished = self.store.finish(record.id, calls._owner, status, outcome, time.time())
            if not finished:
                logger.warning(
                    'async call %s ended after it was taken from this server; its outcome is dropped', record.id
                )
                return
            logger.info('async call %s %s (status %s)', record.id, status, outcome.get('status_code', '-'))
            self._send_callback()
        except Exception:
            logger.exception('async call %s could not be recorded', record.id)
        finally:
            CURRENT_TRACE.set(None)
            calls._ended(self)

    def _rebuild(self) -> Request:
        stored = self.record.request
        request = Request(
            stored['method'],
            stored['path'],
            stored.get('query', ''),
            Headers([(name, value) for name, value in stored.get('headers', [])]),
            base64.b64decode(stored.get('body', '')),
            client=tuple(stored.get('client') or ('', 0)),
            raw_path=stored.get('raw_path'),
            base_path=stored.get('base_path', ''),
            http_version=stored.get('http_version', 'HTTP/1.1'),
            server=tuple(stored.get('server') or ('localhost', 80)),
            is_disconnected=self.cancel_requested,
        )
        request.on_progress = self.report_progress
        return request

    def _outcome(self, request: Request) -> dict[str, Any] | None:
        """`{"status_code", "result"}` or `{"status_code", "error"}`, `_CANCELLED`, or None when queued again."""
        try:
            response = self.calls.dispatch(request)
        except ClientDisconnected:
            return _CANCELLED  # what the cancel of a DELETE becomes
        except HTTPError as e:
            if e.status in (429, 503) and e.rejected in ('queue_full', 'deadline'):
                # Refused a place under the concurrency cap: wait a little, then back in the queue.
                self.calls._stopping.wait(min(1.0, float(e.headers.get('Retry-After', '1'))))
                if self.store.release(self.record.id, self.calls._owner):
                    return None
            response = http_error_response(e)
        except Exception as e:  # the error boundary's answer, as App.handle gives it
            logger.exception('async call %s failed', self.record.id)
            response = error_response(500, str(e), type(e).__name__)
        if request.cancel_reason == CLIENT_LEFT:  # a DELETE is seen as the client leaving
            return _CANCELLED
        body = b''.join(response.stream) if response.stream is not None else response.body
        try:
            value = decode_json(body) if body else None
        except HTTPError:
            value = body.decode(errors='replace')
        key = 'result' if 200 <= response.status < 300 else 'error'
        return {'status_code': response.status, key: value}

    def cancel_requested(self) -> bool:
        """The rebuilt request's `is_disconnected`: whether a DELETE asked the call to stop (looked up every 0.2 s)."""
        if not self._cancelled:
            now = time.monotonic()
            if now - self._cancel_checked >= _CANCEL_POLL:
                self._cancel_checked = now
                try:
                    self._cancelled = self.store.cancel_requested(self.record.id)
                except Exception:
                    logger.exception('async call %s: cannot look whether it was cancelled', self.record.id)
        return self._cancelled

    def report_progress(self, fraction: float, message: str) -> None:
        """Keep the latest progress; written at once unless the last write was under 0.2 s ago."""
        with self._progress_lock:
            self._progress = {'fraction': fraction, 'message': message}
            due = time.monotonic() - self._progress_written >= _PROGRESS_EVERY
        if due:
            self.flush_progress()

    def flush_progress(self) -> None:
        """Write the progress not yet written, if any."""
        with self._progress_lock:
            progress, self._progress = self._progress, None
            if progress is None:
                return
            self._progress_written = time.monotonic()
        self.store.set_progress(self.record.id, progress)

    def _send_callback(self) -> None:
        callback = self.record.callback
        if callback is None:
            return
        final = self.store.get(self.record.id)
        if final is None:
            return
        settings = self.calls.settings
        url = str(callback['url'])
        record_id = self.record.id

        def on_attempt(attempt: int, delivered: bool) -> None:
            self.store.set_callback(record_id, {'url': url, 'attempts': attempt, 'delivered': delivered})

        payload = call_view(final)
        payload.pop('callback', None)  # its own delivery is not yet known
        # Its own thread: the runner's place is free for the next call while the webhook is retried.
        threading.Thread(
            target=deliver,
            args=(url, payload),
            kwargs={
                'attempts': settings.callback_attempts,
                'first_delay': settings.callback_retry_seconds,
                'on_attempt': on_attempt,
                'stopping': threading.Event(),
            },
            name=f'webhook {record_id[:8]}',
            daemon=True,
        ).start()


class AsyncCallCollector:
    """`async_calls{status}`: calls in the store by status, counted at scrape time (with Redis, every replica's)."""

    def __init__(self, calls: AsyncCalls):
        self._calls = calls

    def describe(self) -> list[Metric]:
        """Nothing: registering must not open the store."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One gauge per status; all 0 before any async call was stored."""
        family = GaugeMetricFamily('async_calls', 'Async calls in the store, by status', labels=['status'])
        try:
            counts = self._calls.counts() or {}
        except Exception as e:
            logger.error('async_calls is left out of this scrape: the store cannot be read: %s', e)
            return
        for status in STATUSES:
            family.add_metric([status], counts.get(status, 0))
        yield family


def _stored_request(request: Request) -> dict[str, Any]:
    """What a call is rebuilt from: the request without credentials and async headers, and its trace."""
    trace = current_trace()
    headers = [[name, value] for name, value in request.headers.items() if name.lower() not in _DROPPED_HEADERS]
    return {
        'method': request.method,
        'path': request.path,
        'raw_path': request.raw_path,
        'base_path': request.base_path,
        'query': request.query,
        'headers': headers,
        'body': base64.b64encode(request.body).decode('ascii'),
        'client': list(request.client),
        'server': list(request.server),
        'http_version': request.http_version,
        'trace': None
        if trace is None
        else {
            'tracing_id': trace.tracing_id,
            'caller_name': trace.caller_name,
            'traceparent': trace.traceparent,
            'tracestate': trace.tracestate,
        },
    }


def _plausible_id(call_id: str) -> bool:
    return 0 < len(call_id) <= 64 and call_id.isalnum()


def _not_found(call_id: str) -> HTTPError:
    return HTTPError(
        404, f'no async call {call_id!r} (unknown, or forgotten after its retention)', error_type='NotFound'
    )


def _finished(record: CallRecord) -> HTTPError:
    return HTTPError(
        409, f'async call {record.id} has already {record.status}; it cannot be cancelled', error_type='CallFinished'
    )
