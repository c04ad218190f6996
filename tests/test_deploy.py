"""examples/deploy: what the Dockerfile and the Kubernetes manifests name is what the server serves and accepts.

No image is built here (no registry to pull python:3.11-slim from) and no cluster runs: the
manifests are checked against the Kubernetes schemas kubernetes-validate bundles, offline, and
their paths, ports, flags and signals against the server itself.
"""

import importlib.util
import json
import math
import posixpath
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import unittest
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes_validate import utils as kubernetes_validate
from prometheus_client import CollectorRegistry, generate_latest

from racetrack_job_wrapper.cli import build_parser
from racetrack_job_wrapper.metrics import JobMetrics
from racetrack_job_wrapper.routing import METRICS_PATH, PROBE_PATHS
from racetrack_job_wrapper.standalone import DEFAULT_PORT
from tests.support import REPO_DIR, JobClient, ProcessJob, slow

DEPLOY_DIR = REPO_DIR / 'examples' / 'deploy'
K8S_DIR = DEPLOY_DIR / 'k8s'
# Custom resources have no schema in kubernetes-validate: checked by ServiceMonitorTest instead.
CUSTOM_RESOURCE_GROUPS = ('monitoring.coreos.com',)
FAILING_JOB = """
class Job:
    def __init__(self):
        raise RuntimeError('cannot load the model')

    def perform(self) -> int:
        return 1
"""


