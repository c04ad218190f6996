"""Command line: `racetrack_job_wrapper JOB[:CLASS]`, the older `run JOB [CLASS]`, `template IN OUT` and `check JOB`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from racetrack_job_wrapper import __version__
from racetrack_job_wrapper.logs import LOG_LEVELS, configure_logs
from racetrack_job_wrapper.manifest import MANIFEST_FILENAME, ManifestError
from racetrack_job_wrapper.reload import job_directory
from racetrack_job_wrapper.settings import ENVIRONMENT_VARIABLES, LimitField, Limits
from racetrack_job_wrapper.standalone import DEFAULT_HOST, DEFAULT_PORT, serve

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Serve a Python job class over HTTP: POST /api/v1/perform, API docs at /docs,
Prometheus metrics at /metrics, probes at /live, /ready and /health.

JOB is one of:
  job.py:Job           the class Job from the file job.py
  job.py               the only class in job.py (or the only one with a perform method)
  package.module:Job   the class Job from an importable module

The job file's directory and the working directory are importable. The older form
`run job.py [ClassName]` is accepted too. The manifest is read from --manifest-path,
else the JOB_MANIFEST_YAML environment variable, else ./job.yaml; an invalid value in
it stops start-up with exit code 2. JOB_AUTH_TOKENS=token1,token2 makes every request
except probes and the manifest's public_endpoints need one of the tokens in
X-Racetrack-Auth or `Authorization: Bearer`.

`template TEMPLATE_FILE OUT_FILE` renders a file (a Dockerfile, say) with the
manifest's values instead; see `template --help`.
"""
TEMPLATE_DESCRIPTION = """\
Render TEMPLATE_FILE into OUT_FILE with the manifest's values, as image builds do.
The template sees `manifest` (every manifest field, e.g. {{ manifest.version }}),
`manifest_jobtype_extra` and `env_vars` (build_env with secret_build_env_file over it).
Templates are Jinja2's, rendered by Jinja2 (pip install Jinja2, or the `template`
extra). Errors exit with code 2.
"""


# Every flag can be given as an environment variable too: RJW_ and its name (RJW_PORT=8000),
# as uvicorn's UVICORN_* and gunicorn's GUNICORN_CMD_ARGS do; a flag on the command line wins.
ENV_PREFIX = 'RJW_'
# Flags whose variable the server already read before the flag existed.
_FLAG_VARIABLES = {'log_level': 'LOG_LEVEL'}


def flag_variable(dest: str) -> str:
    """The environment variable standing for the flag stored in `dest`."""
    return _FLAG_VARIABLES.get(dest, ENV_PREFIX + dest.upper())


