"""`python -m racetrack_job_wrapper`."""

import sys

from racetrack_job_wrapper.cli import main

sys.exit(main())
