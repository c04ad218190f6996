"""Route table built once at start-up: exact paths in a dict, then templates, then prefixes."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote

from racetrack_job_wrapper.messages import HTTPError, Request, Response

Handler = Callable[[Request], Response]

BASE_PATH_KINDS = ('job', 'fatman')
_PARAM = re.compile(r'\{([A-Za-z_][A-Za-z0-9_]*)\}')


@dataclass(frozen=True)
class Route:
    """One endpoint: a path (exact, `{param}` template, or prefix ending with `/*`) and its handlers by method."""

    path: str
    handlers: dict[str, Handler]
    name: str = ''

    @property
    def is_prefix(self) -> bool:
        """True when the route serves every path under `path` without its trailing `/*`."""
        return self.path.endswith('/*')

    @property
    def is_template(self) -> bool:
        """True when the path has `{param}` segments."""
        return bool(_PARAM.search(self.path))


@dataclass
class _Template:
    regex: re.Pattern[str]
    route: Route


@dataclass
class Router:
    """Matches (method, path) to a handler; raises HTTPError 404, or 405 with `Allow`."""

    routes: list[Route]
    _exact: dict[str, Route] = field(init=False, default_factory=dict)
    _templates: list[_Template] = field(init=False, default_factory=list)
    _prefixes: list[Route] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        for route in self.routes:
            if route.is_prefix:
                self._prefixes.append(route)
            elif route.is_template:
                self._templates.append(_Template(_compile_template(route.path), route))
            else:
                if route.path in self._exact:
                    raise ValueError(f'route {route.path!r} is defined twice')
                self._exact[route.path] = route
        # Longest prefix first, so /api/v1/webview/static/* wins over /api/v1/webview/*.
        self._prefixes.sort(key=lambda route: len(route.path), reverse=True)

    def find(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route serving `path` (any method) and its path parameters, or None."""
        route = self._exact.get(path)
        if route is not None:
            return route, {}
        for template in self._templates:
            found = template.regex.fullmatch(path)
            if found:
                return template.route, found.groupdict()
        for route in self._prefixes:
            prefix = route.path[:-2]
            if path == prefix or path.startswith(prefix + '/'):
                return route, {'subpath': path[len(prefix) + 1:]}
        return None

    def match(self, method: str, path: str) -> tuple[Route, Handler, dict[str, str]]:
        """The route, handler and path parameters for a request; HTTPError 404/405 otherwise."""
        found = self.find(path)
        if found is None:
            raise HTTPError(404, f'no endpoint at {path}', error_type='NotFound')
        route, params = found
        handler = route.handlers.get(method)
        if handler is None and method == 'HEAD':
            handler = route.handlers.get('GET')
        if handler is None:
            allow = allowed_methods(route)
            raise HTTPError(405, f'method {method} is not allowed at {path}; allowed: {allow}',
                            headers={'Allow': allow}, error_type='MethodNotAllowed')
        return route, handler, params


def allowed_methods(route: Route) -> str:
    """The `Allow` header value for a route."""
    methods = set(route.handlers)
    if 'GET' in methods:
        methods.add('HEAD')
    methods.add('OPTIONS')
    return ', '.join(sorted(methods))


def _compile_template(path: str) -> re.Pattern[str]:
    pattern = ''
    position = 0
    for found in _PARAM.finditer(path):
        pattern += re.escape(path[position:found.start()]) + f'(?P<{found.group(1)}>[^/]+)'
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
        raise HTTPError(400, 'request path is not valid UTF-8 after percent-decoding',
                        error_type='BadRequest') from None
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
