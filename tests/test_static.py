"""Static endpoints: files, directories, mime types, traversal attacks, caching, HEAD, streaming.

What a file's answer says (status, type, body, 404s, 405s) is checked in process through
`JobTestClient`; real sockets are kept for what only the server does: Content-Length, HEAD,
conditional requests, large files streamed, request targets sent byte for byte, a child process.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import tempfile
import unittest
from pathlib import Path

from racetrack_job_wrapper.messages import Headers, Request
from racetrack_job_wrapper.static import CHUNK_SIZE, FileStream, MimeGuesser, StaticDirectory, with_charset
from racetrack_job_wrapper.testing import JobTestClient
from tests.support import EXAMPLES_DIR, ProcessJob, ServerTestCase, load_example, raw_exchange

STATIC_EXAMPLE = EXAMPLES_DIR / 'static'


def load_error(running) -> str:
    return running.runner.health.error.rsplit(', cause=', 1)[0]


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """GET a request target sent byte for byte (no client-side normalisation); (status, whole response)."""
    reply = raw_exchange(port, f'GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'.encode('latin-1'))
    return int(reply.split(b' ', 2)[1]), reply


class GuideStaticTest(ServerTestCase):
    """The user guide's static endpoints, from examples/static, on a real socket: Content-Length and HEAD."""

    def setUp(self):
        self.client = self.serve(load_example('static'), cwd=STATIC_EXAMPLE)

    def assert_file(self, path: str, file: Path, content_type: str):
        response = self.client.get(path)
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(response.body, file.read_bytes())
        self.assertEqual(response.headers['content-type'], content_type)
        self.assertEqual(response.headers['x-content-type-options'], 'nosniff')
        self.assertEqual(response.headers['content-length'], str(file.stat().st_size))

    def test_files_with_guessed_and_given_mime_types(self):
        self.assert_file('/api/v1/xrai', STATIC_EXAMPLE / 'xrai.yaml', 'application/yaml; charset=utf-8')
        self.assert_file('/api/v1/manifest', STATIC_EXAMPLE / 'job.yaml', 'application/x-yaml')
        self.assert_file('/api/v1/docs/readme', STATIC_EXAMPLE / 'README.md', 'text/markdown; charset=utf-8')
        self.assert_file(
            '/pub/job/job/latest/api/v1/docs/readme', STATIC_EXAMPLE / 'README.md', 'text/markdown; charset=utf-8'
        )

    def test_directory_is_served_recursively(self):
        self.assert_file(
            '/api/v1/assets/index.html', STATIC_EXAMPLE / 'docs' / 'index.html', 'text/html; charset=utf-8'
        )
        self.assert_file(
            '/api/v1/assets/sub/notes.txt', STATIC_EXAMPLE / 'docs' / 'sub' / 'notes.txt', 'text/plain; charset=utf-8'
        )
        self.assert_file(
            '/pub/job/job/latest/api/v1/assets/sub/notes.txt',
            STATIC_EXAMPLE / 'docs' / 'sub' / 'notes.txt',
            'text/plain; charset=utf-8',
        )

    def test_head_gives_headers_without_body(self):
        response = self.client.request('HEAD', '/api/v1/assets/index.html')
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b'')
        self.assertEqual(
            response.headers['content-length'], str((STATIC_EXAMPLE / 'docs' / 'index.html').stat().st_size)
        )
        self.assertEqual(response.headers['etag'], self.client.get('/api/v1/assets/index.html').headers['etag'])


class GuideAnswersTest(unittest.TestCase):
    """The user guide's static endpoints, from examples/static: what they refuse."""

    def setUp(self):
        self.client = self.enterContext(JobTestClient(load_example('static'), {}, cwd=STATIC_EXAMPLE))

    def test_directories_themselves_are_404(self):
        for path in (
            '/api/v1/assets',
            '/api/v1/assets/',
            '/api/v1/assets/sub',
            '/api/v1/assets/sub/',
            '/api/v1/assets/missing.txt',
        ):
            response = self.client.get(path)
            self.assertEqual(response.status, 404, path)
            self.assertEqual(response.json(), {'error': f'no file at {path}', 'type': 'NotFound'})

    def test_other_methods_are_405(self):
        response = self.client.post('/api/v1/xrai', {})
        self.assertEqual((response.status, response.headers['allow']), (405, 'GET, HEAD, OPTIONS'))


