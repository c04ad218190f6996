"""Where async calls are kept: an embedded SQLite file by default, or a Redis server shared by replicas.

Both stores hold the same records and make the same transitions, each one atomic (a single
SQL statement or transaction; a Lua script in Redis), so that any number of threads, worker
processes and replicas can share one store:

    queued -> running -> succeeded | failed | cancelled
    queued -> cancelled                       (DELETE before it ran)
    running -> queued                         (not admitted yet, or its server died and the job is idempotent)

A running call holds a lease (`lease_until`), renewed by the process running it; a call whose
lease ran out, or whose process is known to be gone, is swept: failed as interrupted, or queued
again.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from racetrack_job_wrapper.records import Record
from racetrack_job_wrapper.settings import AsyncCallSettings

if TYPE_CHECKING:
    import sqlite3

logger = logging.getLogger(__name__)

QUEUED = 'queued'
RUNNING = 'running'
SUCCEEDED = 'succeeded'
FAILED = 'failed'
CANCELLED = 'cancelled'
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
SQLITE_FILE = 'calls.sqlite3'
REDIS_EXTRA = "pip install 'racetrack-job-wrapper[redis]'"


class StoreFull(Exception):
    """The store holds `calls_max` calls and none of them is finished: no room for another."""


class CallRecord(Record):
    """One async call: the request to run, where it is in its life, and how it ended.

    Times are Unix seconds. `request` is what the call is rebuilt from (JSON-serializable);
    `outcome` is `{"status_code", "result"}` or `{"status_code", "error"}` once it is final.
    """

    id: str
    status: str
    created: float
    request: dict[str, Any]
    idempotency_key: str | None = None  # scoped to the endpoint: 'POST /api/v1/perform <key>'
    fingerprint: str = ''  # of the endpoint, query and body: a reused key with another body is told apart
    started: float | None = None
    finished: float | None = None
    lease_until: float | None = None
    owner: str | None = None
    cancel_requested: bool = False
    outcome: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None
    callback: dict[str, Any] | None = None
    runs: int = 0

    @property
    def is_final(self) -> bool:
        """Whether the call has ended (succeeded, failed or cancelled)."""
        return self.status in FINAL


class CallStore(ABC):
    """The operations async calls need of a store; every one is safe from any thread or process."""

    @abstractmethod
    def add(self, record: CallRecord, max_calls: int) -> tuple[CallRecord, bool]:
        """Store a new queued call, or find the one stored under its idempotency key: (record, created).

        Finished calls are pruned, oldest first, to keep at most `max_calls`; StoreFull when the
        calls left are all unfinished.
        """

    @abstractmethod
    def get(self, call_id: str) -> CallRecord | None:
        """The call, or None when it is unknown (or pruned)."""

    @abstractmethod
    def claim(self, owner: str, lease_until: float, now: float) -> CallRecord | None:
        """Take the oldest queued call for `owner` (it becomes running), or None when none waits."""

    @abstractmethod
    def renew(self, owner: str, call_ids: list[str], lease_until: float) -> None:
        """Extend the leases of calls `owner` runs."""

    @abstractmethod
    def finish(self, call_id: str, owner: str, status: str, outcome: dict[str, Any], now: float) -> bool:
        """End a call `owner` runs; False when it is not (any more) running for `owner`."""

    @abstractmethod
    def release(self, call_id: str, owner: str) -> bool:
        """Put a call `owner` took back in the queue (it could not start yet)."""

    @abstractmethod
    def set_progress(self, call_id: str, progress: dict[str, Any]) -> None:
        """Record how far a running call has come."""

    @abstractmethod
    def cancel(self, call_id: str, now: float, outcome: dict[str, Any]) -> tuple[str, CallRecord] | None:
        """Cancel a call: a queued one ends now with `outcome`, a running one is asked to stop.

        Returns the status the call had, and the call as it is now; None for an unknown call.
        """

    @abstractmethod
    def cancel_requested(self, call_id: str) -> bool:
        """Whether a cancel was asked for the call."""

    @abstractmethod
    def set_callback(self, call_id: str, callback: dict[str, Any]) -> None:
        """Record the webhook's delivery: url, attempts, delivered."""

    @abstractmethod
    def running(self) -> list[CallRecord]:
        """Every running call (for the sweep)."""

    @abstractmethod
    def interrupt(self, call_id: str, owner: str | None, requeue: bool, outcome: dict[str, Any], now: float) -> bool:
        """End (or, with `requeue`, queue again) a call still running for `owner`, whose process is gone."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """How many calls are stored, by status."""

    @abstractmethod
    def prune(self, finished_before: float) -> int:
        """Forget the calls that finished before a time; returns how many."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def open_store(settings: AsyncCallSettings, cwd: Path, namespace: str) -> CallStore:
    """The store `settings.store` names: SQLite in `settings.dir` (made if missing) or Redis.

    `namespace` (the job's name and version) keeps the calls of jobs sharing one Redis apart.
    Raises OSError, sqlite3.Error or ConnectionError with the reason.
    """
    if settings.store == 'sqlite':
        directory = Path(settings.dir)
        if not directory.is_absolute():
            directory = cwd / directory
        return SQLiteCallStore(directory / SQLITE_FILE)
    return RedisCallStore(settings.store, namespace, settings.retention)


