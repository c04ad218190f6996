"""Access control with JOB_AUTH_TOKENS over real sockets: tokens, exempt paths, and paths that try to slip past."""

from __future__ import annotations

import json
import threading
import unittest

from racetrack_job_wrapper.auth import AccessPolicy
from racetrack_job_wrapper.manifest import ManifestError
from racetrack_job_wrapper.messages import Headers, HTTPError, Request
from racetrack_job_wrapper.settings import JobSettings
from tests.support import ServerTestCase, raw_exchange

TOKENS = {'JOB_AUTH_TOKENS': ' alpha-1 , Beta_2 '}
MANIFEST = {'name': 'guarded', 'version': '1.0.0', 'public_endpoints': ['/api/v1/open']}
MISSING = {
    'error': 'authentication required: send one of the tokens of JOB_AUTH_TOKENS in the'
    ' X-Racetrack-Auth header or as "Authorization: Bearer <token>"',
    'type': 'Unauthorized',
}
INVALID = {'error': 'the authentication token is not valid for this job', 'type': 'Unauthorized'}
GOOD = {'X-Racetrack-Auth': 'alpha-1'}


class GuardedJob:
    def perform(self) -> str:
        return 'performed'

    def auxiliary_endpoints(self):
        return {'/open': self.open, '/open/deep': self.deep, '/openx': self.openx}

    def open(self) -> str:
        return 'open'

    def deep(self) -> str:
        return 'deep'

    def openx(self) -> str:
        return 'openx'


