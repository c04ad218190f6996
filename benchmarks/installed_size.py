"""Install a requirement into a fresh venv and report the bytes it adds to site-packages.

    python benchmarks/installed_size.py racetrack_job_wrapper -- --no-index --find-links wheelhouse
    python benchmarks/installed_size.py racetrack-job-runner==1.18.0

Arguments after `--` go to `pip install` as they are. The figure is the apparent size of every
file pip adds to the venv's site-packages (bytecode included, as pip compiles it), leaving out
what the empty venv already holds and pip's and setuptools' own files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from dataclasses import asdict, dataclass
from pathlib import Path

# ensurepip's own distributions, and setuptools' helpers; an upgrade of them is not the requirement's size.
_BOOTSTRAP_PREFIXES = ('pip', 'setuptools', '_distutils_hack', 'distutils-precedence.pth', 'pkg_resources')


def entry_bytes(path: Path) -> int:
    """Apparent size of a file, or of every file under a directory (symlinks not followed)."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    return sum(item.lstat().st_size for item in path.rglob('*') if not item.is_dir() or item.is_symlink())


@dataclass
class Measurement:
    """What one requirement adds to a fresh venv."""

    requirement: str
    bytes: int
    entries: dict[str, int]  # top-level site-packages entry -> bytes, largest first
    distributions: list[str]  # name==version of everything installed


def measure(requirement: str, pip_args: list[str]) -> Measurement:
    """Install `requirement` into a new venv; the bytes added, per top-level entry, and the distributions."""
    with tempfile.TemporaryDirectory(prefix='installed-size-') as tmp:
        venv.EnvBuilder(system_site_packages=False, with_pip=True).create(Path(tmp) / 'venv')
        python = str(Path(tmp) / 'venv' / 'bin' / 'python')
        (site_packages,) = (Path(tmp) / 'venv' / 'lib').glob('python3*/site-packages')
        before = {entry.name for entry in site_packages.iterdir()}
        subprocess.run(
            [python, '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', requirement, *pip_args],
            check=True,  # from the caller's working directory, where relative paths in pip_args point
        )
        added = {
            entry.name: entry_bytes(entry)
            for entry in site_packages.iterdir()
            if entry.name not in before and not entry.name.startswith(_BOOTSTRAP_PREFIXES)
        }
        listed = json.loads(
            subprocess.run(
                [python, '-m', 'pip', 'list', '--format', 'json'], check=True, capture_output=True, text=True
            ).stdout
        )
    distributions = sorted(
        f'{item["name"]}=={item["version"]}'
        for item in listed
        if not item['name'].lower().startswith(_BOOTSTRAP_PREFIXES)
    )
    entries = dict(sorted(added.items(), key=lambda item: -item[1]))
    return Measurement(requirement, sum(added.values()), entries, distributions)


def main() -> int:
    """Measure and print the result (or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('requirement', help='what to install, as pip takes it')
    parser.add_argument('pip_args', nargs='*', help='more pip install arguments (after --)')
    parser.add_argument('--json', action='store_true', help='print the result as JSON')
    args = parser.parse_args()
    result = measure(args.requirement, args.pip_args)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    print(f'{result.requirement}: {result.bytes} bytes ({result.bytes / 2**20:.2f} MiB) added to site-packages')
    print(f'{len(result.distributions)} distributions: {", ".join(result.distributions)}')
    for name, size in result.entries.items():
        print(f'  {size:>12}  {name}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
