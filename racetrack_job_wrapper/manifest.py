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


def manifest_file(
    manifest_path: str | None = None, environ: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> Path | None:
    """The file the manifest is read from (which may not exist); None when $JOB_MANIFEST_YAML holds it."""
    base = Path.cwd() if cwd is None else Path(cwd)
    if manifest_path:
        return base / manifest_path
    if environ.get(MANIFEST_ENV_VAR, ''):
        return None
    return base / MANIFEST_FILENAME


def read_manifest(
    manifest_path: str | None = None, environ: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> dict[str, Any]:
    """Read the manifest: an explicit path, else $JOB_MANIFEST_YAML, else ./job.yaml, else {}."""
    path = manifest_file(manifest_path, environ, cwd)
    if manifest_path and path is not None:
        if not path.is_file():
            raise ManifestError(f"manifest file '{manifest_path}' does not exist (looked at {path})")
        return _read_manifest_file(path, manifest_path)
    if path is None:
        # Infrastructure passes the manifest as one line, with line breaks as a literal backslash-n.
        inline = environ[MANIFEST_ENV_VAR]
        return _top_level(load_yaml(inline.replace('\\n', '\n'), MANIFEST_ENV_VAR), MANIFEST_ENV_VAR)
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
        # `${NAME}` in the file reads the environment as runtime_env leaves it.
        secrets = _read_secret_file(secret_file, 'secret_runtime_env_file', cwd, {**runtime, **environ})
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


def read_build_env(
    manifest: Mapping[str, Any], cwd: Path | None = None, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The manifest's build_env, with its secret_build_env_file over it, as an image build sees them."""
    validate_build_settings(manifest)
    values = _env_mapping(manifest.get('build_env'), 'build_env')
    secret_file = manifest.get('secret_build_env_file')
    if secret_file is not None:
        values.update(_read_secret_file(secret_file, 'secret_build_env_file', cwd, {**values, **environ}))
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


def _read_secret_file(relative: str, field_name: str, cwd: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
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
    return parse_env_file(text, relative, environ)


def parse_env_file(text: str, source: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Read a `.env` file as Docker Compose and python-dotenv read it; ManifestError names the file and line.

    `${NAME}` is looked up in the file's earlier lines, then in `environ`. Where python-dotenv
    and Compose read a line alike, this reader does too; a line either of them skips or
    refuses is an error; where they differ otherwise, Compose's reading is kept, except that a
    `$` not starting `${` and a backslash Compose alone reads are plain text (as python-dotenv
    and racetrack-job-runner read them). tests/test_envfile.py holds both libraries to it.
    """
    return _EnvFileReader(text, source, environ).read()


# What a line may set: letters, digits and `_ . - [ ]`, as Compose reads names; a name starting
# with a digit, which Compose drops without a word, is refused instead.
_ENV_FILE_NAME = re.compile(r'(?![0-9])[\w.\[\]-]+')
_EXPORT = re.compile(r'export\s+')
# `${NAME}`, `${NAME:-word}` and the other forms of POSIX sh that Compose reads.
_SUBSTITUTION = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)(:?[-+?])?')
# The escapes both python-dotenv and Compose read in double quotes; any other backslash stays.
_DOUBLE_QUOTE_ESCAPES = {
    '\\': '\\',
    '"': '"',
    'a': '\a',
    'b': '\b',
    'f': '\f',
    'n': '\n',
    'r': '\r',
    't': '\t',
    'v': '\v',
}


class _EnvFileReader:
    """One pass over one env file: statements, quoted values over several lines, substitutions."""

    def __init__(self, text: str, source: str, environ: Mapping[str, str]):
        text = text.removeprefix('\ufeff').replace('\r\n', '\n').replace('\r', '\n')
        self.lines = text.split('\n')
        self.source = source
        self.environ = environ
        self.values: dict[str, str] = {}
        self.line = 0  # the number of the line the current statement starts on

    def read(self) -> dict[str, str]:
        index = 0
        while index < len(self.lines):
            raw = self.lines[index]
            self.line = index + 1
            index += 1
            statement = raw.lstrip()
            if not statement or statement.startswith('#'):
                continue
            export = _EXPORT.match(statement)
            if export:
                statement = statement[export.end() :]
            name, equals, rest = statement.partition('=')
            name = name.rstrip()
            if not equals or not _ENV_FILE_NAME.fullmatch(name):
                hint = ' (a name is letters, digits and _ . - [ ], not starting with a digit)' if equals else ''
                raise ManifestError(f'{self.source}, line {self.line}: expected KEY=VALUE, got {raw!r}{hint}')
            try:
                value, index = self._value(rest.lstrip(), index)
            except ValueError as exc:
                raise ManifestError(f'{self.source}, line {self.line}: {exc} in {raw!r}') from None
            self.values[name] = value
        return self.values

    def _value(self, text: str, index: int) -> tuple[str, int]:
        """The value starting `text`, and the index of the line after it."""
        quote = text[:1]
        if quote not in ('"', "'"):
            cut = text.find(' #')  # an unquoted value's comment starts at a space and a `#`, as in Compose
            return self._expand(text[:cut] if cut >= 0 else text, double=False), index
        end, scanned = _closing_quote(text, quote, 1)
        while end < 0:  # a quoted value goes on over the next lines until its closing quote
            if index >= len(self.lines):
                raise ValueError(f'unterminated {quote} quote')
            text += '\n' + self.lines[index]
            index += 1
            end, scanned = _closing_quote(text, quote, scanned)
        tail = text[end + 1 :].strip()
        if tail and not tail.startswith('#'):
            raise ValueError(f'unexpected text after the closing {quote} quote')
        body = text[1:end]
        if quote == "'":
            return _single_quoted(body), index
        return self._expand(body, double=True), index

    def _expand(self, text: str, double: bool) -> str:
        """Substitute `${...}` in an unquoted or double-quoted value; in double quotes, read escapes too."""
        if '$' not in text and not (double and '\\' in text):
            return text.rstrip() if not double else text
        out: list[str] = []
        index = 0
        while index < len(text):
            ch = text[index]
            if double and ch == '\\' and index + 1 < len(text):
                escaped = text[index + 1]
                if escaped in _DOUBLE_QUOTE_ESCAPES:
                    out.append(_DOUBLE_QUOTE_ESCAPES[escaped])
                    index += 2
                    continue
                if text.startswith('${', index + 1):  # `\${` is a literal `${`, as in Compose
                    out.append('${')
                    index += 3
                    continue
            elif ch == '$' and text.startswith('$${', index):  # so is `$${`
                out.append('${')
                index += 3
                continue
            elif ch == '$' and text.startswith('${', index):
                value, index = self._substitute(text, index + 2, double)
                out.append(value)
                continue
            out.append(ch)
            index += 1
        result = ''.join(out)
        return result if double else result.rstrip()

    def _substitute(self, text: str, start: int, double: bool) -> tuple[str, int]:
        """The value of the `${...}` whose name starts at `start`, and the index after its `}`."""
        match = _SUBSTITUTION.match(text, start)
        if match is None:
            raise ValueError('invalid substitution: ${ must be followed by a variable name')
        name, operator = match[1], match[2]
        end = match.end()
        if operator is None:
            if not text.startswith('}', end):
                raise ValueError(f'invalid substitution ${{{name}: expected }} after the name')
            value = self._lookup(name)
            if value is None:
                logger.warning(
                    '%s, line %d: %s is not set; ${%s} reads as an empty string', self.source, self.line, name, name
                )
            return value or '', end + 1
        depth, close = 0, end
        while close < len(text):
            if text.startswith('${', close):
                depth += 1
                close += 1
            elif text[close] == '}':
                if depth == 0:
                    break
                depth -= 1
            close += 1
        else:
            raise ValueError(f'unterminated substitution ${{{name}{operator}')
        word = text[end:close]
        value = self._lookup(name)
        is_set = value is not None and (value != '' or not operator.startswith(':'))
        if operator.endswith('-'):
            result = value if is_set else self._expand(word, double)
        elif operator.endswith('+'):
            result = self._expand(word, double) if is_set else ''
        elif not is_set:
            problem = 'is not set' if value is None else 'is empty'
            message = self._expand(word, double)
            raise ValueError(f'{name} {problem}' + (f': {message}' if message else ''))
        else:
            result = value
        return result or '', close + 1

    def _lookup(self, name: str) -> str | None:
        # The file's own lines first: applied, they win over the environment, so `${NAME}` agrees with them.
        value = self.values.get(name)
        return self.environ.get(name) if value is None else value


def _closing_quote(text: str, quote: str, start: int) -> tuple[int, int]:
    """The index of the quote closing `text` (a backslash escapes any character), or -1, and where to go on."""
    index = start
    while index < len(text):
        ch = text[index]
        if ch == '\\':
            if index + 1 >= len(text):
                return -1, index  # the next line's break may be the escaped character
            index += 2
            continue
        if ch == quote:
            return index, index
        index += 1
    return -1, index


def _single_quoted(body: str) -> str:
    """A single-quoted value is literal, but for `\\'`, as in Compose."""
    if '\\' not in body:
        return body
    out: list[str] = []
    index = 0
    while index < len(body):
        if body[index] == '\\' and index + 1 < len(body):
            out.append("'" if body[index + 1] == "'" else body[index : index + 2])
            index += 2
        else:
            out.append(body[index])
            index += 1
    return ''.join(out)
