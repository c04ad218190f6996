"""Route table built once at start-up: exact paths in a dict, then templates, then prefixes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from urllib.parse import unquote

from racetrack_job_wrapper.messages import HTTPError, JobDefinitionError, Request, Response
from racetrack_job_wrapper.records import Record

Handler = Callable[[Request], Response]

BASE_PATH_KINDS = ('job', 'fatman')
API_PREFIX = '/api/v1'  # where the job's own endpoints live
PROBE_PATHS = ('/live', '/ready', '/health')  # answered in every phase, never behind a token
METRICS_PATH = '/metrics'
_PARAM = re.compile(r'\{([A-Za-z_][A-Za-z0-9_]*)\}')


class Route(Record):
    """One endpoint: a path (exact, `{param}` template, or prefix ending with `/*`) and its handlers by method.

    `owner` names what declared it (`the built-in /docs`, `static endpoint /xrai`): routes of
    one owner may overlap by design; routes of two owners that could answer the same request
    are a start-up error naming both.
    """

    path: str
    handlers: dict[str, Handler]
    owner: str = ''

    @property
    def is_prefix(self) -> bool:
        """True when the route serves every path under `path` without its trailing `/*`."""
        return self.path.endswith('/*')

    @property
    def is_template(self) -> bool:
        """True when the path has `{param}` segments."""
        return bool(_PARAM.search(self.path))


class Router:
    """Matches (method, path) to a handler; raises HTTPError 404, or 405 with `Allow`."""

    def __init__(self, routes: list[Route]):
        """Index the routes; JobDefinitionError when two owners' routes could answer the same request."""
        _check_conflicts(routes)
        self.routes = routes
        self._exact: dict[str, list[Route]] = {}
        self._templates: list[tuple[re.Pattern[str], Route]] = []  # each with its path's regex
        self._prefixes: list[Route] = []
        for route in self.routes:
            if route.is_prefix:
                self._prefixes.append(route)
            elif route.is_template:
                self._templates.append((_compile_template(route.path), route))
            else:
                self._exact.setdefault(route.path, []).append(route)
        # Longest prefix first, so /api/v1/webview/static/* wins over /api/v1/webview/*.
        self._prefixes.sort(key=lambda route: len(route.path), reverse=True)

    def candidates(self, path: str) -> Iterator[tuple[Route, dict[str, str]]]:
        """Every route whose path matches, in precedence order: exact, templates, prefixes (longest first)."""
        for route in self._exact.get(path, ()):
            yield route, {}
        for regex, route in self._templates:
            found = regex.fullmatch(path)
            if found:
                yield route, found.groupdict()
        for route in self._prefixes:
            prefix = route.path[:-2]
            if path == prefix or path.startswith(prefix + '/'):
                yield route, {'subpath': path[len(prefix) + 1 :]}

    def allowed(self, path: str) -> set[str]:
        """The methods some route serves at `path` (empty when none matches)."""
        methods: set[str] = set()
        for route, _ in self.candidates(path):
            methods |= _methods(route)
        return methods

    def match(self, method: str, path: str) -> tuple[Route, Handler, dict[str, str]]:
        """The first route serving `path` with `method` (a full match), its handler and path parameters.

        A route whose path matches but not its method (a partial match) never hides a later full
        match: `POST /items/{name}` leaves `GET /items/a.txt` to a static `/items` directory.
        HTTPError 404 when no path matches, 405 with `Allow` when only partial matches exist.
        """
        allowed: set[str] = set()
        for route, params in self.candidates(path):
            handler = route.handlers.get(method)
            if handler is None and method == 'HEAD':
                handler = route.handlers.get('GET')
            if handler is not None:
                return route, handler, params
            allowed |= _methods(route)
        if not allowed:
            raise HTTPError(404, f'no endpoint at {path}', error_type='NotFound')
        allow = allow_header(allowed)
        raise HTTPError(
            405,
            f'method {method} is not allowed at {path}; allowed: {allow}',
            headers={'Allow': allow},
            error_type='MethodNotAllowed',
        )