class TokenTest(ServerTestCase):
    def setUp(self):
        self.client = self.serve(GuardedJob, MANIFEST, environ=TOKENS)

    def assertUnauthorized(self, response, body=MISSING):
        self.assertEqual(response.status, 401)
        self.assertEqual(response.json(), body)
        challenge = 'Bearer realm="guarded"' + (', error="invalid_token"' if body is INVALID else '')
        self.assertEqual(response.headers['www-authenticate'], challenge)

    def test_missing_token(self):
        self.assertUnauthorized(self.client.post('/api/v1/perform'))
        self.assertUnauthorized(self.client.post('/pub/job/guarded/1.0.0/api/v1/perform'))

    def test_wrong_token(self):
        self.assertUnauthorized(self.client.post('/api/v1/perform', headers={'X-Racetrack-Auth': 'alpha-2'}), INVALID)
        self.assertUnauthorized(self.client.post('/api/v1/perform', headers={'X-Racetrack-Auth': 'alpha-1x'}), INVALID)
        self.assertUnauthorized(self.client.post('/api/v1/perform', headers={'X-Racetrack-Auth': 'alpha'}), INVALID)

    def test_token_of_another_case(self):
        for token in ('ALPHA-1', 'beta_2', 'Alpha-1'):
            self.assertUnauthorized(self.client.post('/api/v1/perform', headers={'X-Racetrack-Auth': token}), INVALID)

    def test_every_configured_token_passes_in_either_header(self):
        for headers in (
            GOOD,
            {'X-Racetrack-Auth': 'Beta_2'},
            {'Authorization': 'Bearer alpha-1'},
            {'Authorization': 'bearer Beta_2'},
            {'x-racetrack-auth': ' alpha-1 '},
        ):
            response = self.client.post('/api/v1/perform', headers=headers)
            self.assertEqual((response.status, response.json()), (200, 'performed'), headers)

    def test_other_authorization_schemes_count_as_missing(self):
        for value in ('Basic YWxwaGEtMTo=', 'alpha-1', 'Bearer', 'Bearer '):
            self.assertUnauthorized(self.client.post('/api/v1/perform', headers={'Authorization': value}))

    def test_two_headers_cannot_carry_a_good_and_a_bad_token(self):
        # Repeated fields are combined, so the value is 'alpha-1, wrong' and matches nothing.
        reply = raw_exchange(
            self.client.port,
            b'POST /api/v1/perform HTTP/1.1\r\nHost: x\r\n'
            b'X-Racetrack-Auth: alpha-1\r\nX-Racetrack-Auth: wrong\r\n'
            b'Content-Length: 0\r\nConnection: close\r\n\r\n',
        )
        self.assertTrue(reply.startswith(b'HTTP/1.1 401 '), reply)
        self.assertTrue(reply.endswith(json.dumps(INVALID, separators=(',', ':')).encode()), reply)

    def test_probes_are_exempt(self):
        for path in ('/live', '/ready', '/health', '/pub/job/guarded/1.0.0/health', '//ready'):
            self.assertEqual(self.client.get(path).status, 200, path)

    def test_metrics_docs_and_home_follow_the_rule(self):
        for path in ('/metrics', '/docs', '/openapi.json', '/', '/api/v1/parameters', '/no/such/path'):
            self.assertUnauthorized(self.client.get(path))
        for path, status in (
            ('/metrics', 200),
            ('/docs', 200),
            ('/openapi.json', 200),
            ('/', 307),
            ('/api/v1/parameters', 200),
            ('/no/such/path', 404),
        ):
            self.assertEqual(self.client.get(path, headers=GOOD).status, status, path)

    def test_public_endpoint_and_its_subpaths_are_exempt(self):
        for path, result in (
            ('/api/v1/open', 'open'),
            ('/api/v1/open/deep', 'deep'),
            ('/pub/job/guarded/1.0.0/api/v1/open', 'open'),
            ('/pub/fatman/guarded/1.0.0/api/v1/open/deep', 'deep'),
        ):
            response = self.client.post(path)
            self.assertEqual((response.status, response.json()), (200, result), path)
        self.assertEqual(self.client.post('/api/v1/open/missing').status, 404)

    def test_public_prefix_followed_by_a_suffix_without_a_slash(self):
        self.assertUnauthorized(self.client.post('/api/v1/openx'))
        self.assertEqual(self.client.post('/api/v1/openx', headers=GOOD).json(), 'openx')

    def test_paths_that_resolve_to_a_guarded_endpoint_need_a_token(self):
        attempts = [
            '//api/v1/perform',
            '/api/v1//perform',
            '/api/v1/open/../perform',
            '/api/v1/open/./../perform',
            '/api/v1/open/%2e%2e/perform',
            '/api/v1/open/%2E%2E/perform',
            '/api/v1/open%2f..%2fperform',
            '/api/v1/open%2F%2E%2E%2Fperform',
            '/api/v1/open/..%2fperform',
            '/api/v1/open\\..\\perform',
            '/api/v1/open/../../v1/perform',
            '/pub/job/guarded/1.0.0/api/v1/open/../perform',
            '/pub/job/guarded/1.0.0//api/v1/perform',
            '/pub/job/guarded/1.0.0/api/v1/open/../../../../../../../api/v1/perform',
        ]
        for path in attempts:
            with self.subTest(path=path):
                self.assertUnauthorized(self.client.post(path))
                # The same path with a token reaches perform: the 401 above guarded the real endpoint.
                self.assertEqual(self.client.post(path, headers=GOOD).json(), 'performed')

    def test_cors_preflight_passes_without_credentials_but_plain_options_does_not(self):
        preflight = self.client.request(
            'OPTIONS',
            '/api/v1/perform',
            headers={
                'Origin': 'https://app.example',
                'Access-Control-Request-Method': 'POST',
                'Access-Control-Request-Headers': 'X-Racetrack-Auth',
            },
        )
        self.assertEqual(preflight.status, 200)
        self.assertEqual(preflight.headers['access-control-allow-origin'], '*')
        self.assertEqual(preflight.headers['access-control-allow-headers'], 'X-Racetrack-Auth')
        self.assertUnauthorized(self.client.request('OPTIONS', '/api/v1/perform'))
        self.assertEqual(self.client.request('OPTIONS', '/api/v1/perform', headers=GOOD).status, 204)

    def test_unauthorized_answer_is_readable_cross_origin(self):
        response = self.client.post('/api/v1/perform', headers={'Origin': 'https://app.example'})
        self.assertUnauthorized(response)
        self.assertEqual(response.headers['access-control-allow-origin'], '*')

    def test_connection_keeps_serving_after_refusals(self):
        for _ in range(3):
            self.assertEqual(self.client.post('/api/v1/perform').status, 401)
            self.assertEqual(self.client.post('/api/v1/perform', headers=GOOD).json(), 'performed')


