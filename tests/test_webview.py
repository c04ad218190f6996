"""Webview over real sockets: the guide's Flask app, WSGI under wsgiref.validate, the ASGI bridge, FastAPI."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import sys
import threading
import unittest
from wsgiref.validate import validator

from racetrack_job_wrapper.messages import Headers, Request
from racetrack_job_wrapper.webview import ASGIApp, WSGIBridge, build_environ, is_asgi
from tests.support import EXAMPLES_DIR, ServerTestCase, load_example, raw_exchange

WEBVIEW_EXAMPLE = EXAMPLES_DIR / 'webview'
MANIFEST = {'name': 'web', 'version': '2.0.0'}
BASE_URL = '/pub/job/web/2.0.0/api/v1/webview'


class FlaskExampleTest(ServerTestCase):
    """The user guide's Flask webview from examples/webview, reached under the prefix and at the root."""

    def setUp(self):
        manifest = {**MANIFEST, 'jobtype_extra': {'home_page': '/api/v1/webview'}}
        self.client = self.serve(load_example('webview'), manifest, cwd=WEBVIEW_EXAMPLE)

    def test_index_renders_the_template_under_prefix_and_root(self):
        for path in (BASE_URL + '/', '/api/v1/webview/'):
            response = self.client.get(path)
            self.assertEqual(response.status, 200, path)
            self.assertEqual(response.headers['content-type'], 'text/html; charset=utf-8')
            page = response.body.decode()
            self.assertIn(f'<p id="base">{BASE_URL}</p>', page)
            self.assertIn(f'href="{BASE_URL}/static/style.css"', page)

    def test_post_json_under_prefix_and_root(self):
        for path in (BASE_URL + '/postme', '/api/v1/webview/postme'):
            response = self.client.post(path, {'name': 'webview', 'n': [1, 2]})
            self.assertEqual((response.status, response.json()), (200, {'hello': {'name': 'webview', 'n': [1, 2]}}))

    def test_unknown_page_is_the_apps_own_404(self):
        response = self.client.get('/api/v1/webview/nothing')
        self.assertEqual(response.status, 404)
        self.assertIn(b'Not Found', response.body)

    def test_mount_without_slash_redirects_except_the_exact_base_url(self):
        expected = {
            '/api/v1/webview': '/api/v1/webview/',
            '/api/v1/webview?x=1': '/api/v1/webview/?x=1',
            '/pub/job/other/9/api/v1/webview': '/pub/job/other/9/api/v1/webview/',
        }
        for path, location in expected.items():
            response = self.client.get(path)
            self.assertEqual((response.status, response.headers['location']), (307, location), path)
        response = self.client.post('/api/v1/webview', {})
        self.assertEqual((response.status, response.headers['location']), (307, '/api/v1/webview/'))
        # The base_url the app was given is its index, as in the existing implementation.
        exact, slashed = self.client.get(BASE_URL), self.client.get(BASE_URL + '/')
        self.assertEqual((exact.status, exact.body), (slashed.status, slashed.body))
        self.assertEqual(exact.status, 200)

    def test_home_page_redirects_to_the_webview(self):
        response = self.client.get('/')
        self.assertEqual((response.status, response.headers['location']), (307, BASE_URL))
        self.assertEqual(self.client.get(BASE_URL).status, 200)

    def test_static_directory(self):
        for path in (BASE_URL + '/static/style.css', '/api/v1/webview/static/style.css'):
            response = self.client.get(path)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.body, (WEBVIEW_EXAMPLE / 'static' / 'style.css').read_bytes())
            self.assertEqual(response.headers['content-type'], 'text/css; charset=utf-8')
            self.assertEqual(response.headers['x-content-type-options'], 'nosniff')
        self.assertEqual(self.client.get('/api/v1/webview/static/../job.py').status, 404)
        self.assertEqual(self.client.get('/api/v1/webview/static/%2e%2e/job.py').status, 404)


