"""Headless Chromium renders the docs page and runs "Try it out" for perform through Swagger UI.

Chromium is driven through the DevTools protocol over `--remote-debugging-pipe` (file
descriptors 3 and 4, NUL-separated JSON), so no client library is needed.
"""

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
from collections.abc import Iterator
from typing import Any

from tests.support import ServerTestCase, slow

CHROMIUM_FLAGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-dev-shm-usage',
]
MANIFEST = {'name': 'adder', 'version': '1.2.3'}

# Clicks through Swagger UI as a person would: open perform, "Try it out", "Execute",
# then reads the live response the page shows.
TRY_IT_OUT_JS = r"""
(async () => {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const until = async (find, what) => {
    for (let i = 0; i < 300; i++) {
      const found = find();
      if (found) return found;
      await sleep(50);
    }
    throw new Error('timed out waiting for ' + what);
  };
  const op = '#operations-job-post_perform';
  (await until(() => document.querySelector(op + ' .opblock-summary-control'), 'perform')).click();
  (await until(() => document.querySelector(op + ' .try-out__btn'), 'Try it out')).click();
  (await until(() => document.querySelector(op + ' button.execute'), 'Execute')).click();
  const status = await until(
    () => document.querySelector(op + ' .live-responses-table tbody .response-col_status'), 'response');
  const body = document.querySelector(op + ' .live-responses-table tbody .response-col_description pre');
  const url = document.querySelector(op + ' .request-url pre');
  return {
    status: status.textContent.trim(),
    body: body ? body.textContent.trim() : null,
    url: url ? url.textContent.trim() : null,
    duration: document.querySelector(op).innerText.includes('Request duration'),
  };
})()
"""


class AdderJob:
    def perform(self, a: float, b: float = 1.0) -> float:
        """Add two numbers."""
        return a + b

    def docs_input_example(self) -> dict:
        return {'a': 40, 'b': 2}


class StreamingJob:
    def perform(self, words: str = 'one two three') -> Iterator[str]:
        """Say the words one by one."""
        yield from words.split()

    def docs_input_example(self) -> dict:
        return {'words': 'one two three'}


def chromium_path() -> str | None:
    return shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')


class DevTools:
    """A Chromium process and its DevTools protocol pipe."""

    def __init__(self, binary: str, profile: str):
        to_browser_read, self._write_fd = os.pipe()
        self._read_fd, from_browser_write = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f'--user-data-dir={profile}', '--remote-debugging-pipe', 'about:blank'],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=lambda: _place_fds(to_browser_read, from_browser_write),
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b''
        self._next_id = 0

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; raises on a protocol error."""
        self._next_id += 1
        message: dict[str, Any] = {'id': self._next_id, 'method': method, 'params': params or {}}
        if session:
            message['sessionId'] = session
        os.write(self._write_fd, json.dumps(message).encode() + b'\0')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b'\0' in self._buffer:
                raw, self._buffer = self._buffer.split(b'\0', 1)
                reply = json.loads(raw)
                if reply.get('id') == self._next_id:
                    if 'error' in reply:
                        raise RuntimeError(f'{method}: {reply["error"]}')
                    return reply['result']
            chunk = os.read(self._read_fd, 1 << 16)
            if not chunk:
                raise RuntimeError('chromium closed the DevTools pipe')
            self._buffer += chunk
        raise TimeoutError(method)

    def close(self) -> None:
        """Close the browser and the pipe."""
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.call('Browser.close', timeout=5)
        os.close(self._write_fd)
        os.close(self._read_fd)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _place_fds(read_end: int, write_end: int) -> None:
    # Moved above 10 first, so placing one on 3 cannot overwrite the other.
    high_read, high_write = fcntl.fcntl(read_end, fcntl.F_DUPFD, 10), fcntl.fcntl(write_end, fcntl.F_DUPFD, 10)
    os.dup2(high_read, 3)
    os.dup2(high_write, 4)


@slow
class BrowserTest(ServerTestCase):
    def setUp(self):
        self.chromium = chromium_path()
        if self.chromium is None:
            if os.environ.get('CI'):
                self.fail('chromium is not installed (apt-get install -y chromium)')
            self.skipTest('chromium is not installed; CI installs it')
        self.profile = tempfile.TemporaryDirectory()
        self.addCleanup(self.profile.cleanup)

    def test_docs_page_renders_perform(self):
        job = self.start(AdderJob, MANIFEST)
        result = subprocess.run(
            [
                self.chromium,
                *CHROMIUM_FLAGS,
                f'--user-data-dir={self.profile.name}',
                '--dump-dom',
                '--virtual-time-budget=10000',
                f'http://127.0.0.1:{job.port}/pub/job/adder/1.2.3/docs',
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        dom = result.stdout
        self.assertIn('<title>Job - adder - Swagger UI</title>', dom, result.stderr[-2000:])
        self.assertIn('data-path="/api/v1/perform"', dom)
        self.assertIn('id="operations-job-post_perform"', dom)
        self.assertIn('Add two numbers.', dom)
        self.assertIn('Job - adder', dom.split('</title>', 1)[1])  # the rendered info header, not only <title>

    def test_try_it_out_runs_perform(self):
        job = self.start(AdderJob, MANIFEST)
        shown = self.try_it_out(job.port)
        self.assertEqual(shown['status'], '200')
        self.assertEqual(json.loads(shown['body']), 42.0)
        self.assertEqual(shown['url'], f'http://127.0.0.1:{job.port}/pub/job/adder/1.2.3/api/v1/perform')
        self.assertTrue(shown['duration'])

    def test_try_it_out_shows_a_streamed_result(self):
        job = self.start(StreamingJob, MANIFEST)
        shown = self.try_it_out(job.port)
        self.assertEqual(shown['status'], '200')
        # Swagger UI asks for application/json, so the items come as one list (the stream is for
        # clients that ask for application/x-ndjson or text/event-stream).
        self.assertEqual(json.loads(shown['body']), ['one', 'two', 'three'])

    def try_it_out(self, port: int) -> dict[str, Any]:
        """Open the docs in Chromium, run perform's "Try it out", and return what the page shows."""
        browser = DevTools(self.chromium, self.profile.name)
        self.addCleanup(browser.close)
        target = browser.call('Target.createTarget', {'url': f'http://127.0.0.1:{port}/docs'})
        session = browser.call('Target.attachToTarget', {'targetId': target['targetId'], 'flatten': True})['sessionId']
        self.wait_loaded(browser, session, f'http://127.0.0.1:{port}/docs')
        reply = browser.call(
            'Runtime.evaluate',
            {'expression': TRY_IT_OUT_JS, 'awaitPromise': True, 'returnByValue': True},
            session=session,
            timeout=60,
        )
        self.assertNotIn('exceptionDetails', reply, reply.get('exceptionDetails'))
        return reply['result']['value']

    def wait_loaded(self, browser: DevTools, session: str, url: str) -> None:
        expression = "location.href + ' ' + document.readyState"
        seen = None
        for _ in range(200):
            try:
                seen = browser.call(
                    'Runtime.evaluate', {'expression': expression, 'returnByValue': True}, session=session
                )['result'].get('value')
            except RuntimeError:  # the context is replaced while the page navigates
                seen = None
            if seen == f'{url} complete':
                return
            time.sleep(0.05)
        self.fail(f'the docs page did not load: {seen}')


if __name__ == '__main__':
    unittest.main()
