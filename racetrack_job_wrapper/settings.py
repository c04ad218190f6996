"""Every setting of a server: its default, its check and its source, in one place.

A setting comes from, in order of precedence, a keyword argument of `serve_job_class`
(or a command-line flag), the manifest's `jobtype_extra`, the environment, or its default.
This module is the one reader of the environment's settings: `JobSettings.from_manifest`
and `ObservabilitySettings.from_environ`, once, at start-up.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import types
import typing
from collections.abc import Mapping
from typing import Any

from racetrack_job_wrapper.convert import ValidationMode
from racetrack_job_wrapper.manifest import ManifestError, describe_value
from racetrack_job_wrapper.records import Record, field, fields, replace

logger = logging.getLogger(__name__)


def _limit(default: int | float, help_text: str, zero_allowed: bool = False) -> Any:
    return field(default=default, metadata={'help': help_text, 'zero_allowed': zero_allowed})


class Limits(Record):
    """Bounds on what one client can make the server hold, and the timings of a shutdown.

    Every field is a positive number (`shutdown_delay` may be 0).

    Each is a keyword argument of `serve_job_class`, a command-line flag (`--max-body-bytes`)
    and a `jobtype_extra` field, with the help text below.
    """

    max_body_bytes: int = _limit(64 * 1024 * 1024, 'largest request body accepted; larger is 413')
    max_request_line_bytes: int = _limit(8 * 1024, 'longest request line; longer is 414')
    max_header_bytes: int = _limit(64 * 1024, 'request headers in all; more is 431')
    max_header_fields: int = _limit(100, 'request header fields; more is 431')
    # HAProxy's manual suggests 10 s for `timeout http-request`; a head takes one round trip.
    head_timeout: float = _limit(10.0, 'seconds to receive the request line and headers; then 408')
    idle_timeout: float = _limit(60.0, 'seconds an idle keep-alive connection is kept')
    max_connections: int = _limit(1000, 'connections open at once; more get 503')
    # Off by default: behind a proxy (Racetrack's Pub, an ingress) every client has its address.
    max_client_connections: int = _limit(
        0, 'connections open at once from one client address; more get 503 (0: no such cap)', zero_allowed=True
    )
    max_json_depth: int = _limit(100, 'nesting of a JSON request body; deeper is 400')
    # 0 is none: a call may run as long as it likes, as with racetrack-job-runner.
    request_timeout: float = _limit(
        0.0, 'seconds a job call may take; then 504 and the call is cancelled (0: no limit)', zero_allowed=True
    )
    grace_period: float = _limit(30.0, 'seconds requests in flight get on shutdown')
    # Load balancers and kube-proxy keep routing to a replica for a few seconds after it stops
    # being ready; accepting on for that long is what makes a rolling update lose nothing.
    shutdown_delay: float = _limit(
        0.0, 'seconds to keep accepting after SIGTERM, /ready already 500, before draining', zero_allowed=True
    )

    @classmethod
    def describe(cls) -> list[LimitField]:
        """Name, kind, default, help and whether 0 is allowed, of every limit, in declaration order."""
        # Every field is declared with _limit(), its default a number of the field's own kind: the
        # kind is read off the default, not by evaluating the annotations (13 compiles per call).
        return [
            LimitField(
                item.name,
                type(item.default),
                typing.cast(int | float, item.default),
                item.metadata['help'],
                item.metadata['zero_allowed'],
            )
            for item in fields(cls)
        ]

    def merged(self, values: Mapping[str, Any], label: str = '', text: bool = False) -> Limits:
        """These limits with the numbers in `values` over them; unknown keys are ignored.

        `label` prefixes a field's name in errors (`jobtype_extra.`); with `text`, numbers may
        be given as strings, as YAML and command lines give them. Raises ManifestError.
        """
        given: dict[str, Any] = {}  # each value of its own field's kind, int or float
        for limit in self.describe():
            value = values.get(limit.name)
            if value is not None:
                given[limit.name] = limit.parse(value, text, label)
        return replace(self, **given)


class LimitField(typing.NamedTuple):
    """One field of `Limits`, as flags, manifests and docs describe it."""

    name: str
    kind: type
    default: int | float
    help: str
    zero_allowed: bool

    def parse(self, value: Any, text: bool = False, label: str = '') -> int | float:
        """`value` checked for this field; ManifestError naming `label` + the field otherwise."""
        return positive_number(f'{label}{self.name}', self.kind, value, text, self.zero_allowed)


def positive_number(name: str, kind: type, value: Any, text: bool = False, zero_allowed: bool = False) -> int | float:
    """`value` as a positive (or, `zero_allowed`, zero), finite `kind`; ManifestError naming `name` otherwise."""
    number: int | float | None = None
    if isinstance(value, bool):
        number = None
    elif kind is int:
        number = _as_int(value) if text else (value if isinstance(value, int) else None)
    elif isinstance(value, (int, float)) or (text and isinstance(value, str)):
        number = _as_float(value)
    if number is None or not (number > 0 or (zero_allowed and number == 0)):
        noun = 'integer' if kind is int else 'number of seconds'
        sign = 'non-negative' if zero_allowed else 'positive'
        raise ManifestError(f'{name} must be a {sign} {noun}, got {describe_value(value)}')
    return number


class Deployment(Record):
    """What Racetrack says about the deployment, shown by `/live` and `/health`."""

    git_version: str | None = None
    deployed_by_racetrack_version: str | None = None
    deployment_timestamp: str | None = None
    job_type_version: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Deployment:
        """Read GIT_VERSION, DEPLOYED_BY_RACETRACK_VERSION, JOB_DEPLOYMENT_TIMESTAMP, JOB_TYPE_VERSION."""
        return cls(
            environ.get('GIT_VERSION'),
            environ.get('DEPLOYED_BY_RACETRACK_VERSION'),
            environ.get('JOB_DEPLOYMENT_TIMESTAMP'),
            environ.get('JOB_TYPE_VERSION'),
        )


AUTH_TOKENS_ENV_VAR = 'JOB_AUTH_TOKENS'
DEFAULT_HOME_PAGE = '/docs'

# jobtype_extra fields the server reads besides the limits.
SETTING_FIELDS = frozenset(
    {
        'home_page',
        'max_concurrency',
        'max_concurrency_queue',
        'validate_input',
        'cors_allow_origins',
        'cancel_on_disconnect',
        'batch_max_size',
        'batch_max_wait_ms',
        'calls_store',
        'calls_dir',
        'calls_retention',
        'calls_max',
        'calls_idempotent',
        'callback_url',
        'callback_hosts',
        'callback_retry_seconds',
        'callback_attempts',
    }
)
# Read by the image build of the Python job type, not by the server; known, so not warned about.
BUILD_FIELDS = frozenset({'requirements_path', 'entrypoint_path', 'entrypoint_class'})
JOBTYPE_EXTRA_FIELDS = frozenset(SETTING_FIELDS | {limit.name for limit in Limits.describe()} | BUILD_FIELDS)
# Top-level fields of Racetrack's manifest schema: the server reads some, Racetrack and image builds the rest.
MANIFEST_FIELDS = frozenset(
    {
        'name',
        'owner_email',
        'git',
        'version',
        'jobtype',
        'lang',
        'extends',
        'image_type',
        'system_dependencies',
        'build_env',
        'runtime_env',
        'secret_build_env_file',
        'secret_runtime_env_file',
        'labels',
        'public_endpoints',
        'replicas',
        'resources',
        'jobtype_extra',
        'golang',
        'python',
        'docker',
        'wrapper_properties',
        'infrastructure_target',
    }
)
PUBLIC_PREFIXES = ('/pub/job/', '/pub/fatman/')
DEFAULT_CALLS_DIR = '.racetrack-calls'


class AsyncCallSettings(Record):
    """Where async calls (`Prefer: respond-async`) are kept, for how long, and how their webhooks are sent."""

    # 'sqlite' (a file in `dir`) or a redis:// / rediss:// URL shared by every replica.
    store: str = 'sqlite'
    dir: str = DEFAULT_CALLS_DIR  # relative to the working directory unless absolute
    retention: float = 86400.0  # seconds a finished call is kept
    max_calls: int = 10000  # calls stored at most; oldest finished pruned first
    # Calls that were running when their server died run again instead of failing.
    idempotent: bool = False
    callback_url: str | None = None  # the operator's webhook, for every async call
    callback_hosts: tuple[str, ...] = ()  # hosts an X-Callback-Url header may name
    callback_retry_seconds: float = 1.0  # the first back-off; it doubles per attempt
    callback_attempts: int = 5

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> AsyncCallSettings:
        """The `calls_*` and `callback_*` fields of jobtype_extra; ManifestError naming a bad one."""
        return cls(
            store=_calls_store(extra.get('calls_store')),
            dir=_text(extra, 'calls_dir', DEFAULT_CALLS_DIR),
            retention=_seconds(extra, 'calls_retention', 86400.0),
            max_calls=_count(extra, 'calls_max', minimum=1) or 10000,
            idempotent=_boolean(extra, 'calls_idempotent', False),
            callback_url=_callback_url(extra.get('callback_url')),
            callback_hosts=_callback_hosts(extra.get('callback_hosts')),
            callback_retry_seconds=_seconds(extra, 'callback_retry_seconds', 1.0),
            callback_attempts=_count(extra, 'callback_attempts', minimum=1) or 5,
        )


class JobSettings(Record):
    """What the server takes from the manifest and the environment, validated once at start-up."""

    name: str = 'job'
    version: str = 'latest'
    # False when neither JOB_VERSION nor the manifest names a version: /health then shows null for it.
    version_given: bool = False
    home_page: str = DEFAULT_HOME_PAGE
    max_concurrency: int | None = None
    max_concurrency_queue: int | None = None
    validate_input: ValidationMode = ValidationMode.LAX
    # A call whose client has gone away is cancelled, as a call past its deadline is.
    cancel_on_disconnect: bool = True
    # perform_batch(): how many concurrent perform calls make one batch at most (1: no batching),
    # and how long the first call of a batch waits for company.
    batch_max_size: int = 32
    batch_max_wait_ms: float = 5.0
    public_endpoints: tuple[str, ...] = ()
    limits: Limits = field(default_factory=lambda: Limits())
    calls: AsyncCallSettings = field(default_factory=lambda: AsyncCallSettings())
    cors_allow_origins: tuple[str, ...] = ('*',)
    deployment: Deployment = field(default_factory=lambda: Deployment())
    # Secrets: kept out of repr, so settings can be logged.
    auth_tokens: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> JobSettings:
        """Validate a manifest (and JOB_NAME / JOB_VERSION) into settings; raises ManifestError."""
        _warn_unknown(manifest, MANIFEST_FIELDS, 'manifest')
        extra = manifest.get('jobtype_extra')
        if extra is None:
            extra = {}
        if not isinstance(extra, Mapping):
            raise ManifestError(f'jobtype_extra must be a mapping, got {describe_value(extra)}')
        _warn_unknown(extra, JOBTYPE_EXTRA_FIELDS, 'jobtype_extra')
        max_concurrency = _count(extra, 'max_concurrency', minimum=1)
        max_concurrency_queue = _count(extra, 'max_concurrency_queue', minimum=0)
        if max_concurrency_queue is not None and max_concurrency is None:
            logger.warning(
                'jobtype_extra.max_concurrency_queue (%s) has no effect without jobtype_extra.max_concurrency',
                max_concurrency_queue,
            )
        return cls(
            name=_identity(manifest, environ, 'name', 'JOB_NAME', 'job'),
            version=_identity(manifest, environ, 'version', 'JOB_VERSION', 'latest'),
            version_given=bool(environ.get('JOB_VERSION') or manifest.get('version') not in (None, '')),
            home_page=_home_page(extra.get('home_page')),
            max_concurrency=max_concurrency,
            max_concurrency_queue=max_concurrency_queue,
            validate_input=_validation_mode(extra.get('validate_input')),
            cancel_on_disconnect=_boolean(extra, 'cancel_on_disconnect', True),
            batch_max_size=_count(extra, 'batch_max_size', minimum=1) or 32,
            batch_max_wait_ms=_milliseconds(extra, 'batch_max_wait_ms', 5.0),
            public_endpoints=_public_endpoints(manifest.get('public_endpoints')),
            limits=Limits().merged(extra, 'jobtype_extra.', text=True),
            calls=AsyncCallSettings.from_extra(extra),
            cors_allow_origins=_cors_origins(extra.get('cors_allow_origins')),
            deployment=Deployment.from_environ(environ),
            auth_tokens=_auth_tokens(environ.get(AUTH_TOKENS_ENV_VAR)),
        )


def _warn_unknown(fields: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """Warn about fields nothing reads, with the nearest known name: a typo is the usual cause."""
    unknown = sorted(str(key) for key in fields if key not in known)
    if not unknown:
        return
    import difflib  # only a manifest with a typo pays for it

    names = []
    unguessed = False
    for key in unknown:
        nearest = difflib.get_close_matches(key, known, n=1)
        names.append(f"{key} (did you mean '{nearest[0]}'?)" if nearest else key)
        unguessed = unguessed or not nearest
    # Without a guess for some key, the known names are the help left to give.
    listing = f' (known: {", ".join(sorted(known))})' if unguessed else ''
    logger.warning('unknown %s fields are ignored: %s%s', where, ', '.join(names), listing)


def _has_unsafe_characters(text: str) -> bool:
    """Tell whether text holds whitespace or control characters (it goes into URLs and headers)."""
    return any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def _identity(manifest: Mapping[str, Any], environ: Mapping[str, str], key: str, env_var: str, default: str) -> str:
    """Resolve the job name or version: env var, then manifest field, then default."""
    if environ.get(env_var):
        value: Any = environ[env_var]
        origin = f'{env_var} environment variable'
    else:
        value = manifest.get(key)
        origin = f'manifest field {key}'
        if value is None or value == '':
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float, datetime.date)):
            raise ManifestError(f'{origin} must be a string, got {describe_value(value)}')
    text = str(value)
    # Both become path segments of the public prefix and part of the Location header.
    if _has_unsafe_characters(text) or any(ch in text for ch in '/?#'):
        raise ManifestError(f"{origin} must not contain whitespace, control characters or any of '/?#', got {text!r}")
    return text


def _auth_tokens(value: str | None) -> tuple[str, ...]:
    """Split JOB_AUTH_TOKENS (None when unset); the messages never echo a token, only its position.

    Set but empty is an error, not "no authentication": an empty value is more likely a
    secret that failed to arrive than a wish to serve unprotected.
    """
    if value is None:
        return ()
    tokens: list[str] = []
    for position, token in enumerate(value.split(','), start=1):
        token = token.strip()
        if not token:
            continue
        # Tokens travel in a header: printable ASCII without spaces is what every client can send.
        if not all(0x21 <= ord(ch) <= 0x7E for ch in token):
            raise ManifestError(
                f'{AUTH_TOKENS_ENV_VAR}: token {position} must be printable ASCII without spaces or control characters'
            )
        if token not in tokens:
            tokens.append(token)
    if not tokens:
        raise ManifestError(
            f'{AUTH_TOKENS_ENV_VAR} is set but holds no token; unset it to serve without authentication'
        )
    return tuple(tokens)


def _home_page(value: Any) -> str:
    if value is None or value == '':
        return DEFAULT_HOME_PAGE
    if not isinstance(value, str):
        raise ManifestError(f'jobtype_extra.home_page must be a string path, got {describe_value(value)}')
    # '//host' and '/\host' are taken by browsers as another host: an open redirect.
    if not value.startswith('/') or value.startswith(('//', '/\\')):
        raise ManifestError(
            f'jobtype_extra.home_page must be a path on this job starting with a'
            f" single '/' (no scheme or host), got {value!r}"
        )
    if _has_unsafe_characters(value) or '\\' in value:
        raise ManifestError(
            f'jobtype_extra.home_page must not contain whitespace, control characters or backslashes, got {value!r}'
        )
    return value


def _count(extra: Mapping[str, Any], key: str, minimum: int) -> int | None:
    """Read an integer field given as an int or a string of digits (as the existing runner does)."""
    value = extra.get(key)
    if value is None:
        return None
    number = _as_int(value)
    if number is None or number < minimum:
        raise ManifestError(f'jobtype_extra.{key} must be an integer >= {minimum}, got {describe_value(value)}')
    return number


def _milliseconds(extra: Mapping[str, Any], key: str, default: float) -> float:
    value = extra.get(key)
    if value is None:
        return default
    number = _as_float(value)
    if number is None or number < 0:
        raise ManifestError(f'jobtype_extra.{key} must be a number of milliseconds >= 0, got {describe_value(value)}')
    return number


def _seconds(extra: Mapping[str, Any], key: str, default: float) -> float:
    value = extra.get(key)
    if value is None:
        return default
    return float(positive_number(f'jobtype_extra.{key}', float, value, text=True))


def _text(extra: Mapping[str, Any], key: str, default: str) -> str:
    value = extra.get(key)
    if value is None or value == '':
        return default
    if not isinstance(value, str) or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ManifestError(
            f'jobtype_extra.{key} must be a path without control characters, got {describe_value(value)}'
        )
    return value


def _calls_store(value: Any) -> str:
    if value is None or value == '' or value == 'sqlite':
        return 'sqlite'
    redis_url = isinstance(value, str) and value.startswith(('redis://', 'rediss://', 'unix://'))
    if redis_url and not _has_unsafe_characters(value):
        return str(value)
    raise ManifestError(
        "jobtype_extra.calls_store must be 'sqlite' or a redis:// URL (redis://host:6379/0),"
        f' got {describe_value(value)}'
    )


def _callback_url(value: Any) -> str | None:
    if value is None or value == '':
        return None
    if isinstance(value, str) and not _has_unsafe_characters(value):
        scheme, separator, rest = value.partition('://')
        if separator and scheme.lower() in ('http', 'https') and rest.split('/', 1)[0]:
            return value
    raise ManifestError(f'jobtype_extra.callback_url must be an http:// or https:// URL, got {describe_value(value)}')


def _callback_hosts(value: Any) -> tuple[str, ...]:
    if value is None or value == '':
        return ()
    items = value.split(',') if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) and item.strip() for item in items):
        raise ManifestError(f'jobtype_extra.callback_hosts must be a list of host names, got {describe_value(value)}')
    hosts = tuple(item.strip().lower() for item in items)
    bad = [host for host in hosts if _has_unsafe_characters(host) or any(ch in host for ch in '/?#@\\')]
    if bad:
        raise ManifestError(f'jobtype_extra.callback_hosts entries must be bare host names, got {bad[0]!r}')
    return hosts


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


# The manifest's spellings of jobtype_extra.validate_input; YAML booleans arrive as bool or as text.
_VALIDATION_MODES: Mapping[str, ValidationMode] = types.MappingProxyType(
    {'true': ValidationMode.LAX, 'false': ValidationMode.OFF, 'strict': ValidationMode.STRICT}
)


def _validation_mode(value: Any) -> ValidationMode:
    if value is None:
        return ValidationMode.LAX
    spelling = ('true' if value else 'false') if isinstance(value, bool) else value
    mode = _VALIDATION_MODES.get(spelling.strip().lower()) if isinstance(spelling, str) else None
    if mode is None:
        raise ManifestError(
            f'jobtype_extra.validate_input must be one of {", ".join(_VALIDATION_MODES)}, got {describe_value(value)}'
        )
    return mode


def _boolean(extra: Mapping[str, Any], key: str, default: bool) -> bool:
    value = extra.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ('true', 'false'):
        return value.strip().lower() == 'true'
    raise ManifestError(f'jobtype_extra.{key} must be true or false, got {describe_value(value)}')


def _public_endpoints(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ManifestError(f'public_endpoints must be a list of paths, got {describe_value(value)}')
    paths: list[str] = []
    for item in value:
        path = _public_endpoint(item)
        if path not in paths:
            paths.append(path)
    return tuple(paths)


def _public_endpoint(item: Any) -> str:
    if not isinstance(item, str) or not item.startswith('/'):
        raise ManifestError(f"public_endpoints entries must be paths starting with '/', got {describe_value(item)}")
    if _has_unsafe_characters(item) or any(ch in item for ch in '?#\\'):
        raise ManifestError(
            f'public_endpoints entry {item!r} must be a plain path without'
            f" whitespace, control characters, '?', '#' or '\\'"
        )
    segments = [segment for segment in item.split('/') if segment]
    if any(segment in ('.', '..') for segment in segments):
        raise ManifestError(f"public_endpoints entry {item!r} must not contain '.' or '..' segments")
    path = '/' + '/'.join(segments)
    if (path + '/').startswith(PUBLIC_PREFIXES) or path in ('/pub/job', '/pub/fatman'):
        short = '/' + '/'.join(segments[4:])
        raise ManifestError(
            f'public_endpoints entry {item!r} includes the /pub/job/NAME/VERSION'
            f' prefix; use the short form, e.g. {short!r}'
        )
    return path


def _cors_origins(value: Any) -> tuple[str, ...]:
    if value is None:
        return ('*',)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ManifestError(
            f"jobtype_extra.cors_allow_origins must be '*' or a list of origins, got {describe_value(value)}"
        )
    origins: list[str] = []
    for origin in items:
        if not isinstance(origin, str) or not _is_origin(origin):
            raise ManifestError(
                f"jobtype_extra.cors_allow_origins entries must be '*' or an origin"
                f" like 'https://example.com:8443', got {describe_value(origin)}"
            )
        origins.append(origin.rstrip('/') if origin != '*' else origin)
    return tuple(origins)


def _is_origin(origin: str) -> bool:
    if origin == '*':
        return True
    scheme, separator, host = origin.partition('://')
    host = host.rstrip('/')
    return (
        separator == '://'
        and scheme in ('http', 'https')
        and bool(host)
        and not _has_unsafe_characters(host)
        and not any(ch in host for ch in '/?#@\\*')
    )


def parse_cors_origins(value: Any) -> tuple[str, ...]:
    """Validate `cors_allow_origins` given elsewhere than the manifest: '*' or a list of origins."""
    return _cors_origins(value)


class ServerOptions(typing.TypedDict, total=False):
    """The keyword options of `serve_job_class` / `serve_job_instance`: the limits, and the CORS origins."""

    max_body_bytes: int
    max_request_line_bytes: int
    max_header_bytes: int
    max_header_fields: int
    head_timeout: float
    idle_timeout: float
    max_connections: int
    max_client_connections: int
    max_json_depth: int
    request_timeout: float
    grace_period: float
    shutdown_delay: float
    cors_allow_origins: str | list[str] | None


# Options beyond the limits: the app reads them from the settings.
APP_OPTIONS = frozenset({'cors_allow_origins'})


def apply_options(settings: JobSettings, options: Mapping[str, Any]) -> JobSettings:
    """The settings with keyword options (or command-line flags) over the manifest's values.

    An option given as None is not given. Raises TypeError for an unknown option and
    ValueError naming the option for a bad value.
    """
    given = {key: value for key, value in options.items() if value is not None}
    known = {limit.name for limit in Limits.describe()} | APP_OPTIONS
    unknown = set(given) - known
    if unknown:
        raise TypeError(f'unknown server option(s): {", ".join(sorted(unknown))}; known: {", ".join(sorted(known))}')
    try:
        limits = settings.limits.merged(given)
        cors = settings.cors_allow_origins
        if 'cors_allow_origins' in given:
            cors = parse_cors_origins(given['cors_allow_origins'])
    except ManifestError as e:
        raise ValueError(str(e).replace('jobtype_extra.', '')) from None
    return replace(settings, limits=limits, cors_allow_origins=cors)


DEFAULT_TRACING_HEADER = 'X-Request-Tracing-Id'
DEFAULT_CALLER_HEADER = 'X-Caller-Name'
# The Racetrack token: checked by the gateway (or JOB_AUTH_TOKENS here), sent on chain calls.
AUTH_HEADER = 'X-Racetrack-Auth'
# A request's own deadline in seconds: it may lower the job's request_timeout, never raise it.
REQUEST_TIMEOUT_HEADER = 'X-Request-Timeout'
# RFC 7240: `Prefer: respond-async` makes a job call an async call (202, then GET its status).
PREFER_HEADER = 'Prefer'
IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key'
CALLBACK_URL_HEADER = 'X-Callback-Url'
_TRUE = frozenset({'true', 't', 'yes', 'y', '1'})


class ObservabilitySettings(Record):
    """What the environment says about logs, tracing, debug endpoints, the memory profiler and chain calls."""

    log_level: str = ''  # LOG_LEVEL as given ('' when unset); logs.configure_logs validates it
    structured_logs: bool = False  # LOG_STRUCTURED: one JSON object per line
    log_caller_name: bool = False  # LOG_CALLER_NAME: add caller_name to request records
    tracing_header: str = DEFAULT_TRACING_HEADER
    caller_header: str = DEFAULT_CALLER_HEADER
    debug_threads: bool = False  # DEBUG_THREADS: serve GET /debug/threads
    pub_url: str = ''  # PUB_URL: Racetrack's internal Pub, for chain calls
    auth_token: str = ''  # AUTH_TOKEN: sent as X-Racetrack-Auth on chain calls
    job_name: str = ''  # JOB_NAME: named in chain call errors
    memray_profiler: bool = False  # MEMRAY_PROFILER: track memory with memray, serve the profiler endpoints
    memray_leaks: bool = False  # MEMRAY_LEAKS: flame graphs show leaked memory, not peak usage

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> ObservabilitySettings:
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


# Every environment variable the server reads (the flags' own RJW_* variables aside), for
# `--help` and the README; tests/test_cli.py holds it to the names the package reads.
ENVIRONMENT_VARIABLES = {
    'JOB_MANIFEST_YAML': 'the manifest itself, as YAML text (instead of a job.yaml file)',
    'JOB_AUTH_TOKENS': 'token1,token2: every request but probes and public_endpoints needs one',
    'JOB_NAME': "the job name (over the manifest's name), shown by /health and in chain calls",
    'JOB_VERSION': "the job version (over the manifest's version)",
    'LOG_LEVEL': 'debug, info (default), warning or error; --log-level too',
    'LOG_STRUCTURED': 'true: one JSON object per log line',
    'LOG_CALLER_NAME': 'true: access lines name the caller (X-Caller-Name)',
    'REQUEST_TRACING_HEADER': 'the tracing id header (default X-Request-Tracing-Id)',
    'CALLER_NAME_HEADER': 'the caller name header (default X-Caller-Name)',
    'PUB_URL': "Racetrack's internal Pub URL, for chain calls",
    'AUTH_TOKEN': 'the token chain calls send in X-Racetrack-Auth',
    'DEBUG_THREADS': 'true: serve GET /debug/threads',
    'MEMRAY_PROFILER': 'true: track memory with memray and serve the profiler endpoints',
    'MEMRAY_LEAKS': 'true: the profiler shows leaked memory, not peak usage',
    'PROMETHEUS_MULTIPROC_DIR': "--workers' metric files (default: a directory made and removed)",
    'GIT_VERSION': 'shown by /health',
    'DEPLOYED_BY_RACETRACK_VERSION': 'shown by /health',
    'JOB_DEPLOYMENT_TIMESTAMP': 'shown by /live and /health',
    'JOB_TYPE_VERSION': 'shown by /health',
}


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return (environ.get(name) or '').strip().lower() in _TRUE