class Recorder:
    """What the test apps saw, shared with the test thread."""

    def __init__(self):
        self.closed: list[str] = []
        self.disconnected = threading.Event()
        self._changed = threading.Condition()

    def close(self, name: str) -> None:
        with self._changed:
            self.closed.append(name)
            self._changed.notify_all()

    def wait_closed(self, expected: list[str], timeout: float = 5.0) -> bool:
        """True once `closed` equals `expected` (the server closes iterables after the client has the response)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.closed == expected, timeout)


class ClosingIterable:
    def __init__(self, chunks, name, recorder, fail_after=None):
        self.chunks, self.name, self.recorder, self.fail_after = chunks, name, recorder, fail_after

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if self.fail_after is not None and index == self.fail_after:
                raise RuntimeError('failed mid-body')
            yield chunk

    def close(self):
        self.recorder.close(self.name)


def make_wsgi_app(recorder: Recorder):
    def app(environ, start_response):
        path = environ['PATH_INFO'].removeprefix(BASE_URL)
        if path == '/echo':
            length = int(environ.get('CONTENT_LENGTH') or 0)
            body = environ['wsgi.input'].read(length)
            rest = environ['wsgi.input'].read(10)
            keys = [
                'REQUEST_METHOD',
                'SCRIPT_NAME',
                'PATH_INFO',
                'QUERY_STRING',
                'CONTENT_TYPE',
                'CONTENT_LENGTH',
                'SERVER_NAME',
                'SERVER_PORT',
                'SERVER_PROTOCOL',
                'REMOTE_ADDR',
                'HTTP_X_CUSTOM',
                'HTTP_HOST',
                'wsgi.url_scheme',
                'wsgi.multithread',
                'wsgi.multiprocess',
                'wsgi.run_once',
                'wsgi.version',
            ]
            seen = {key: environ.get(key) for key in keys}
            seen.update(
                body=body.decode(),
                rest=rest.decode(),
                http_keys=sorted(key for key in environ if key.startswith('HTTP_')),
            )
            environ['wsgi.errors'].write('echo called\n')
            data = json.dumps(seen).encode()
            start_response('200 OK', [('Content-Type', 'application/json'), ('Content-Length', str(len(data)))])
            return [data]
        if path == '/write':
            write = start_response('201 Created', [('Content-Type', 'text/plain')])
            write(b'written ')
            write(b'then ')
            return ClosingIterable([b'iterated'], 'write', recorder)
        if path == '/lazy':

            def lazy():
                start_response('202 Accepted', [('Content-Type', 'text/plain'), ('X-Lazy', 'yes')])
                yield b''
                yield b'lazy body'

            return lazy()
        if path == '/exc-info':
            start_response('200 OK', [('Content-Type', 'text/plain')])
            try:
                raise KeyError('lookup failed')
            except KeyError:
                start_response(
                    '503 Service Unavailable', [('Content-Type', 'text/plain'), ('Retry-After', '3')], sys.exc_info()
                )
            return [b'replaced']
        if path == '/stream':
            start_response('200 OK', [('Content-Type', 'text/plain')])
            return ClosingIterable([b'one,', b'two,', b'three'], 'stream', recorder)
        if path == '/late-error':
            start_response('200 OK', [('Content-Type', 'text/plain')])
            return ClosingIterable([b'first', b'second'], 'late-error', recorder, fail_after=1)
        if path == '/crash':
            raise RuntimeError('webview exploded')
        start_response('404 Not Found', [('Content-Type', 'text/plain')])
        return [b'no page']

    return app


class WSGIJob:
    def __init__(self):
        self.recorder = Recorder()

    def perform(self):
        return 'wsgi'

    def webview_app(self, base_url):
        assert base_url == BASE_URL, base_url
        return validator(make_wsgi_app(self.recorder))


class WSGIBridgeTest(ServerTestCase):
    """A test WSGI app wrapped in wsgiref.validate.validator, so every exchange is checked against PEP 3333."""

    def setUp(self):
        self.job = WSGIJob()
        self.running = self.start(self.job, MANIFEST)
        self.client = self.running.client()

    def test_environ_from_root_and_prefix(self):
        for prefix in ('', '/pub/job/web/2.0.0'):
            with self.assertLogs('racetrack_job_wrapper.webview', 'ERROR') as logs:
                response = self.client.request(
                    'POST',
                    prefix + '/api/v1/webview/echo?a=1&b=%20',
                    body=b'hello',
                    headers={'Content-Type': 'text/plain', 'X-Custom': 'v', 'X_Smuggled': 'dropped'},
                )
            self.assertEqual(logs.output, ['ERROR:racetrack_job_wrapper.webview:webview: echo called'])
            self.assertEqual(response.status, 200)
            self.assertEqual(
                response.json(),
                {
                    'REQUEST_METHOD': 'POST',
                    'SCRIPT_NAME': '',
                    'PATH_INFO': BASE_URL + '/echo',
                    'QUERY_STRING': 'a=1&b=%20',
                    'CONTENT_TYPE': 'text/plain',
                    'CONTENT_LENGTH': '5',
                    'SERVER_NAME': '127.0.0.1',
                    'SERVER_PORT': str(self.running.port),
                    'SERVER_PROTOCOL': 'HTTP/1.1',
                    'REMOTE_ADDR': '127.0.0.1',
                    'HTTP_X_CUSTOM': 'v',
                    'HTTP_HOST': f'127.0.0.1:{self.running.port}',
                    'wsgi.url_scheme': 'http',
                    'wsgi.multithread': True,
                    'wsgi.multiprocess': False,
                    'wsgi.run_once': False,
                    'wsgi.version': [1, 0],
                    'body': 'hello',
                    'rest': '',
                    'http_keys': ['HTTP_ACCEPT_ENCODING', 'HTTP_HOST', 'HTTP_X_CUSTOM'],
                },
            )

    def test_chunked_request_body_arrives_whole(self):
        with self.assertLogs('racetrack_job_wrapper.webview', 'ERROR'):
            reply = raw_exchange(
                self.running.port,
                b'POST /api/v1/webview/echo HTTP/1.1\r\nHost: h\r\n'
                b'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n'
                b'3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n',
            )
        head, _, body = reply.partition(b'\r\n\r\n')
        self.assertTrue(head.startswith(b'HTTP/1.1 200 '), head)
        seen = json.loads(body)
        self.assertEqual(
            (seen['body'], seen['CONTENT_LENGTH'], seen['http_keys']), ('abcde', '5', ['HTTP_CONNECTION', 'HTTP_HOST'])
        )

    def test_write_callable_then_iterable_and_close(self):
        response = self.client.get('/api/v1/webview/write')
        self.assertEqual((response.status, response.body), (201, b'written then iterated'))
        self.assertTrue(self.job.recorder.wait_closed(['write']))

    def test_start_response_called_lazily_inside_the_iterable(self):
        response = self.client.get('/api/v1/webview/lazy')
        self.assertEqual((response.status, response.headers['x-lazy'], response.body), (202, 'yes', b'lazy body'))

    def test_exc_info_replaces_status_before_headers_are_sent(self):
        response = self.client.get('/api/v1/webview/exc-info')
        self.assertEqual((response.status, response.headers['retry-after'], response.body), (503, '3', b'replaced'))

    def test_response_is_streamed_chunked_and_closed(self):
        reply = raw_exchange(
            self.running.port, b'GET /api/v1/webview/stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'
        )
        head, _, body = reply.partition(b'\r\n\r\n')
        self.assertIn(b'\r\nTransfer-Encoding: chunked\r\n', head)
        self.assertEqual(body, b'4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n')
        self.assertTrue(self.job.recorder.wait_closed(['stream']))

    def test_head_closes_the_iterable(self):
        response = self.client.request('HEAD', '/api/v1/webview/stream')
        self.assertEqual((response.status, response.body), (200, b''))
        self.assertTrue(self.job.recorder.wait_closed(['stream']))

    def test_exception_is_500_with_traceback_and_server_keeps_serving(self):
        with self.assertLogs('racetrack_job_wrapper.webview', 'ERROR') as logs:
            response = self.client.get('/api/v1/webview/crash')
        self.assertEqual(
            (response.status, response.json()), (500, {'error': 'webview exploded', 'type': 'RuntimeError'})
        )
        self.assertIn('Traceback (most recent call last)', logs.output[0])
        self.assertIn('RuntimeError: webview exploded', logs.output[0])
        self.assertEqual(self.client.get('/api/v1/webview/lazy').status, 202)

    def test_error_after_body_started_cuts_the_connection(self):
        connection = http.client.HTTPConnection('127.0.0.1', self.running.port, timeout=10)
        self.addCleanup(connection.close)
        with self.assertLogs('racetrack_job_wrapper.webview', 'ERROR') as logs:
            connection.request('GET', '/api/v1/webview/late-error')
            response = connection.getresponse()
            self.assertEqual(response.status, 200)
            with self.assertRaises(http.client.IncompleteRead):
                response.read()
        self.assertIn('webview app failed while streaming GET /api/v1/webview/late-error', logs.output[0])
        self.assertIn('RuntimeError: failed mid-body', logs.output[0])
        self.assertTrue(self.job.recorder.wait_closed(['late-error']))
        self.assertEqual(self.client.get('/api/v1/webview/stream').body, b'one,two,three')

    def test_exc_info_after_headers_sent_is_reraised_into_the_app(self):
        raised = []

        def app(environ, start_response):
            start_response('200 OK', [('Content-Type', 'text/plain')])
            yield b'started'
            try:
                raise ValueError('too late')
            except ValueError:
                try:
                    start_response('500 Internal Server Error', [('Content-Type', 'text/plain')], sys.exc_info())
                except ValueError as e:
                    raised.append(str(e))
                    raise

        request = Request('GET', '/api/v1/webview/x', headers=Headers([('Host', 'h')]))
        request.path_params = {'subpath': 'x'}
        response = WSGIBridge(app, BASE_URL)(request)
        chunks = iter(response.stream)
        self.assertEqual(next(chunks), b'started')
        with self.assertLogs('racetrack_job_wrapper.webview', 'ERROR'), self.assertRaises(ConnectionAbortedError):
            next(chunks)
        self.assertEqual(raised, ['too late'])


class EnvironTest(unittest.TestCase):
    def test_non_ascii_path_is_latin1_of_utf8_bytes(self):
        request = Request(
            'GET',
            '/api/v1/webview/caf\u00e9',
            headers=Headers([('Host', 'example.org:8080')]),
            client=('10.0.0.1', 5555),
        )
        environ = build_environ(request, BASE_URL + '/caf\u00e9')
        self.assertEqual(environ['PATH_INFO'], BASE_URL + '/caf\u00c3\u00a9')
        self.assertEqual(
            (environ['SERVER_NAME'], environ['REMOTE_ADDR'], environ['REMOTE_PORT']),
            ('example.org', '10.0.0.1', '5555'),
        )
        self.assertNotIn('CONTENT_TYPE', environ)

    def test_repeated_headers_are_joined_with_commas(self):
        request = Request('GET', '/x', headers=Headers([('Accept', 'a'), ('accept', 'b'), ('Host', 'h')]))
        self.assertEqual(build_environ(request, '/x')['HTTP_ACCEPT'], 'a,b')


def make_asgi_app(recorder: Recorder):
    async def app(scope, receive, send):
        assert scope['type'] == 'http'
        path = scope['path'].removeprefix(scope['root_path'])  # as Starlette's routing does under a Mount
        if path.startswith('/echo'):
            message = await receive()
            seen = {
                key: scope[key]
                for key in ('type', 'method', 'path', 'root_path', 'app_root_path', 'scheme', 'http_version')
            }
            seen.update(
                raw_path=scope['raw_path'].decode(),
                query=scope['query_string'].decode(),
                body=message['body'].decode(),
                more_body=message['more_body'],
                custom=dict(scope['headers']).get(b'x-custom', b'').decode(),
                server_port=scope['server'][1],
                client=scope['client'][0],
                asgi=scope['asgi']['version'],
            )
            data = json.dumps(seen).encode()
            await send(
                {'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'application/json')]}
            )
            await send({'type': 'http.response.body', 'body': data})
        elif path == '/stream':
            assert (await receive()) == {'type': 'http.request', 'body': b'', 'more_body': False}
            await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})
            for index in range(3):
                await asyncio.sleep(0.01)
                await send({'type': 'http.response.body', 'body': f'part{index};'.encode(), 'more_body': True})
            await send({'type': 'http.response.body', 'body': b'', 'more_body': False})
            message = await receive()
            if message == {'type': 'http.disconnect'}:
                recorder.disconnected.set()
        elif path == '/fail':
            raise RuntimeError('asgi exploded')
        elif path == '/fail-late':
            await send({'type': 'http.response.start', 'status': 200, 'headers': []})
            await send({'type': 'http.response.body', 'body': b'partial', 'more_body': True})
            raise RuntimeError('asgi failed mid-body')
        else:
            await send({'type': 'http.response.start', 'status': 404, 'headers': [(b'content-length', b'7')]})
            await send({'type': 'http.response.body', 'body': b'missing'})

    return app


class ASGIJob:
    def __init__(self, wrap=lambda app: app):
        self.recorder = Recorder()
        self.wrap = wrap

    def perform(self):
        return 'asgi'

    def webview_app(self, base_url):
        return self.wrap(make_asgi_app(self.recorder))


class ClassBasedASGI:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


class ASGIBridgeTest(ServerTestCase):
    def setUp(self):
        self.job = ASGIJob()
        self.running = self.start(self.job, MANIFEST)
        self.client = self.running.client()

    def test_request_body_and_scope(self):
        for prefix in ('', '/pub/job/web/2.0.0', '/pub/job/web/latest', '/pub/fatman/web/2.0.0'):
            response = self.client.request(
                'POST', prefix + '/api/v1/webview/echo/caf%C3%A9?q=%20', body=b'payload', headers={'X-Custom': 'c'}
            )
            # Mounted as Starlette's Mount does (racetrack-job-runner 1.18 on Starlette 1.x answers the same).
            self.assertEqual(
                response.json(),
                {
                    'type': 'http',
                    'method': 'POST',
                    'path': prefix + '/api/v1/webview/echo/café',
                    'raw_path': prefix + '/api/v1/webview/echo/caf%C3%A9',
                    'root_path': prefix + '/api/v1/webview',
                    'app_root_path': '',
                    'scheme': 'http',
                    'http_version': '1.1',
                    'query': 'q=%20',
                    'body': 'payload',
                    'more_body': False,
                    'custom': 'c',
                    'server_port': self.running.port,
                    'client': '127.0.0.1',
                    'asgi': '3.0',
                },
                prefix,
            )

    def test_streamed_response_then_disconnect(self):
        reply = raw_exchange(
            self.running.port, b'GET /api/v1/webview/stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n'
        )
        head, _, body = reply.partition(b'\r\n\r\n')
        self.assertIn(b'\r\nTransfer-Encoding: chunked\r\n', head)
        self.assertEqual(body, b'6\r\npart0;\r\n6\r\npart1;\r\n6\r\npart2;\r\n0\r\n\r\n')
        self.assertTrue(self.job.recorder.disconnected.wait(5))

    def test_content_length_from_the_app(self):
        response = self.client.get('/api/v1/webview/other')
        self.assertEqual((response.status, response.headers['content-length'], response.body), (404, '7', b'missing'))

    def test_exception_before_start_is_500_and_server_keeps_serving(self):
        with self.assertLogs('racetrack_job_wrapper.webview', 'ERROR') as logs:
            response = self.client.get('/api/v1/webview/fail')
        self.assertEqual((response.status, response.json()), (500, {'error': 'asgi exploded', 'type': 'RuntimeError'}))
        self.assertIn('Traceback (most recent call last)', logs.output[0])
        self.assertEqual(self.client.get('/api/v1/webview/other').status, 404)

    def test_exception_mid_body_cuts_the_connection(self):
        connection = http.client.HTTPConnection('127.0.0.1', self.running.port, timeout=10)
        self.addCleanup(connection.close)
        with self.assertLogs('racetrack_job_wrapper.webview', 'ERROR') as logs:
            connection.request('GET', '/api/v1/webview/fail-late')
            response = connection.getresponse()
            with self.assertRaises(http.client.IncompleteRead):
                response.read()
        self.assertIn('RuntimeError: asgi failed mid-body', logs.output[0])
        self.assertEqual(self.client.get('/api/v1/webview/other').status, 404)


class FastAPIWebviewTest(ServerTestCase):
    """A real FastAPI app as the webview; every expected answer is racetrack-job-runner 1.18's to the same app."""

    PREFIXES = ('/pub/job/web/2.0.0', '/pub/job/web/latest', '')

    def setUp(self):
        try:
            from tests.fastapi_webview import FastAPIJob
        except ImportError:
            if os.environ.get('CI'):
                raise
            self.skipTest('FastAPI is not installed; the test extra and CI install it')
        self.running = self.start(FastAPIJob(), MANIFEST)
        self.client = self.running.client()
        self.origin = f'http://127.0.0.1:{self.running.port}'

    def test_index_under_prefix_and_root(self):
        for prefix in self.PREFIXES:
            response = self.client.get(prefix + '/api/v1/webview/')
            self.assertEqual(
                (response.status, response.json()),
                (
                    200,
                    {
                        'path': prefix + '/api/v1/webview/',
                        'root_path': prefix + '/api/v1/webview',
                        'base_url': self.origin + '/',
                    },
                ),
                prefix,
            )

    def test_links_built_from_root_path(self):
        for prefix in self.PREFIXES:
            response = self.client.get(prefix + '/api/v1/webview/page')
            self.assertEqual(
                (response.status, response.headers['content-type'], response.body),
                (200, 'text/html; charset=utf-8', f'<a href="{prefix}/api/v1/webview/items/1">one</a>'.encode()),
            )
            docs = self.client.get(prefix + '/api/v1/webview/docs').body.decode()
            self.assertIn(f"url: '{prefix}/api/v1/webview/openapi.json'", docs)
            self.assertIn(f"window.location.origin + '{prefix}/api/v1/webview/docs/oauth2-redirect'", docs)

    def test_path_parameter(self):
        for prefix in self.PREFIXES:
            response = self.client.get(prefix + '/api/v1/webview/items/caf%C3%A9')
            self.assertEqual(
                (response.status, response.json()),
                (200, {'x': 'café', 'path': prefix + '/api/v1/webview/items/café'}),
                prefix,
            )

    def test_post_json_body(self):
        for prefix in self.PREFIXES:
            response = self.client.post(prefix + '/api/v1/webview/items', {'name': 'bolt', 'count': 3})
            self.assertEqual((response.status, response.json()), (200, {'created': 'bolt', 'count': 3}), prefix)
            response = self.client.post(prefix + '/api/v1/webview/items', {'count': 3})
            self.assertEqual(
                (response.status, response.json()),
                (
                    422,
                    {
                        'detail': [
                            {'type': 'missing', 'loc': ['body', 'name'], 'msg': 'Field required', 'input': {'count': 3}}
                        ]
                    },
                ),
                prefix,
            )

    def test_apps_own_redirect_and_404(self):
        for prefix in self.PREFIXES:
            response = self.client.get(prefix + '/api/v1/webview/items/')
            self.assertEqual(
                (response.status, response.headers['location']), (307, f'{self.origin}{prefix}/api/v1/webview/items')
            )
            response = self.client.get(prefix + '/api/v1/webview/nope')
            self.assertEqual((response.status, response.json()), (404, {'detail': 'Not Found'}))