class LoadingAppTest(ServerTestCase):
    def test_token_is_checked_while_the_job_loads(self):
        release = threading.Event()
        self.addCleanup(release.set)

        def load():
            release.wait(30)
            return GuardedJob

        client = self.serve(load, MANIFEST, wait=False, environ=TOKENS)
        self.assertEqual(client.get('/live').status, 200)
        self.assertEqual(client.get('/ready').status, 500)
        self.assertEqual(client.post('/api/v1/perform').status, 401)
        self.assertEqual(client.post('/api/v1/perform', headers=GOOD).status, 503)
        self.assertEqual(client.post('/api/v1/open').status, 503)


class DefaultOffTest(ServerTestCase):
    def test_without_tokens_every_request_passes(self):
        client = self.serve(GuardedJob, MANIFEST, environ={})
        self.assertEqual(client.post('/api/v1/perform').json(), 'performed')
        self.assertEqual(client.get('/metrics').status, 200)


class PolicyTest(unittest.TestCase):
    def request(self, path: str, **headers: str) -> Request:
        return Request('GET', path, headers=Headers(list(headers.items())))

    def test_prefix_semantics(self):
        policy = AccessPolicy(('t',), ('/api/v1/webview', '/static/'))
        for path in (
            '/api/v1/webview',
            '/api/v1/webview/',
            '/api/v1/webview/x/y',
            '/static/a.css',
            '/live',
            '/ready',
            '/health',
        ):
            self.assertTrue(policy.is_public(path), path)
        for path in ('/api/v1/webviewx', '/api/v1/web', '/api/v1', '/staticx', '/livex', '/live/x', '/'):
            self.assertFalse(policy.is_public(path), path)

    def test_root_public_endpoint_exempts_everything(self):
        policy = AccessPolicy(('t',), ('/',))
        self.assertTrue(policy.is_public('/api/v1/perform'))
        policy.check(self.request('/api/v1/perform'))

    def test_disabled_policy_passes_everything(self):
        policy = AccessPolicy()
        self.assertFalse(policy.enabled)
        policy.check(self.request('/api/v1/perform'))

    def test_check_raises_401(self):
        policy = AccessPolicy(('secret',), realm='r')
        self.assertTrue(policy.enabled)
        policy.check(self.request('/x', **{'X-Racetrack-Auth': 'secret'}))
        with self.assertRaises(HTTPError) as caught:
            policy.check(self.request('/x', **{'X-Racetrack-Auth': 'secreT'}))
        self.assertEqual(
            (caught.exception.status, caught.exception.headers),
            (401, {'WWW-Authenticate': 'Bearer realm="r", error="invalid_token"'}),
        )


class TokenSettingsTest(unittest.TestCase):
    def test_tokens_are_split_trimmed_and_deduplicated(self):
        settings = JobSettings.from_manifest({}, {'JOB_AUTH_TOKENS': 'a,, b ,a,c'})
        self.assertEqual(settings.auth_tokens, ('a', 'b', 'c'))
        self.assertNotIn('auth_tokens', repr(settings))
        self.assertEqual(JobSettings.from_manifest({}, {}).auth_tokens, ())

    def test_bad_tokens_are_start_up_errors_that_do_not_echo_them(self):
        # Set but empty never means "no authentication": a secret that did not arrive must not open the job.
        for empty in ('', '  ', ' , ,'):
            with self.assertRaises(ManifestError) as caught:
                JobSettings.from_manifest({}, {'JOB_AUTH_TOKENS': empty})
            self.assertEqual(
                str(caught.exception),
                'JOB_AUTH_TOKENS is set but holds no token; unset it to serve without authentication',
            )
        for value in ('good,sec ret', 'good,s\u00e9cret', 'good,se\tcret'):
            with self.assertRaises(ManifestError) as caught:
                JobSettings.from_manifest({}, {'JOB_AUTH_TOKENS': value})
            self.assertEqual(
                str(caught.exception),
                'JOB_AUTH_TOKENS: token 2 must be printable ASCII without spaces or control characters',
            )


if __name__ == '__main__':
    unittest.main()
