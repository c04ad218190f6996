"""Logs: formatters, configure_logs, and the request's tracing id, caller name and trace context on records."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path
from unittest import mock

from racetrack_job_wrapper.logs import (
    JOB_LOGGER,
    JobLogHandler,
    RequestContextFilter,
    StructuredFormatter,
    TextFormatter,
    build_handler,
    configure_logs,
)
from racetrack_job_wrapper.settings import ObservabilitySettings
from racetrack_job_wrapper.tracing import CURRENT_TRACE, RequestTrace
from tests.support import REPO_DIR, JobClient, ProcessJob, ServerTestCase, free_port, raw_exchange

job_logger = logging.getLogger('tests.job')
ACCESS = 'racetrack_job_wrapper.access'
UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}')
TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'


class LoggingJob:
    def perform(self, word: str = 'hi') -> str:
        job_logger.info('perform says %s', word)
        if word == 'crash':
            raise RuntimeError('the job broke')
        return word


class ThreadedJob:
    def perform(self) -> str:
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(job_logger.info, 'from a thread of the job'))
        thread.start()
        thread.join()
        return 'ok'


class AsyncJob:
    async def perform(self) -> str:
        job_logger.info('from the event loop')
        await asyncio.to_thread(job_logger.info, 'from to_thread')
        return 'ok'


def make_record(
    message: str = 'hello %s', args: tuple = ('world',), level: int = logging.INFO, exc_info=None, **extra
) -> logging.LogRecord:
    record = logging.LogRecord('tests.job', level, __file__, 10, message, args, exc_info)
    record.created = 1714564800.123456  # 2024-05-01T12:00:00.123456Z
    record.__dict__.update(extra)
    return record


class Capture:
    """A handler as configure_logs builds it, on the root logger, writing to a buffer."""

    def __init__(self, test: unittest.TestCase, settings: ObservabilitySettings):
        self.stream = io.StringIO()
        self.handler = build_handler(settings, self.stream)
        root = logging.getLogger()
        level = root.level
        root.addHandler(self.handler)
        root.setLevel(logging.INFO)
        test.addCleanup(root.setLevel, level)
        test.addCleanup(root.removeHandler, self.handler)

    def lines(self) -> list[dict]:
        """The JSON lines logged so far."""
        self.handler.flush()
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def by_logger(self, name: str, count: int | None = None) -> list[dict]:
        """Lines of one logger; with `count`, wait until that many were written (access lines follow the response)."""
        deadline = time.monotonic() + 10
        while True:
            found = [line for line in self.lines() if line['logger'] == name]
            if count is None or len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


class FormatterTest(unittest.TestCase):
    def test_structured_line(self):
        record = make_record(tracing_id='t-1', caller_name='alice', order=7)
        line = json.loads(StructuredFormatter().format(record))
        self.assertEqual(
            line,
            {
                'time': '2024-05-01T12:00:00.123456Z',
                'lvl': 'INFO',
                'msg': 'hello world',
                'logger': 'tests.job',
                'tracing_id': 't-1',
                'caller_name': 'alice',
                'order': 7,
            },
        )

    def test_structured_line_with_a_traceback_stays_one_line(self):
        try:
            raise KeyError('missing')
        except KeyError:
            import sys

            record = make_record('failed', (), logging.ERROR, sys.exc_info())
        text = StructuredFormatter().format(record)
        self.assertNotIn('\n', text)
        line = json.loads(text)
        self.assertEqual(line['lvl'], 'ERROR')
        self.assertTrue(line['exc_info'].startswith('Traceback (most recent call last):\n'))
        self.assertTrue(line['exc_info'].endswith("KeyError: 'missing'"))

    def test_text_line_plain_and_colored(self):
        record = make_record(tracing_id='t-1', caller_name='bob')
        self.assertEqual(
            TextFormatter().format(record),
            '2024-05-01T12:00:00.123Z INFO  tests.job: hello world tracing_id=t-1 caller_name=bob',
        )
        self.assertEqual(
            TextFormatter(color=True).format(make_record(level=logging.WARNING)),
            '2024-05-01T12:00:00.123Z \033[0;33mWARN \033[0m tests.job: hello world',
        )

    def test_color_only_on_a_tty(self):
        class Terminal(io.StringIO):
            def isatty(self):
                return True

        settings = ObservabilitySettings()
        self.assertFalse(build_handler(settings, io.StringIO()).formatter._levels[logging.INFO].startswith('\033'))
        self.assertTrue(build_handler(settings, Terminal()).formatter._levels[logging.INFO].startswith('\033'))

    def test_filter_adds_request_fields_only_inside_a_request(self):
        handler_filter = RequestContextFilter(caller_name=True)
        outside = make_record()
        handler_filter.filter(outside)
        self.assertFalse(hasattr(outside, 'tracing_id'))
        token = CURRENT_TRACE.set(RequestTrace('t-9', 'carol', TRACEPARENT, 'vendor=1'))
        try:
            inside = make_record()
            self.assertTrue(handler_filter.filter(inside))
        finally:
            CURRENT_TRACE.reset(token)
        self.assertEqual(
            (inside.tracing_id, inside.caller_name, inside.traceparent, inside.tracestate),
            ('t-9', 'carol', TRACEPARENT, 'vendor=1'),
        )

    def test_caller_name_only_when_enabled(self):
        token = CURRENT_TRACE.set(RequestTrace('t-9', 'carol'))
        try:
            record = make_record()
            RequestContextFilter(caller_name=False).filter(record)
        finally:
            CURRENT_TRACE.reset(token)
        self.assertEqual(record.tracing_id, 't-9')
        self.assertFalse(hasattr(record, 'caller_name'))


class ConfigureLogsTest(unittest.TestCase):
    def setUp(self):
        root = logging.getLogger()
        saved = (root.handlers[:], root.level, logging.getLogger(JOB_LOGGER).level)
        root.handlers[:] = []

        def restore():
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            logging.getLogger(JOB_LOGGER).setLevel(saved[2])

        self.addCleanup(restore)
        self.root = root

    def test_one_handler_however_often_called(self):
        stream = io.StringIO()
        configure_logs(settings=ObservabilitySettings(log_level='debug'), stream=stream)
        configure_logs(settings=ObservabilitySettings(log_level='error', structured_logs=True), stream=stream)
        self.assertEqual(len(self.root.handlers), 1)
        self.assertIsInstance(self.root.handlers[0], JobLogHandler)
        self.assertIsInstance(self.root.handlers[0].formatter, StructuredFormatter)
        self.assertEqual(self.root.level, logging.ERROR)
        self.assertEqual(len(self.root.handlers[0].filters), 1)

    def test_log_level_from_the_environment(self):
        for value, level in (
            ('debug', logging.DEBUG),
            ('INFO', logging.INFO),
            ('warn', logging.WARNING),
            ('error', logging.ERROR),
        ):
            with mock.patch.dict('os.environ', {'LOG_LEVEL': value}):
                configure_logs(stream=io.StringIO())
            self.assertEqual(self.root.level, level, value)

    def test_job_logger_at_debug_unless_a_level_is_given(self):
        job = logging.getLogger(JOB_LOGGER)
        with mock.patch.dict('os.environ', {'LOG_LEVEL': ''}):
            configure_logs(stream=io.StringIO())
        self.assertEqual((self.root.level, job.level), (logging.INFO, logging.DEBUG))
        self.assertTrue(logging.getLogger(JOB_LOGGER + '.child').isEnabledFor(logging.DEBUG))
        self.assertFalse(logging.getLogger('racetrack_job_wrapper.server').isEnabledFor(logging.DEBUG))
        for value, level in (('info', logging.INFO), ('debug', logging.DEBUG), ('error', logging.ERROR)):
            with mock.patch.dict('os.environ', {'LOG_LEVEL': value}):
                configure_logs(stream=io.StringIO())
            self.assertEqual((job.level, job.getEffectiveLevel()), (logging.NOTSET, level), value)

    def test_unknown_level_is_info_with_a_warning(self):
        stream = io.StringIO()
        configure_logs(settings=ObservabilitySettings(log_level='verbose'), stream=stream)
        self.root.handlers[0].flush()
        self.assertEqual(self.root.level, logging.INFO)
        self.assertIn(
            "WARN  racetrack_job_wrapper.logs: LOG_LEVEL 'verbose' is not one of debug, info, warn, error; using info",
            stream.getvalue(),
        )

    def test_a_formatter_the_job_installed_is_kept(self):
        configure_logs(settings=ObservabilitySettings(), stream=io.StringIO())
        own = logging.Formatter('JOB %(message)s')
        for handler in self.root.handlers:  # what the existing implementation's logging sample does
            handler.setFormatter(own)
        configure_logs(settings=ObservabilitySettings(structured_logs=True))
        self.assertIs(self.root.handlers[0].formatter, own)

    def test_handlers_set_up_before_are_kept_and_get_the_filter(self):
        theirs = logging.StreamHandler(io.StringIO())
        self.root.addHandler(theirs)
        configure_logs(settings=ObservabilitySettings(log_caller_name=True))
        self.assertEqual(self.root.handlers, [theirs])
        self.assertEqual([type(f) for f in theirs.filters], [RequestContextFilter])
        self.assertTrue(theirs.filters[0].caller_name)


class RequestLogsTest(ServerTestCase):
    def capture(self, **settings) -> Capture:
        return Capture(self, ObservabilitySettings(structured_logs=True, **settings))

    def test_tracing_id_from_the_header_is_echoed_and_on_every_record(self):
        logs = self.capture()
        client = self.serve(LoggingJob)
        response = client.post('/api/v1/perform', {'word': 'yo'}, {'X-Request-Tracing-Id': 'trace-42'})
        self.assertEqual(response.headers['x-request-tracing-id'], 'trace-42')
        (job_line,) = logs.by_logger('tests.job')
        self.assertEqual(job_line['msg'], 'perform says yo')
        self.assertEqual(job_line['tracing_id'], 'trace-42')
        self.assertEqual(set(job_line), {'time', 'lvl', 'msg', 'logger', 'tracing_id'})
        (access,) = logs.by_logger(ACCESS, 1)
        self.assertEqual(access['tracing_id'], 'trace-42')
        self.assertRegex(access['msg'], r'^POST /api/v1/perform 200 \d+\.\dms \d+B$')
        self.assertRegex(access['time'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$')

    def test_a_new_tracing_id_when_the_request_has_none(self):
        logs = self.capture()
        client = self.serve(LoggingJob)
        first = client.post('/api/v1/perform', {})
        second = client.post('/api/v1/perform', {})
        ids = [first.headers['x-request-tracing-id'], second.headers['x-request-tracing-id']]
        for tracing_id in ids:
            self.assertRegex(tracing_id, UUID)
        self.assertNotEqual(ids[0], ids[1])
        self.assertEqual([line['tracing_id'] for line in logs.by_logger('tests.job')], ids)

    def test_tracing_header_name_is_configurable(self):
        logs = self.capture()
        client = self.serve(LoggingJob, environ={'REQUEST_TRACING_HEADER': 'X-Trace'})
        response = client.post('/api/v1/perform', {}, {'X-Trace': 'abc', 'X-Request-Tracing-Id': 'other'})
        self.assertEqual(response.headers['x-trace'], 'abc')
        self.assertNotIn('x-request-tracing-id', response.headers)
        self.assertEqual(logs.by_logger('tests.job')[0]['tracing_id'], 'abc')

    def test_caller_name_with_log_caller_name(self):
        logs = self.capture(log_caller_name=True)
        client = self.serve(LoggingJob, environ={'LOG_CALLER_NAME': 'true'})
        client.post('/api/v1/perform', {}, {'X-Caller-Name': 'alice'})
        self.assertEqual(logs.by_logger('tests.job')[0]['caller_name'], 'alice')
        self.assertEqual(logs.by_logger(ACCESS, 1)[0]['caller_name'], 'alice')

    def test_caller_header_name_is_configurable(self):
        logs = self.capture(log_caller_name=True)
        client = self.serve(LoggingJob, environ={'CALLER_NAME_HEADER': 'X-Who'})
        client.post('/api/v1/perform', {}, {'X-Who': 'dave', 'X-Caller-Name': 'not me'})
        self.assertEqual(logs.by_logger('tests.job')[0]['caller_name'], 'dave')

    def test_no_caller_name_without_log_caller_name(self):
        logs = self.capture(log_caller_name=False)
        client = self.serve(LoggingJob)
        client.post('/api/v1/perform', {}, {'X-Caller-Name': 'alice'})
        self.assertNotIn('caller_name', logs.by_logger('tests.job')[0])

    def test_records_from_the_jobs_own_threads_carry_the_tracing_id(self):
        logs = self.capture()
        client = self.serve(ThreadedJob)
        client.post('/api/v1/perform', {}, {'X-Request-Tracing-Id': 'thread-1'})
        async_client = self.serve(AsyncJob)
        async_client.post('/api/v1/perform', {}, {'X-Request-Tracing-Id': 'async-1'})
        lines = [(line['msg'], line.get('tracing_id')) for line in logs.by_logger('tests.job')]
        self.assertEqual(
            lines,
            [
                ('from a thread of the job', 'thread-1'),
                ('from the event loop', 'async-1'),
                ('from to_thread', 'async-1'),
            ],
        )

    def test_a_failed_request_logs_its_traceback_once_with_the_tracing_id(self):
        logs = self.capture()
        client = self.serve(LoggingJob)
        response = client.post('/api/v1/perform', {'word': 'crash'}, {'X-Request-Tracing-Id': 'boom-1'})
        self.assertEqual(response.status, 500)
        self.assertEqual(response.headers['x-request-tracing-id'], 'boom-1')
        errors = [line for line in logs.lines() if 'exc_info' in line]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]['tracing_id'], 'boom-1')
        self.assertEqual(errors[0]['lvl'], 'ERROR')
        self.assertIn('RuntimeError: the job broke', errors[0]['exc_info'])
        self.assertIn('Traceback (most recent call last)', errors[0]['exc_info'])

    def test_w3c_trace_context_is_logged_and_a_malformed_one_dropped(self):
        logs = self.capture()
        client = self.serve(LoggingJob)
        client.post('/api/v1/perform', {}, {'traceparent': TRACEPARENT, 'tracestate': 'congo=t61rcWkgMzE'})
        client.post('/api/v1/perform', {}, {'traceparent': '00-xyz-01', 'tracestate': 'congo=1'})
        first, second = logs.by_logger('tests.job')
        self.assertEqual((first['traceparent'], first['tracestate']), (TRACEPARENT, 'congo=t61rcWkgMzE'))
        self.assertNotIn('traceparent', second)
        self.assertNotIn('tracestate', second)

    def test_successful_probes_and_scrapes_are_not_logged(self):
        logs = self.capture()
        client = self.serve(LoggingJob)
        for path in ('/live', '/ready', '/health', '/metrics', '/pub/job/x/1/live'):
            self.assertEqual(client.get(path).status, 200)
        client.get('/nowhere')
        client.post('/api/v1/perform', {})
        self.assertEqual(
            [line['msg'].split(' ')[:3] for line in logs.by_logger(ACCESS, 2)],
            [['GET', '/nowhere', '404'], ['POST', '/api/v1/perform', '200']],
        )

    def test_records_after_the_request_have_no_tracing_id(self):
        logs = self.capture()
        running = self.start(LoggingJob)
        # Two requests on one connection (one server thread): the second is refused by the parser.
        raw_exchange(
            running.port,
            b'GET /nowhere HTTP/1.1\r\nHost: x\r\nX-Request-Tracing-Id: done-1\r\n\r\nGET /nowhere HTTP/1.1\r\n\r\n',
        )
        first, second = logs.by_logger(ACCESS, 2)
        self.assertEqual(first['tracing_id'], 'done-1')
        self.assertRegex(second['msg'], r'^GET /nowhere 400 ')
        self.assertNotIn('tracing_id', second)

    def test_a_request_refused_by_the_parser_is_logged_without_a_trace(self):
        logs = self.capture()
        running = self.start(LoggingJob)
        raw_exchange(running.port, b'GET /live HTTP/1.1\r\nX-Request-Tracing-Id: t\r\n\r\n')
        (access,) = logs.by_logger(ACCESS, 1)
        self.assertRegex(access['msg'], r'^GET /live 400 ')
        self.assertNotIn('tracing_id', access)


CUSTOM_FORMAT_JOB = """
import logging

