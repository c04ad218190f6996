"""The OpenAPI 3.1 document of one job, built once at start-up from its endpoint descriptions.

Besides each operation's own answers, the document lists the refusals every client can meet,
each with the `{"error", "type"}` body:
- 401 on every operation but the probes and the public endpoints: the Racetrack gateway
  requires a token on every other path, and a job reached directly does when run with
  JOB_AUTH_TOKENS (it cannot know which way a client comes, so both are said);
- 413 on every operation that takes a request body: one over `max_body_bytes`;
- 429 on the job's own calls (perform and auxiliary endpoints), the ones the concurrency cap
  admits: only with `max_concurrency_queue` set, when that many calls wait already;
- 503 with `Retry-After` everywhere: past `max_connections` or while shutting down a
  connection is turned away before its request is read, and every operation but the probes
  and `/` answers it while the job loads or after it failed to load.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterable
from typing import Any

from racetrack_job_wrapper.calls import CALLS_PATH
from racetrack_job_wrapper.callstore import STATUSES
from racetrack_job_wrapper.endpoints import EndpointSpec, ParamSpec
from racetrack_job_wrapper.routing import API_PREFIX, METRICS_PATH, PROBE_PATHS
from racetrack_job_wrapper.schema import SchemaBuilder
from racetrack_job_wrapper.serialize import json_default
from racetrack_job_wrapper.settings import (
    AUTH_HEADER,
    AUTH_TOKENS_ENV_VAR,
    CALLBACK_URL_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    PREFER_HEADER,
    Limits,
)
from racetrack_job_wrapper.streaming import NDJSON_TYPE, SSE_TYPE, streamed_item_type

OPENAPI_VERSION = '3.1.0'
AUTH_SCHEME = 'RacetrackAuth'
JOB_TAG = 'job'
STATUS_TAG = 'status'
_ERROR_REF = {'$ref': '#/components/schemas/Error'}
_ERROR_SCHEMA = {
    'type': 'object',
    'title': 'Error',
    'properties': {'error': {'type': 'string'}, 'type': {'type': 'string'}},
    'required': ['error', 'type'],
}
_NULLABLE_STRING = {'anyOf': [{'type': 'string'}, {'type': 'null'}]}
_ASYNC_CALL_REF = {'$ref': '#/components/schemas/AsyncCall'}
_CALL_STATUS = {'type': 'string', 'enum': list(STATUSES)}
_ASYNC_CALL_SCHEMA = {
    'type': 'object',
    'title': 'AsyncCall',
    'properties': {
        'id': {'type': 'string'},
        'status': _CALL_STATUS,
        'endpoint': {'type': 'string', 'description': 'The method and path called, e.g. POST /api/v1/perform'},
        'created_at': {'type': 'string', 'format': 'date-time'},
        'started_at': {'anyOf': [{'type': 'string', 'format': 'date-time'}, {'type': 'null'}]},
        'finished_at': {'anyOf': [{'type': 'string', 'format': 'date-time'}, {'type': 'null'}]},
        'progress': {
            'type': 'object',
            'properties': {'fraction': {'type': 'number', 'minimum': 0, 'maximum': 1}, 'message': {'type': 'string'}},
        },
        'cancel_requested': {'type': 'boolean'},
        'status_code': {'type': 'integer', 'description': 'The status the call would have answered synchronously'},
        'result': {'description': 'Once succeeded: the body the call would have answered'},
        'error': {'description': 'Once failed or cancelled: the error body, {"error", "type"}'},
        'callback': {
            'type': 'object',
            'properties': {
                'url': {'type': 'string'},
                'attempts': {'type': 'integer'},
                'delivered': {'type': 'boolean'},
            },
        },
    },
    'required': ['id', 'status', 'created_at'],
}
_ACCEPTED_SCHEMA = {
    'type': 'object',
    'title': 'AsyncCallAccepted',
    'properties': {'id': {'type': 'string'}, 'status': _CALL_STATUS},
    'required': ['id', 'status'],
}
_ASYNC_PARAMETERS = [
    {
        'name': PREFER_HEADER,
        'in': 'header',
        'required': False,
        'schema': {'type': 'string'},
        'description': 'respond-async: answer 202 at once and run the call later; its status is at Location',
    },
    {
        'name': IDEMPOTENCY_KEY_HEADER,
        'in': 'header',
        'required': False,
        'schema': {'type': 'string', 'maxLength': 255},
        'description': 'With Prefer: respond-async, the same key and body give the same call again',
    },
    {
        'name': CALLBACK_URL_HEADER,
        'in': 'header',
        'required': False,
        'schema': {'type': 'string'},
        'description': 'With Prefer: respond-async, a URL the final state is POSTed to;'
        ' its host must be listed in jobtype_extra.callback_hosts',
    },
]
_RETRY_AFTER = {
    'Retry-After': {'description': 'Seconds to wait before trying again', 'schema': {'type': 'integer', 'minimum': 0}}
}
_UNAUTHORIZED = (
    f"No valid token: the Racetrack gateway requires one (in {AUTH_HEADER}) on every path but the job's"
    f' public_endpoints; a job reached directly requires one only when run with {AUTH_TOKENS_ENV_VAR}'
    f' ({AUTH_HEADER} or Authorization: Bearer)'
)
_QUEUE_FULL = (
    'Too many calls wait for the job already: with jobtype_extra.max_concurrency_queue set, a call'
    ' past max_concurrency and a full queue is refused'
)
_TURNED_AWAY = 'The server is at max_connections or shutting down, and turned the connection away'
_NOT_LOADED = (
    'The job is still loading or failed to load (it is being restarted), or the server is at'
    ' max_connections or shutting down and turned the connection away'
)


def build_openapi(
    endpoints: Iterable[EndpointSpec],
    *,
    title: str,
    version: str,
    base_path: str = '',
    description: str = '',
    auth_header: str = AUTH_HEADER,
    has_perform: bool = True,
    static_files: Iterable[tuple[str, str]] = (),
    has_webview: bool = False,
    is_public: Callable[[str], bool] | None = None,
    max_body_bytes: int = Limits.max_body_bytes,
    async_calls: bool = False,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a job's endpoints (paths under /api/v1) plus its status endpoints.

    With `async_calls`, the job's operations take `Prefer: respond-async` (and answer 202), and
    `/api/v1/calls/{call_id}` is listed.

    Static files (path under /api/v1, Content-Type) and the webview are listed too, each
    file as an operation of its own, as the existing implementation lists them.

    `servers` lists `base_path` (the `/pub/job/{name}/{version}` prefix the job is reached
    through) and `/`, so "Try it out" works whichever way the docs page was opened.
    Operations whose path `is_public` (the access policy's judgement of the job's
    public_endpoints) need no token: no 401, `security: []`. `max_body_bytes` is named in
    the 413 answers.
    """
    builder = SchemaBuilder()
    operation_ids: set[str] = set()
    paths: dict[str, dict[str, Any]] = {}
    for spec in endpoints:
        path = API_PREFIX + spec.path
        operation = _operation(spec, path, builder, operation_ids)
        if async_calls:
            _add_async(operation)
            # On the path, not the operation: they apply to every job call at it alike.
            paths.setdefault(path, {})['parameters'] = _ASYNC_PARAMETERS
        paths.setdefault(path, {})[spec.method.lower()] = operation
    if not has_perform:
        paths[API_PREFIX + '/perform'] = {}  # its place; filled in after the refusals, which it does not list
    for path, content_type in static_files:
        operation = _static_operation(path, content_type)
        operation['operationId'] = _unique(operation['operationId'], operation_ids)
        paths.setdefault(API_PREFIX + path, {})['get'] = operation
    if has_webview:
        paths[API_PREFIX + '/webview/{path}'] = {'get': _webview_operation()}
    for path, method, operation in _status_operations():
        operation['operationId'] = _unique(operation['operationId'], operation_ids)
        paths.setdefault(path, {})[method] = operation
    if async_calls:
        for method, operation in _calls_operations().items():
            operation['operationId'] = _unique(operation['operationId'], operation_ids)
            paths.setdefault(CALLS_PATH + '/{call_id}', {})[method] = operation
    _add_refusals(paths, is_public or _nothing_public, max_body_bytes)
    if not has_perform:
        paths[API_PREFIX + '/perform'] = {'post': _no_perform_operation()}
    servers = [{'url': base_path, 'description': 'through the Racetrack gateway'}] if base_path else []
    servers.append({'url': '/', 'description': 'the job directly'})
    info: dict[str, Any] = {'title': title, 'version': version}
    if description:
        info['description'] = description
    components: dict[str, Any] = {
        'schemas': {
            **builder.components,
            'Error': _ERROR_SCHEMA,
            **({'AsyncCall': _ASYNC_CALL_SCHEMA} if async_calls else {}),
        },
        'securitySchemes': {
            AUTH_SCHEME: {
                'type': 'apiKey',
                'in': 'header',
                'name': auth_header,
                'description': 'Racetrack authentication token, checked by the Racetrack gateway in front of the job'
                f' (and by the job itself when run with {AUTH_TOKENS_ENV_VAR}).',
            }
        },
    }
    return {
        'openapi': OPENAPI_VERSION,
        'info': info,
        'servers': servers,
        'paths': paths,
        'components': components,
        'security': [{AUTH_SCHEME: []}],
        'tags': [
            {'name': JOB_TAG, 'description': 'Calls to the job'},
            {'name': STATUS_TAG, 'description': 'Probes, parameters and metrics'},
        ],
    }