class ProcessTest(unittest.TestCase):
    def test_paths_resolve_against_the_working_directory_of_the_process(self):
        job = ProcessJob(['job.py:Job'], cwd=STATIC_EXAMPLE)
        self.addCleanup(job.stop)
        job.wait_ready()
        response = job.client().get('/api/v1/docs/readme')
        self.assertEqual((response.status, response.body), (200, (STATIC_EXAMPLE / 'README.md').read_bytes()))


class MissingFileJob:
    def perform(self):
        return None

    def static_endpoints(self):
        return {'/present': 'README.md', 'gone': 'missing/file.txt'}


class BadValueJob(MissingFileJob):
    def static_endpoints(self):
        return {'/bad': ('README.md', 'text/plain', 'extra')}


class CollidingJob(MissingFileJob):
    def static_endpoints(self):
        return {'/parameters': 'README.md'}


class StartUpTest(ServerTestCase):
    def test_missing_file_is_a_start_up_error_naming_it(self):
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            running = self.start(MissingFileJob(), cwd=STATIC_EXAMPLE)
        self.assertEqual(
            load_error(running),
            f"JobDefinitionError: static endpoint /gone: file 'missing/file.txt' does not exist "
            f'(relative to the working directory {STATIC_EXAMPLE})',
        )

    def test_malformed_value_is_a_start_up_error(self):
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            running = self.start(BadValueJob(), cwd=STATIC_EXAMPLE)
        self.assertEqual(
            load_error(running),
            'JobDefinitionError: static endpoint /bad: expected a file name or a (file name, mime type) '
            "tuple, got ('README.md', 'text/plain', 'extra')",
        )

    def test_collision_with_builtin_route_names_it(self):
        with self.assertLogs('racetrack_job_wrapper', 'ERROR'):
            running = self.start(CollidingJob(), cwd=STATIC_EXAMPLE)
        self.assertEqual(
            load_error(running),
            'JobDefinitionError: static endpoint /parameters collides with the built-in '
            '/api/v1/parameters: both would answer GET /api/v1/parameters',
        )


class DirectoryJob:
    def perform(self):
        return None

    def static_endpoints(self):
        return {
            '/files': 'public',
            '/blob': 'public/data.weird',
            '/csv': ('public/a.txt', 'text/csv'),
            '/plain': ('public/a.txt', 'text/plain'),
            '/latin': ('public/a.txt', 'text/plain; charset=latin-1'),
            '/guessed': 'public/a.txt',
            '/env': 'public/.env',
        }


def make_layout(test: unittest.TestCase) -> Path:
    """A temporary root with `secret.txt` beside the served `public/`; removed after `test`.

    `public/` holds symlinks both ways, a FIFO, hidden files and a file of unknown type.
    """
    root = Path(tempfile.mkdtemp())
    test.addCleanup(_remove_tree, root)
    public = root / 'public'
    (public / 'sub').mkdir(parents=True)
    (root / 'secret.txt').write_bytes(b'TOP SECRET')
    (public / 'a.txt').write_bytes(b'public a')
    (public / 'sub' / 'b.json').write_bytes(b'{"b": 1}')
    (public / 'data.weird').write_bytes(b'\x00\x01')
    (public / 'escape').symlink_to(root / 'secret.txt')
    (public / 'linkdir').symlink_to(root)
    (public / 'inner_link').symlink_to(public / 'a.txt')
    os.mkfifo(public / 'pipe')
    (public / '.env').write_bytes(b'TOKEN=hidden')
    (public / '.git').mkdir()
    (public / '.git' / 'config').write_bytes(b'[core]')
    return root