def _check_conflicts(routes: list[Route]) -> None:
    """Refuse two owners' routes that share a method and some path, but for nested prefixes.

    A longer prefix inside a shorter one (`/api/v1/webview/static/*` in `/api/v1/webview/*`)
    wins by design; everything else would leave one of the two unreachable for that path.
    """
    shapes = [(route, _segments(route.path), _methods(route)) for route in routes]
    for index, (route, shape, methods) in enumerate(shapes):
        for other, other_shape, other_methods in shapes[:index]:
            if route.owner == other.owner and route.owner:
                continue
            if route.is_prefix and other.is_prefix:
                continue
            shared = methods & other_methods
            if shared and _overlap(shape, route.is_prefix, other_shape, other.is_prefix):
                # Named from the narrower of the two: the one the other would hide (or be hidden by).
                narrow, wide = (other, route) if route.is_prefix else (route, other)
                method = 'GET' if 'GET' in shared else sorted(shared)[0]
                raise JobDefinitionError(
                    f'{narrow.owner or narrow.path} collides with {wide.owner or wide.path}: '
                    f'both would answer {method} {narrow.path}'
                )


def _segments(path: str) -> list[str | None]:
    """The path's segments, None for one holding a `{param}` (it matches any segment)."""
    return [
        None if _PARAM.search(segment) else segment
        for segment in path.removesuffix('/*').strip('/').split('/')
        if segment
    ]


def _overlap(a: list[str | None], a_prefix: bool, b: list[str | None], b_prefix: bool) -> bool:
    """Whether some path matches both patterns (at most one of them a prefix)."""
    if a_prefix:
        a, b, b_prefix = b, a, a_prefix
    if b_prefix:  # `a` exact or template, `b` a prefix: `a` must start with `b`
        return len(a) >= len(b) and all(x is None or y is None or x == y for x, y in zip(a, b, strict=False))
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def _methods(route: Route) -> set[str]:
    methods = set(route.handlers)
    if 'GET' in methods:
        methods.add('HEAD')
    return methods


def allow_header(methods: set[str]) -> str:
    """The `Allow` header value for a set of methods (OPTIONS is always allowed)."""
    return ', '.join(sorted(methods | {'OPTIONS'}))


def _compile_template(path: str) -> re.Pattern[str]:
    pattern = ''
    position = 0
    for found in _PARAM.finditer(path):
        pattern += re.escape(path[position : found.start()]) + f'(?P<{found.group(1)}>[^/]+)'
        position = found.end()
    return re.compile(pattern + re.escape(path[position:]))


def split_base_path(path: str) -> tuple[str, str]:
    """Split `/pub/job/{name}/{version}/rest` (or `/pub/fatman/...`) into (`/pub/job/{name}/{version}`, `/rest`).

    Paths without the prefix come back as ('', path).
    """
    if not path.startswith('/pub/'):
        return '', path
    parts = path.split('/', 5)  # ['', 'pub', kind, name, version, rest]
    if len(parts) < 5 or parts[2] not in BASE_PATH_KINDS or not parts[3] or not parts[4]:
        return '', path
    base = '/'.join(parts[:5])
    return base, '/' + (parts[5] if len(parts) == 6 else '')


def normalize_path(raw_path: str) -> str:
    """Percent-decode a request path and resolve `.`/`..` segments and repeated slashes.

    Routing, access rules and static files all see this one form, so `//x`, `/a/../x`
    and `%2e%2e` cannot mean one thing to the access check and another to the handler.
    Raises HTTPError(400) for invalid UTF-8 or NUL bytes.
    """
    try:
        decoded = unquote(raw_path, errors='strict')
    except UnicodeDecodeError:
        raise HTTPError(
            400, 'request path is not valid UTF-8 after percent-decoding', error_type='BadRequest'
        ) from None
    if '\x00' in decoded:
        raise HTTPError(400, 'request path contains a NUL byte', error_type='BadRequest')
    if '\\' in decoded:
        decoded = decoded.replace('\\', '/')
    if '//' not in decoded and '/.' not in decoded:
        return decoded or '/'
    segments: list[str] = []
    for segment in decoded.split('/'):
        if segment in ('', '.'):
            continue
        if segment == '..':
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = '/' if decoded.endswith(('/', '/.', '/..')) and segments else ''
    return '/' + '/'.join(segments) + trailing