def _operation(spec: EndpointSpec, path: str, builder: SchemaBuilder, operation_ids: set[str]) -> dict[str, Any]:
    options = spec.options
    # The whole docstring, as the existing implementation shows it; the parameters are described in the schema too.
    description = options.get('description', spec.docstring) or ''
    summary = options.get('summary') or _first_line(spec.description) or _title_from_path(spec.path)
    operation: dict[str, Any] = {
        'tags': list(options.get('tags') or [JOB_TAG]),
        'summary': summary,
        'operationId': _unique(options.get('operation_id') or _operation_id(spec.method, path), operation_ids),
    }
    if description:
        operation['description'] = description
    if options.get('deprecated'):
        operation['deprecated'] = True
    example = dict(spec.example) if spec.example is not None else {}
    parameters = [_parameter(param, builder, example) for param in spec.params if param.source != 'body']
    if parameters:
        operation['parameters'] = parameters
    body_params = [param for param in spec.params if param.source == 'body']
    if spec.whole_body is not None:
        whole = body_params[0]
        media: dict[str, Any] = {'schema': _property(whole, builder)}
        if whole.name in example:
            media['example'] = example[whole.name]
        operation['requestBody'] = {'required': whole.required, 'content': {'application/json': media}}
    elif body_params or (spec.accepts_any_kwargs and spec.method not in ('GET', 'HEAD', 'DELETE')):
        operation['requestBody'] = _request_body(spec, body_params, builder, example)
    operation['responses'] = {
        '200': {
            'description': spec.returns_description or 'The result of the call',
            'content': _result_content(spec, builder),
        },
        '400': _error_response(
            'Invalid input: a parameter is missing, unexpected or of the wrong type, '
            'or the job refused it with a ValueError'
        ),
        '429': _error_response(_QUEUE_FULL, _RETRY_AFTER),
        '500': _error_response('The job failed, or its result cannot be expressed in JSON'),
    }
    return operation


