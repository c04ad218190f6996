"""Log configuration: level from LOG_LEVEL, one handler on the root logger."""
from __future__ import annotations

import logging
import os
import sys

_LEVELS = {'debug': logging.DEBUG, 'info': logging.INFO, 'warn': logging.WARNING,
           'warning': logging.WARNING, 'error': logging.ERROR}


def configure_logs(log_level: str | None = None) -> None:
    """Set up the root logger once; a job that installed its own handler keeps it."""
    level_name = (log_level or os.environ.get('LOG_LEVEL') or 'info').lower()
    level = _LEVELS.get(level_name, logging.INFO)
    root = logging.getLogger()
    root.setLevel(level)
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
    root.addHandler(handler)