def sqlite_path(settings: AsyncCallSettings, cwd: Path) -> Path | None:
    """The SQLite file of `settings`, or None for another store."""
    if settings.store != 'sqlite':
        return None
    directory = Path(settings.dir)
    return (directory if directory.is_absolute() else cwd / directory) / SQLITE_FILE


_COLUMNS = (
    'id',
    'status',
    'created',
    'request',
    'idempotency_key',
    'fingerprint',
    'started',
    'finished',
    'lease_until',
    'owner',
    'cancel_requested',
    'outcome',
    'progress',
    'callback',
    'runs',
)
_JSON_COLUMNS = frozenset({'request', 'outcome', 'progress', 'callback'})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    request TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    fingerprint TEXT NOT NULL DEFAULT '',
    started REAL,
    finished REAL,
    lease_until REAL,
    owner TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    progress TEXT,
    callback TEXT,
    runs INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS calls_by_status ON calls (status, created);
CREATE INDEX IF NOT EXISTS calls_by_finish ON calls (finished) WHERE finished IS NOT NULL;
"""
_SELECT = f'SELECT {", ".join(_COLUMNS)} FROM calls'
_FINAL_SQL = ', '.join(f"'{status}'" for status in sorted(FINAL))


class SQLiteCallStore(CallStore):
    """Calls in one SQLite file (WAL mode), shared by the threads and processes of one host.

    One connection per store, used under a lock: the writes are small, and WAL lets other
    processes read while one writes. Every transition is one statement or one `BEGIN IMMEDIATE`
    transaction, so two processes never claim the same call.
    """

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        # Autocommit: every statement is its own transaction unless one is begun explicitly.
        import sqlite3  # a job that never gets an async call never loads it (1.4 MiB)

        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute('PRAGMA busy_timeout = 10000')
        self._db.execute('PRAGMA journal_mode = WAL')
        # In WAL mode NORMAL loses no committed transaction when the process is killed, only on power loss.
        self._db.execute('PRAGMA synchronous = NORMAL')
        with self._transaction() as db:
            # Not executescript(): it commits first, outside the transaction.
            for statement in _SCHEMA.split(';'):
                if statement.strip():
                    db.execute(statement)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute('BEGIN IMMEDIATE')
            try:
                yield self._db
            except BaseException:
                self._db.execute('ROLLBACK')
                raise
            self._db.execute('COMMIT')

    def _execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def add(self, record: CallRecord, max_calls: int) -> tuple[CallRecord, bool]:
        with self._transaction() as db:
            if record.idempotency_key is not None:
                row = db.execute(f'{_SELECT} WHERE idempotency_key = ?', (record.idempotency_key,)).fetchone()
                if row is not None:
                    return _record(row), False
            (total,) = db.execute('SELECT COUNT(*) FROM calls').fetchone()
            if total >= max_calls:
                db.execute(
                    f'DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE status IN ({_FINAL_SQL})'
                    ' ORDER BY finished LIMIT ?)',
                    (total - max_calls + 1,),
                )
                (total,) = db.execute('SELECT COUNT(*) FROM calls').fetchone()
                if total >= max_calls:
                    raise StoreFull()
            values = _row(record)
            db.execute(f'INSERT INTO calls ({", ".join(_COLUMNS)}) VALUES ({", ".join("?" * len(_COLUMNS))})', values)
        return record, True

    def get(self, call_id: str) -> CallRecord | None:
        rows = self._execute(f'{_SELECT} WHERE id = ?', (call_id,))
        return _record(rows[0]) if rows else None

    def claim(self, owner: str, lease_until: float, now: float) -> CallRecord | None:
        # One statement: the sub-select and the update are one write transaction, so no two
        # processes take the same row.
        rows = self._execute(
            f"UPDATE calls SET status = '{RUNNING}', started = ?, lease_until = ?, owner = ?, runs = runs + 1"
            f" WHERE id = (SELECT id FROM calls WHERE status = '{QUEUED}' ORDER BY created LIMIT 1)"
            f" AND status = '{QUEUED}' RETURNING {', '.join(_COLUMNS)}",
            (now, lease_until, owner),
        )
        return _record(rows[0]) if rows else None

    def renew(self, owner: str, call_ids: list[str], lease_until: float) -> None:
        if not call_ids:
            return
        marks = ', '.join('?' * len(call_ids))
        self._execute(
            f"UPDATE calls SET lease_until = ? WHERE status = '{RUNNING}' AND owner = ? AND id IN ({marks})",
            (lease_until, owner, *call_ids),
        )

    def finish(self, call_id: str, owner: str, status: str, outcome: dict[str, Any], now: float) -> bool:
        rows = self._execute(
            f'UPDATE calls SET status = ?, finished = ?, outcome = ?, lease_until = NULL WHERE id = ?'
            f" AND status = '{RUNNING}' AND owner = ? RETURNING id",
            (status, now, json.dumps(outcome), call_id, owner),
        )
        return bool(rows)

    def release(self, call_id: str, owner: str) -> bool:
        rows = self._execute(
            f"UPDATE calls SET status = '{QUEUED}', started = NULL, lease_until = NULL, owner = NULL"
            f" WHERE id = ? AND status = '{RUNNING}' AND owner = ? RETURNING id",
            (call_id, owner),
        )
        return bool(rows)

    def set_progress(self, call_id: str, progress: dict[str, Any]) -> None:
        self._execute(
            f"UPDATE calls SET progress = ? WHERE id = ? AND status = '{RUNNING}'", (json.dumps(progress), call_id)
        )

    def cancel(self, call_id: str, now: float, outcome: dict[str, Any]) -> tuple[str, CallRecord] | None:
        with self._transaction() as db:
            row = db.execute(f'{_SELECT} WHERE id = ?', (call_id,)).fetchone()
            if row is None:
                return None
            before = _record(row)
            if before.status == QUEUED:
                db.execute(
                    f"UPDATE calls SET status = '{CANCELLED}', finished = ?, outcome = ?, cancel_requested = 1"
                    ' WHERE id = ?',
                    (now, json.dumps(outcome), call_id),
                )
            elif before.status == RUNNING:
                db.execute('UPDATE calls SET cancel_requested = 1 WHERE id = ?', (call_id,))
            else:
                return before.status, before
            after = _record(db.execute(f'{_SELECT} WHERE id = ?', (call_id,)).fetchone())
        return before.status, after

    def cancel_requested(self, call_id: str) -> bool:
        rows = self._execute('SELECT cancel_requested FROM calls WHERE id = ?', (call_id,))
        return bool(rows and rows[0][0])

    def set_callback(self, call_id: str, callback: dict[str, Any]) -> None:
        self._execute('UPDATE calls SET callback = ? WHERE id = ?', (json.dumps(callback), call_id))

    def running(self) -> list[CallRecord]:
        return [_record(row) for row in self._execute(f"{_SELECT} WHERE status = '{RUNNING}'")]

    def interrupt(self, call_id: str, owner: str | None, requeue: bool, outcome: dict[str, Any], now: float) -> bool:
        if requeue:
            sql = (
                f"UPDATE calls SET status = '{QUEUED}', started = NULL, lease_until = NULL, owner = NULL"
                f" WHERE id = ? AND status = '{RUNNING}' AND owner IS ? RETURNING id"
            )
            parameters: tuple[Any, ...] = (call_id, owner)
        else:
            sql = (
                f"UPDATE calls SET status = '{FAILED}', finished = ?, outcome = ?, lease_until = NULL"
                f" WHERE id = ? AND status = '{RUNNING}' AND owner IS ? RETURNING id"
            )
            parameters = (now, json.dumps(outcome), call_id, owner)
        return bool(self._execute(sql, parameters))

    def counts(self) -> dict[str, int]:
        found = dict(self._execute('SELECT status, COUNT(*) FROM calls GROUP BY status'))
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def prune(self, finished_before: float) -> int:
        rows = self._execute(
            f'DELETE FROM calls WHERE status IN ({_FINAL_SQL}) AND finished < ? RETURNING id', (finished_before,)
        )
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(record: CallRecord) -> tuple[Any, ...]:
    values = []
    for column in _COLUMNS:
        value = getattr(record, column)
        if column in _JSON_COLUMNS and value is not None:
            value = json.dumps(value)
        elif column == 'cancel_requested':
            value = int(value)
        values.append(value)
    return tuple(values)


def _record(row: tuple[Any, ...]) -> CallRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    for column in _JSON_COLUMNS:
        if values[column] is not None:
            values[column] = json.loads(values[column])
    values['cancel_requested'] = bool(values['cancel_requested'])
    return CallRecord(**values)


# Redis: one hash per call (`{prefix}call:{id}`), a sorted set of ids per status (scored by
# creation for `queued`, by lease end for `running`, by end for the final ones) and a key per
# idempotency key. Every transition is a Lua script, so it is atomic across replicas. The
# scripts name keys under the prefix themselves: a single Redis server (or a primary with
# replicas), not Redis Cluster.
_REDIS_HELPERS = """
local p = ARGV[1]
local function forget(id)
  local key = p .. 'call:' .. id
  local status = redis.call('HGET', key, 'status')
  local idem = redis.call('HGET', key, 'idempotency_key')
  if idem then redis.call('DEL', p .. 'idem:' .. idem) end
  if status then redis.call('ZREM', p .. 'status:' .. status, id) end
  redis.call('DEL', key)
