"""The Swagger UI page, its vendored assets, and `/openapi.json`.

Prepared once: the OpenAPI JSON is encoded and the page rendered at start-up; each asset is
hashed for its ETag when it is first asked for (hashing the 1.9 MB of assets at start-up cost
a few ms before the job's first answer, for pages few jobs ever serve). The large assets (the
1.7 MB bundle) stay on disk and are streamed when asked for, so an idle job does not hold them
in memory; the docs are read rarely and the OS page cache makes the reads cheap.

Every URL in the page is relative, so it works at `/docs`, `/docs/` and under the
`/pub/job/{name}/{version}` prefix; nothing is loaded from outside the job.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from racetrack_job_wrapper.messages import HTTPError, Request, Response, encode_json
from racetrack_job_wrapper.records import Record, replace
from racetrack_job_wrapper.routing import Route
from racetrack_job_wrapper.static import etag_matches

ASSETS_PACKAGE = 'racetrack_job_wrapper.static_swagger'
# Served files of the vendored swagger-ui-dist package, with their content types.
ASSET_TYPES = {
    'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
    'swagger-ui.css': 'text/css; charset=utf-8',
    'favicon-32x32.png': 'image/png',
}
INITIALIZER = 'swagger-initializer.js'
HTML_TYPE = 'text/html; charset=utf-8'
JSON_TYPE = 'application/json'
PAGE_CACHE = 'no-cache'  # revalidated each time: the page and document change with the job
# Everything the page loads is the job's own; Swagger UI sets inline styles and data: icons;
# no other site may frame it (clickjacking of "Try it out").
PAGE_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
ASSET_CACHE = 'public, max-age=86400'
_CHUNK = 256 * 1024

# Reads the page's data attributes, so the script is the same file for every page variant
# and no inline script is needed.
_INITIALIZER_JS = """\
window.addEventListener('load', function () {
  'use strict';
  var root = document.getElementById('swagger-ui');
  window.ui = SwaggerUIBundle({
    url: new URL(root.dataset.openapiUrl, document.baseURI).href,
    dom_id: '#swagger-ui',
    deepLinking: true,
    displayRequestDuration: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout'
  });
});
"""

_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" type="text/css" href="{assets}swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}swagger-ui-bundle.js" charset="utf-8"></script>
<script src="{assets}swagger-initializer.js" charset="utf-8"></script>
</body>
</html>
"""


# While the job loads, /docs is this page: it says so and reloads itself until the real page answers.
LOADING_REFRESH_SECONDS = 2
_LOADING_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>{title} - loading</title>
</head>
<body>
<h1>{title}</h1>
<p>{state}</p>
<p>This page reloads itself every {refresh} s.</p>
</body>
</html>
"""


def loading_docs_route(title: str, describe_state: Callable[[], str]) -> Route:
    """`/docs` while the job loads: a 503 page saying `describe_state()`, reloading itself."""

    def serve_loading_page(request: Request) -> Response:
        page = _LOADING_PAGE.format(
            title=html.escape(title), state=html.escape(describe_state()), refresh=LOADING_REFRESH_SECONDS
        )
        headers = [
            ('Cache-Control', 'no-store'),
            ('Retry-After', str(LOADING_REFRESH_SECONDS)),
            ('Content-Security-Policy', PAGE_POLICY),
            ('X-Content-Type-Options', 'nosniff'),
        ]
        return Response(page.encode(), 503, HTML_TYPE, headers)

    return Route('/docs', {'GET': serve_loading_page}, 'the API docs')


def swagger_dir() -> Path:
    """The folder of the vendored Swagger UI: package data when installed, `<repo>/static_swagger` in a checkout."""
    # The package's folder from its spec: what importlib.resources.files() answers for a package
    # on disk, without importing importlib.resources and zipfile on the way to the first answer.
    try:
        spec = importlib.util.find_spec(ASSETS_PACKAGE)
    except ModuleNotFoundError:
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / 'swagger-ui-bundle.js').is_file():
            return Path(location)
    fallback = Path(__file__).resolve().parent.parent / 'static_swagger'
    if (fallback / 'swagger-ui-bundle.js').is_file():
        return fallback
    raise FileNotFoundError(f'Swagger UI assets not found in package {ASSETS_PACKAGE} nor in {fallback}')


class StaticAsset(Record):
    """One file served under /docs: bytes in memory, or a path streamed from disk."""

    content_type: str
    size: int
    cache_control: str
    data: bytes | None = None
    path: Path | None = None
    policy: str = ''  # Content-Security-Policy, for the page

    @classmethod
    def from_bytes(cls, data: bytes, content_type: str, cache_control: str) -> StaticAsset:
        """An asset held in memory."""
        return cls(content_type, len(data), cache_control, data=data)

    @classmethod
    def from_file(cls, path: Path, content_type: str, cache_control: str) -> StaticAsset:
        """An asset streamed from `path`; FileNotFoundError now when it is missing."""
        return cls(content_type, path.stat().st_size, cache_control, path=path)

    @cached_property
    def etag(self) -> str:
        """The content's hash, computed on first use (two threads racing to it compute the same value)."""
        digest = hashlib.sha256()
        if self.data is not None:
            digest.update(self.data)
        else:
            for chunk in _read_chunks(self.path):  # type: ignore[arg-type]  # an asset without data has a path
                digest.update(chunk)
        return _etag(digest)

    def respond(self, request: Request) -> Response:
        """200 with the body, or 304 when the client's `If-None-Match` names the current ETag."""
        headers = {'ETag': self.etag, 'Cache-Control': self.cache_control, 'X-Content-Type-Options': 'nosniff'}
        if self.policy:
            headers['Content-Security-Policy'] = self.policy
        if_none_match = request.headers.get('If-None-Match')
        if if_none_match is not None and etag_matches(if_none_match, self.etag):
            return Response(b'', 304, headers=headers)
        if self.data is not None:
            return Response(self.data, 200, self.content_type, headers)
        # An asset without data came from from_file(), which gave it a path.
        return Response(
            status=200,
            content_type=self.content_type,
            headers=headers,
            stream=_read_chunks(self.path),  # type: ignore[arg-type]
            content_length=self.size,
        )


