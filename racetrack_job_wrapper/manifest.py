"""Finding and reading the job manifest, and applying its runtime env and env files."""

from __future__ import annotations

import datetime
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_FILENAME = 'job.yaml'
MANIFEST_ENV_VAR = 'JOB_MANIFEST_YAML'
RESERVED_ENV_NAMES = frozenset({'PUB_URL', 'JOB_NAME'})
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
        return _load_yaml_subset(text, source)
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f' (line {mark.line + 1}, column {mark.column + 1})' if mark else ''
        raise ManifestError(f'cannot read {source}: {exc.problem or exc.context}{where}') from None
    except (yaml.YAMLError, ValueError) as exc:
        raise ManifestError(f'cannot read {source}: {exc}') from None


def _load_yaml_subset(text: str, source: str) -> Any:
    from racetrack_job_wrapper import yamlsub  # only read when a manifest exists and PyYAML does not

    try:
        return yamlsub.load(text)
    except yamlsub.YamlSubsetError as exc:
        raise ManifestError(f'cannot read {source}: {exc}') from None


def read_manifest(
    manifest_path: str | None = None, environ: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> dict[str, Any]:
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
    logger.debug('no manifest: no manifest path given, %s is not set and %s does not exist', MANIFEST_ENV_VAR, path)
    return {}


def _read_manifest_file(path: Path, source: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest file '{source}': {exc}") from None
    return _top_level(load_yaml(text, f"manifest file '{source}'"), source)


def _top_level(document: Any, source: str) -> dict[str, Any]:
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ManifestError(
            f'the manifest {source} must be a mapping of fields at the top level,'
            f' got {type(document).__name__}: {document!r}'
        )
    return document


def describe_value(value: Any) -> str:
    """`type value`, as errors name a value: `str 'abc'`."""
    return f'{type(value).__name__} {value!r}'


def apply_runtime_env(
    manifest: Mapping[str, Any], environ: MutableMapping[str, str] = os.environ, cwd: Path | None = None
) -> dict[str, str]:
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
            raise ManifestError(f'secret_runtime_env_file must be a file path, got {describe_value(secret_file)}')
        secrets = _read_secret_file(secret_file, 'secret_runtime_env_file', cwd)
    for name, value in {**runtime, **secrets}.items():
        if name in RESERVED_ENV_NAMES:
            raise ManifestError(
                f'runtime env var {name} is reserved (reserved names:'
                f' {", ".join(sorted(RESERVED_ENV_NAMES))}); rename it'
            )
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
        raise ManifestError(f'secret_build_env_file must be a file path, got {describe_value(secret_file)}')


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
        raise ManifestError(f'{field_name} must be a mapping of NAME: value, got {describe_value(value)}')
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
            raise ManifestError(
                f'{field_name}.{name} must be a string, number or boolean, got {describe_value(item)}{hint}'
            )
    return result


def _read_secret_file(relative: str, field_name: str, cwd: Path | None) -> dict[str, str]:
    """The variables of a secret env file; none, with a warning, when the file is absent.

    In a cluster the file stays on the developer's machine and its values arrive as
    environment variables, so an absent file is expected there, not an error.
    """
    path = (Path.cwd() if cwd is None else Path(cwd)) / relative
    if not path.is_file():
        message = (
            f"{field_name} '{relative}' does not exist (looked at {path});"
            ' using the variables already in the environment'
        )
        template = path.with_name(path.name + '.dist')
        if template.is_file():
            message += (
                f". To run with secrets from the file, copy the template '{relative}.dist'"
                f" to '{relative}' and fill in the secret values"
            )
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
            line = line[len('export') :].lstrip()
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
                chunks.append({'n': '\n', 'r': '\r', 't': '\t', '"': '"', '\\': '\\'}.get(escaped, '\\' + escaped))
                index += 2
                continue
            chunks.append(ch)
            index += 1
        if index >= len(text):
            raise ValueError(f'unterminated {quote} quote')
        tail = text[index + 1 :].strip()
        if tail and not tail.startswith('#'):
            raise ValueError(f'unexpected text after the closing {quote} quote')
        return ''.join(chunks)
    for index, ch in enumerate(text):
        if ch == '#' and index > 0 and text[index - 1] in ' \t':
            return text[:index].rstrip()
    return text