def _add_async(operation: dict[str, Any]) -> None:
    """The answers of a job operation made an async call (its headers are the path's parameters)."""
    responses = operation['responses']
    responses['202'] = {
        'description': 'Accepted as an async call (Prefer: respond-async); GET Location for its status',
        'headers': {
            'Location': {'description': 'The status of the call', 'schema': {'type': 'string'}},
            'Preference-Applied': {'description': 'respond-async', 'schema': {'type': 'string'}},
        },
        'content': {'application/json': {'schema': _ACCEPTED_SCHEMA}},
        'links': {
            name: {
                'operationRef': '#/paths/' + (CALLS_PATH + '/{call_id}').replace('/', '~1') + '/' + method,
                'parameters': {'call_id': '$response.body#/id'},
                'description': description,
            }
            for name, method, description in (
                ('status', 'get', 'The status of the call, and its result once finished'),
                ('cancel', 'delete', 'Cancel the call'),
            )
        },
    }
    responses['422'] = _error_response(
        f'{IDEMPOTENCY_KEY_HEADER} was used before for another body or query (IdempotencyKeyReused)'
    )
    operation['responses'] = dict(sorted(responses.items()))


def _calls_operations() -> dict[str, dict[str, Any]]:
    """`GET` and `DELETE /api/v1/calls/{call_id}`: the status of an async call, and its cancel."""
    parameter = {'name': 'call_id', 'in': 'path', 'required': True, 'schema': {'type': 'string'}}
    content = {'application/json': {'schema': _ASYNC_CALL_REF}}
    unknown = _error_response('No such call: unknown, or forgotten after jobtype_extra.calls_retention')
    return {
        'get': {
            'tags': [JOB_TAG],
            'summary': 'Status of an async call: its result or error once finished',
            'operationId': 'get_call',
            'parameters': [parameter],
            'responses': {'200': {'description': 'The call', 'content': content}, '404': unknown},
        },
        'delete': {
            'tags': [JOB_TAG],
            'summary': 'Cancel an async call: a queued one never runs, a running one is cancelled',
            'operationId': 'delete_call',
            'parameters': [parameter],
            'responses': {
                '200': {'description': 'The call was queued: it is cancelled and never runs', 'content': content},
                '202': {'description': 'The call runs: it is asked to stop', 'content': content},
                '404': unknown,
                '409': _error_response('The call has finished already (CallFinished)'),
            },
        },
    }