end
"""
_REDIS_ADD = (
    _REDIS_HELPERS
    + """
local id, created, max_calls, idem, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
if idem ~= '' then
  local existing = redis.call('GET', p .. 'idem:' .. idem)
  if existing and redis.call('EXISTS', p .. 'call:' .. existing) == 1 then return {'existing', existing} end
end
local total = 0
for _, status in ipairs({'queued', 'running', 'succeeded', 'failed', 'cancelled'}) do
  total = total + redis.call('ZCARD', p .. 'status:' .. status)
end
while total >= max_calls do
  local oldest, oldest_end = nil, nil
  for _, status in ipairs({'succeeded', 'failed', 'cancelled'}) do
    local head = redis.call('ZRANGE', p .. 'status:' .. status, 0, 0, 'WITHSCORES')
    if #head > 0 and (oldest_end == nil or tonumber(head[2]) < oldest_end) then
      oldest, oldest_end = head[1], tonumber(head[2])
    end
  end
  if oldest == nil then return {'full', ''} end
  forget(oldest)
  total = total - 1
end
redis.call('HSET', p .. 'call:' .. id, unpack(ARGV, 7))
redis.call('ZADD', p .. 'status:queued', created, id)
if idem ~= '' then redis.call('SET', p .. 'idem:' .. idem, id, 'EX', ttl) end
return {'created', id}
"""
)
_REDIS_CLAIM = """
local p, now, lease_until, owner = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ids = redis.call('ZRANGE', p .. 'status:queued', 0, 0)
if #ids == 0 then return false end
local id = ids[1]
redis.call('ZREM', p .. 'status:queued', id)
redis.call('ZADD', p .. 'status:running', lease_until, id)
local key = p .. 'call:' .. id
redis.call('HSET', key, 'status', 'running', 'started', now, 'lease_until', lease_until, 'owner', owner)
redis.call('HINCRBY', key, 'runs', 1)
return id
"""
# ARGV: prefix, id, from status, owner ('' for none, '*' for any), to status, score, count of
# field/value pairs to set, the pairs, then the fields to delete.
_REDIS_MOVE = """
local p, id, from, owner, to, score, pairs = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local key = p .. 'call:' .. id
if redis.call('HGET', key, 'status') ~= from then return 0 end
if owner ~= '*' and (redis.call('HGET', key, 'owner') or '') ~= owner then return 0 end
redis.call('ZREM', p .. 'status:' .. from, id)
redis.call('ZADD', p .. 'status:' .. to, score, id)
redis.call('HSET', key, 'status', to)
if pairs > 0 then redis.call('HSET', key, unpack(ARGV, 8, 7 + 2 * pairs)) end
for i = 8 + 2 * pairs, #ARGV do redis.call('HDEL', key, ARGV[i]) end
return 1
"""
_REDIS_SET_IF = """
local p, id, status = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'call:' .. id
if redis.call('HGET', key, 'status') ~= status then return 0 end
redis.call('HSET', key, unpack(ARGV, 4))
return 1
"""
_REDIS_RENEW = """
local p, owner, lease_until = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local key = p .. 'call:' .. ARGV[i]
  if redis.call('HGET', key, 'status') == 'running' and redis.call('HGET', key, 'owner') == owner then
    redis.call('HSET', key, 'lease_until', lease_until)
    redis.call('ZADD', p .. 'status:running', lease_until, ARGV[i])
  end