class DirectoryTest(unittest.TestCase):
    """`make_layout` served by DirectoryJob, called in process."""

    def setUp(self):
        self.root = make_layout(self)
        with self.assertLogs('racetrack_job_wrapper.static', 'WARNING') as logs:
            self.client = self.enterContext(JobTestClient(DirectoryJob(), {}, cwd=self.root))
        self.warnings = [line for line in logs.output if 'mime type' in line]

    def test_hidden_files_are_not_served_from_a_directory_unless_listed(self):
        for path in ('/api/v1/files/.env', '/api/v1/files/.git/config', '/api/v1/files/%2eenv'):
            with self.subTest(path=path):
                self.assertEqual(self.client.get(path).status, 404)
        listed = self.client.get('/api/v1/env')
        self.assertEqual((listed.status, listed.body), (200, b'TOKEN=hidden'))
        paths = self.client.get('/openapi.json').json()['paths']
        self.assertNotIn('/api/v1/files/.env', paths)

    def test_unknown_mime_type_warns_and_is_octet_stream(self):
        self.assertEqual(
            self.warnings,
            [
                'WARNING:racetrack_job_wrapper.static:unknown mime type of static file data.weird; '
                'serving it as application/octet-stream',
                'WARNING:racetrack_job_wrapper.static:unknown mime type of static file .env; '
                'serving it as application/octet-stream',
            ],
        )
        response = self.client.get('/api/v1/blob')
        self.assertEqual((response.body, response.headers['content-type']), (b'\x00\x01', 'application/octet-stream'))

    def test_given_type_is_sent_verbatim_and_guessed_text_gets_a_charset(self):
        for path, content_type in (
            ('/api/v1/csv', 'text/csv'),
            ('/api/v1/plain', 'text/plain'),
            ('/api/v1/latin', 'text/plain; charset=latin-1'),
            ('/api/v1/guessed', 'text/plain; charset=utf-8'),
        ):
            for method in ('GET', 'HEAD'):
                response = self.client.request(method, path)
                self.assertEqual((response.status, response.headers['content-type']), (200, content_type), path)

    def test_files_added_after_start_up_are_served(self):
        self.assertEqual(self.client.get('/api/v1/files/new/later.txt').status, 404)
        (self.root / 'public' / 'new').mkdir()
        (self.root / 'public' / 'new' / 'later.txt').write_bytes(b'later')
        response = self.client.get('/api/v1/files/new/later.txt')
        self.assertEqual((response.status, response.body), (200, b'later'))

    def test_nested_file_and_symlink_inside(self):
        response = self.client.get('/api/v1/files/sub/b.json')
        self.assertEqual((response.body, response.headers['content-type']), (b'{"b": 1}', 'application/json'))
        self.assertEqual(self.client.get('/api/v1/files/inner_link').body, b'public a')

    def test_resolve_refuses_raw_escapes_itself(self):
        directory = StaticDirectory(self.root / 'public', MimeGuesser())
        for subpath in (
            '',
            '..',
            '../secret.txt',
            'sub/../../secret.txt',
            '..\\secret.txt',
            '/etc/passwd',
            str(self.root / 'secret.txt'),
            'escape',
            'linkdir/secret.txt',
            'sub//b.json',
            './a.txt',
            'a.txt\x00',
            'linkdir',
        ):
            self.assertIsNone(directory.resolve(subpath), subpath)
        public = os.path.realpath(self.root / 'public')
        self.assertEqual(directory.resolve('sub/b.json'), os.path.join(public, 'sub', 'b.json'))
        self.assertEqual(directory.resolve('inner_link'), os.path.join(public, 'a.txt'))


