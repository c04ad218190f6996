import re
import unittest
from urllib.parse import urljoin, urlsplit

from racetrack_job_wrapper.docs import ASSET_TYPES, docs_routes, render_page, swagger_dir
from racetrack_job_wrapper.messages import Headers, Request
from racetrack_job_wrapper.routing import Router
from racetrack_job_wrapper.testing import JobTestClient
from tests.support import JobClient, ServerTestCase

EXPECTED_TYPES = {
    'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
    'swagger-ui-initializer': 'text/javascript; charset=utf-8',
    'swagger-ui.css': 'text/css; charset=utf-8',
    'favicon-32x32.png': 'image/png',
}
MANIFEST = {'name': 'adder', 'version': '1.2.3'}


class AdderJob:
    def perform(self, a: float, b: float = 1.0) -> float:
        """Add two numbers."""
        return a + b

    def docs_input_example(self) -> dict:
        return {'a': 40, 'b': 2}


def referenced_urls(page: str) -> list[str]:
    """Every URL the page refers to: href, src and the OpenAPI data attribute."""
    return re.findall(r'(?:href|src|data-openapi-url)="([^"]*)"', page)


def content_type_for(url: str) -> str:
    name = url.rsplit('/', 1)[-1]
    if name == 'openapi.json':
        return 'application/json'
    if name == 'swagger-initializer.js':
        return EXPECTED_TYPES['swagger-ui-initializer']
    return EXPECTED_TYPES[name]


def check_docs(test: unittest.TestCase, client: JobClient, page_path: str, title: str) -> list[str]:
    """Fetch the page and everything it references; returns the absolute paths fetched."""
    page = client.get(page_path)
    test.assertEqual(page.status, 200, page.body[:200])
    test.assertEqual(page.headers['content-type'], 'text/html; charset=utf-8')
    text = page.body.decode()
    test.assertIn('<meta charset="utf-8">', text)
    test.assertIn(f'<title>{title} - Swagger UI</title>', text)
    fetched = []
    urls = referenced_urls(text)
    test.assertEqual(len(urls), 5, urls)
    for url in urls:
        test.assertFalse(urlsplit(url).scheme or url.startswith('/'), f'{url} is not relative')
        path = urljoin(page_path, url)
        response = client.get(path)
        test.assertEqual(response.status, 200, path)
        test.assertEqual(response.headers['content-type'], content_type_for(url), path)
        test.assertGreater(len(response.body), 0, path)
        test.assertEqual(int(response.headers['content-length']), len(response.body), path)
        if url.endswith('openapi.json'):
            test.assertEqual(response.json()['info']['title'], title)
        fetched.append(path)
    return fetched


