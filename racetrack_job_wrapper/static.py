"""Static endpoints: single files and whole directories, with safe path resolution and caching headers.

Paths are resolved once at start-up against the working directory. A directory is served
recursively and read at request time, so files added later are served too; a request can
only ever open a regular file whose real path lies inside the directory.
"""

from __future__ import annotations

import email.utils
import logging
import mimetypes
import os
import stat
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from racetrack_job_wrapper.messages import HTTPError, JobDefinitionError, Request, Response
from racetrack_job_wrapper.records import Record
from racetrack_job_wrapper.routing import Route

logger = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
DEFAULT_TYPE = 'application/octet-stream'
CACHE_CONTROL = 'no-cache'  # files may change on disk: browsers revalidate with the ETag each time
# Types the standard library's built-in table lacks or spells in an older way.
_EXTRA_TYPES = {
    '.md': 'text/markdown',
    '.markdown': 'text/markdown',
    '.yaml': 'application/yaml',
    '.yml': 'application/yaml',
    '.js': 'text/javascript',
    '.mjs': 'text/javascript',
    '.webp': 'image/webp',
    '.woff': 'font/woff',
    '.woff2': 'font/woff2',
    '.ico': 'image/x-icon',
    '.toml': 'application/toml',
    '.ipynb': 'application/x-ipynb+json',
}
# Non-`text/*` types whose content is text, so they carry a charset too.
_TEXTUAL_TYPES = frozenset(
    {
        'application/yaml',
        'application/x-yaml',
        'application/xml',
        'application/javascript',
        'application/toml',
        'image/svg+xml',
    }
)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_BINARY', 0)


class MimeGuesser:
    """Mime types from file extensions: the standard library's built-in table (not the host's
    /etc/mime.types, so every machine answers alike) plus a few modern types."""

    def __init__(self) -> None:
        self._table: mimetypes.MimeTypes | None = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def _types(self) -> mimetypes.MimeTypes:
        # Made on the first guess: `MimeTypes()` reads the host's tables (about 4 ms) although it
        # uses only the built-in one, and a job without static files never needs it.
        if self._table is not None:
            return self._table
        with self._lock:
            if self._table is None:
                table = mimetypes.MimeTypes()
                for extension, mime_type in _EXTRA_TYPES.items():
                    table.add_type(mime_type, extension)
                self._table = table
            return self._table

    def guess(self, name: str, warn: bool = True) -> str:
        """The Content-Type for a file name, with `charset=utf-8` for text; unknown types warn once."""
        mime_type, _ = self._types().guess_type(name, strict=False)
        if mime_type is None:
            extension = os.path.splitext(name)[1].lower()
            if warn and extension not in self._warned:
                self._warned.add(extension)
                logger.warning('unknown mime type of static file %s; serving it as %s', name, DEFAULT_TYPE)
            return DEFAULT_TYPE
        return with_charset(mime_type)


def with_charset(mime_type: str) -> str:
    """`mime_type` with `; charset=utf-8` added when it is a text type without a charset."""
    base = mime_type.split(';', 1)[0].strip().lower()
    if (base.startswith('text/') or base in _TEXTUAL_TYPES) and 'charset=' not in mime_type.lower():
        return f'{mime_type}; charset=utf-8'
    return mime_type


# At most this many files of one static directory are listed in the API docs (all are served).
MAX_LISTED_FILES = 1000


class StaticEndpoint(Record):
    """One entry of `static_endpoints()`: its route, and the files it serves as the API docs list them."""

    route: Route
    files: tuple[tuple[str, str], ...]  # (path under the API prefix, Content-Type)


def static_endpoints(
    entries: Mapping[str, Any], cwd: Path, api_prefix: str, *, guesser: MimeGuesser | None = None
) -> list[StaticEndpoint]:
    """Routes for `static_endpoints()`: a file at an exact path, a directory under a prefix.

    Raises JobDefinitionError naming the endpoint when a value is malformed or its file is missing.
    """
    guesser = guesser or MimeGuesser()
    endpoints = []
    for endpoint, value in entries.items():
        path = endpoint if str(endpoint).startswith('/') else f'/{endpoint}'
        path = path.rstrip('/') or '/'
        filename, mime_type = _split_entry(path, value)
        target = cwd / filename
        if target.is_dir():
            if mime_type:
                logger.warning(
                    'static endpoint %s: the mime type %r is ignored for a directory; each file gets its own',
                    path,
                    mime_type,
                )
            directory = StaticDirectory(target, guesser)
            route = Route(f'{api_prefix}{path}/*', {'GET': directory.respond}, f'static endpoint {path}')
            files = tuple(
                (f'{path}/{name}', guesser.guess(name, warn=False)) for name in directory.listing(MAX_LISTED_FILES)
            )
            endpoints.append(StaticEndpoint(route, files))
            logger.info('static endpoint %s serves directory %s', path, target)
        elif target.is_file():
            # A type the job names is sent exactly as named; only guessed types get a charset.
            file = StaticFile(target, mime_type or guesser.guess(target.name))
            route = Route(f'{api_prefix}{path}', {'GET': file.respond}, f'static endpoint {path}')
            endpoints.append(StaticEndpoint(route, ((path, file.content_type),)))
            logger.info('static endpoint %s serves file %s (%s)', path, target, file.content_type)
        else:
            raise JobDefinitionError(
                f'static endpoint {path}: file {filename!r} does not exist (relative to the working directory {cwd})'
            )
    return endpoints