def _add_refusals(paths: dict[str, dict[str, Any]], is_public: Callable[[str], bool], max_body_bytes: int) -> None:
    """Add the 401, 413 and 503 answers to every operation they can come from (see the module docstring)."""
    too_large = f'The request body is over max_body_bytes ({max_body_bytes} bytes)'
    for path, methods in paths.items():
        probe = path in PROBE_PATHS
        # A `{name}` template is judged by its fixed head, as any path it stands for would be.
        public = not probe and is_public(path.split('{', 1)[0] if '{' in path else path)
        for method, operation in methods.items():
            if method == 'parameters':  # the path's own, shared by its operations
                continue
            responses = operation['responses']
            if public:
                operation['security'] = []
            elif not probe:
                responses['401'] = _error_response(_UNAUTHORIZED, _WWW_AUTHENTICATE)
            if 'requestBody' in operation:
                responses['413'] = _error_response(too_large)
            responses['503'] = _error_response(_TURNED_AWAY if probe or path == '/' else _NOT_LOADED, _RETRY_AFTER)
            operation['responses'] = dict(sorted(responses.items()))


def _nothing_public(path: str) -> bool:
    return False


def _request_body(
    spec: EndpointSpec, params: list[ParamSpec], builder: SchemaBuilder, example: dict[str, Any]
) -> dict[str, Any]:
    properties = {param.name: _property(param, builder) for param in params}
    required = [param.name for param in params if param.required]
    schema: dict[str, Any] = {'type': 'object', 'properties': properties}
    if required:
        schema['required'] = required
    if not spec.accepts_any_kwargs:
        schema['additionalProperties'] = False
    media: dict[str, Any] = {'schema': schema}
    body_names = {param.name for param in params}
    body_example = {
        name: value
        for name, value in example.items()
        if name in body_names or (spec.accepts_any_kwargs and spec.param(name) is None)
    }
    if body_example:
        media['example'] = body_example
    # An empty body means `{}`, so the body is only required when some parameter is.
    return {'required': bool(required), 'content': {'application/json': media}}