class DocsRoutesTest(unittest.TestCase):
    """The routes on their own, without a socket."""

    def setUp(self):
        self.router = Router(
            docs_routes({'openapi': '3.1.0', 'info': {'title': 'Job - é', 'version': '1'}}, title='Job - <é>')
        )

    def get(self, path, headers=()):
        route, handler, params = self.router.match('GET', path)
        request = Request('GET', path, headers=Headers(headers))
        request.path_params = params
        response = handler(request)
        body = response.body if response.stream is None else b''.join(response.stream)
        return response, body

    def test_openapi_json_bytes(self):
        response, body = self.get('/openapi.json')
        self.assertEqual(body, '{"openapi":"3.1.0","info":{"title":"Job - é","version":"1"}}'.encode())
        self.assertEqual(response.header('Content-Type'), 'application/json')

    def test_page_is_escaped_and_relative(self):
        response, body = self.get('/docs')
        self.assertIn(b'<title>Job - &lt;\xc3\xa9&gt; - Swagger UI</title>', body)
        self.assertEqual(
            referenced_urls(body.decode()),
            [
                'docs/swagger-ui.css',
                'docs/favicon-32x32.png',
                'openapi.json',
                'docs/swagger-ui-bundle.js',
                'docs/swagger-initializer.js',
            ],
        )
        _, folder_body = self.get('/docs/')
        self.assertEqual(
            referenced_urls(folder_body.decode()),
            [
                'swagger-ui.css',
                'favicon-32x32.png',
                '../openapi.json',
                'swagger-ui-bundle.js',
                'swagger-initializer.js',
            ],
        )
        self.assertEqual(render_page('Job - <é>', 'docs/', 'openapi.json'), body)

    def test_etag_and_304(self):
        response, body = self.get('/docs/swagger-ui-bundle.js')
        etag = response.header('ETag')
        self.assertRegex(etag, r'^"[0-9a-f]{32}"$')
        self.assertEqual(response.header('Cache-Control'), 'public, max-age=86400')
        self.assertEqual(body, (swagger_dir() / 'swagger-ui-bundle.js').read_bytes())
        for sent in (etag, f'W/{etag}', f'"other", {etag}', '*'):
            with self.subTest(sent=sent):
                response, body = self.get('/docs/swagger-ui-bundle.js', [('If-None-Match', sent)])
                self.assertEqual((response.status, body, response.header('ETag')), (304, b'', etag))
        response, _ = self.get('/docs/swagger-ui-bundle.js', [('If-None-Match', '"other"')])
        self.assertEqual(response.status, 200)
        page, _ = self.get('/docs')
        self.assertEqual(page.header('Cache-Control'), 'no-cache')
        self.assertEqual(self.get('/docs', [('If-None-Match', page.header('ETag'))])[0].status, 304)

    def test_unknown_asset_is_404(self):
        for path in ('/docs/swagger-ui-bundle.js.map', '/docs/../LICENSE', '/docs/README.md'):
            with self.subTest(path=path):
                with self.assertRaises(Exception) as caught:
                    self.get(path)
                self.assertEqual(getattr(caught.exception, 'status', None), 404)

    def test_initializer_fetches_nothing_from_outside(self):
        _, body = self.get('/docs/swagger-initializer.js')
        text = body.decode()
        self.assertIn('validatorUrl: null', text)
        self.assertIn('displayRequestDuration: true', text)
        self.assertNotIn('http', text)

    def test_vendored_files(self):
        directory = swagger_dir()
        self.assertEqual((directory / 'VERSION').read_text().strip()[:2], '5.')
        self.assertEqual(sorted(ASSET_TYPES), ['favicon-32x32.png', 'swagger-ui-bundle.js', 'swagger-ui.css'])
        self.assertEqual(sorted(path.name for path in directory.glob('*.map')), [])
        css = (directory / 'swagger-ui.css').read_text()
        self.assertEqual(re.findall(r'url\((?!["\']?data:)[^)]*\)', css), [])


class DocsServerTest(ServerTestCase):
    """The page and the files it refers to, fetched as a browser fetches them."""

    # On a real socket: check_docs compares each Content-Length with its body, and only the
    # server writes that header.

    def test_docs_and_assets(self):
        client = self.serve(AdderJob, MANIFEST)
        self.addCleanup(client.close)
        fetched = check_docs(self, client, '/docs', 'Job - adder')
        self.assertEqual(
            fetched,
            [
                '/docs/swagger-ui.css',
                '/docs/favicon-32x32.png',
                '/openapi.json',
                '/docs/swagger-ui-bundle.js',
                '/docs/swagger-initializer.js',
            ],
        )

    def test_docs_under_public_prefix_and_folder_url(self):
        client = self.serve(AdderJob, MANIFEST)
        self.addCleanup(client.close)
        fetched = check_docs(self, client, '/pub/job/x/1/docs', 'Job - adder')
        self.assertEqual(fetched[2], '/pub/job/x/1/openapi.json')
        fetched = check_docs(self, client, '/docs/', 'Job - adder')
        self.assertEqual(fetched[2], '/openapi.json')


class JobDocumentTest(unittest.TestCase):
    def test_openapi_document_of_the_job(self):
        client = self.enterContext(JobTestClient(AdderJob, MANIFEST))
        document = client.get('/openapi.json').json()
        self.assertEqual(document['info'], {'title': 'Job - adder', 'version': '1.2.3'})
        self.assertEqual(document['servers'][0]['url'], '/pub/job/adder/1.2.3')
        body = document['paths']['/api/v1/perform']['post']['requestBody']['content']['application/json']
        self.assertEqual(body['example'], {'a': 40, 'b': 2})
        response = client.get('/openapi.json', headers={'If-None-Match': client.get('/openapi.json').headers['etag']})
        self.assertEqual((response.status, response.body), (304, b''))


if __name__ == '__main__':
    unittest.main()
