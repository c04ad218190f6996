"""Finding and reading the job manifest, the settings it gives the server, and its runtime env."""
from __future__ import annotations

import datetime
import difflib
import logging
import math
import os
import re
import types
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from racetrack_job_wrapper.schema import ValidationMode


logger = logging.getLogger(__name__)

MANIFEST_FILENAME = 'job.yaml'
MANIFEST_ENV_VAR = 'JOB_MANIFEST_YAML'
AUTH_TOKENS_ENV_VAR = 'JOB_AUTH_TOKENS'
RESERVED_ENV_NAMES = frozenset({'PUB_URL', 'JOB_NAME'})
DEFAULT_HOME_PAGE = '/docs'

# jobtype_extra overrides of server limits: positive numbers of the given type.
LIMIT_FIELDS: Mapping[str, type] = types.MappingProxyType({
    'max_body_bytes': int,
    'max_request_line_bytes': int,
    'max_header_bytes': int,
    'max_header_fields': int,
    'head_timeout': float,
    'idle_timeout': float,
    'max_connections': int,
    'max_json_depth': int,
    'grace_period': float,
})
SETTING_FIELDS = frozenset({'home_page', 'max_concurrency', 'max_concurrency_queue',
                            'validate_input', 'cors_allow_origins'})
# Read by the image build of the Python job type, not by the server; known, so not warned about.
BUILD_FIELDS = frozenset({'requirements_path', 'entrypoint_path', 'entrypoint_class'})
JOBTYPE_EXTRA_FIELDS = frozenset(SETTING_FIELDS | LIMIT_FIELDS.keys() | BUILD_FIELDS)
# Top-level fields of Racetrack's manifest schema: the server reads some, Racetrack and image builds the rest.
MANIFEST_FIELDS = frozenset({
    'name', 'owner_email', 'git', 'version', 'jobtype', 'lang', 'extends', 'image_type', 'system_dependencies',
    'build_env', 'runtime_env', 'secret_build_env_file', 'secret_runtime_env_file', 'labels', 'public_endpoints',
    'replicas', 'resources', 'jobtype_extra', 'golang', 'python', 'docker', 'wrapper_properties',
    'infrastructure_target'})
PUBLIC_PREFIXES = ('/pub/job/', '/pub/fatman/')

_ENV_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]*')


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the field and the value."""


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML with PyYAML's safe_load when it is installed, else with the built-in subset reader.

    Raises ManifestError naming `source` and, when known, the line and column.
    """
    try:
        import yaml  # optional; the subset reader covers manifests without it
    except ImportError:
        yaml = None
    if yaml is None:
        from racetrack_job_wrapper import yamlsub  # only read when a manifest exists and PyYAML does not
        try:
            return yamlsub.load(text)
        except yamlsub.YamlSubsetError as exc:
            raise ManifestError(f'cannot read {source}: {exc}') from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f' (line {mark.line + 1}, column {mark.column + 1})' if mark else ''
        raise ManifestError(f'cannot read {source}: {exc.problem or exc.context}{where}') from None
    except (yaml.YAMLError, ValueError) as exc:
        raise ManifestError(f'cannot read {source}: {exc}') from None


def read_manifest(manifest_path: str | None = None, environ: Mapping[str, str] = os.environ,
                  cwd: Path | None = None) -> dict:
    """Read the manifest: an explicit path, else $JOB_MANIFEST_YAML, else ./job.yaml, else {}."""
    base = Path.cwd() if cwd is None else Path(cwd)
    if manifest_path:
        path = base / manifest_path
        if not path.is_file():
            raise ManifestError(f"manifest file '{manifest_path}' does not exist (looked at {path})")
        return _read_manifest_file(path, manifest_path)
    inline = environ.get(MANIFEST_ENV_VAR, '')
    if inline:
        # Infrastructure passes the manifest as one line, with line breaks as a literal backslash-n.
        return _top_level(load_yaml(inline.replace('\\n', '\n'), MANIFEST_ENV_VAR), MANIFEST_ENV_VAR)
    path = base / MANIFEST_FILENAME
    if path.is_file():
        return _read_manifest_file(path, str(path))
    logger.debug('no manifest: no manifest path given, %s is not set and %s does not exist',
                 MANIFEST_ENV_VAR, path)
    return {}