def _property(param: ParamSpec, builder: SchemaBuilder) -> dict[str, Any]:
    schema = dict(builder.schema(param.annotation))
    if param.description:
        schema['description'] = param.description
    if not param.required:
        has_default, default = json_default(param.default)
        if has_default:
            schema['default'] = default
    if param.examples:
        examples = [json_default(example) for example in param.examples]
        if all(ok for ok, _ in examples):
            schema['examples'] = [value for _, value in examples]
    return schema


def _parameter(param: ParamSpec, builder: SchemaBuilder, example: dict[str, Any]) -> dict[str, Any]:
    schema = dict(builder.schema(param.annotation))
    if not param.required:
        has_default, default = json_default(param.default)
        if has_default:
            schema['default'] = default
    parameter: dict[str, Any] = {
        'name': param.name,
        'in': param.source,
        'required': param.source == 'path' or param.required,
        'schema': schema,
    }
    if param.description:
        parameter['description'] = param.description
    if param.examples and json_default(param.examples[0])[0]:
        parameter['example'] = json_default(param.examples[0])[1]
    elif param.name in example:
        parameter['example'] = example[param.name]
    return parameter


def _no_perform_operation() -> dict[str, Any]:
    """`/perform` of a job without `perform`: listed, as the existing implementation lists it, and always a 400."""
    return {
        'tags': [JOB_TAG],
        'summary': 'Not available: this job has no perform() method',
        'operationId': 'post_perform',
        'responses': {'400': _error_response('This job has no perform() method')},
    }


def _static_operation(path: str, content_type: str) -> dict[str, Any]:
    media = content_type.split(';', 1)[0].strip()
    return {
        'tags': [JOB_TAG],
        'summary': f'Static file {path}',
        'operationId': _operation_id('get', path),
        'responses': {
            '200': {'description': 'The file', 'content': {media: {'schema': {'type': 'string'}}}},
            '304': {'description': 'The copy named by If-None-Match or If-Modified-Since is current'},
            '404': _error_response('The file is gone'),
        },
    }


def _webview_operation() -> dict[str, Any]:
    return {
        'tags': [JOB_TAG],
        'summary': "Pages of the job's webview app",
        'operationId': 'get_webview',
        'parameters': [
            {
                'name': 'path',
                'in': 'path',
                'required': True,
                'schema': {'type': 'string'},
                'description': 'The page under the webview',
            }
        ],
        'responses': {
            '200': {
                'description': 'A page of the webview app, as the app answers it',
                'content': {'text/html': {'schema': {'type': 'string'}}},
            }
        },
    }


_WWW_AUTHENTICATE = {'WWW-Authenticate': {'description': 'The Bearer challenge', 'schema': {'type': 'string'}}}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {'description': description, 'content': {'application/json': {'schema': _ERROR_REF}}}
    if headers:
        response['headers'] = headers
    return response


LIVE, READY, HEALTH = PROBE_PATHS


