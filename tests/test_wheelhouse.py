"""The wheelhouse of `nox -s wheelhouse` alone installs the server into a bare venv, and that copy serves a job."""

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import venv
import zipfile
from pathlib import Path

from racetrack_job_wrapper import __version__
from tests.support import EXAMPLES_DIR, REPO_DIR, JobClient, free_port, slow
from tests.test_docs import check_docs

WHEELHOUSE_SCRIPT = REPO_DIR / '.ci' / 'wheelhouse.py'
PACKAGE_DIR = REPO_DIR / 'racetrack_job_wrapper'
# ensurepip's own: pip everywhere, setuptools too on Python 3.11.
BOOTSTRAP = {'pip', 'setuptools'}


def isolated_env() -> dict[str, str]:
    """This environment without the checkout on PYTHONPATH and without pip's configuration (no index, no find-links)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith('PIP_')}
    env['PYTHONPATH'] = os.pathsep.join(
        entry for entry in env.get('PYTHONPATH', '').split(os.pathsep) if entry and Path(entry).resolve() != REPO_DIR
    )
    env['PIP_CONFIG_FILE'] = os.devnull  # pip reads no configuration file at all
    env['PYTHONUNBUFFERED'] = '1'
    return env


@slow
class WheelhouseTest(unittest.TestCase):
    """Built by .ci/wheelhouse.py (needs the package index for prometheus-client), installed with --no-index."""

    @classmethod
    def setUpClass(cls):
        tmp = tempfile.TemporaryDirectory(prefix='wheelhouse-test-')
        cls.addClassCleanup(tmp.cleanup)
        cls.tmp = Path(tmp.name)
        cls.wheelhouse = cls.tmp / 'wheelhouse'
        built = subprocess.run(
            [sys.executable, str(WHEELHOUSE_SCRIPT), str(cls.wheelhouse)], cwd=cls.tmp, capture_output=True, text=True
        )
        if built.returncode != 0:
            raise AssertionError(f'.ci/wheelhouse.py failed with {built.returncode}: {built.stdout}{built.stderr}')
        venv.EnvBuilder(system_site_packages=False, with_pip=True).create(cls.tmp / 'venv')
        cls.python = str(cls.tmp / 'venv' / 'bin' / 'python')
        cls.env = isolated_env()
        cls.cwd = cls.tmp / 'cwd'
        cls.cwd.mkdir()
        subprocess.run(
            [cls.python, '-m', 'pip', 'install', '-q', '--no-index', '--find-links', str(cls.wheelhouse)]
            + ['racetrack_job_wrapper'],
            check=True,
            cwd=cls.cwd,
            env=cls.env,
        )

    def run_python(self, *args: str) -> str:
        """Run the venv's interpreter from the temporary working directory; its stdout."""
        return subprocess.run(
            [self.python, *args], check=True, cwd=self.cwd, env=self.env, capture_output=True, text=True
        ).stdout

    def test_wheelhouse_holds_the_project_and_prometheus_client(self):
        names = sorted(path.name for path in self.wheelhouse.glob('*.whl'))
        self.assertEqual(len(names), 2, names)
        self.assertRegex(names[0], r'^prometheus_client-[0-9.]+-py3-none-any\.whl$')
        self.assertEqual(names[1], f'racetrack_job_wrapper-{__version__}-py3-none-any.whl')
        with zipfile.ZipFile(self.wheelhouse / names[1]) as wheel:
            members = set(wheel.namelist())
        modules = {name for name in members if name.startswith('racetrack_job_wrapper/') and name.endswith('.py')}
        sources = {path.relative_to(REPO_DIR).as_posix() for path in PACKAGE_DIR.rglob('*.py')}
        swagger = {f'racetrack_job_wrapper/static_swagger/{path.name}' for path in swagger_files()}
        # Exactly the modules of the checkout: nothing stale from an old build/ directory.
        self.assertEqual(modules - swagger, sources)
        self.assertLessEqual(swagger, members)
        self.assertIn(f'racetrack_job_wrapper-{__version__}.dist-info/licenses/LICENSE', members)
        self.assertFalse([name for name in members if name.startswith(('tests/', 'examples/', 'benchmarks/'))])

    def test_venv_holds_only_the_two_distributions(self):
        installed = json.loads(self.run_python('-m', 'pip', 'list', '--format', 'json'))
        names = {entry['name'].lower().replace('_', '-') for entry in installed}
        self.assertEqual(names - BOOTSTRAP, {'prometheus-client', 'racetrack-job-wrapper'})
        located = self.run_python('-c', 'import racetrack_job_wrapper as r; print(r.__file__, r.__version__)').split()
        self.assertTrue(located[0].startswith(str(self.tmp / 'venv')), located)
        self.assertEqual(located[1], __version__)

    def test_installed_copy_serves_the_prime_job(self):
        port = free_port()
        log_path = self.tmp / 'job.log'
        job = f'{EXAMPLES_DIR / "prime" / "job.py"}:Job'
        with open(log_path, 'wb') as log:
            process = subprocess.Popen(
                [self.python, '-m', 'racetrack_job_wrapper', job, '--host', '127.0.0.1', '--port', str(port)],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = JobClient(port)
        try:
            self.wait_ready(client, process, log_path)
            name = client.get('/health').json()['job_name']
            check_docs(self, client, '/docs', f'Job - {name}')
            document = client.get('/openapi.json').json()
            self.assertIn('/api/v1/perform', document['paths'])
            self.assertEqual(client.post('/api/v1/perform', {'number': 7907}).json(), True)
            self.assertEqual(client.post('/api/v1/perform', {'number': 7908}).json(), False)
            metrics = client.get('/metrics').body.decode()
            self.assertIn('\nrequests_done_total 2.0\n', metrics)
            self.assertIn(f'wrapper_version="{__version__}"', metrics)
        finally:
            client.close()
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.assertEqual(process.returncode, 0, log_path.read_text())

    def wait_ready(self, client: JobClient, process: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.fail(f'the installed job exited with {process.returncode}: {log.read_text()}')
            try:
                if client.get('/ready').status == 200:
                    return
            except OSError:
                client.close()
            time.sleep(0.05)
        self.fail(f'the installed job did not become ready: {log.read_text()}')


def swagger_files() -> list[Path]:
    """The vendored Swagger UI files the wheel must carry."""
    return [path for path in (REPO_DIR / 'static_swagger').iterdir() if path.is_file()]


if __name__ == '__main__':
    unittest.main()