def _read_manifest_file(path: Path, source: str) -> dict:
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest file '{source}': {exc}") from None
    return _top_level(load_yaml(text, f"manifest file '{source}'"), source)


def _top_level(document: Any, source: str) -> dict:
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ManifestError(f'the manifest {source} must be a mapping of fields at the top level,'
                            f' got {type(document).__name__}: {document!r}')
    return document


@dataclass(frozen=True)
class JobSettings:
    """What the server takes from the manifest and the environment, validated once at start-up."""

    name: str = 'job'
    version: str = 'latest'
    # False when neither JOB_VERSION nor the manifest names a version: /health then shows null for it.
    version_given: bool = False
    home_page: str = DEFAULT_HOME_PAGE
    max_concurrency: int | None = None
    max_concurrency_queue: int | None = None
    validate_input: ValidationMode = ValidationMode.LAX
    public_endpoints: tuple[str, ...] = ()
    limits: Mapping[str, float | int] = field(default_factory=lambda: types.MappingProxyType({}))
    cors_allow_origins: tuple[str, ...] = ('*',)
    jobtype_extra: Mapping[str, Any] = field(default_factory=lambda: types.MappingProxyType({}))
    # Secrets: kept out of repr, so settings can be logged.
    auth_tokens: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any],
                      environ: Mapping[str, str] = os.environ) -> 'JobSettings':
        """Validate a manifest (and JOB_NAME / JOB_VERSION) into settings; raises ManifestError."""
        _warn_unknown(manifest, MANIFEST_FIELDS, 'manifest')
        extra = manifest.get('jobtype_extra')
        if extra is None:
            extra = {}
        if not isinstance(extra, Mapping):
            raise ManifestError(f'jobtype_extra must be a mapping, got {_describe(extra)}')
        _warn_unknown(extra, JOBTYPE_EXTRA_FIELDS, 'jobtype_extra')
        max_concurrency = _count(extra, 'max_concurrency', minimum=1)
        max_concurrency_queue = _count(extra, 'max_concurrency_queue', minimum=0)
        if max_concurrency_queue is not None and max_concurrency is None:
            logger.warning('jobtype_extra.max_concurrency_queue (%s) has no effect without'
                           ' jobtype_extra.max_concurrency', max_concurrency_queue)
        return cls(
            name=_identity(manifest, environ, 'name', 'JOB_NAME', 'job'),
            version=_identity(manifest, environ, 'version', 'JOB_VERSION', 'latest'),
            version_given=bool(environ.get('JOB_VERSION') or manifest.get('version') not in (None, '')),
            home_page=_home_page(extra.get('home_page')),
            max_concurrency=max_concurrency,
            max_concurrency_queue=max_concurrency_queue,
            validate_input=_validation_mode(extra.get('validate_input')),
            public_endpoints=_public_endpoints(manifest.get('public_endpoints')),
            limits=types.MappingProxyType(_limits(extra)),
            cors_allow_origins=_cors_origins(extra.get('cors_allow_origins')),
            jobtype_extra=types.MappingProxyType(dict(extra)),
            auth_tokens=_auth_tokens(environ.get(AUTH_TOKENS_ENV_VAR, '')),
        )


def _describe(value: Any) -> str:
    return f'{type(value).__name__} {value!r}'