def _status_operations() -> list[tuple[str, str, dict[str, Any]]]:
    """The endpoints every job has besides its own: parameters, probes, metrics."""
    parameters_schema = {
        'type': 'array',
        'items': {
            'type': 'object',
            'properties': {'name': {'type': 'string'}, 'type': _NULLABLE_STRING, 'default_value': {}},
            'required': ['name', 'type'],
        },
    }
    live_schema = {
        'type': 'object',
        'properties': {'live': {'type': 'boolean'}, 'deployment_timestamp': {}, 'error': {'type': 'string'}},
        'required': ['live'],
    }
    ready_schema = {'type': 'object', 'properties': {'ready': {'type': 'boolean'}}, 'required': ['ready']}
    health_schema = {
        'type': 'object',
        'properties': {
            'service': {'type': 'string'},
            'job_name': {'type': 'string'},
            'status': {'type': 'string', 'enum': ['pass', 'fail']},
            'live': {'type': 'boolean'},
            'ready': {'type': 'boolean'},
            'error': _NULLABLE_STRING,
            'job_version': {'type': 'string'},
            'git_version': _NULLABLE_STRING,
            'deployed_by_racetrack_version': _NULLABLE_STRING,
            'deployment_timestamp': {},
            'job_type_version': _NULLABLE_STRING,
        },
        'required': ['status', 'live', 'ready'],
    }

    def probe(operation_id: str, summary: str, schema: dict[str, Any], failing: str) -> dict[str, Any]:
        content = {'application/json': {'schema': schema}}
        return {
            'tags': [STATUS_TAG],
            'summary': summary,
            'operationId': operation_id,
            'security': [],
            'responses': {
                '200': {'description': 'OK', 'content': content},
                '500': {'description': failing, 'content': content},
            },
        }

    return [
        (
            API_PREFIX + '/parameters',
            'get',
            {
                'tags': [STATUS_TAG],
                'summary': 'Parameters of perform: name, type and default value',
                'operationId': 'get_parameters',
                'responses': {
                    '200': {
                        'description': 'The parameters of perform',
                        'content': {'application/json': {'schema': parameters_schema}},
                    }
                },
            },
        ),
        (
            '/',
            'get',
            {
                'tags': [STATUS_TAG],
                'summary': 'Home: redirects to the home page (the API docs by default)',
                'operationId': 'get_home',
                'responses': {'307': {'description': "The home page, under the job's public prefix"}},
            },
        ),
        (LIVE, 'get', probe('get_live', 'Liveness probe', live_schema, 'The job failed to start')),
        (READY, 'get', probe('get_ready', 'Readiness probe', ready_schema, 'The job is not ready yet')),
        (
            HEALTH,
            'get',
            probe(
                'get_health', 'Health of the job and its versions', health_schema, 'The job is not live or not ready'
            ),
        ),
        (
            METRICS_PATH,
            'get',
            {
                'tags': [STATUS_TAG],
                'summary': 'Prometheus metrics',
                'operationId': 'get_metrics',
                # Scraped without a token (Prometheus reaches the pod, not the gateway), unless JOB_AUTH_TOKENS is set.
                'security': [{}, {AUTH_SCHEME: []}],
                'responses': {
                    '200': {
                        'description': 'Metrics in the Prometheus text format',
                        'content': {'text/plain': {'schema': {'type': 'string'}}},
                    }
                },
            },
        ),
    ]


def _first_line(text: str) -> str:
    line = text.strip().split('\n', 1)[0].strip() if text else ''
    return line if len(line) <= 120 else line[:117] + '...'


def _title_from_path(path: str) -> str:
    words = re.sub(r'[{}]', '', path).strip('/').replace('/', ' ').replace('_', ' ').replace('-', ' ')
    return words[:1].upper() + words[1:] if words else 'Call'


def _operation_id(method: str, path: str) -> str:
    slug = re.sub(r'[^A-Za-z0-9]+', '_', path.removeprefix(API_PREFIX)).strip('_') or 'root'
    return f'{method.lower()}_{slug}'


def _unique(operation_id: str, taken: set[str]) -> str:
    candidate = operation_id
    counter = 2
    while candidate in taken:
        candidate = f'{operation_id}_{counter}'
        counter += 1
    taken.add(candidate)
    return candidate


def _result_content(spec: EndpointSpec, builder: SchemaBuilder) -> dict[str, Any]:
    """The 200's media: JSON, or for a generator (`Iterator[T]`, `AsyncIterator[T]` ...) a stream of `T` or a list."""
    item = streamed_item_type(spec.returns) if spec.has_return_annotation else None
    if item is None and not spec.is_async_generator:
        return {'application/json': {'schema': builder.schema(spec.returns)}}
    schema = builder.schema(item if item is not None else typing.Any)
    return {
        NDJSON_TYPE: {'schema': schema, 'x-description': 'one JSON value per line, sent as each is produced'},
        SSE_TYPE: {'schema': {'type': 'string'}, 'x-description': 'with Accept: text/event-stream, an event per item'},
        'application/json': {'schema': {'type': 'array', 'items': schema}, 'x-description': 'every item, as one list'},
    }
