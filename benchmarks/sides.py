"""The three sides under test: how each is installed into its own venv and how it is started."""

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
VENVS_DIR = BENCH_DIR / '.venvs'
PEER_REQUIREMENT = 'racetrack-job-runner==1.18.0'
# Both the project and the peer install the import package `racetrack_job_wrapper`.
PACKAGE = 'racetrack_job_wrapper'
_COPY_IGNORE = shutil.ignore_patterns('.git', '.venvs', '.nox', '__pycache__', 'build', 'dist', '*.egg-info', 'results')
_INSTALLED_STAMP = '.bench-installed'


class SetupError(Exception):
    """A side could not be installed; every cell of that side reports it."""


@dataclass(frozen=True)
class Side:
    """One column of the table: an interpreter, a way to start a job server, what to import."""

    name: str
    python: Path
    kind: str  # 'project', 'peer' or 'floor'
    site_packages: Path | None = None

    def argv(self, job: Path, port: int, workers: int | None = None) -> list[str]:
        """Return the command line that serves `job` on `port`."""
        if self.kind == 'project':
            extra = ['--workers', str(workers)] if workers else []
            return [str(self.python), '-m', PACKAGE, f'{job}:Job', '--port', str(port), *extra]
        if workers:
            raise SetupError(f'{self.name} has no --workers option')
        if self.kind == 'peer':
            return [str(self.python.parent / 'racetrack_job_runner'), 'run', str(job), '--port', str(port)]
        return [str(self.python), str(BENCH_DIR / 'floor_server.py'), str(job), '--port', str(port)]

    def import_modules(self) -> dict[str, str | None]:
        """Return the module to time for the top-level import and for the serving path."""
        if self.kind == 'floor':
            return {'top': None, 'serving': 'floor_server'}
        return {'top': PACKAGE, 'serving': f'{PACKAGE}.standalone'}


def _venv_python(venv: Path) -> Path:
    return venv / 'bin' / 'python'


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / 'lib').glob('python3*/site-packages'))
    if not found:
        raise SetupError(f'no site-packages in {venv}')
    return found[0]


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=600)
    if out.returncode != 0:
        lines = (out.stderr + out.stdout).strip().splitlines()
        # pip wraps the build's own exception in boilerplate; the last "...Error" line says why.
        causes = [
            line.strip() for line in lines if re.search(r'\w+Error\b|ERROR:', line) and 'subprocess-exited' not in line
        ]
        raise SetupError(f'{what} failed: {causes[-1] if causes else " | ".join(lines[-3:])}')


def _create_venv(venv: Path, fresh: bool) -> bool:
    """Create `venv` unless a complete one exists; return True when it was (re)created."""
    if venv.exists() and (fresh or not (venv / _INSTALLED_STAMP).exists()):
        shutil.rmtree(venv)
    if venv.exists():
        return False
    _run([sys.executable, '-m', 'venv', str(venv)], f'python -m venv {venv.name}')
    return True


def _pip(venv: Path, *args: str) -> None:
    _run(
        [str(_venv_python(venv)), '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', *args],
        f'pip install {" ".join(args)}',
    )


def empty_venv(fresh: bool) -> Path:
    """Return a venv with nothing installed: the baseline for installed size."""
    venv = VENVS_DIR / 'empty'
    if _create_venv(venv, fresh):
        (venv / _INSTALLED_STAMP).touch()
    return _site_packages(venv)


def numpy_dir(fresh: bool) -> Path:
    """Return a folder with numpy installed (`pip --target`), put on every side's PYTHONPATH for the numpy jobs.

    The jobs' own dependency, the same for all sides, and outside their venvs, so it is not
    counted in their installed size.
    """
    target = VENVS_DIR / 'numpy'
    if target.exists() and (fresh or not (target / _INSTALLED_STAMP).exists()):
        shutil.rmtree(target)
    if not target.exists():
        empty_venv(fresh)
        _pip(VENVS_DIR / 'empty', '--target', str(target), 'numpy')
        (target / _INSTALLED_STAMP).touch()
    return target


def floor_side(fresh: bool) -> Side:
    """Return the stdlib floor, run by the empty venv's interpreter (the same base Python)."""
    empty_venv(fresh)
    return Side('floor', _venv_python(VENVS_DIR / 'empty'), 'floor')


def peer_side(fresh: bool) -> Side:
    """Return the peer from PyPI, installing it once into its own venv."""
    venv = VENVS_DIR / 'peer'
    if _create_venv(venv, fresh):
        _pip(venv, PEER_REQUIREMENT)
        (venv / _INSTALLED_STAMP).touch()
    return Side('peer', _venv_python(venv), 'peer', _site_packages(venv))


def project_side(fresh: bool) -> Side:
    """Return this project, reinstalled from the working tree on every run (non-editable)."""
    venv = VENVS_DIR / 'project'
    created = _create_venv(venv, fresh)
    # Build from a copy: an in-tree build would leave build/ and *.egg-info in a shared tree.
    with tempfile.TemporaryDirectory(prefix='bench-src-') as tmp:
        source = Path(tmp) / 'src'
        shutil.copytree(REPO_ROOT, source, ignore=_COPY_IGNORE)
        if created:
            _pip(venv, str(source))
        else:
            _pip(venv, '--force-reinstall', '--no-deps', str(source))
    (venv / _INSTALLED_STAMP).touch()
    return Side('project', _venv_python(venv), 'project', _site_packages(venv))


def installed_bytes(side: Side, empty_site_packages: Path) -> int:
    """Return the bytes the side adds to site-packages beyond an empty venv's."""
    if side.site_packages is None:
        return (BENCH_DIR / 'floor_server.py').stat().st_size
    baseline = {p.name for p in empty_site_packages.iterdir()}
    total = 0
    for entry in side.site_packages.iterdir():
        if entry.name in baseline:
            continue
        if entry.is_file():
            total += entry.stat().st_size
        else:
            total += sum(p.lstat().st_size for p in entry.rglob('*') if not p.is_dir())
    return total
