"""Router matching, base-path stripping and path normalisation, without sockets."""

import unittest

from racetrack_job_wrapper.messages import HTTPError, JobDefinitionError, Response
from racetrack_job_wrapper.routing import Route, Router, normalize_path, split_base_path


def handler(_request):
    return Response(b'')


class RouterTest(unittest.TestCase):
    def setUp(self):
        self.router = Router(
            [
                Route('/api/v1/perform', {'POST': handler}),
                Route('/api/v1/multiply/{number}', {'GET': handler}),
                Route('/api/v1/webview/*', {'GET': handler, 'POST': handler}),
                Route('/api/v1/webview/static/*', {'GET': handler}),
            ]
        )

    def test_exact_path(self):
        route, found, params = self.router.match('POST', '/api/v1/perform')
        self.assertEqual((route.path, found, params), ('/api/v1/perform', handler, {}))

    def test_template_captures_segment(self):
        route, _, params = self.router.match('GET', '/api/v1/multiply/21.5')
        self.assertEqual((route.path, params), ('/api/v1/multiply/{number}', {'number': '21.5'}))

    def test_template_does_not_span_segments(self):
        with self.assertRaises(HTTPError) as caught:
            self.router.match('GET', '/api/v1/multiply/1/2')
        self.assertEqual(caught.exception.status, 404)

    def test_longest_prefix_wins(self):
        route, _, params = self.router.match('GET', '/api/v1/webview/static/app.js')
        self.assertEqual((route.path, params), ('/api/v1/webview/static/*', {'subpath': 'app.js'}))
        route, _, params = self.router.match('GET', '/api/v1/webview/')
        self.assertEqual((route.path, params), ('/api/v1/webview/*', {'subpath': ''}))

    def test_prefix_needs_a_segment_boundary(self):
        with self.assertRaises(HTTPError) as caught:
            self.router.match('GET', '/api/v1/webviewx')
        self.assertEqual(caught.exception.status, 404)

    def test_wrong_method_is_405_with_allow(self):
        with self.assertRaises(HTTPError) as caught:
            self.router.match('DELETE', '/api/v1/perform')
        self.assertEqual(caught.exception.status, 405)
        self.assertEqual(caught.exception.headers, {'Allow': 'OPTIONS, POST'})

    def test_head_falls_back_to_get(self):
        self.assertIs(self.router.match('HEAD', '/api/v1/multiply/2')[1], handler)

    def test_a_partial_match_never_hides_a_later_full_one(self):
        router = Router(
            [
                Route('/api/v1/items/{name}', {'POST': handler}, 'endpoint /items/{name}'),
                Route('/api/v1/items/*', {'GET': handler}, 'static endpoint /items'),
            ]
        )
        route, _, params = router.match('GET', '/api/v1/items/a.txt')
        self.assertEqual((route.owner, params), ('static endpoint /items', {'subpath': 'a.txt'}))
        self.assertEqual(router.match('POST', '/api/v1/items/a.txt')[0].owner, 'endpoint /items/{name}')
        with self.assertRaises(HTTPError) as caught:
            router.match('DELETE', '/api/v1/items/a.txt')
        self.assertEqual(
            (caught.exception.status, caught.exception.headers['Allow']), (405, 'GET, HEAD, OPTIONS, POST')
        )

    def test_one_path_may_have_routes_of_several_owners_for_different_methods(self):
        router = Router([Route('/x', {'GET': handler}, 'a'), Route('/x', {'POST': handler}, 'b')])
        self.assertEqual(router.match('POST', '/x')[0].owner, 'b')
        self.assertEqual(router.allowed('/x'), {'GET', 'HEAD', 'POST'})

    def test_routes_of_two_owners_answering_the_same_request_are_refused(self):
        cases = [
            ([('/x', 'GET', 'a'), ('/x', 'GET', 'b')], 'b collides with a: both would answer GET /x'),
            (
                [('/assets/*', 'GET', 'static'), ('/assets/{name}', 'GET', 'v2')],
                'v2 collides with static: both would answer GET /assets/{name}',
            ),
            (
                [('/a/{x}', 'POST', 'one'), ('/a/b', 'POST', 'two')],
                'two collides with one: both would answer POST /a/b',
            ),
            (
                [('/w/*', 'GET', 'webview'), ('/w/readme', 'HEAD', 'static')],
                'static collides with webview: both would answer HEAD /w/readme',
            ),
        ]
        for specs, message in cases:
            with self.subTest(specs=specs):
                with self.assertRaises(JobDefinitionError) as caught:
                    Router([Route(path, {method: handler}, owner) for path, method, owner in specs])
                self.assertEqual(str(caught.exception), message)

    def test_overlaps_by_design_are_allowed(self):
        Router(
            [
                Route('/w', {'GET': handler}, 'webview'),
                Route('/w/*', {'GET': handler}, 'webview'),
                Route('/w/static/*', {'GET': handler}, 'webview static'),  # a nested prefix wins where it matches
                Route('/a/{x}', {'GET': handler}, 'one'),
                Route('/a/b/c', {'GET': handler}, 'two'),
                Route('/a/b', {'POST': handler}, 'three'),
            ]
        )


class PathTest(unittest.TestCase):
    def test_split_base_path(self):
        self.assertEqual(
            split_base_path('/pub/job/adder/1.0/api/v1/perform'), ('/pub/job/adder/1.0', '/api/v1/perform')
        )
        self.assertEqual(split_base_path('/pub/fatman/adder/latest/docs'), ('/pub/fatman/adder/latest', '/docs'))
        self.assertEqual(split_base_path('/pub/job/adder/1.0'), ('/pub/job/adder/1.0', '/'))
        self.assertEqual(split_base_path('/pub/job/adder/1.0/'), ('/pub/job/adder/1.0', '/'))
        self.assertEqual(split_base_path('/pub/job/adder'), ('', '/pub/job/adder'))
        self.assertEqual(split_base_path('/pub/other/a/b/c'), ('', '/pub/other/a/b/c'))
        self.assertEqual(split_base_path('/api/v1/perform'), ('', '/api/v1/perform'))

    def test_normalize_path(self):
        cases = {
            '/api/v1/perform': '/api/v1/perform',
            '//api/v1/perform': '/api/v1/perform',
            '/api/v1/webview/../perform': '/api/v1/perform',
            '/api/v1/webview/%2e%2e/perform': '/api/v1/perform',
            '/api/v1/webview%2F..%2Fperform': '/api/v1/perform',
            '/a/./b/': '/a/b/',
            '/../../etc/passwd': '/etc/passwd',
            '/a\\..\\b': '/b',
            '/': '/',
            '/caf%C3%A9': '/café',
        }
        for raw, expected in cases.items():
            self.assertEqual(normalize_path(raw), expected, raw)

    def test_normalize_path_refuses_nul_and_bad_utf8(self):
        for raw in ('/a%00b', '/a%ff'):
            with self.assertRaises(HTTPError) as caught:
                normalize_path(raw)
            self.assertEqual(caught.exception.status, 400, raw)


if __name__ == '__main__':
    unittest.main()