logger = logging.getLogger('custom')


class Job:
    def __init__(self):
        # As the existing implementation's logging-format sample does: its own formatter on the root handlers.
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter('CUSTOM|%(levelname)s|%(message)s|%(tracing_id)s'))

    def perform(self) -> int:
        logger.info('inside perform')
        return 1
"""


class ProcessLogsTest(unittest.TestCase):
    def test_a_job_with_its_own_formatter_keeps_it(self):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as directory:
            Path(directory, 'job.py').write_text(CUSTOM_FORMAT_JOB)
            job = ProcessJob(['job.py:Job'], cwd=directory, env={'LOG_STRUCTURED': 'true'})
            try:
                job.wait_ready()
                client = job.client()
                self.assertEqual(client.post('/api/v1/perform', {}, {'X-Request-Tracing-Id': 'own-1'}).status, 200)
            finally:
                job.stop()
            output = job.read_output().splitlines()
        self.assertIn('CUSTOM|INFO|inside perform|own-1', output)
        self.assertTrue(
            any(
                line.startswith('CUSTOM|INFO|POST /api/v1/perform 200 ') and line.endswith('|own-1') for line in output
            ),
            output,
        )
        # Lines logged before the job was created are the server's JSON lines, and come first.
        # (The job's format fails on records without a tracing id: logging reports those in between.)
        server_lines = [index for index, line in enumerate(output) if line.startswith('{')]
        job_lines = [index for index, line in enumerate(output) if line.startswith('CUSTOM|')]
        self.assertLess(max(server_lines), min(job_lines), output)
        self.assertEqual(json.loads(output[server_lines[0]])['logger'], 'racetrack_job_wrapper.standalone')

    def test_json_access_lines_carry_their_parts_as_fields_in_time_order(self):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as directory:
            Path(directory, 'job.py').write_text(JOB_LOGGING_JOB)
            job = ProcessJob(['job.py:Job'], cwd=directory, env={'LOG_STRUCTURED': 'true'})
            try:
                job.wait_ready()
                client = job.client()
                for _ in range(20):
                    self.assertEqual(client.post('/api/v1/perform', {}).status, 200)
                self.assertEqual(client.get('/nowhere').status, 404)
            finally:
                job.stop()
            lines = [json.loads(line) for line in job.read_output().splitlines() if line.startswith('{')]
        # (A /ready answered 500 while the job loaded is logged too, and left out here.)
        access = [
            line for line in lines if line['logger'] == 'racetrack_job_wrapper.access' and line['path'] != '/ready'
        ]
        self.assertEqual(len(access), 21, access)
        last = access[-1]
        self.assertEqual(
            {name: last[name] for name in ('method', 'path', 'status', 'client')},
            {'method': 'GET', 'path': '/nowhere', 'status': 404, 'client': '127.0.0.1'},
        )
        self.assertIsInstance(last['duration_ms'], float)
        self.assertGreater(last['bytes'], 0)
        self.assertRegex(last['msg'], rf'^GET /nowhere 404 [0-9.]+ms {last["bytes"]}B$')
        # The job's line inside each call comes before that call's access line, all in time order.
        self.assertEqual([line['time'] for line in lines], sorted(line['time'] for line in lines))
        calls = [line for line in lines if line['msg'] == 'inside perform' or line.get('path') == '/api/v1/perform']
        self.assertEqual(['job' if 'path' not in line else 'access' for line in calls], ['job', 'access'] * 20)


JOB_LOGGING_JOB = """
import logging


