"""Command line: `racetrack_job_wrapper JOB[:CLASS]` or the older `racetrack_job_wrapper run JOB [CLASS]`."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from racetrack_job_wrapper import __version__
from racetrack_job_wrapper.standalone import DEFAULT_HOST, DEFAULT_PORT, serve

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
"""


def build_parser(legacy: bool = False) -> argparse.ArgumentParser:
    """The argument parser; `legacy` is the `run JOB [CLASS]` form."""
    parser = argparse.ArgumentParser(
        prog='racetrack_job_wrapper' + (' run' if legacy else ''),
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('job', metavar='JOB', help='job reference: file.py[:Class] or module:Class')
    if legacy:
        parser.add_argument('class_name', metavar='CLASS', nargs='?', help='name of the job class')
    parser.add_argument('--host', default=DEFAULT_HOST, help=f'address to bind (default {DEFAULT_HOST})')
    parser.add_argument('--port', type=int, default=DEFAULT_PORT, help=f'port to bind (default {DEFAULT_PORT})')
    parser.add_argument('--manifest-path', metavar='FILE', help='job manifest (job.yaml) to read')
    parser.add_argument('--workers', metavar='N', type=_positive_int, default=1,
                        help='worker processes serving the port, each loading the job (default 1)')
    limits = parser.add_argument_group('limits (defaults in parentheses; jobtype_extra can set them too)')
    limits.add_argument('--max-body-bytes', type=int, help='largest request body accepted (64 MiB)')
    limits.add_argument('--max-connections', type=int, help='concurrent connections before 503 (1000)')
    limits.add_argument('--head-timeout', type=float, help='seconds to receive request line and headers (30)')
    limits.add_argument('--idle-timeout', type=float, help='seconds an idle keep-alive connection is kept (60)')
    limits.add_argument('--grace-period', type=float, help='seconds in-flight requests get on shutdown (30)')
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and serve the job; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    legacy = bool(args_list) and args_list[0] == 'run'
    parser = build_parser(legacy)
    args = parser.parse_args(args_list[1:] if legacy else args_list)
    reference = args.job
    class_name = getattr(args, 'class_name', None)
    limits = {name: getattr(args, name) for name in
              ('max_body_bytes', 'max_connections', 'head_timeout', 'idle_timeout', 'grace_period')}

    def load() -> type:
        # Imported lazily so that the manifest's runtime_env is in os.environ before the job's module runs.
        from racetrack_job_wrapper.loader import load_job_class
        return load_job_class(reference, class_name)

    return serve(load, host=args.host, port=args.port, manifest_path=args.manifest_path, workers=args.workers,
                 **limits)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value