def _warn_unknown(fields: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """Warn about fields nothing reads, with the nearest known name: a typo is the usual cause."""
    unknown = sorted(str(key) for key in fields if key not in known)
    if not unknown:
        return
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


def _identity(manifest: Mapping[str, Any], environ: Mapping[str, str], key: str, env_var: str,
              default: str) -> str:
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
            raise ManifestError(f'{origin} must be a string, got {_describe(value)}')
    text = str(value)
    # Both become path segments of the public prefix and part of the Location header.
    if _has_unsafe_characters(text) or any(ch in text for ch in '/?#'):
        raise ManifestError(f"{origin} must not contain whitespace, control characters or any of"
                            f" '/?#', got {text!r}")
    return text


def _auth_tokens(value: str) -> tuple[str, ...]:
    """Split JOB_AUTH_TOKENS; the messages never echo a token, only its position."""
    if not value.strip():
        return ()
    tokens: list[str] = []
    for position, token in enumerate(value.split(','), start=1):
        token = token.strip()
        if not token:
            continue
        # Tokens travel in a header: printable ASCII without spaces is what every client can send.
        if not all(0x21 <= ord(ch) <= 0x7E for ch in token):
            raise ManifestError(f'{AUTH_TOKENS_ENV_VAR}: token {position} must be printable ASCII without'
                                f' spaces or control characters')
        if token not in tokens:
            tokens.append(token)
    if not tokens:
        raise ManifestError(f'{AUTH_TOKENS_ENV_VAR} is set but holds no token; unset it to serve'
                            f' without authentication')
    return tuple(tokens)


def _home_page(value: Any) -> str:
    if value is None or value == '':
        return DEFAULT_HOME_PAGE
    if not isinstance(value, str):
        raise ManifestError(f'jobtype_extra.home_page must be a string path, got {_describe(value)}')
    # '//host' and '/\host' are taken by browsers as another host: an open redirect.
    if not value.startswith('/') or value.startswith(('//', '/\\')):
        raise ManifestError(f"jobtype_extra.home_page must be a path on this job starting with a"
                            f" single '/' (no scheme or host), got {value!r}")
    if _has_unsafe_characters(value) or '\\' in value:
        raise ManifestError(f'jobtype_extra.home_page must not contain whitespace, control'
                            f' characters or backslashes, got {value!r}')
    return value


def _count(extra: Mapping[str, Any], key: str, minimum: int) -> int | None:
    """Read an integer field given as an int or a string of digits (as the existing runner does)."""
    value = extra.get(key)
    if value is None:
        return None
    number = _as_int(value)
    if number is None or number < minimum:
        raise ManifestError(f'jobtype_extra.{key} must be an integer >= {minimum},'
                            f' got {_describe(value)}')
    return number


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
_VALIDATION_MODES: Mapping[str, ValidationMode] = types.MappingProxyType({
    'true': ValidationMode.LAX, 'false': ValidationMode.OFF, 'strict': ValidationMode.STRICT})


def _validation_mode(value: Any) -> ValidationMode:
    if value is None:
        return ValidationMode.LAX
    spelling = ('true' if value else 'false') if isinstance(value, bool) else value
    mode = _VALIDATION_MODES.get(spelling.strip().lower()) if isinstance(spelling, str) else None
    if mode is None:
        raise ManifestError(f'jobtype_extra.validate_input must be one of {", ".join(_VALIDATION_MODES)},'
                            f' got {_describe(value)}')
    return mode


def _limits(extra: Mapping[str, Any]) -> dict[str, float | int]:
    limits: dict[str, float | int] = {}
    for key, kind in LIMIT_FIELDS.items():
        value = extra.get(key)
        if value is None:
            continue
        number: float | int | None = _as_int(value) if kind is int else _as_float(value)
        if number is None or number <= 0:
            noun = 'integer' if kind is int else 'number (seconds)'
            raise ManifestError(f'jobtype_extra.{key} must be a positive {noun},'
                                f' got {_describe(value)}')
        limits[key] = number
    return limits


def _public_endpoints(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ManifestError(f'public_endpoints must be a list of paths, got {_describe(value)}')
    paths: list[str] = []
    for item in value:
        path = _public_endpoint(item)
        if path not in paths:
            paths.append(path)
    return tuple(paths)


def _public_endpoint(item: Any) -> str:
    if not isinstance(item, str) or not item.startswith('/'):
        raise ManifestError(f"public_endpoints entries must be paths starting with '/',"
                            f" got {_describe(item)}")
    if _has_unsafe_characters(item) or any(ch in item for ch in '?#\\'):
        raise ManifestError(f"public_endpoints entry {item!r} must be a plain path without"
                            f" whitespace, control characters, '?', '#' or '\\'")
    segments = [segment for segment in item.split('/') if segment]
    if any(segment in ('.', '..') for segment in segments):
        raise ManifestError(f"public_endpoints entry {item!r} must not contain '.' or '..' segments")
    path = '/' + '/'.join(segments)
    if (path + '/').startswith(PUBLIC_PREFIXES) or path in ('/pub/job', '/pub/fatman'):
        short = '/' + '/'.join(segments[4:])
        raise ManifestError(f"public_endpoints entry {item!r} includes the /pub/job/NAME/VERSION"
                            f" prefix; use the short form, e.g. {short!r}")
    return path


def _cors_origins(value: Any) -> tuple[str, ...]:
    if value is None:
        return ('*',)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ManifestError(f"jobtype_extra.cors_allow_origins must be '*' or a list of origins,"
                            f" got {_describe(value)}")
    origins: list[str] = []
    for origin in items:
        if not isinstance(origin, str) or not _is_origin(origin):
            raise ManifestError(f"jobtype_extra.cors_allow_origins entries must be '*' or an origin"
                                f" like 'https://example.com:8443', got {_describe(origin)}")
        origins.append(origin.rstrip('/') if origin != '*' else origin)
    return tuple(origins)


def _is_origin(origin: str) -> bool:
    if origin == '*':
        return True
    scheme, separator, host = origin.partition('://')
    host = host.rstrip('/')
    return (separator == '://' and scheme in ('http', 'https') and bool(host)
            and not _has_unsafe_characters(host) and not any(ch in host for ch in '/?#@\\*'))


def apply_runtime_env(manifest: Mapping[str, Any], environ: MutableMapping[str, str] = os.environ,
                      cwd: Path | None = None) -> dict[str, str]:
    """Set the manifest's runtime_env where not set already, then its secret_runtime_env_file; return what was set.

    Variables already in the environment win over runtime_env: in a cluster the
    infrastructure has set runtime_env and the secrets there, and a secret must not be
    replaced by the placeholder runtime_env may hold. The secret file, where present,
    wins over both.
    """
    runtime = _env_mapping(manifest.get('runtime_env'), 'runtime_env')
    secrets: dict[str, str] = {}
    secret_file = manifest.get('secret_runtime_env_file')
    if secret_file is not None:
        if not isinstance(secret_file, str) or not secret_file:
            raise ManifestError(f'secret_runtime_env_file must be a file path, got'
                                f' {_describe(secret_file)}')
        secrets = _read_secret_file(secret_file, 'secret_runtime_env_file', cwd)
    for name, value in {**runtime, **secrets}.items():
        if name in RESERVED_ENV_NAMES:
            raise ManifestError(f'runtime env var {name} is reserved (reserved names:'
                                f' {", ".join(sorted(RESERVED_ENV_NAMES))}); rename it')
        if '\0' in value:
            raise ManifestError(f'runtime env var {name} must not contain a NUL character')
    values = {name: value for name, value in runtime.items() if name not in environ}
    values.update(secrets)
    environ.update(values)
    return values


def validate_build_settings(manifest: Mapping[str, Any], cwd: Path | None = None) -> None:
    """Check the types of build_env and secret_build_env_file; they are used at build time only."""
    _env_mapping(manifest.get('build_env'), 'build_env')
    secret_file = manifest.get('secret_build_env_file')
    if secret_file is not None and (not isinstance(secret_file, str) or not secret_file):
        raise ManifestError(f'secret_build_env_file must be a file path, got {_describe(secret_file)}')


def read_build_env(manifest: Mapping[str, Any], cwd: Path | None = None) -> dict[str, str]:
    """The manifest's build_env, with its secret_build_env_file over it, as an image build sees them."""
    validate_build_settings(manifest)
    values = _env_mapping(manifest.get('build_env'), 'build_env')
    secret_file = manifest.get('secret_build_env_file')
    if secret_file is not None:
        values.update(_read_secret_file(secret_file, 'secret_build_env_file', cwd))
    return values


def _env_mapping(value: Any, field_name: str) -> dict[str, str]:
    """Convert a manifest env mapping to strings, booleans as 'true'/'false'."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ManifestError(f'{field_name} must be a mapping of NAME: value, got {_describe(value)}')
    result: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ManifestError(f'{field_name} has an invalid variable name {name!r}')
        if isinstance(item, bool):
            result[name] = 'true' if item else 'false'
        elif isinstance(item, (str, int, float, datetime.date)):
            result[name] = str(item)
        else:
            hint = "; write '' for an empty string" if item is None else ''
            raise ManifestError(f'{field_name}.{name} must be a string, number or boolean,'
                                f' got {_describe(item)}{hint}')
    return result


def _read_secret_file(relative: str, field_name: str, cwd: Path | None) -> dict[str, str]:
    """The variables of a secret env file; none, with a warning, when the file is absent.

    In a cluster the file stays on the developer's machine and its values arrive as
    environment variables, so an absent file is expected there, not an error.
    """
    path = (Path.cwd() if cwd is None else Path(cwd)) / relative
    if not path.is_file():
        message = (f"{field_name} '{relative}' does not exist (looked at {path});"
                   ' using the variables already in the environment')
        template = path.with_name(path.name + '.dist')
        if template.is_file():
            message += (f". To run with secrets from the file, copy the template '{relative}.dist'"
                        f" to '{relative}' and fill in the secret values")
        logger.warning(message)
        return {}
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {field_name} '{relative}': {exc}") from None
    return parse_env_file(text, relative)


def parse_env_file(text: str, source: str) -> dict[str, str]:
    """Parse a Docker-style .env file (KEY=VALUE lines); ManifestError names the file and line."""
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('export ') or line.startswith('export\t'):
            line = line[len('export'):].lstrip()
        name, equals, rest = line.partition('=')
        name = name.strip()
        if not equals or not _ENV_NAME.fullmatch(name):
            raise ManifestError(f'{source}, line {number}: expected KEY=VALUE, got {raw!r}')
        try:
            result[name] = _env_value(rest.strip())
        except ValueError as exc:
            raise ManifestError(f'{source}, line {number}: {exc} in {raw!r}') from None
    return result


def _env_value(text: str) -> str:
    """Unquote one .env value; an unquoted value ends at a ' #' comment."""
    if text[:1] in ('"', "'"):
        quote = text[0]
        chunks: list[str] = []
        index = 1
        while index < len(text) and text[index] != quote:
            ch = text[index]
            if quote == '"' and ch == '\\' and index + 1 < len(text):
                escaped = text[index + 1]
                chunks.append({'n': '\n', 'r': '\r', 't': '\t', '"': '"', '\\': '\\'}
                              .get(escaped, '\\' + escaped))
                index += 2
                continue
            chunks.append(ch)
            index += 1
        if index >= len(text):
            raise ValueError(f'unterminated {quote} quote')
        tail = text[index + 1:].strip()
        if tail and not tail.startswith('#'):
            raise ValueError(f'unexpected text after the closing {quote} quote')
        return ''.join(chunks)
    for index, ch in enumerate(text):
        if ch == '#' and index > 0 and text[index - 1] in ' \t':
            return text[:index].rstrip()
    return text


def parse_cors_origins(value: Any) -> tuple[str, ...]:
    """Validate `cors_allow_origins` given elsewhere than the manifest: '*' or a list of origins."""
    return _cors_origins(value)
