"""The user guide's main.py: serve the job from a Python program instead of the command line."""

import sys

from job import Job

from racetrack_job_wrapper.standalone import serve_job_class


def main() -> int:
    # Serves at 0.0.0.0:7000 until SIGTERM or Ctrl-C; host= and port= choose another address.
    return serve_job_class(Job)


if __name__ == '__main__':
    sys.exit(main())  # 0, or 1 if shutting down cut a request short
