"""A start-up check for racetrack-job-runner installed beside this distribution: both ship the same files.

Both distributions install the import package `racetrack_job_wrapper` and the command
`racetrack_job_runner`. pip lets the second install mix its files into the first one's, and
uninstalling racetrack-job-runner afterwards deletes files the two share.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

CONFLICTING_DISTRIBUTION = 'racetrack-job-runner'
# How installers name its metadata directory: racetrack_job_runner-1.18.0.dist-info (or .egg-info).
_METADATA_PREFIX = 'racetrack_job_runner-'
_METADATA_SUFFIXES = ('.dist-info', '.egg-info')


def find_conflicting_install(paths: Iterable[str] | None = None) -> Path | None:
    """The metadata directory of racetrack-job-runner in an import path entry (`sys.path` by default), or None.

    Lists the entries' names (about half a millisecond for a site-packages of hundreds)
    rather than asking importlib.metadata, whose import alone takes some 12 ms.
    """
    for entry in sys.path if paths is None else paths:
        try:
            with os.scandir(entry or '.') as items:
                for item in items:
                    name = item.name.lower()
                    if name.startswith(_METADATA_PREFIX) and name.endswith(_METADATA_SUFFIXES):
                        return Path(item.path)
        except OSError:  # a zip archive, or a directory that is gone
            continue
    return None


def warn_if_conflicting_install(paths: Iterable[str] | None = None) -> None:
    """Log one warning saying how to repair the environment when racetrack-job-runner is installed too."""
    found = find_conflicting_install(paths)
    if found is None:
        return
    stem = found.name.rsplit('.', 1)[0]  # racetrack_job_runner-1.18.0, or racetrack_job_runner-1.18.0-py3.11
    version = stem[len(_METADATA_PREFIX) :].split('-')[0]
    logger.warning(
        '%s %s is installed in this environment too (%s): it ships the same racetrack_job_wrapper'
        ' package and racetrack_job_runner command, so the two are mixed. Run `pip uninstall %s`,'
        ' then `pip install --force-reinstall --no-deps racetrack-job-wrapper`: the uninstall'
        ' deletes files both share.',
        CONFLICTING_DISTRIBUTION,
        version,
        found,
        CONFLICTING_DISTRIBUTION,
    )