def _etag(digest: Any) -> str:
    return f'"{digest.hexdigest()[:32]}"'


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open('rb') as file:
        while chunk := file.read(_CHUNK):
            yield chunk


def render_page(title: str, assets_prefix: str, openapi_url: str) -> bytes:
    """The Swagger UI page; `assets_prefix` and `openapi_url` are relative to the page's own URL."""
    return _PAGE.format(
        title=html.escape(title),
        assets=html.escape(assets_prefix, quote=True),
        openapi=html.escape(openapi_url, quote=True),
    ).encode()


def load_assets(directory: Path | None = None) -> dict[str, StaticAsset]:
    """The vendored assets by file name, plus the page initializer script."""
    directory = directory or swagger_dir()
    assets = {
        name: StaticAsset.from_file(directory / name, content_type, ASSET_CACHE)
        for name, content_type in ASSET_TYPES.items()
    }
    assets[INITIALIZER] = StaticAsset.from_bytes(_INITIALIZER_JS.encode(), 'text/javascript; charset=utf-8', PAGE_CACHE)
    return assets


def docs_routes(document: Mapping[str, Any], title: str, *, assets_dir: Path | None = None) -> list[Route]:
    """Routes for GET /openapi.json, /docs (the Swagger UI page) and /docs/* (its assets).

    Raises FileNotFoundError at start-up when the vendored assets are missing.
    """
    openapi = StaticAsset.from_bytes(encode_json(document), JSON_TYPE, PAGE_CACHE)
    # The page at /docs resolves `docs/x` to /docs/x; the one at /docs/ resolves `x` there.
    page = replace(
        StaticAsset.from_bytes(render_page(title, 'docs/', 'openapi.json'), HTML_TYPE, PAGE_CACHE), policy=PAGE_POLICY
    )
    page_in_folder = replace(
        StaticAsset.from_bytes(render_page(title, '', '../openapi.json'), HTML_TYPE, PAGE_CACHE), policy=PAGE_POLICY
    )
    assets = load_assets(assets_dir)

    def serve_openapi(request: Request) -> Response:
        return openapi.respond(request)

    def serve_page(request: Request) -> Response:
        return page.respond(request)

    def serve_asset(request: Request) -> Response:
        name = request.path_params.get('subpath', '')
        if name in ('', 'index.html'):
            return page_in_folder.respond(request)
        asset = assets.get(name)
        if asset is None:
            raise HTTPError(404, f'no docs asset {name!r}', error_type='NotFound')
        return asset.respond(request)

    return [
        Route('/openapi.json', {'GET': serve_openapi}, 'the API docs'),
        Route('/docs', {'GET': serve_page}, 'the API docs'),
        Route('/docs/*', {'GET': serve_asset}, 'the API docs'),
    ]
