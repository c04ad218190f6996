"""Composition: the route table of one job, and the error boundary every request passes."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from http import HTTPMethod
from pathlib import Path
from typing import Any
from urllib.parse import quote

from racetrack_job_wrapper.asyncloop import AsyncRunner
from racetrack_job_wrapper.auth import AccessPolicy
from racetrack_job_wrapper.batching import Batcher, batched_perform
from racetrack_job_wrapper.calls import CALLS_PATH, AsyncCalls
from racetrack_job_wrapper.docs import docs_routes, loading_docs_route
from racetrack_job_wrapper.endpoints import EndpointSpec, describe_endpoint, describe_parameters
from racetrack_job_wrapper.health import HealthState, health_body, live_body, ready_body
from racetrack_job_wrapper.invoke import Invoker, RequestContext
from racetrack_job_wrapper.limiter import ConcurrencyLimiter
from racetrack_job_wrapper.messages import (
    ClientDisconnected,
    HTTPError,
    JobDefinitionError,
    Request,
    Response,
    error_response,
    http_error_response,
    json_bytes_response,
    json_response,
)
from racetrack_job_wrapper.metrics import JobMetrics
from racetrack_job_wrapper.openapi import build_openapi
from racetrack_job_wrapper.records import replace
from racetrack_job_wrapper.routing import (
    API_PREFIX,
    PROBE_PATHS,
    Route,
    Router,
    allow_header,
    normalize_path,
    split_base_path,
)
from racetrack_job_wrapper.settings import JobSettings
from racetrack_job_wrapper.static import MimeGuesser, static_endpoints
from racetrack_job_wrapper.webview import create_webview_app, is_asgi, webview_base_url, webview_routes

logger = logging.getLogger(__name__)

# Options of EndpointConfig.other_options that reach the API docs; others are ignored with a warning.
DOC_OPTIONS = frozenset({'tags', 'summary', 'description', 'deprecated', 'operation_id'})


class App:
    """Turns a Request into a Response: path normalisation, access control, routing, CORS, the error boundary."""

    def __init__(self, router: Router, settings: JobSettings, *, fallback: Callable[[Request], Response] | None = None):
        self.router = router
        self.settings = settings
        self._fallback = fallback
        self._access = AccessPolicy.from_settings(settings)
        origins = settings.cors_allow_origins
        self._any_origin = '*' in origins
        self._origins = frozenset(origins)

    def handle(self, request: Request) -> Response:
        """Answer one request; raises only ClientDisconnected (a client that left while queued)."""
        try:
            base_path, request.path = split_base_path(normalize_path(request.raw_path))
            request.base_path = base_path
            # Judged on the same normalised, prefix-free path the router sees, so no spelling slips past.
            self._access.check(request)
            response = self._options(request) if request.method == 'OPTIONS' else self._route(request)
        except HTTPError as e:
            request.rejected = e.rejected
            response = http_error_response(e)
        except ClientDisconnected:
            raise  # nobody to answer: the server closes the connection
        except Exception as e:
            logger.exception('%s %s failed', request.method, request.raw_path)
            # `error` is the message alone, as in the existing implementation: the type is in `type`.
            response = error_response(500, str(e), type(e).__name__)
        self._add_cors(request, response)
        return response

    def _route(self, request: Request) -> Response:
        if request.base_path and request.path == '/' and not request.raw_path.endswith('/'):
            # `/pub/job/{name}/{version}` itself: its home is `.../{version}/`, as in the existing implementation.
            return _redirect(request.base_path + '/', request.query)
        try:
            route, handler, request.path_params = self.router.match(request.method, request.path)
        except HTTPError as e:
            if e.status != 404:
                raise
            if request.path.endswith('/') and request.path != '/' and self.router.allowed(request.path.rstrip('/')):
                # A trailing slash too many answers 307 to the route, as FastAPI's `redirect_slashes`
                # does; 307 keeps the method and body.
                return _redirect(request.base_path + request.path.rstrip('/'), request.query)
            if self._fallback is not None:
                return self._fallback(request)
            raise
        request.route = route
        return handler(request)

    def _options(self, request: Request) -> Response:
        """CORS preflight, or the plain `Allow` answer for OPTIONS."""
        methods = self.router.allowed(request.path)
        allow = allow_header(methods)
        origin = request.headers.get('Origin')
        if origin and request.headers.get('Access-Control-Request-Method') and self._origin_allowed(origin):
            headers = {
                'Access-Control-Allow-Methods': allow,
                'Access-Control-Allow-Headers': request.headers.get('Access-Control-Request-Headers', '*'),
                'Access-Control-Max-Age': '600',
                **self._cors_origin_headers(origin),
            }
            return Response(b'', 200, 'text/plain; charset=utf-8', headers)
        if not methods and self._fallback is None:
            raise HTTPError(404, f'no endpoint at {request.path}', error_type='NotFound')
        return Response(b'', 204, headers={'Allow': allow})

    def _origin_allowed(self, origin: str) -> bool:
        return self._any_origin or origin in self._origins

    def _cors_origin_headers(self, origin: str) -> dict[str, str]:
        """Who may read the answer: `*` for any origin, without credentials; a configured origin, with them.

        Echoing any origin with credentials would let every site read a user's answers with the
        user's cookies; an origin the job lists is one it trusts with them.
        """
        if self._any_origin:
            return {'Access-Control-Allow-Origin': '*'}
        return {'Access-Control-Allow-Origin': origin, 'Access-Control-Allow-Credentials': 'true', 'Vary': 'Origin'}

    def _add_cors(self, request: Request, response: Response) -> None:
        origin = request.headers.get('Origin')
        if not origin or not self._origin_allowed(origin):
            return
        if request.method == 'OPTIONS':
            if response.header('Access-Control-Allow-Origin') is None:  # a plain OPTIONS, not a preflight
                response.headers.append(('Access-Control-Allow-Origin', '*' if self._any_origin else origin))
            return
        response.headers.extend(self._cors_origin_headers(origin).items())


def _redirect(path: str, query: str) -> Response:
    """307 to `path` on this job, a normalised path (one leading slash, so never another host).

    The location is relative, so it stays right behind any proxy.
    """
    location = quote(path, safe="/!$&'()*+,;=:@-._~")
    return Response(b'', 307, headers={'Location': f'{location}?{query}' if query else location})


def probe_routes(health: HealthState, settings: JobSettings) -> list[Route]:
    """`/live`, `/ready`, `/health`: answered in every phase of the server's life."""

    def live(_: Request) -> Response:
        status, body = live_body(health, settings)
        return json_response(body, status)

    def ready(_: Request) -> Response:
        status, body = ready_body(health)
        return json_response(body, status)

    def health_check(_: Request) -> Response:
        status, body = health_body(health, settings)
        return json_response(body, status)

    handlers = dict(zip(PROBE_PATHS, (live, ready, health_check), strict=True))
    return [Route(path, {'GET': handler}, f'the built-in {path}') for path, handler in handlers.items()]