class Job:
    def perform(self) -> int:
        logging.getLogger('job').info('inside perform')
        return 1
"""


DEBUG_LOGGING_JOB = """
import logging


class Job:
    def perform(self) -> int:
        logging.getLogger('racetrack').debug('racetrack debug')
        logging.getLogger('racetrack.job').debug('racetrack child debug')
        logging.getLogger('racetrack').info('racetrack info')
        logging.getLogger('job').debug('own debug')
        logging.getLogger('job').info('own info')
        logging.getLogger('urllib3').debug('library debug')
        logging.debug('root debug')
        return 1
"""
SERVE_JOB_CLASS = """
import sys
from job import Job
from racetrack_job_wrapper.standalone import serve_job_class

serve_job_class(Job, host='127.0.0.1', port=int(sys.argv[1]))
"""
# What the existing implementation prints for DEBUG_LOGGING_JOB, from its CLI and from serve_job_class:
# the 'racetrack' logger and its children at DEBUG, everything else from INFO up.
SHOWN_BY_DEFAULT = ['racetrack debug', 'racetrack child debug', 'racetrack info', 'own info']
ALL_LINES = [
    'racetrack debug',
    'racetrack child debug',
    'racetrack info',
    'own debug',
    'own info',
    'library debug',
    'root debug',
]


class JobDebugLogsTest(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)
        (self.dir / 'job.py').write_text(DEBUG_LOGGING_JOB)
        (self.dir / 'serve.py').write_text(SERVE_JOB_CLASS)

    def perform(self, env: dict[str, str]) -> list[str]:
        job = ProcessJob(['job.py:Job'], cwd=self.dir, env=env)
        try:
            job.wait_ready()
            self.assertEqual(job.client().post('/api/v1/perform').status, 200)
        finally:
            job.stop()
        return job.read_output().splitlines()

    def job_lines(self, output: list[str]) -> list[str]:
        """The messages of DEBUG_LOGGING_JOB's lines, in order."""
        messages = (line.partition(': ')[2].partition(' tracing_id=')[0] for line in output)
        return [message for message in messages if message in ALL_LINES]

    def test_racetrack_logger_debug_lines_show_by_default(self):
        output = self.perform({'LOG_LEVEL': ''})
        self.assertEqual(self.job_lines(output), SHOWN_BY_DEFAULT)
        self.assertFalse([line for line in output if ' DEBUG racetrack_job_wrapper.' in line], output)
        self.assertTrue(
            any(' INFO  racetrack_job_wrapper.access: POST /api/v1/perform 200 ' in line for line in output), output
        )

    def test_log_level_info_hides_them_and_debug_shows_everything(self):
        self.assertEqual(self.job_lines(self.perform({'LOG_LEVEL': 'info'})), ['racetrack info', 'own info'])
        output = self.perform({'LOG_LEVEL': 'debug'})
        self.assertEqual(self.job_lines(output), ALL_LINES)
        self.assertTrue(any(' DEBUG racetrack_job_wrapper.' in line for line in output), output)

    def test_serve_job_class_shows_the_same_lines(self):
        port = free_port()
        env = {**os.environ, 'LOG_LEVEL': '', 'PYTHONPATH': str(REPO_DIR)}
        process = subprocess.Popen(
            [sys.executable, 'serve.py', str(port)],
            cwd=self.dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            client = JobClient(port)
            deadline = time.monotonic() + 20
            while True:
                try:
                    if client.get('/ready').status == 200:
                        break
                except OSError:
                    client.close()
                self.assertLess(time.monotonic(), deadline, 'the job did not become ready')
                time.sleep(0.05)
            self.assertEqual(client.post('/api/v1/perform').status, 200)
            client.close()
        finally:
            process.terminate()
            output, _ = process.communicate(timeout=30)
        self.assertEqual(self.job_lines(output.splitlines()), SHOWN_BY_DEFAULT)


class CountingStream(io.StringIO):
    """A stream that counts writes and flushes; with `blocked` cleared, a write waits like one to a full pipe."""

    def __init__(self):
        super().__init__()
        self.writes = 0
        self.flushes = 0
        self.blocked = threading.Event()
        self.blocked.set()
        self.entered = threading.Event()

    def write(self, text):
        self.entered.set()
        self.blocked.wait()
        self.writes += 1
        return super().write(text)

    def flush(self):
        self.flushes += 1
        super().flush()


class QuietHandler(JobLogHandler):
    """Writes only when woken or flushed, and gives up waiting for a stuck stream soon."""

    FLUSH_INTERVAL = 60.0
    FLUSH_TIMEOUT = 0.2


class QueuedWritesTest(unittest.TestCase):
    def setUp(self):
        self.stream = CountingStream()
        self.dropped: list[int] = []
        self.handler = self.attach(JobLogHandler(self.stream))

    def attach(self, handler: JobLogHandler) -> JobLogHandler:
        handler.setFormatter(logging.Formatter('%(levelname)s %(message)s'))
        handler.on_drop = self.dropped.append
        self.logger = logging.getLogger('tests.queued')
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.handlers[:] = [handler]
        self.addCleanup(self.logger.removeHandler, handler)
        return handler

    def wait_for(self, condition) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            self.assertLess(time.monotonic(), deadline, 'timed out')
            time.sleep(0.01)

    def test_info_lines_are_written_by_the_writer_thread_within_the_interval(self):
        self.logger.info('by itself')
        self.wait_for(lambda: self.stream.flushes)
        self.assertEqual(self.stream.getvalue(), 'INFO by itself\n')

    def test_flush_waits_for_the_queued_lines_written_in_one_write_and_one_flush(self):
        handler = self.attach(QuietHandler(self.stream))
        for number in range(100):
            self.logger.info('line %d', number)
        self.assertEqual(self.stream.getvalue(), '')
        handler.flush()
        self.assertEqual((self.stream.writes, self.stream.flushes), (1, 1))
        self.assertEqual(self.stream.getvalue(), ''.join(f'INFO line {number}\n' for number in range(100)))

    def test_warnings_are_written_without_waiting_for_the_interval(self):
        self.attach(QuietHandler(self.stream))
        self.logger.info('first')
        self.logger.warning('careful')
        self.wait_for(lambda: self.stream.flushes)
        self.assertEqual(self.stream.getvalue(), 'INFO first\nWARNING careful\n')

    def test_a_stuck_stream_never_blocks_the_logging_thread_and_drops_past_the_bound(self):
        handler = self.attach(QuietHandler(self.stream))
        self.stream.blocked.clear()
        self.logger.warning('stuck')
        self.assertTrue(self.stream.entered.wait(5))  # the writer now waits inside write()
        line = 'x' * 1000
        started = time.monotonic()
        for _ in range(3000):  # about 3 MB of lines against a bound of 1 MiB
            self.logger.error(line)
        handler.flush()  # gives up after FLUSH_TIMEOUT
        self.assertLess(time.monotonic() - started, 2)
        kept = JobLogHandler.MAX_PENDING_CHARS // len(f'ERROR {line}\n')
        self.assertEqual(sum(self.dropped), 3000 - kept)
        self.stream.blocked.set()
        handler.flush()
        self.assertEqual(self.stream.getvalue().count('\n'), 1 + kept)
        self.logger.info('after')
        handler.flush()
        self.assertTrue(self.stream.getvalue().endswith('INFO after\n'))

    def test_lines_lost_to_a_closed_stream_are_counted(self):
        self.stream.close()
        self.logger.warning('lost')
        self.handler.flush()
        self.assertEqual(self.dropped, [1])


class RecordList(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class AccessLogTest(unittest.TestCase):
    def test_lines_from_many_threads_arrive_whole_with_their_trace(self):
        from racetrack_job_wrapper.access import AccessLog

        target = logging.getLogger('tests.access_log')
        target.propagate = False
        capture = RecordList()
        target.addHandler(capture)
        self.addCleanup(target.removeHandler, capture)
        access_log = AccessLog(target, caller_name=True, on_drop=self.fail)

        def serve(number: int) -> None:
            CURRENT_TRACE.set(RequestTrace(f'trace-{number}', caller_name=f'caller-{number}'))
            for index in range(100):
                access_log.write('POST', f'/{number}/{index}', 200, 1.0, 10, '127.0.0.1')

        threads = [threading.Thread(target=serve, args=(number,)) for number in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        access_log.flush()
        self.assertEqual(len(capture.records), 800)
        for record in capture.records:
            number = record.getMessage().split('/')[1]
            self.assertEqual((record.tracing_id, record.caller_name), (f'trace-{number}', f'caller-{number}'))

    def test_lines_past_the_bound_are_dropped_and_counted_while_the_handlers_are_stuck(self):
        from racetrack_job_wrapper.access import AccessLog

        entered, release = threading.Event(), threading.Event()

        class Stuck(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                entered.set()
                release.wait()

        target = logging.getLogger('tests.access_log_stuck')
        target.propagate = False
        stuck = Stuck()
        target.addHandler(stuck)
        self.addCleanup(target.removeHandler, stuck)
        self.addCleanup(release.set)
        dropped: list[int] = []
        access_log = AccessLog(target, caller_name=False, on_drop=dropped.append)
        access_log.write('GET', '/first', 200, 1.0, 10, None)
        self.assertTrue(entered.wait(5))  # the writer has taken the first line and waits in the handler
        for index in range(AccessLog.MAX_PENDING + 5):
            access_log.write('GET', f'/{index}', 200, 1.0, 10, None)
        self.assertEqual(dropped, [1] * 5)


if __name__ == '__main__':
    unittest.main()