def build_parser(legacy: bool = False) -> argparse.ArgumentParser:
    """The argument parser; `legacy` is the `run JOB [CLASS]` form."""
    parser = argparse.ArgumentParser(
        prog='racetrack_job_wrapper' + (' run' if legacy else ''),
        description=DESCRIPTION,
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('job', metavar='JOB', help='job reference: file.py[:Class] or module:Class')
    if legacy:
        parser.add_argument('class_name', metavar='CLASS', nargs='?', help='name of the job class')
    parser.add_argument('--host', default=DEFAULT_HOST, help=f'address to bind, IPv4 or IPv6 (default {DEFAULT_HOST})')
    parser.add_argument('--port', type=_port, default=DEFAULT_PORT, help=f'port to bind (default {DEFAULT_PORT})')
    parser.add_argument('--manifest-path', metavar='FILE', help='job manifest (job.yaml) to read')
    parser.add_argument(
        '--workers',
        metavar='N',
        type=_positive_int,
        default=1,
        help='worker processes serving the port, each loading the job (default 1)',
    )
    parser.add_argument(
        '--log-level', type=str.lower, choices=LOG_LEVELS, help='debug, info (default), warning or error'
    )
    parser.add_argument(
        '--reload',
        action='store_true',
        help='serve the job afresh when a .py file in its directory changes (development; one process)',
    )
    parser.add_argument(
        '--preload',
        action='store_true',
        help='with --workers: load the job once, before the workers fork, so they share its memory',
    )
    limits = parser.add_argument_group('limits (defaults in parentheses; jobtype_extra can set them too)')
    for limit in Limits.describe():
        limits.add_argument(
            '--' + limit.name.replace('_', '-'),
            type=_limit_parser(limit),
            metavar=limit.kind.__name__.upper(),
            help=f'{limit.help} ({limit.default})',
        )
    limits.add_argument(
        '--cors-allow-origin',
        dest='cors_allow_origins',
        action='append',
        metavar='ORIGIN',
        help="origin allowed by CORS, repeatable ('*', all, unless jobtype_extra says otherwise)",
    )
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    for action in parser._actions:
        if action.option_strings and action.dest not in ('help', 'version'):
            action.help = f'{action.help} [${flag_variable(action.dest)}]'
    return parser


def _environment_help() -> str:
    lines = ['environment variables (each flag also has one, named in brackets; the flag wins):']
    lines += [f'  {name:<32}{text}' for name, text in ENVIRONMENT_VARIABLES.items()]
    return '\n'.join(lines)


def apply_flag_variables(parser: argparse.ArgumentParser, environ: Mapping[str, str] = os.environ) -> None:
    """Make each flag's environment variable, where set, its default; a bad value is a usage error naming it."""
    for action in parser._actions:
        if not action.option_strings or action.dest in ('help', 'version'):
            continue
        name = flag_variable(action.dest)
        text = environ.get(name, '').strip()
        if not text:
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            # A switch takes no value on the command line; its variable says whether it is given.
            given = _switch(text)
            if given is None:
                parser.error(f'{name}={text!r}: must be true or false (1 or 0, yes or no)')
            parser.set_defaults(**{action.dest: action.const if given else action.default})
            continue
        parts = [part.strip() for part in text.split(',')] if isinstance(action, argparse._AppendAction) else [text]
        try:
            values = [action.type(part) if callable(action.type) else part for part in parts]
        except (argparse.ArgumentTypeError, ValueError) as e:
            parser.error(f'{name}={text!r}: {e}')
        if action.choices is not None and any(value not in action.choices for value in values):
            parser.error(f'{name}={text!r}: choose from {", ".join(map(str, action.choices))}')
        parser.set_defaults(**{action.dest: values if isinstance(action, argparse._AppendAction) else values[0]})


def build_template_parser() -> argparse.ArgumentParser:
    """The argument parser of `template TEMPLATE_FILE OUT_FILE`."""
    parser = argparse.ArgumentParser(
        prog='racetrack_job_wrapper template',
        description=TEMPLATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument('template_file', metavar='TEMPLATE_FILE', help='the template to render')
    parser.add_argument('out_file', metavar='OUT_FILE', help='where to write the rendered text')
    parser.add_argument(
        '--manifest-path',
        metavar='FILE',
        default=MANIFEST_FILENAME,
        help=f'job manifest to read (default ./{MANIFEST_FILENAME})',
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and serve the job (or render a template); returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ['template']:
        return render_template(args_list[1:])
    if args_list[:1] == ['check']:
        return check_job(args_list[1:])
    legacy = bool(args_list) and args_list[0] == 'run'
    parser = build_parser(legacy)
    apply_flag_variables(parser)
    args = parser.parse_args(args_list[1:] if legacy else args_list)
    if args.reload and args.workers != 1:
        message = f'--reload serves the job in one process; it cannot be used with --workers {args.workers}'
        print(f'{parser.prog}: error: {message}', file=sys.stderr, flush=True)
        return 2
    reference = args.job
    class_name = getattr(args, 'class_name', None)
    options = {limit.name: getattr(args, limit.name) for limit in Limits.describe()}
    options['cors_allow_origins'] = args.cors_allow_origins

    def load() -> type:
        # Imported lazily so that the manifest's runtime_env is in os.environ before the job's module runs.
        from racetrack_job_wrapper.loader import load_job_class

        return load_job_class(reference, class_name)

    return serve(
        load,
        host=args.host,
        port=args.port,
        manifest_path=args.manifest_path,
        workers=args.workers,
        log_level=args.log_level,
        reload=args.reload,
        reload_dir=job_directory(reference) if args.reload else None,
        preload=args.preload,
        **options,
    )


def check_job(argv: Sequence[str]) -> int:
    """`check JOB`: every endpoint called with its docs example, in process; 0 when all answer as declared."""
    parser = argparse.ArgumentParser(
        prog='racetrack_job_wrapper check',
        description='Call every endpoint of JOB with its docs example, through the whole request path but no '
        'socket, and report which answer 2xx with a result of their declared type (exit 1 otherwise).',
    )
    parser.add_argument('job', metavar='JOB', help='job reference: file.py[:Class] or module:Class')
    parser.add_argument('--manifest-path', metavar='FILE', help='job manifest (job.yaml) to read')
    args = parser.parse_args(argv)
    configure_logs('warning')  # the report is the output: no access lines among it
    from racetrack_job_wrapper.loader import describe_failure, load_job_class
    from racetrack_job_wrapper.testing import JobTestClient, check

    try:
        with JobTestClient(load_job_class(args.job), args.manifest_path) as client:
            results = check(client)
    except Exception as e:
        print(f'{parser.prog}: the job failed to load: {describe_failure(e)}', file=sys.stderr, flush=True)
        return 1
    for result in results:
        verdict = 'skip' if result.skipped else 'ok  ' if result.ok else 'FAIL'
        print(f'{verdict} {result.method} {result.path} {result.status or ""} {result.problem}'.rstrip(), flush=True)
    return 0 if all(result.ok for result in results) else 1


def render_template(argv: Sequence[str]) -> int:
    """`template TEMPLATE_FILE OUT_FILE`: 0 when written, 2 with one line on stderr when not."""
    from racetrack_job_wrapper.template import TemplateError, render_file

    parser = build_template_parser()
    args = parser.parse_args(argv)
    configure_logs()
    try:
        render_file(args.template_file, args.out_file, args.manifest_path)
    except (TemplateError, ManifestError) as e:
        print(f'{parser.prog}: error: {e}', file=sys.stderr, flush=True)
        return 2
    logger.info('template %s rendered into %s', args.template_file, args.out_file)
    return 0


def _limit_parser(limit: LimitField) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            return limit.parse(text, text=True)
        except ManifestError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f'{limit.name} ')) from None

    parse.__name__ = limit.kind.__name__  # argparse names the type in its messages
    return parse


_SWITCH_WORDS = {
    'true': True,
    '1': True,
    'yes': True,
    'on': True,
    'false': False,
    '0': False,
    'no': False,
    'off': False,
}


def _switch(text: str) -> bool | None:
    """True or False for a switch's environment variable ('true', '1', 'yes' / 'false', '0', 'no'), else None."""
    return _SWITCH_WORDS.get(text.lower())


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f'must be a port number from 0 to 65535, got {value}')
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value