def home_route(settings: JobSettings) -> Route:
    """`GET /` redirects to the home page under the job's public prefix, whichever way it was reached."""
    location = f'/pub/job/{settings.name}/{settings.version}{settings.home_page}'

    def home(_: Request) -> Response:
        return Response(b'', 307, headers={'Location': location})

    return Route('/', {'GET': home}, 'the built-in /')


def docs_title(settings: JobSettings) -> str:
    """The title of the docs page and of the OpenAPI document."""
    return f'Job - {settings.name}'


def build_loading_app(health: HealthState, settings: JobSettings) -> App:
    """The app served while the job loads (or after it failed to): probes, and 503 for the rest."""

    def state() -> str:
        if health.error:
            return f'the job failed to load: {health.error}'
        return 'the job is still loading; try again shortly'

    def not_ready(request: Request) -> Response:
        return error_response(503, state(), 'ServiceUnavailable', {'Retry-After': '1'})

    routes = [
        *probe_routes(health, settings),
        home_route(settings),
        loading_docs_route(f'Job - {settings.name}', state),
    ]
    return App(Router(routes), settings, fallback=not_ready)


class JobComponents:
    """What `build_job_app` made besides the app: what to close on shutdown, and the endpoints it serves."""

    def __init__(
        self,
        async_runner: AsyncRunner | None,
        endpoints: Sequence[EndpointSpec] = (),
        batcher: Batcher | None = None,
        calls: AsyncCalls | None = None,
    ):
        self.async_runner = async_runner
        self.endpoints = list(endpoints)
        self.batcher = batcher
        self.calls = calls

    def start(self) -> None:
        """The job serves: run the async calls waiting in the store (from before a restart, say)."""
        if self.calls is not None:
            self.calls.start()

    def close(self) -> None:
        """Stop the async call runner and the threads of the job's batches and of its async methods, if any."""
        if self.calls is not None:
            self.calls.close()
        if self.batcher is not None:
            self.batcher.close()
        if self.async_runner is not None:
            self.async_runner.close()