def dockerfile_instructions(path: Path = DEPLOY_DIR / 'Dockerfile') -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments left out."""
    instructions: list[tuple[str, str]] = []
    pending = ''
    for line in path.read_text().splitlines():
        if line.lstrip().startswith('#') or (not line.strip() and not pending):
            continue
        pending += line.strip()
        if pending.endswith('\\'):
            pending = pending[:-1].rstrip() + ' '
            continue
        keyword, _, arguments = pending.partition(' ')
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ''
    return instructions


def dockerfile_values(keyword: str) -> list[str]:
    """The arguments of every `keyword` instruction."""
    return [arguments for name, arguments in dockerfile_instructions() if name == keyword]


def dockerfile_single(keyword: str) -> str:
    """The arguments of the one `keyword` instruction."""
    (value,) = dockerfile_values(keyword)
    return value


def build_args() -> dict[str, str]:
    """ARG NAME=default of the Dockerfile."""
    return dict(value.split('=', 1) for value in dockerfile_values('ARG'))


def healthcheck_command() -> list[str]:
    """The exec form of HEALTHCHECK ... CMD [...]."""
    return json.loads(dockerfile_single('HEALTHCHECK').split(' CMD ', 1)[1])


def healthcheck_url() -> str:
    (url,) = re.findall(r"'(http://[^']+)'", healthcheck_command()[-1])
    return url


def ignore_patterns(path: Path = DEPLOY_DIR / 'Dockerfile.dockerignore') -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith('#')]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: `*` and `?` within one path segment, `**` across them."""
    out, i = '', 0
    while i < len(pattern):
        if pattern.startswith('**/', i):
            out, i = out + '(?:.*/)?', i + 3
        elif pattern.startswith('**', i):
            out, i = out + '.*', i + 2
        elif pattern[i] == '*':
            out, i = out + '[^/]*', i + 1
        elif pattern[i] == '?':
            out, i = out + '[^/]', i + 1
        elif pattern[i] == '[':
            end = pattern.index(']', i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def docker_ignores(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `path` out: the last pattern matching it or a parent decides."""
    ignored = False
    parts = path.split('/')
    for pattern in patterns:
        negated = pattern.startswith('!')
        regex = _pattern_regex(posixpath.normpath(pattern.removeprefix('!')).lstrip('/'))
        if any(regex.fullmatch('/'.join(parts[:end])) for end in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def wheelhouse_dir() -> Path:
    """Where .ci/wheelhouse.py (and so `nox -s wheelhouse`) writes the wheels by default."""
    spec = importlib.util.spec_from_file_location('ci_wheelhouse', REPO_DIR / '.ci' / 'wheelhouse.py')
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.DEFAULT_DIR)


def normalized(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r'[-_.]+', '-', name).lower()


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every document of every YAML file under examples/deploy/k8s."""
    found = []
    for path in sorted(K8S_DIR.rglob('*.yaml')):
        found.extend((path, document) for document in yaml.safe_load_all(path.read_text()) if document)
    return found


def manifest(kind: str, path_part: str = '') -> dict[str, Any]:
    """The one manifest of `kind` (in a file whose path contains `path_part`)."""
    (document,) = [doc for path, doc in manifests() if doc['kind'] == kind and path_part in str(path)]
    return document


def job_container() -> dict[str, Any]:
    (container,) = manifest('Deployment')['spec']['template']['spec']['containers']
    return container


def resolved_args(container: dict[str, Any]) -> list[str]:
    """The container's args with $(VAR) expanded as the kubelet expands them (resourceFieldRef of CPU included)."""
    values: dict[str, str] = {}
    for variable in container.get('env', []):
        if 'value' in variable:
            values[variable['name']] = variable['value']
            continue
        field = variable['valueFrom']['resourceFieldRef']
        assert field['resource'] == 'limits.cpu', field
        limit = container['resources']['limits']['cpu']
        cores = int(limit[:-1]) / 1000 if limit.endswith('m') else float(limit)
        values[variable['name']] = str(math.ceil(cores / float(field.get('divisor', '1'))))
    return [re.sub(r'\$\((\w+)\)', lambda m: values[m.group(1)], arg) for arg in container['args']]


class DockerfileTest(unittest.TestCase):
    def test_small_base_and_numeric_non_root_user(self):
        self.assertEqual(dockerfile_single('FROM'), 'python:3.11-slim')
        user, group = dockerfile_single('USER').split(':')
        self.assertGreater(int(user), 0)
        self.assertGreater(int(group), 0)
        (useradd,) = [run for run in dockerfile_values('RUN') if run.startswith('useradd')]
        self.assertIn(f'--uid {user} ', useradd)

    def test_copied_paths_are_what_the_wheelhouse_step_and_the_job_provide(self):
        job_dir = build_args()['JOB_DIR']
        copies = [value.replace('${JOB_DIR}', job_dir).split() for value in dockerfile_values('COPY')]
        wheelhouse = wheelhouse_dir().relative_to(REPO_DIR).as_posix() + '/'
        self.assertEqual(copies[0], [wheelhouse, '/wheelhouse/'])
        (install,) = [run for run in dockerfile_values('RUN') if 'pip install --no-index' in run]
        project = tomllib.loads((REPO_DIR / 'pyproject.toml').read_text())['project']['name']
        *flags, requirement = install.split()
        self.assertEqual(flags, ['pip', 'install', '--no-index', '--find-links', '/wheelhouse'])
        self.assertEqual(normalized(requirement), normalized(project))
        # Optional: a pattern, not a name, so that a job without requirements.txt builds too.
        self.assertEqual(copies[1], [f'{job_dir}/requirements.tx[t]', '/tmp/job-requirements/'])
        self.assertEqual(copies[2], [f'{job_dir}/', '/job/'])
        self.assertTrue((REPO_DIR / job_dir / 'job.py').is_file())
        self.assertEqual(dockerfile_single('WORKDIR'), '/job')

    def test_ignore_file_keeps_exactly_what_is_copied(self):
        patterns = ignore_patterns()
        job_dir = build_args()['JOB_DIR']
        kept = ['wheelhouse/racetrack_job_wrapper-1.0-py3-none-any.whl', f'{job_dir}/job.py', f'{job_dir}/job.yaml']
        for path in kept:
            self.assertFalse(docker_ignores(path, patterns), path)
        left_out = [
            '.git/config',
            '.nox/tests/bin/python',
            'build/lib/racetrack_job_wrapper/server.py',
            'benchmarks/.venvs/peer/bin/python',
            'tests/test_server.py',
            'wheelhouse/notes.txt',
            f'{job_dir}/__pycache__/job.cpython-311.pyc',
            'examples/env-secret/.env.runtime',
            '.env',
        ]
        for path in left_out:
            self.assertTrue(docker_ignores(path, patterns), path)

    def test_port_healthcheck_and_command(self):
        self.assertEqual(dockerfile_single('EXPOSE'), str(DEFAULT_PORT))
        url = urlsplit(healthcheck_url())
        self.assertEqual((url.hostname, url.port, url.path), ('127.0.0.1', DEFAULT_PORT, '/live'))
        self.assertIn(url.path, PROBE_PATHS)
        self.assertEqual(healthcheck_command()[:2], ['python', '-c'])
        command = json.loads(dockerfile_single('CMD'))
        self.assertEqual(command[:3], ['python', '-m', 'racetrack_job_wrapper'])
        self.assertEqual(dockerfile_single('STOPSIGNAL'), 'SIGTERM')

    def run_healthcheck(self, port: int) -> subprocess.CompletedProcess:
        code = healthcheck_command()[-1].replace(f':{DEFAULT_PORT}/', f':{port}/')
        return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=30)

    @slow
    def test_command_serves_the_job_healthcheck_passes_and_stop_signal_drains(self):
        command = json.loads(dockerfile_single('CMD'))
        job = ProcessJob(command[3:], cwd=REPO_DIR / build_args()['JOB_DIR'])
        self.addCleanup(job.stop)
        job.wait_ready()
        client = job.client()
        self.assertEqual(client.post('/api/v1/perform', {'number': 7907}).json(), True)
        result = self.run_healthcheck(job.port)
        self.assertEqual(result.returncode, 0, result.stderr)
        client.close()
        job.process.send_signal(signal.Signals[dockerfile_single('STOPSIGNAL')])
        self.assertEqual(job.process.wait(60), 0, job.read_output())  # drained and exited by itself

    @slow
    def test_healthcheck_fails_when_the_job_failed_to_load(self):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, 'job.py').write_text(FAILING_JOB)
            job = ProcessJob(['job.py:Job'], cwd=tmp)
            self.addCleanup(job.stop)
            job.wait_listening()
            client = job.client()
            self.assertTrue(wait_until(lambda: client.get('/live').status == 500), job.read_output())
            self.assertNotEqual(self.run_healthcheck(job.port).returncode, 0)