end
return 1
"""
_REDIS_PRUNE = (
    _REDIS_HELPERS
    + """
local count = 0
for _, status in ipairs({'succeeded', 'failed', 'cancelled'}) do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'status:' .. status, '-inf', '(' .. ARGV[2])) do
    forget(id)
    count = count + 1
  end
end
return count
"""
)


class RedisCallStore(CallStore):
    """Calls in a Redis server that every replica of the job shares, so any replica answers for any call."""

    def __init__(self, url: str, namespace: str, retention: float = AsyncCallSettings.retention):
        try:
            import redis
        except ImportError:
            raise ImportError(
                f'jobtype_extra.calls_store is a Redis URL, but the redis client is not installed: {REDIS_EXTRA}'
            ) from None
        self._client: Any = redis.Redis.from_url(url, socket_timeout=10.0, health_check_interval=30)
        self._client.ping()  # a wrong URL or a server down is a start-up error, not a first-call one
        self._prefix = f'racetrack-calls:{namespace}:'
        self._add = self._client.register_script(_REDIS_ADD)
        self._claim = self._client.register_script(_REDIS_CLAIM)
        self._move = self._client.register_script(_REDIS_MOVE)
        self._set_if = self._client.register_script(_REDIS_SET_IF)
        self._renew = self._client.register_script(_REDIS_RENEW)
        self._prune = self._client.register_script(_REDIS_PRUNE)
        self.retention = retention  # how long an idempotency key outlives its call's end

    def add(self, record: CallRecord, max_calls: int) -> tuple[CallRecord, bool]:
        fields = _redis_fields(record)
        ttl = max(1, math.ceil(self.retention))
        outcome, call_id = self._add(
            args=[
                self._prefix,
                record.id,
                record.created,
                max_calls,
                record.idempotency_key or '',
                ttl,
                *[item for pair in fields.items() for item in pair],
            ]
        )
        if outcome == b'full':
            raise StoreFull()
        if outcome == b'existing':
            existing = self.get(call_id.decode())
            if existing is not None:
                return existing, False
        return record, True

    def get(self, call_id: str) -> CallRecord | None:
        fields = self._client.hgetall(f'{self._prefix}call:{call_id}')
        return _redis_record(call_id, fields) if fields else None

    def claim(self, owner: str, lease_until: float, now: float) -> CallRecord | None:
        call_id = self._claim(args=[self._prefix, repr(now), repr(lease_until), owner])
        return None if call_id is None else self.get(call_id.decode())

    def renew(self, owner: str, call_ids: list[str], lease_until: float) -> None:
        if call_ids:
            self._renew(args=[self._prefix, owner, repr(lease_until), *call_ids])

    def _transition(
        self,
        call_id: str,
        source: str,
        owner: str,
        target: str,
        score: float,
        values: dict[str, Any],
        dropped: tuple[str, ...] = (),
    ) -> bool:
        pairs = [item for pair in values.items() for item in pair]
        moved = self._move(
            args=[self._prefix, call_id, source, owner, target, repr(score), len(values), *pairs, *dropped]
        )
        return bool(moved)

    def finish(self, call_id: str, owner: str, status: str, outcome: dict[str, Any], now: float) -> bool:
        finished = self._transition(
            call_id,
            RUNNING,
            owner,
            status,
            now,
            {'finished': repr(now), 'outcome': json.dumps(outcome)},
            ('lease_until',),
        )
        if finished:
            self._refresh_key(call_id)
        return finished

    def _refresh_key(self, call_id: str) -> None:
        """An idempotency key lasts as long as its call: the retention, from the call's end."""
        key = self._client.hget(f'{self._prefix}call:{call_id}', 'idempotency_key')
        if key is not None:
            self._client.expire(f'{self._prefix}idem:{key.decode()}', max(1, math.ceil(self.retention)))

    def release(self, call_id: str, owner: str) -> bool:
        created = self._client.hget(f'{self._prefix}call:{call_id}', 'created')
        score = float(created) if created is not None else time.time()
        return self._transition(call_id, RUNNING, owner, QUEUED, score, {}, ('started', 'lease_until', 'owner'))

    def set_progress(self, call_id: str, progress: dict[str, Any]) -> None:
        self._set_if(args=[self._prefix, call_id, RUNNING, 'progress', json.dumps(progress)])

    def cancel(self, call_id: str, now: float, outcome: dict[str, Any]) -> tuple[str, CallRecord] | None:
        values = {'finished': repr(now), 'outcome': json.dumps(outcome), 'cancel_requested': '1'}
        if self._transition(call_id, QUEUED, '*', CANCELLED, now, values):
            self._refresh_key(call_id)
            after = self.get(call_id)
            return (QUEUED, after) if after is not None else None
        if self._set_if(args=[self._prefix, call_id, RUNNING, 'cancel_requested', '1']):
            after = self.get(call_id)
            return (RUNNING, after) if after is not None else None
        record = self.get(call_id)
        return None if record is None else (record.status, record)

    def cancel_requested(self, call_id: str) -> bool:
        return bool(self._client.hget(f'{self._prefix}call:{call_id}', 'cancel_requested') == b'1')

    def set_callback(self, call_id: str, callback: dict[str, Any]) -> None:
        key = f'{self._prefix}call:{call_id}'
        if self._client.exists(key):
            self._client.hset(key, 'callback', json.dumps(callback))

    def running(self) -> list[CallRecord]:
        records = []
        for raw in self._client.zrange(f'{self._prefix}status:{RUNNING}', 0, -1):
            record = self.get(raw.decode())
            if record is not None and record.status == RUNNING:
                records.append(record)
        return records

    def interrupt(self, call_id: str, owner: str | None, requeue: bool, outcome: dict[str, Any], now: float) -> bool:
        if requeue:
            created = self._client.hget(f'{self._prefix}call:{call_id}', 'created')
            score = float(created) if created is not None else now
            return self._transition(
                call_id, RUNNING, owner or '', QUEUED, score, {}, ('started', 'lease_until', 'owner')
            )
        return self._transition(
            call_id,
            RUNNING,
            owner or '',
            FAILED,
            now,
            {'finished': repr(now), 'outcome': json.dumps(outcome)},
            ('lease_until',),
        )

    def counts(self) -> dict[str, int]:
        pipeline = self._client.pipeline(transaction=False)
        for status in STATUSES:
            pipeline.zcard(f'{self._prefix}status:{status}')
        return dict(zip(STATUSES, (int(count) for count in pipeline.execute()), strict=True))

    def prune(self, finished_before: float) -> int:
        return int(self._prune(args=[self._prefix, repr(finished_before)]))

    def close(self) -> None:
        self._client.close()


def _redis_fields(record: CallRecord) -> dict[str, str]:
    fields: dict[str, str] = {}
    for column in _COLUMNS[1:]:
        value = getattr(record, column)
        if value is None:
            continue
        if column in _JSON_COLUMNS:
            fields[column] = json.dumps(value)
        elif column == 'cancel_requested':
            fields[column] = '1' if value else '0'
        elif isinstance(value, float):
            fields[column] = repr(value)
        else:
            fields[column] = str(value)
    return fields


def _redis_record(call_id: str, raw: dict[bytes, bytes]) -> CallRecord:
    fields = {key.decode(): value.decode() for key, value in raw.items()}
    values: dict[str, Any] = {'id': call_id}
    for column in _COLUMNS[1:]:
        text = fields.get(column)
        if text is None:
            continue
        if column in _JSON_COLUMNS:
            values[column] = json.loads(text)
        elif column == 'cancel_requested':
            values[column] = text == '1'
        elif column in ('created', 'started', 'finished', 'lease_until'):
            values[column] = float(text)
        elif column == 'runs':
            values[column] = int(text)
        else:
            values[column] = text
    values.setdefault('request', {})
    values.setdefault('created', 0.0)
    values.setdefault('status', FAILED)
    return CallRecord(**values)