def build_job_app(
    entrypoint: Any,
    settings: JobSettings,
    health: HealthState,
    metrics: JobMetrics,
    extra_routes: Iterable[Route] = (),
    cwd: Path | None = None,
) -> tuple[App, JobComponents]:
    """Introspect a job instance once and build its full app; JobDefinitionError names what is wrong.

    Static endpoint files and the webview's `static/` directory are found relative to `cwd`
    (the working directory by default).
    """
    cwd = Path.cwd() if cwd is None else Path(cwd)
    specs = collect_endpoints(entrypoint)
    guesser = MimeGuesser()
    static_files = _call_optional(entrypoint, 'static_endpoints', dict)
    try:
        static = static_endpoints(static_files, cwd, API_PREFIX, guesser=guesser)
    except JobDefinitionError as e:
        e.where = e.where or getattr(entrypoint, 'static_endpoints', None)
        raise
    webview_url = webview_base_url(settings.name, settings.version, API_PREFIX)
    webview = create_webview_app(entrypoint, webview_url)
    context = RequestContext()
    context.attach_to(entrypoint)
    limiter = None
    if settings.max_concurrency:
        limiter = ConcurrencyLimiter(
            settings.max_concurrency, settings.max_concurrency_queue, metrics, stopping=lambda: health.stopping
        )
    needs_loop = (
        any(spec.is_async or spec.is_async_generator for spec in specs)
        or (webview is not None and is_asgi(webview))
        or inspect.iscoroutinefunction(getattr(entrypoint, 'perform_batch', None))
    )
    async_runner = AsyncRunner() if needs_loop else None
    batcher = None
    if specs and specs[0].path == '/perform' and _perform_of(entrypoint) is not None:
        batched = batched_perform(
            specs[0],
            entrypoint,
            max_size=settings.batch_max_size,
            max_wait_ms=settings.batch_max_wait_ms,
            observe_size=metrics.batch_size.observe,
            current_request=lambda: context.request.get(None),
            async_runner=async_runner,
        )
        if batched is not None:
            specs[0], batcher = batched
    access = AccessPolicy.from_settings(settings)
    # A call made to a public endpoint is readable without a token too (judged call by call).
    public_calls = any(access.is_public(API_PREFIX + spec.path) for spec in specs)
    calls = AsyncCalls(settings, metrics, cwd, public_calls=public_calls)
    routes = probe_routes(health, settings) + [home_route(settings)]
    by_path: dict[str, dict[str, Any]] = {}
    for spec in specs:
        invoker = Invoker(
            spec,
            metrics=metrics,
            context=context,
            limiter=limiter,
            async_runner=async_runner,
            validate=settings.validate_input,
            max_json_depth=settings.limits.max_json_depth,
            request_timeout=settings.limits.request_timeout,
            cancel_on_disconnect=settings.cancel_on_disconnect,
            defer=calls.defer,
        )
        handlers = by_path.setdefault(API_PREFIX + spec.path, {})
        if spec.method in handlers:
            raise JobDefinitionError(f'endpoint {spec.method} {spec.path} is defined twice')
        handlers[spec.method] = invoker
    has_perform = _perform_of(entrypoint) is not None
    if has_perform:
        parameters_body = json_response(describe_parameters(specs[0])).body

        def parameters(_: Request) -> Response:
            return json_bytes_response(parameters_body)
    else:
        parameters = _no_perform
        by_path[API_PREFIX + '/perform'] = {'POST': _no_perform}
    routes.append(Route(API_PREFIX + '/parameters', {'GET': parameters}, f'the built-in {API_PREFIX}/parameters'))
    routes.extend(Route(path, handlers, f'endpoint {path[len(API_PREFIX) :]}') for path, handlers in by_path.items())
    title = docs_title(settings)
    document = build_openapi(
        specs,
        title=title,
        version=settings.version,
        base_path=f'/pub/job/{settings.name}/{settings.version}',
        has_perform=has_perform,
        static_files=[file for endpoint in static for file in endpoint.files],
        has_webview=webview is not None,
        is_public=access.is_public,
        max_body_bytes=settings.limits.max_body_bytes,
        async_calls=True,
    )
    routes.extend(docs_routes(document, title))
    routes.extend(endpoint.route for endpoint in static)
    if webview is not None:
        routes.extend(
            webview_routes(
                webview, webview_url, API_PREFIX, static_dir=cwd / 'static', async_runner=async_runner, guesser=guesser
            )
        )
    routes.extend(calls.routes())
    routes.extend(extra_routes)
    app_settings = settings
    if public_calls:
        app_settings = replace(settings, public_endpoints=(*settings.public_endpoints, CALLS_PATH))
    app = App(Router(routes), app_settings)
    calls.attach(app.router)
    return app, JobComponents(async_runner, specs, batcher, calls)