class KubernetesSchemaTest(unittest.TestCase):
    """Every manifest against the schemas of the oldest and the newest Kubernetes the validator bundles."""

    def test_every_manifest_validates(self):
        versions = sorted({kubernetes_validate.all_versions()[0], kubernetes_validate.latest_version()})
        found = manifests()
        self.assertGreaterEqual(len(found), 7)
        for path, document in found:
            for version in versions:
                with self.subTest(file=str(path.relative_to(K8S_DIR)), version=version):
                    if document['apiVersion'].split('/')[0] in CUSTOM_RESOURCE_GROUPS:
                        # No schema offline for a CRD: said here, and checked by ServiceMonitorTest.
                        with self.assertRaises(kubernetes_validate.SchemaNotFoundError):
                            kubernetes_validate.validate(document, version, strict=True)
                    else:
                        kubernetes_validate.validate(document, version, strict=True)

    def test_strict_validation_catches_a_misspelt_field(self):
        deployment = manifest('Deployment')
        container = deployment['spec']['template']['spec']['containers'][0]
        container['readinesProbe'] = container.pop('readinessProbe')
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


class DeploymentTest(unittest.TestCase):
    """The Deployment's probes, port, flags and security settings, against the server and the Dockerfile."""

    def test_probes_are_the_servers(self):
        container = job_container()
        probes = {name: container[name]['httpGet'] for name in ('startupProbe', 'livenessProbe', 'readinessProbe')}
        self.assertEqual(
            {name: probe['path'] for name, probe in probes.items()},
            {'startupProbe': '/ready', 'livenessProbe': '/live', 'readinessProbe': '/ready'},
        )
        for probe in probes.values():
            self.assertIn(probe['path'], PROBE_PATHS)
            self.assertEqual(probe['port'], container['ports'][0]['name'])
        startup = container['startupProbe']
        self.assertGreaterEqual(startup['periodSeconds'] * startup['failureThreshold'], 300, 'a slow model load')

    def test_port_matches_the_image_the_server_and_the_service(self):
        container = job_container()
        (port,) = container['ports']
        args = build_parser().parse_args(resolved_args(container))
        self.assertEqual(port['containerPort'], args.port)
        self.assertEqual(port['containerPort'], DEFAULT_PORT)
        self.assertEqual(str(port['containerPort']), dockerfile_single('EXPOSE'))
        annotations = manifest('Deployment')['spec']['template']['metadata']['annotations']
        self.assertEqual(annotations['prometheus.io/port'], str(port['containerPort']))
        self.assertEqual(annotations['prometheus.io/path'], METRICS_PATH)
        service = manifest('Service')
        self.assertEqual(service['spec']['ports'][0]['targetPort'], port['name'])
        self.assertEqual(service['spec']['selector'], manifest('Deployment')['spec']['selector']['matchLabels'])

    def test_command_and_flags_parse_and_the_kubelet_waits_for_the_drain(self):
        container = job_container()
        image_command = json.loads(dockerfile_single('CMD'))
        self.assertEqual(container['command'], image_command[:3])
        self.assertEqual(container['args'][0], image_command[3])
        args = build_parser().parse_args(resolved_args(container))
        self.assertEqual(args.workers, 2)  # ceil of the CPU limit
        self.assertEqual((args.shutdown_delay, args.grace_period), (5.0, 30.0))
        termination = manifest('Deployment')['spec']['template']['spec']['terminationGracePeriodSeconds']
        self.assertGreater(termination, args.shutdown_delay + args.grace_period)
        # The readiness probe notices the drain well within the shutdown delay.
        readiness = container['readinessProbe']
        self.assertLess(readiness['periodSeconds'] * readiness['failureThreshold'], args.shutdown_delay)

    def test_runs_as_the_images_user_on_a_read_only_root(self):
        spec = manifest('Deployment')['spec']['template']['spec']
        container = job_container()
        user, group = dockerfile_single('USER').split(':')
        self.assertEqual(spec['securityContext']['runAsNonRoot'], True)
        self.assertEqual(
            (spec['securityContext']['runAsUser'], spec['securityContext']['runAsGroup']), (int(user), int(group))
        )
        self.assertEqual(container['securityContext']['readOnlyRootFilesystem'], True)
        self.assertEqual(container['securityContext']['allowPrivilegeEscalation'], False)
        empty_dirs = {volume['name'] for volume in spec['volumes'] if 'emptyDir' in volume}
        writable = {mount['mountPath'] for mount in container['volumeMounts'] if mount['name'] in empty_dirs}
        env = {variable['name']: variable.get('value') for variable in container['env']}
        self.assertIn('/tmp', writable)
        if build_parser().parse_args(resolved_args(container)).workers > 1:
            self.assertIn(env['PROMETHEUS_MULTIPROC_DIR'], writable)

    def test_autoscaler_and_disruption_budget_target_the_deployment(self):
        deployment = manifest('Deployment')
        for hpa in (manifest('HorizontalPodAutoscaler', 'hpa.yaml'), manifest('HorizontalPodAutoscaler', 'queue')):
            target = hpa['spec']['scaleTargetRef']
            self.assertEqual((target['kind'], target['name']), ('Deployment', deployment['metadata']['name']))
            self.assertEqual(hpa['spec']['minReplicas'], deployment['spec']['replicas'])
        (metric,) = manifest('HorizontalPodAutoscaler', 'hpa.yaml')['spec']['metrics']
        self.assertEqual(metric['resource']['name'], 'cpu')
        self.assertIn('cpu', job_container()['resources']['requests'])  # Utilization is relative to it
        pdb = manifest('PodDisruptionBudget')
        self.assertEqual(pdb['spec']['selector'], deployment['spec']['selector'])
        self.assertLess(pdb['spec']['maxUnavailable'], deployment['spec']['replicas'])

    def test_custom_metric_is_a_gauge_the_server_exposes_and_the_adapter_serves(self):
        (metric,) = manifest('HorizontalPodAutoscaler', 'queue')['spec']['metrics']
        name = metric['pods']['metric']['name']
        (rule,) = yaml.safe_load(manifest('ConfigMap', 'adapter')['data']['config.yaml'])['rules']
        self.assertEqual(rule['name']['as'], name)
        self.assertRegex(name, rule['name']['matches'])
        self.assertTrue(rule['seriesQuery'].startswith(name + '{'), rule['seriesQuery'])
        self.assertNotIn('rate(', rule['metricsQuery'])  # a gauge is averaged, never rated
        registry = CollectorRegistry()
        JobMetrics(registry)
        self.assertIn(f'# TYPE {name} gauge\n', generate_latest(registry).decode())

    @slow
    def test_deployment_args_serve_the_probes_and_drain_on_sigterm(self):
        container = job_container()
        with tempfile.TemporaryDirectory() as metrics_dir:
            env = {'PROMETHEUS_MULTIPROC_DIR': metrics_dir}  # the Deployment's emptyDir
            job = ProcessJob(resolved_args(container), cwd=REPO_DIR / build_args()['JOB_DIR'], env=env)
            self.addCleanup(job.stop)
            job.wait_ready()
            client = job.client()
            for path in PROBE_PATHS:
                self.assertEqual(client.get(path).status, 200, path)
            self.assertEqual(client.post('/api/v1/perform', {'number': 7907}).json(), True)
            self.assertIn(b'\nrequest_calls_queued ', client.get(METRICS_PATH).body)
            client.close()
            job.process.send_signal(signal.SIGTERM)
            probe = JobClient(job.port)
            self.addCleanup(probe.close)
            # During the shutdown delay: not ready, still live, still answering.
            self.assertTrue(wait_until(lambda: probe.get('/ready').status == 500), job.read_output())
            self.assertEqual(probe.get('/live').status, 200)
            probe.close()
            self.assertEqual(job.process.wait(60), 0, job.read_output())


