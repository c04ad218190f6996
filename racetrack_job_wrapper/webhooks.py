"""Webhooks of async calls: which URLs may be called, and POSTing a call's final state with retries."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from racetrack_job_wrapper.messages import HTTPError, encode_json
from racetrack_job_wrapper.settings import CALLBACK_URL_HEADER

logger = logging.getLogger(__name__)

ATTEMPT_TIMEOUT = 10.0  # seconds one POST may take before it counts as failed


def check_callback_url(url: str, allowed_hosts: tuple[str, ...]) -> str:
    """A client's `X-Callback-Url`, if it is http(s) on a host of `callback_hosts`; HTTPError(400) otherwise.

    A job must not be made to send requests wherever a client likes (into the cluster's own
    network, say): only the hosts the operator listed may be named.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or '').lower()
    except ValueError:
        parts, host = None, ''
    if parts is None or parts.scheme not in ('http', 'https') or not host:
        raise HTTPError(
            400, f'{CALLBACK_URL_HEADER} must be an http:// or https:// URL, got {url!r}', error_type='InvalidHeader'
        )
    if host not in allowed_hosts:
        listed = ', '.join(allowed_hosts) if allowed_hosts else 'none'
        raise HTTPError(
            400,
            f'{CALLBACK_URL_HEADER} names host {host!r}, which jobtype_extra.callback_hosts does not list'
            f' (listed: {listed})',
            error_type='InvalidHeader',
        )
    return url


def post_json(url: str, payload: Any, headers: dict[str, str], timeout: float = ATTEMPT_TIMEOUT) -> int:
    """POST `payload` as JSON; the answer's status (raises OSError when there is none)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, encode_json(payload), {'Content-Type': 'application/json', **headers}, method='POST'
    )
    # No proxy from the environment: the operator listed the hosts to reach, not a proxy's. No
    # redirect either: a listed host could send the POST on to one that is not listed.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _not_followed())
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)


def _not_followed() -> Any:
    import urllib.request

    class NotFollowed(urllib.request.HTTPRedirectHandler):
        """A redirect is the answer: a 3xx, which is not a delivery."""

        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return NotFollowed()


def deliver(
    url: str,
    payload: Any,
    *,
    attempts: int,
    first_delay: float,
    on_attempt: Callable[[int, bool], None],
    stopping: threading.Event,
    headers: dict[str, str] | None = None,
    post: Callable[[str, Any, dict[str, str]], int] = post_json,
) -> bool:
    """POST until a 2xx answer, at most `attempts` times, waiting `first_delay` seconds, doubling, between tries.

    `on_attempt(number, delivered)` is told of every attempt. Stops early (False) when `stopping` is set.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            status = post(url, payload, headers or {})
            delivered = 200 <= status < 300
            reason = f'status {status}'
        except (OSError, ValueError) as e:  # refused, reset, timed out, a URL urllib cannot use
            delivered, reason = False, f'{type(e).__name__}: {e}'
        on_attempt(attempt, delivered)
        if delivered:
            return True
        if attempt == attempts:
            logger.warning('webhook %s not delivered after %d attempts (last: %s)', url, attempt, reason)
        else:
            logger.info('webhook %s attempt %d failed (%s); next in %.3g s', url, attempt, reason, delay)
            if stopping.wait(delay):
                return False
            delay *= 2
    return False
