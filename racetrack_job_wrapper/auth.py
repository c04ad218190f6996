"""Access control for a job run without a Racetrack gateway: shared tokens, probes and public endpoints exempt."""

from __future__ import annotations

import hashlib
import hmac

from racetrack_job_wrapper.messages import HTTPError, Request
from racetrack_job_wrapper.routing import PROBE_PATHS
from racetrack_job_wrapper.settings import AUTH_HEADER, AUTH_TOKENS_ENV_VAR, JobSettings

# Probes must answer without credentials: the kubelet and load balancers carry none.


class AccessPolicy:
    """Decides whether a request may pass: built once at start-up, consulted for every request.

    With no tokens configured every request passes. Thread-safe (read-only after construction).
    """

    def __init__(self, tokens: tuple[str, ...] = (), public_endpoints: tuple[str, ...] = (), realm: str = 'job'):
        # Digests have one length, so comparing them takes the same time whatever the token's length.
        self._digests = tuple(_digest(token.encode()) for token in tokens)
        self._exact = frozenset(PROBE_PATHS) | frozenset(public_endpoints)
        self._prefixes = tuple(path.rstrip('/') + '/' for path in public_endpoints)
        self._challenge = f'Bearer realm="{realm}"'

    @classmethod
    def from_settings(cls, settings: JobSettings) -> AccessPolicy:
        """The policy for one job: its tokens (from JOB_AUTH_TOKENS) and its public endpoints."""
        return cls(settings.auth_tokens, settings.public_endpoints, settings.name)

    @property
    def enabled(self) -> bool:
        """True when requests need a token."""
        return bool(self._digests)

    def is_public(self, path: str) -> bool:
        """True for a probe or a path at or under a public endpoint; `path` is normalised, prefix stripped."""
        return path in self._exact or path.startswith(self._prefixes)

    def check(self, request: Request) -> None:
        """Pass the request, or raise HTTPError(401) with a `WWW-Authenticate` challenge.

        `request.path` must already be normalised and stripped of the `/pub/job/...` prefix,
        so that the path judged here is the path routed.
        """
        if not self._digests or self.is_public(request.path) or _is_preflight(request):
            return
        token = _presented_token(request)
        if token is None:
            raise HTTPError(
                401,
                f'authentication required: send one of the tokens of {AUTH_TOKENS_ENV_VAR} in'
                f' the {AUTH_HEADER} header or as "Authorization: Bearer <token>"',
                headers={'WWW-Authenticate': self._challenge},
                error_type='Unauthorized',
                rejected='unauthorized',
            )
        given = _digest(token.encode())
        matched = False
        for digest in self._digests:  # no early exit: every token is compared on every request
            matched |= hmac.compare_digest(given, digest)
        if not matched:
            raise HTTPError(
                401,
                'the authentication token is not valid for this job',
                headers={'WWW-Authenticate': f'{self._challenge}, error="invalid_token"'},
                error_type='Unauthorized',
                rejected='unauthorized',
            )


def _presented_token(request: Request) -> str | None:
    """The token in X-Racetrack-Auth, else in `Authorization: Bearer`; None when neither is sent."""
    token = request.headers.get(AUTH_HEADER)
    if token:
        return token.strip()
    authorization = request.headers.get('Authorization')
    if authorization:
        scheme, _, credentials = authorization.strip().partition(' ')
        if scheme.lower() == 'bearer' and credentials.strip():
            return credentials.strip()
    return None


def _is_preflight(request: Request) -> bool:
    # Browsers send CORS preflights without credentials by design; they reach no job code.
    return (
        request.method == 'OPTIONS'
        and 'Origin' in request.headers
        and 'Access-Control-Request-Method' in request.headers
    )


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