class ServiceMonitorTest(unittest.TestCase):
    """The ServiceMonitor by hand, since its CRD schema is not available offline."""

    def test_selects_the_service_and_scrapes_the_metrics_path(self):
        monitor = manifest('ServiceMonitor')
        self.assertEqual(monitor['apiVersion'], 'monitoring.coreos.com/v1')
        self.assertEqual(set(monitor['spec']), {'selector', 'endpoints'})
        service = manifest('Service')
        self.assertEqual(monitor['spec']['selector']['matchLabels'], service['metadata']['labels'])
        (endpoint,) = monitor['spec']['endpoints']
        self.assertLessEqual(set(endpoint), {'port', 'path', 'interval', 'scrapeTimeout'})
        self.assertIn(endpoint['port'], [port['name'] for port in service['spec']['ports']])
        self.assertEqual(endpoint['path'], METRICS_PATH)
        interval, timeout = (
            int(re.fullmatch(r'(\d+)s', endpoint[key]).group(1)) for key in ('interval', 'scrapeTimeout')
        )
        self.assertLessEqual(timeout, interval)  # Prometheus refuses a timeout above the interval


def wait_until(condition, timeout: float = 20.0) -> bool:
    """Poll `condition` until it holds; False when it did not in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


if __name__ == '__main__':
    unittest.main()