class DirectoryOverSocketTest(ServerTestCase):
    """`make_layout` served by DirectoryJob on a real socket: raw request targets, conditional requests, streaming."""

    def setUp(self):
        self.root = make_layout(self)
        with self.assertLogs('racetrack_job_wrapper.static', 'WARNING'):
            self.running = self.start(DirectoryJob(), cwd=self.root)
        self.client = self.running.client()

    def test_traversal_attacks_are_404(self):
        secret = self.root / 'secret.txt'
        attacks = [
            '/api/v1/files/../secret.txt',
            '/api/v1/files/../../../../../../etc/passwd',
            '/api/v1/files/%2e%2e/secret.txt',
            '/api/v1/files/%2E%2E/%2E%2E/secret.txt',
            '/api/v1/files/..%2fsecret.txt',
            '/api/v1/files/..%2Fsecret.txt',
            '/api/v1/files/%2e%2e%2fsecret.txt',
            '/api/v1/files/..\\secret.txt',
            '/api/v1/files/..%5csecret.txt',
            '/api/v1/files/sub/..%5c..%5csecret.txt',
            '/api/v1/files/sub/../../secret.txt',
            '/api/v1/files/./../secret.txt',
            '/api/v1/files/%252e%252e/secret.txt',
            '/api/v1/files//etc/passwd',
            '/api/v1/files/%2fetc%2fpasswd',
            '/api/v1/files' + str(secret),
            '/api/v1/files/' + str(secret),
            '/api/v1/files/escape',
            '/api/v1/files/linkdir/secret.txt',
            '/api/v1/files/pipe',
            '/api/v1/files/sub',
            '/pub/job/job/latest/api/v1/files/%2e%2e/secret.txt',
        ]
        for target in attacks:
            status, reply = raw_get(self.running.port, target)
            self.assertEqual(status, 404, target)
            self.assertNotIn(b'TOP SECRET', reply, target)
            self.assertNotIn(b'root:', reply, target)
        self.assertEqual(self.client.get('/api/v1/files/a.txt').body, b'public a')

    def test_etag_and_last_modified_give_304(self):
        first = self.client.get('/api/v1/files/a.txt')
        etag, modified = first.headers['etag'], first.headers['last-modified']
        self.assertEqual(first.headers['cache-control'], 'no-cache')
        for headers in (
            {'If-None-Match': etag},
            {'If-None-Match': f'"other", W/{etag}'},
            {'If-None-Match': '*'},
            {'If-Modified-Since': modified},
        ):
            response = self.client.get('/api/v1/files/a.txt', headers=headers)
            self.assertEqual((response.status, response.body), (304, b''), headers)
            self.assertEqual(response.headers['etag'], etag)
            self.assertNotIn('content-length', response.headers)
        earlier = email.utils.formatdate(os.stat(self.root / 'public' / 'a.txt').st_mtime - 60, usegmt=True)
        for headers in (
            {'If-None-Match': '"other"'},
            {'If-Modified-Since': earlier},
            {'If-Modified-Since': 'not a date'},
            {'If-None-Match': '"other"', 'If-Modified-Since': modified},
        ):
            response = self.client.get('/api/v1/files/a.txt', headers=headers)
            self.assertEqual((response.status, response.body), (200, b'public a'), headers)
        os.utime(self.root / 'public' / 'a.txt', ns=(0, 1_000_000_000))
        response = self.client.get('/api/v1/files/a.txt', headers={'If-None-Match': etag})
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers['etag'], '"8-3b9aca00"')
        self.assertEqual(response.headers['last-modified'], 'Thu, 01 Jan 1970 00:00:01 GMT')

    def test_large_file_is_streamed_in_chunks(self):
        data = os.urandom(CHUNK_SIZE * 40 + 123)
        (self.root / 'public' / 'big.bin').write_bytes(data)
        directory = StaticDirectory(self.root / 'public', MimeGuesser())
        request = Request('GET', '/api/v1/files/big.bin', headers=Headers())
        request.path_params = {'subpath': 'big.bin'}
        response = directory.respond(request)
        self.assertIsInstance(response.stream, FileStream)
        self.assertEqual((response.body, response.content_length), (b'', len(data)))
        sizes = [len(chunk) for chunk in response.stream]
        response.stream.close()
        self.assertEqual(sizes, [CHUNK_SIZE] * 40 + [123])
        received = self.client.get('/api/v1/files/big.bin')
        self.assertEqual(hashlib.sha256(received.body).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_server_keeps_serving_after_bad_requests(self):
        for _ in range(3):
            self.assertEqual(self.client.get('/api/v1/files/../secret.txt').status, 404)
            self.assertEqual(self.client.get('/api/v1/files/pipe').status, 404)
        self.assertEqual(self.client.get('/api/v1/files/a.txt').status, 200)


class MimeTest(unittest.TestCase):
    def test_guesses(self):
        guesser = MimeGuesser()
        expected = {
            'a.md': 'text/markdown; charset=utf-8',
            'a.yaml': 'application/yaml; charset=utf-8',
            'a.yml': 'application/yaml; charset=utf-8',
            'a.html': 'text/html; charset=utf-8',
            'a.js': 'text/javascript; charset=utf-8',
            'a.css': 'text/css; charset=utf-8',
            'a.json': 'application/json',
            'a.png': 'image/png',
            'a.svg': 'image/svg+xml; charset=utf-8',
            'a.woff2': 'font/woff2',
        }
        self.assertEqual({name: guesser.guess(name) for name in expected}, expected)
        with self.assertLogs('racetrack_job_wrapper.static', 'WARNING') as logs:
            self.assertEqual(guesser.guess('x.unknownext'), 'application/octet-stream')
            self.assertEqual(guesser.guess('y.unknownext'), 'application/octet-stream')
        self.assertEqual(len(logs.output), 1)

    def test_with_charset(self):
        self.assertEqual(with_charset('text/plain'), 'text/plain; charset=utf-8')
        self.assertEqual(with_charset('text/plain; charset=latin-1'), 'text/plain; charset=latin-1')
        self.assertEqual(with_charset('application/x-yaml'), 'application/x-yaml; charset=utf-8')
        self.assertEqual(with_charset('image/png'), 'image/png')


def _remove_tree(path: Path) -> None:
    for child in sorted(path.rglob('*'), key=lambda item: len(item.parts), reverse=True):
        if child.is_symlink() or not child.is_dir():
            child.unlink()
        else:
            child.rmdir()
    path.rmdir()


if __name__ == '__main__':
    unittest.main()