def _split_entry(path: str, value: Any) -> tuple[str, str | None]:
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value), None
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and isinstance(value[0], (str, os.PathLike))
        and (value[1] is None or isinstance(value[1], str))
    ):
        return os.fspath(value[0]), value[1] or None
    raise JobDefinitionError(
        f'static endpoint {path}: expected a file name or a (file name, mime type) tuple, got {value!r}'
    )


class StaticFile:
    """One file behind an exact path; opened per request, so edits on disk are served."""

    def __init__(self, path: Path, content_type: str):
        self.path = path
        self.content_type = content_type

    def respond(self, request: Request) -> Response:
        """The file, 304 when the client's copy is current, 404 when it disappeared."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_BINARY', 0))
        except OSError:
            raise _not_found(request) from None
        return file_response(request, descriptor, self.content_type)


class StaticDirectory:
    """A directory served recursively; each request resolves and checks its path from scratch."""

    def __init__(self, root: Path, guesser: MimeGuesser):
        self.root = os.path.realpath(root)
        self._guesser = guesser

    def resolve(self, subpath: str) -> str | None:
        """The real path of `subpath` when it names something inside the directory, else None."""
        if not subpath or '\x00' in subpath or '\\' in subpath or subpath.startswith('/'):
            return None
        if os.name == 'nt' and ':' in subpath:  # a drive letter would make the join absolute
            return None
        segments = subpath.split('/')
        # A hidden name (`.env`, `.git/config`) is never served from a directory: such files are
        # secrets and tool state far more often than content. A job lists one explicitly to serve it.
        if any(not segment or segment.startswith('.') for segment in segments):
            return None
        candidate = os.path.realpath(os.path.join(self.root, *segments))
        # Symlinks are followed by realpath; the containment check refuses those leading outside.
        if candidate == self.root or os.path.commonpath([self.root, candidate]) != self.root:
            return None
        return candidate

    def listing(self, limit: int) -> list[str]:
        """Up to `limit` paths (relative, `/`-separated, sorted) of the regular files it serves now."""
        found: list[str] = []
        for top, directories, files in os.walk(self.root):
            directories.sort()
            for name in sorted(files):
                relative = os.path.relpath(os.path.join(top, name), self.root).replace(os.sep, '/')
                candidate = self.resolve(relative)
                if candidate is not None and os.path.isfile(candidate):
                    found.append(relative)
                    if len(found) == limit:
                        logger.info('static directory %s: the API docs list its first %d files', self.root, limit)
                        return found
        return found

    def respond(self, request: Request) -> Response:
        """A file under the directory, or 404 for anything else (the directory itself included)."""
        candidate = self.resolve(request.path_params.get('subpath', ''))
        if candidate is None:
            raise _not_found(request)
        try:
            # O_NOFOLLOW: the resolved path must not have become a symlink since it was checked.
            descriptor = os.open(candidate, _OPEN_FLAGS)
        except OSError:
            raise _not_found(request) from None
        return file_response(request, descriptor, self._guesser.guess(candidate))


def file_response(request: Request, descriptor: int, content_type: str) -> Response:
    """200 streaming the open file, or 304; takes ownership of `descriptor`. Non-regular files are 404."""
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise _not_found(request)
        etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
        headers = {
            'ETag': etag,
            'Last-Modified': email.utils.formatdate(info.st_mtime, usegmt=True),
            'Cache-Control': CACHE_CONTROL,
            'X-Content-Type-Options': 'nosniff',
        }
        if not_modified(request, etag, int(info.st_mtime)):
            return Response(b'', 304, headers=headers)
        if request.method == 'HEAD':
            return Response(
                status=200, content_type=content_type, headers=headers, stream=(), content_length=info.st_size
            )
        if os.get_blocking(descriptor) is False:
            os.set_blocking(descriptor, True)
        stream = FileStream(os.fdopen(descriptor, 'rb', buffering=0), info.st_size, request.path)
        descriptor = -1  # owned by the stream now
        return Response(
            status=200, content_type=content_type, headers=headers, stream=stream, content_length=info.st_size
        )
    finally:
        if descriptor >= 0:
            os.close(descriptor)


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match value names `etag`: `*`, or weakly equal (RFC 9110 section 13.1.2)."""
    if if_none_match.strip() == '*':
        return True
    return any(tag.strip().removeprefix('W/') == etag for tag in if_none_match.split(','))


def not_modified(request: Request, etag: str, mtime: int) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if request.method not in ('GET', 'HEAD'):
        return False
    if_none_match = request.headers.get('If-None-Match')
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    if_modified_since = request.headers.get('If-Modified-Since')
    if if_modified_since is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, IndexError):
        return False  # an unparsable date is ignored, as the RFC says
    if since is None or since.tzinfo is None:
        return False
    return mtime <= since.timestamp()


class FileStream:
    """Iterates an open file in chunks of CHUNK_SIZE, exactly `size` bytes; `close()` closes the file.

    A file that shrank while being sent raises OSError, so the connection is cut instead of
    leaving the client waiting for bytes promised by Content-Length.
    """

    def __init__(self, file: Any, size: int, label: str = ''):
        self._file = file
        self._remaining = size
        self._label = label

    def __iter__(self) -> Iterator[bytes]:
        while self._remaining > 0:
            chunk = self._file.read(min(CHUNK_SIZE, self._remaining))
            if not chunk:
                logger.warning('static file %s shrank while being sent; closing the connection', self._label)
                raise OSError('static file shrank while being sent')
            self._remaining -= len(chunk)
            yield chunk

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _not_found(request: Request) -> HTTPError:
    return HTTPError(404, f'no file at {request.path}', error_type='NotFound')