class CollidingWebviewJob(WSGIJob):
    def static_endpoints(self):
        return {'/webview/readme': 'README.md'}


class WebviewCollisionTest(ServerTestCase):
    def test_static_endpoint_under_the_webview_mount_is_a_start_up_error(self):
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            running = self.start(CollidingWebviewJob(), MANIFEST, cwd=EXAMPLES_DIR / 'static')
        self.assertEqual(
            running.runner.health.error.rsplit(', cause=', 1)[0],
            'JobDefinitionError: static endpoint /webview/readme collides with the webview '
            'mounted at /api/v1/webview/: both would answer GET /api/v1/webview/readme',
        )


class ASGIDetectionTest(ServerTestCase):
    def test_class_based_and_marked_apps_are_served_as_asgi(self):
        for wrap in (ClassBasedASGI, lambda app: ASGIApp(lambda scope, receive, send: app(scope, receive, send))):
            client = self.serve(ASGIJob(wrap), MANIFEST)
            self.assertEqual(client.get('/api/v1/webview/other').body, b'missing')

    def test_unmarked_sync_front_of_an_asgi_app_is_a_clear_500(self):
        def front(scope, receive=None, send=None):
            return make_asgi_app(Recorder())(scope, receive, send)

        client = self.serve(ASGIJob(lambda app: front), MANIFEST)
        with self.assertLogs('racetrack_job_wrapper.webview', 'ERROR'):
            response = client.get('/api/v1/webview/other')
        self.assertEqual(
            (response.status, response.json()),
            (
                500,
                {
                    'error': 'the webview app returned an awaitable when called as WSGI; '
                    'to serve an ASGI app, return ASGIApp(app) from webview_app()',
                    'type': 'TypeError',
                },
            ),
        )

    def test_is_asgi(self):
        async def asgi(scope, receive, send):
            pass

        def wsgi(environ, start_response):
            return []

        self.assertEqual(
            [
                is_asgi(asgi),
                is_asgi(ClassBasedASGI(asgi)),
                is_asgi(ASGIApp(wsgi)),
                is_asgi(wsgi),
                is_asgi(validator(wsgi)),
                is_asgi(ClassBasedASGI(asgi).__call__),
            ],
            [True, True, True, False, False, True],
        )


if __name__ == '__main__':
    unittest.main()