def _no_perform(_: Request) -> Response:
    """`/perform` and `/parameters` of a webview-only job (no `perform`): 400, as the existing implementation."""
    raise HTTPError(
        400, 'this job has no perform() method; it serves its webview and other endpoints only', error_type='ValueError'
    )


def _perform_of(entrypoint: Any) -> Callable[..., Any] | None:
    perform = getattr(entrypoint, 'perform', None)
    return perform if callable(perform) else None


def collect_endpoints(entrypoint: Any) -> list[EndpointSpec]:
    """Perform first (when the job has one), then `auxiliary_endpoints()` and `auxiliary_endpoints_v2()`."""
    perform = _perform_of(entrypoint)
    examples = _input_examples(entrypoint)
    specs = []
    if perform is not None:
        specs.append(
            describe_endpoint(
                '/perform', 'POST', perform, example_fills_empty_body=True, **examples.arguments('/perform')
            )
        )
    for path, handler in _call_optional(entrypoint, 'auxiliary_endpoints', dict).items():
        path = _slash(path)
        specs.append(
            describe_endpoint(path, 'POST', handler, example_fills_empty_body=True, **examples.arguments(path))
        )
    for config in _call_optional(entrypoint, 'auxiliary_endpoints_v2', list):
        specs.append(_describe_v2(config, examples))
    return specs


def _describe_v2(config: Any, examples: _Examples) -> EndpointSpec:
    from racetrack_job_wrapper.endpoint_config import EndpointConfig  # only jobs with v2 endpoints load it

    if not isinstance(config, EndpointConfig) and not all(
        hasattr(config, name) for name in ('path', 'method', 'handler')
    ):
        raise JobDefinitionError(f'auxiliary_endpoints_v2() must return EndpointConfig items, got {config!r}')
    path = _slash(str(config.path))
    method = str(config.method.value if isinstance(config.method, HTTPMethod) else config.method).upper()
    if method not in ('GET', 'POST', 'PUT', 'PATCH', 'DELETE'):
        raise JobDefinitionError(f'auxiliary endpoint {path}: method {method!r} is not supported')
    options = dict(getattr(config, 'other_options', None) or {})
    unknown = sorted(set(options) - DOC_OPTIONS)
    if unknown:
        logger.warning('auxiliary endpoint %s: ignoring unsupported other_options %s', path, ', '.join(unknown))
    doc_options = {key: value for key, value in options.items() if key in DOC_OPTIONS}
    return describe_endpoint(
        path, method, config.handler, options=doc_options, fastapi_rules=True, **examples.arguments(path)
    )


class _Examples:
    """The docs input examples by endpoint path, with the job method each came from (where its errors point)."""

    def __init__(self) -> None:
        self._by_path: dict[str, tuple[Any, object]] = {}

    def add(self, path: str, example: Any, source: object) -> None:
        self._by_path[path] = (example, source)

    def arguments(self, path: str) -> dict[str, Any]:
        """`describe_endpoint`'s keyword arguments for the example of `path`."""
        example, source = self._by_path.get(path, (None, None))
        return {'example': example, 'example_source': source}


def _input_examples(entrypoint: Any) -> _Examples:
    """Examples by endpoint path: `docs_input_examples()` wins over `docs_input_example()` for /perform.

    They are checked where an endpoint takes them (`describe_endpoint`), so an example for a
    path the job does not serve is ignored, as in the existing implementation.
    """
    examples = _Examples()
    single = _call_optional(entrypoint, 'docs_input_example', dict, check=False)
    if single is not None and single != {}:
        examples.add('/perform', single, getattr(entrypoint, 'docs_input_example', None))
    many = _call_optional(entrypoint, 'docs_input_examples', dict)
    for path, example in many.items():
        examples.add(_slash(str(path)), example, getattr(entrypoint, 'docs_input_examples', None))
    return examples


def _call_optional(entrypoint: Any, method_name: str, expected: type, check: bool = True) -> Any:
    """Call an optional job method; JobDefinitionError naming it when it raises.

    A job that cannot build the endpoints it declares must not report ready without them.
    """
    method = getattr(entrypoint, method_name, None)
    if method is None:
        return expected()
    try:
        value = method()
    except Exception as e:
        raise JobDefinitionError(f'{method_name}() raised {type(e).__name__}: {e}') from e
    if value is None:
        return expected()
    if check and not isinstance(value, expected):
        raise JobDefinitionError(
            f'{method_name}() must return a {expected.__name__}, got {type(value).__name__}', where=method
        )
    return value


def _slash(path: str) -> str:
    return path if path.startswith('/') else '/' + path
