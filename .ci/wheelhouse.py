"""Build the wheelhouse: this project's wheel and the wheels of its run-time dependencies, in one folder.

The one home of that recipe: `nox -s wheelhouse`, tests/test_wheelhouse.py and the container image
(examples/deploy/Dockerfile) read the folder it writes. Installing from it needs no index:

    python .ci/wheelhouse.py [DIRECTORY]      # default: wheelhouse/ at the repository root
    pip install --no-index --find-links wheelhouse racetrack_job_wrapper

The dependencies' wheels come from the package index pip is configured with (PyPI by default).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO_DIR / 'wheelhouse'
# Left out of the copy the wheel is built from. A wheel built in the checkout itself would pack
# build/lib as setuptools left it, modules deleted since included.
_NOT_SOURCES = shutil.ignore_patterns(
    '.git',
    'build',
    'dist',
    'wheelhouse',
    '*.egg-info',
    '.nox',
    '.venv',
    '.venvs',
    '__pycache__',
    '.mypy_cache',
    '.ruff_cache',
    '.hypothesis',
)


def build_wheelhouse(directory: Path, python: str = sys.executable) -> list[Path]:
    """Write the project's wheel and its dependencies' wheels into `directory` (its old wheels removed)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob('*.whl'):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix='wheelhouse-src-') as tmp:
        source = Path(tmp) / 'src'
        shutil.copytree(REPO_DIR, source, ignore=_NOT_SOURCES)
        # Without --no-deps, pip wheel saves the wheel of every run-time dependency beside the project's.
        subprocess.run(
            [python, '-m', 'pip', 'wheel', '--quiet', '--wheel-dir', str(directory), str(source)],
            check=True,
        )
    return sorted(directory.glob('*.whl'))


def main() -> int:
    """Build the wheelhouse and list what it holds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('directory', nargs='?', type=Path, default=DEFAULT_DIR, help='where to write the wheels')
    args = parser.parse_args()
    for wheel in build_wheelhouse(args.directory):
        print(wheel)
    return 0


if __name__ == '__main__':
    sys.exit(main())
