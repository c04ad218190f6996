import os
import sys
import tempfile
import typing
import unittest
from pathlib import Path
from unittest import mock

from racetrack_job_wrapper.convert import ValidationMode
from racetrack_job_wrapper.manifest import (
    ManifestError,
    apply_runtime_env,
    load_yaml,
    parse_env_file,
    read_manifest,
    validate_build_settings,
)
from racetrack_job_wrapper.settings import MANIFEST_FIELDS, JobSettings, Limits

MANIFESTS = Path(__file__).parent / 'manifests'
GUIDE_ENV_BUILD = """\
# Git username or email
GITLAB_USERNAME = 'username@example.com'
# Use read_repo access token instead of your password
GITLAB_TOKEN = "Pa55w0rD"
"""


class TempDirTestCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def write(self, name, text):
        path = self.dir / name
        path.write_text(text, encoding='utf-8')
        return path


class LoadYamlTest(unittest.TestCase):
    def test_reads_with_pyyaml(self):
        self.assertEqual(load_yaml('a: [1, yes]\n', 'x.yaml'), {'a': [1, True]})

    def test_pyyaml_error_names_source_line_and_column(self):
        with self.assertRaises(ManifestError) as caught:
            load_yaml('a: 1\nb: c: d\n', 'job.yaml')
        self.assertEqual(
            str(caught.exception), 'cannot read job.yaml: mapping values are not allowed here (line 2, column 5)'
        )

    def test_fallback_without_pyyaml_reads_a_manifest(self):
        text = (MANIFESTS / 'sample_env_secret.yaml').read_text(encoding='utf-8')
        with mock.patch.dict(sys.modules, {'yaml': None}):
            manifest = load_yaml(text, 'job.yaml')
        self.assertEqual(manifest['runtime_env'], {'DJANGO_DEBUG': 'true', 'TORCH_MODEL_ZOO': 'zoo'})
        self.assertEqual(
            manifest['git'],
            {
                'remote': 'https://github.com/TheRacetrack/plugin-python-job-type',
                'directory': 'sample/python-env-secret',
            },
        )

    def test_fallback_error_names_source_line_and_column(self):
        with mock.patch.dict(sys.modules, {'yaml': None}), self.assertRaises(ManifestError) as caught:
            load_yaml('a: 1\nb: &anchor 2\n', 'job.yaml')
        self.assertEqual(
            str(caught.exception), 'cannot read job.yaml: anchors (&) are not supported (line 2, column 4)'
        )


class ReadManifestTest(TempDirTestCase):
    def test_explicit_path_wins(self):
        self.write('other.yaml', 'name: explicit\n')
        self.write('job.yaml', 'name: local\n')
        manifest = read_manifest('other.yaml', environ={'JOB_MANIFEST_YAML': 'name: env'}, cwd=self.dir)
        self.assertEqual(manifest, {'name': 'explicit'})

    def test_explicit_absolute_path(self):
        path = self.write('other.yaml', 'name: absolute\n')
        self.assertEqual(read_manifest(str(path), environ={}, cwd=Path('/nonexistent')), {'name': 'absolute'})

    def test_missing_explicit_path_is_an_error(self):
        self.write('job.yaml', 'name: local\n')
        with self.assertRaises(ManifestError) as caught:
            read_manifest('missing.yaml', environ={}, cwd=self.dir)
        self.assertIn("manifest file 'missing.yaml' does not exist", str(caught.exception))

    def test_env_variable_with_literal_backslash_n(self):
        self.write('job.yaml', 'name: local\n')
        environ = {'JOB_MANIFEST_YAML': 'name: from-env\\njobtype_extra:\\n  max_concurrency: 2\\n'}
        self.assertEqual(
            read_manifest(None, environ=environ, cwd=self.dir),
            {'name': 'from-env', 'jobtype_extra': {'max_concurrency': 2}},
        )

    def test_local_job_yaml(self):
        self.write('job.yaml', 'name: local\nversion: 1.2.3\n')
        self.assertEqual(
            read_manifest(None, environ={'JOB_MANIFEST_YAML': ''}, cwd=self.dir), {'name': 'local', 'version': '1.2.3'}
        )

    def test_nothing_found_is_empty_and_logged(self):
        with self.assertLogs('racetrack_job_wrapper.manifest', 'DEBUG') as logs:
            self.assertEqual(read_manifest(None, environ={}, cwd=self.dir), {})
        self.assertEqual(len(logs.records), 1)
        self.assertIn('no manifest', logs.output[0])

    def test_empty_manifest_is_empty_mapping(self):
        self.write('job.yaml', '# nothing yet\n')
        self.assertEqual(read_manifest(None, environ={}, cwd=self.dir), {})

    def test_top_level_must_be_a_mapping(self):
        self.write('job.yaml', '- a\n- b\n')
        with self.assertRaises(ManifestError) as caught:
            read_manifest(None, environ={}, cwd=self.dir)
        self.assertIn("must be a mapping of fields at the top level, got list: ['a', 'b']", str(caught.exception))

    def test_yaml_error_names_file(self):
        self.write('job.yaml', 'name: [unclosed\n')
        with self.assertRaises(ManifestError) as caught:
            read_manifest(None, environ={}, cwd=self.dir)
        self.assertIn("manifest file '", str(caught.exception))
        self.assertIn("job.yaml'", str(caught.exception))
        self.assertIn('line 2, column 1', str(caught.exception))

    def test_reads_a_sample_file_without_pyyaml(self):
        with mock.patch.dict(sys.modules, {'yaml': None}):
            manifest = read_manifest(str(MANIFESTS / 'sample_ui_flask.yaml'), environ={})
        self.assertEqual(JobSettings.from_manifest(manifest, environ={}).home_page, '/api/v1/webview')


class JobSettingsTest(unittest.TestCase):
    def settings(self, manifest, environ=None):
        return JobSettings.from_manifest(manifest, environ={} if environ is None else environ)

    def assertManifestError(self, manifest, *fragments):
        with self.assertRaises(ManifestError) as caught:
            self.settings(manifest)
        for fragment in fragments:
            self.assertIn(fragment, str(caught.exception))

    def extra(self, **fields):
        return {'jobtype_extra': fields}

    def test_defaults(self):
        settings = self.settings({})
        self.assertEqual(settings, JobSettings(name='job', version='latest'))
        self.assertEqual(
            (
                settings.home_page,
                settings.max_concurrency,
                settings.max_concurrency_queue,
                settings.validate_input,
                settings.public_endpoints,
                settings.limits,
                settings.cors_allow_origins,
            ),
            ('/docs', None, None, ValidationMode.LAX, (), Limits(), ('*',)),
        )

    def test_name_and_version_from_manifest_coerced_to_str(self):
        settings = self.settings({'name': 'adder', 'version': 1.5})
        self.assertEqual((settings.name, settings.version), ('adder', '1.5'))

    def test_env_overrides_name_and_version(self):
        settings = self.settings({'name': 'adder', 'version': '1.0.0'}, {'JOB_NAME': 'renamed', 'JOB_VERSION': '2.0.0'})
        self.assertEqual((settings.name, settings.version), ('renamed', '2.0.0'))

    def test_empty_env_does_not_override(self):
        settings = self.settings({'name': 'adder'}, {'JOB_NAME': '', 'JOB_VERSION': ''})
        self.assertEqual((settings.name, settings.version), ('adder', 'latest'))

    def test_bad_name_and_version(self):
        self.assertManifestError({'name': ['a']}, 'manifest field name', "list ['a']")
        self.assertManifestError({'name': True}, 'manifest field name', 'bool True')
        self.assertManifestError({'version': 'a/b'}, 'manifest field version', "'a/b'")
        self.assertManifestError({'name': 'a\r\nX-Evil: 1'}, 'manifest field name', "'a\\r\\nX-Evil: 1'")
        with self.assertRaises(ManifestError) as caught:
            self.settings({}, {'JOB_NAME': 'bad name'})
        self.assertIn('JOB_NAME environment variable must not contain whitespace', str(caught.exception))

    def test_home_page(self):
        self.assertEqual(self.settings(self.extra(home_page='/api/v1/webview')).home_page, '/api/v1/webview')
        self.assertEqual(self.settings(self.extra(home_page='')).home_page, '/docs')

    def test_bad_home_pages(self):
        for value in ('api/v1', 'https://evil.example.com/', '//evil.example.com', '/\\evil.example.com'):
            with self.subTest(value=value):
                self.assertManifestError(self.extra(home_page=value), 'jobtype_extra.home_page', repr(value))
        for value in ('/a\r\nSet-Cookie: x', '/a\nb', '/a\x00b', '/a b'):
            with self.subTest(value=value):
                self.assertManifestError(self.extra(home_page=value), 'jobtype_extra.home_page', repr(value))
        self.assertManifestError(self.extra(home_page=5), 'jobtype_extra.home_page', 'int 5')

    def test_max_concurrency(self):
        settings = self.settings(self.extra(max_concurrency=1, max_concurrency_queue=10))
        self.assertEqual((settings.max_concurrency, settings.max_concurrency_queue), (1, 10))
        settings = self.settings(self.extra(max_concurrency='3', max_concurrency_queue='0'))
        self.assertEqual((settings.max_concurrency, settings.max_concurrency_queue), (3, 0))

    def test_bad_max_concurrency(self):
        for value, shown in (
            (True, 'bool True'),
            (0, 'int 0'),
            (-1, 'int -1'),
            ('abc', "str 'abc'"),
            ([1], 'list [1]'),
            (1.5, 'float 1.5'),
            ('-2', "str '-2'"),
        ):
            with self.subTest(value=value):
                self.assertManifestError(
                    self.extra(max_concurrency=value), 'jobtype_extra.max_concurrency must be an integer >= 1', shown
                )

    def test_bad_max_concurrency_queue(self):
        for value, shown in ((False, 'bool False'), (-1, 'int -1'), ('x', "str 'x'"), ({}, 'dict {}')):
            with self.subTest(value=value):
                self.assertManifestError(
                    self.extra(max_concurrency=1, max_concurrency_queue=value),
                    'jobtype_extra.max_concurrency_queue must be an integer >= 0',
                    shown,
                )

    def test_queue_without_concurrency_warns(self):
        with self.assertLogs('racetrack_job_wrapper.settings', 'WARNING') as logs:
            settings = self.settings(self.extra(max_concurrency_queue=5))
        self.assertEqual(settings.max_concurrency_queue, 5)
        self.assertIn('max_concurrency_queue (5) has no effect', logs.output[0])

    def test_validate_input(self):
        for value, expected in (
            (True, ValidationMode.LAX),
            ('True', ValidationMode.LAX),
            (None, ValidationMode.LAX),
            (False, ValidationMode.OFF),
            ('false', ValidationMode.OFF),
            ('strict', ValidationMode.STRICT),
            (' Strict ', ValidationMode.STRICT),
        ):
            with self.subTest(value=value):
                self.assertIs(self.settings(self.extra(validate_input=value)).validate_input, expected)

    def test_bad_validate_input(self):
        for value, shown in (('nope', "str 'nope'"), ('lax', "str 'lax'"), (0, 'int 0'), ([True], 'list [True]')):
            with self.subTest(value=value):
                self.assertManifestError(
                    self.extra(validate_input=value),
                    'jobtype_extra.validate_input must be one of true, false, strict',
                    shown,
                )

    def test_public_endpoints_normalised(self):
        settings = self.settings({'public_endpoints': ['/api/v1/perform', '/api/v1/webview/', '/', '/api//v1/perform']})
        self.assertEqual(settings.public_endpoints, ('/api/v1/perform', '/api/v1/webview', '/'))

    def test_bad_public_endpoints(self):
        self.assertManifestError(
            {'public_endpoints': '/api/v1/perform'}, 'public_endpoints must be a list', "str '/api/v1/perform'"
        )
        self.assertManifestError(
            {'public_endpoints': ['api/v1/perform']}, 'public_endpoints entries', "str 'api/v1/perform'"
        )
        self.assertManifestError({'public_endpoints': [7]}, 'public_endpoints entries', 'int 7')
        self.assertManifestError({'public_endpoints': ['/a/../b']}, "'/a/../b'", "'..' segments")
        self.assertManifestError({'public_endpoints': ['/a b']}, "'/a b'")

    def test_public_endpoint_with_prefix_asks_for_short_form(self):
        self.assertManifestError(
            {'public_endpoints': ['/pub/job/adder/1.0.0/api/v1/perform']},
            "'/pub/job/adder/1.0.0/api/v1/perform'",
            "use the short form, e.g. '/api/v1/perform'",
        )
        self.assertManifestError(
            {'public_endpoints': ['/pub/fatman/adder/latest/api/v1/webview']},
            "use the short form, e.g. '/api/v1/webview'",
        )

    def test_limits(self):
        settings = self.settings(
            self.extra(max_body_bytes=1024, head_timeout=5, idle_timeout='2.5', max_json_depth='20', grace_period=0.5)
        )
        self.assertEqual(
            settings.limits,
            Limits(max_body_bytes=1024, head_timeout=5.0, idle_timeout=2.5, max_json_depth=20, grace_period=0.5),
        )
        self.assertIs(type(settings.limits.head_timeout), float)
        self.assertIs(type(settings.limits.max_body_bytes), int)

    def test_limit_fields_table(self):
        # The kinds are read off the defaults; they must be what the fields are declared as.
        declared = typing.get_type_hints(Limits)
        for limit in Limits.describe():
            self.assertIs(limit.kind, declared[limit.name], limit.name)
        self.assertEqual(
            {limit.name: limit.kind for limit in Limits.describe()},
            {
                'max_body_bytes': int,
                'max_request_line_bytes': int,
                'max_header_bytes': int,
                'max_header_fields': int,
                'head_timeout': float,
                'idle_timeout': float,
                'max_connections': int,
                'max_client_connections': int,
                'max_json_depth': int,
                'request_timeout': float,
                'grace_period': float,
                'shutdown_delay': float,
            },
        )

    def test_bad_limits(self):
        for limit in Limits.describe():
            bad = [-1, True, 'abc', [1], float('inf')] + ([1.5] if limit.kind is int else [])
            bad += [] if limit.zero_allowed else [0]
            sign = 'non-negative' if limit.zero_allowed else 'positive'
            for value in bad:
                with self.subTest(field=limit.name, value=value):
                    self.assertManifestError(
                        self.extra(**{limit.name: value}),
                        f'jobtype_extra.{limit.name} must be a {sign}',
                        f'{type(value).__name__} {value!r}',
                    )

    def test_a_shutdown_delay_may_be_zero(self):
        self.assertEqual(self.settings(self.extra(shutdown_delay=0)).limits.shutdown_delay, 0)
        self.assertEqual(self.settings(self.extra(shutdown_delay='2.5')).limits.shutdown_delay, 2.5)

    def test_cors_allow_origins(self):
        settings = self.settings(self.extra(cors_allow_origins=['https://a.example.com', 'http://localhost:3000/']))
        self.assertEqual(settings.cors_allow_origins, ('https://a.example.com', 'http://localhost:3000'))
        self.assertEqual(self.settings(self.extra(cors_allow_origins='*')).cors_allow_origins, ('*',))
        self.assertEqual(self.settings(self.extra(cors_allow_origins=[])).cors_allow_origins, ())

    def test_bad_cors_allow_origins(self):
        for value in ('example.com', 'ftp://a.example.com', 'https://a.example.com/path', 'https://', 'https://a b', 5):
            with self.subTest(value=value):
                self.assertManifestError(
                    self.extra(cors_allow_origins=[value]), 'jobtype_extra.cors_allow_origins', repr(value)
                )
        self.assertManifestError(
            self.extra(cors_allow_origins={'a': 1}), 'jobtype_extra.cors_allow_origins', "dict {'a': 1}"
        )

    def test_bad_jobtype_extra(self):
        self.assertManifestError({'jobtype_extra': ['a']}, 'jobtype_extra must be a mapping', "list ['a']")

    def test_unknown_jobtype_extra_keys_warn(self):
        with self.assertLogs('racetrack_job_wrapper.settings', 'WARNING') as logs:
            self.settings(self.extra(max_concurency=2, colour='red', requirements_path='req.txt'))
        self.assertEqual(len(logs.records), 1)
        self.assertIn('unknown jobtype_extra fields are ignored: colour, max_concurency', logs.output[0])

    def test_a_misspelt_jobtype_extra_key_gets_the_nearest_known_one(self):
        with self.assertLogs('racetrack_job_wrapper.settings', 'WARNING') as logs:
            self.settings(self.extra(requirement_path='req.txt'))
        self.assertEqual(
            logs.output,
            [
                'WARNING:racetrack_job_wrapper.settings:unknown jobtype_extra fields are'
                " ignored: requirement_path (did you mean 'requirements_path'?)"
            ],
        )

    def test_unknown_top_level_field_warns_with_the_nearest_known_one(self):
        with self.assertLogs('racetrack_job_wrapper.settings', 'WARNING') as logs:
            self.settings({'name': 'x', 'runtime_evn': {'A': '1'}, 'colour': 'red'})
        self.assertEqual(len(logs.records), 1)
        self.assertEqual(
            logs.records[0].getMessage(),
            "unknown manifest fields are ignored: colour, runtime_evn (did you mean 'runtime_env'?)"
            f' (known: {", ".join(sorted(MANIFEST_FIELDS))})',
        )
        with self.assertLogs('racetrack_job_wrapper.settings', 'WARNING') as logs:
            self.settings({'jobtype_exta': {}})
        self.assertEqual(
            logs.records[0].getMessage(),
            "unknown manifest fields are ignored: jobtype_exta (did you mean 'jobtype_extra'?)",
        )

    def test_no_field_of_the_manifest_schema_warns(self):
        # The top-level properties of the existing implementation's manifest/schema.json.
        schema = (
            'build_env',
            'docker',
            'extends',
            'git',
            'golang',
            'image_type',
            'infrastructure_target',
            'jobtype',
            'jobtype_extra',
            'labels',
            'lang',
            'name',
            'owner_email',
            'public_endpoints',
            'python',
            'replicas',
            'resources',
            'runtime_env',
            'secret_build_env_file',
            'secret_runtime_env_file',
            'system_dependencies',
            'version',
            'wrapper_properties',
        )
        self.assertEqual(MANIFEST_FIELDS, frozenset(schema))
        manifests = {'every field': {name: None for name in schema}}
        for path in sorted(MANIFESTS.glob('[gs]*.yaml')):  # the guide's and the samples' manifests
            manifests[path.name] = read_manifest(str(path), environ={})
        for name, manifest in manifests.items():
            with self.subTest(manifest=name), mock.patch('racetrack_job_wrapper.manifest.logger') as logger:
                self.settings(manifest)
                messages = [call.args[0] % call.args[1:] for call in logger.warning.call_args_list]
                self.assertFalse([message for message in messages if 'unknown' in message], messages)

    def test_known_keys_do_not_warn(self):
        with mock.patch('racetrack_job_wrapper.manifest.logger') as logger:
            self.settings(self.extra(home_page='/docs', max_concurrency=1, entrypoint_path='job.py', head_timeout=3))
        logger.warning.assert_not_called()

    def test_corpus_samples_give_settings(self):
        import yaml

        manifest = yaml.safe_load((MANIFESTS / 'sample_extends.yaml').read_text(encoding='utf-8'))
        settings = self.settings(manifest)
        self.assertEqual(
            (
                settings.name,
                settings.version,
                settings.max_concurrency,
                settings.max_concurrency_queue,
                settings.limits,
                settings.cors_allow_origins,
            ),
            (
                'python-class-production',
                '2.0.0',
                8,
                100,
                Limits(max_body_bytes=10485760, head_timeout=5.0, idle_timeout=60.0, grace_period=2.5),
                ('https://dashboard.example.com', 'https://admin.example.com'),
            ),
        )


class EnvFileTest(unittest.TestCase):
    def test_guide_example(self):
        self.assertEqual(
            parse_env_file(GUIDE_ENV_BUILD, '.env.build'),
            {'GITLAB_USERNAME': 'username@example.com', 'GITLAB_TOKEN': 'Pa55w0rD'},
        )

    def test_syntax(self):
        text = (
            'A=1\n'
            'B = two words  \n'
            '\n'
            '   # indented comment\n'
            'export C=3\n'
            'D=value # comment\n'
            'E=value#not-comment\n'
            "F='single # kept \\n'  # comment\n"
            'G="line\\nbreak \\"quoted\\" \\\\ \\x"\n'
            'H=\n'
            "I=''\n"
            'J=a=b\n'
            'dotted.name-x=ok\n'
        )
        self.assertEqual(
            parse_env_file(text, '.env'),
            {
                'A': '1',
                'B': 'two words',
                'C': '3',
                'D': 'value',
                'E': 'value#not-comment',
                'F': 'single # kept \\n',
                'G': 'line\nbreak "quoted" \\ \\x',
                'H': '',
                'I': '',
                'J': 'a=b',
                'dotted.name-x': 'ok',
            },
        )

    def test_later_line_wins(self):
        self.assertEqual(parse_env_file('A=1\nA=2\n', '.env'), {'A': '2'})

    def test_malformed_lines(self):
        cases = (
            ('A=1\nNO_EQUALS\n', 2, "expected KEY=VALUE, got 'NO_EQUALS'"),
            ('=value\n', 1, "expected KEY=VALUE, got '=value'"),
            ('1A=x\n', 1, "expected KEY=VALUE, got '1A=x'"),
            ('A="open\n', 1, 'unterminated " quote'),
            ("A='x' y\n", 1, "unexpected text after the closing ' quote"),
        )
        for text, line, words in cases:
            with self.subTest(text=text):
                with self.assertRaises(ManifestError) as caught:
                    parse_env_file(text, '.env.runtime')
                self.assertIn(f'.env.runtime, line {line}: {words}', str(caught.exception))


class RuntimeEnvTest(TempDirTestCase):
    def test_runtime_env_is_set_as_strings(self):
        environ = {'KEEP': 'x'}
        manifest = {'runtime_env': {'DJANGO_DEBUG': 'true', 'FLAG': True, 'OFF': False, 'N': 3, 'F': 0.5}}
        applied = apply_runtime_env(manifest, environ, cwd=self.dir)
        expected = {'DJANGO_DEBUG': 'true', 'FLAG': 'true', 'OFF': 'false', 'N': '3', 'F': '0.5'}
        self.assertEqual(applied, expected)
        self.assertEqual(environ, {'KEEP': 'x', **expected})

    def test_nothing_to_apply(self):
        environ = {}
        self.assertEqual(apply_runtime_env({}, environ, cwd=self.dir), {})
        self.assertEqual(environ, {})

    def test_the_environment_wins_over_runtime_env_and_a_present_secret_file_over_both(self):
        # In a cluster the infrastructure has set runtime_env and the secrets as variables already.
        environ = {'API_TOKEN': 'from-the-cluster', 'LEVEL': 'env'}
        applied = apply_runtime_env({'runtime_env': {'API_TOKEN': 'placeholder', 'MODE': 'm'}}, environ, cwd=self.dir)
        self.assertEqual(applied, {'MODE': 'm'})
        self.assertEqual(environ, {'API_TOKEN': 'from-the-cluster', 'LEVEL': 'env', 'MODE': 'm'})
        self.write('.env.runtime', 'LEVEL=secret\n')
        apply_runtime_env(
            {'runtime_env': {'LEVEL': 'manifest'}, 'secret_runtime_env_file': '.env.runtime'}, environ, cwd=self.dir
        )
        self.assertEqual(environ['LEVEL'], 'secret')

    def test_secrets_override_runtime_env(self):
        self.write('.env.runtime', 'TOKEN=secret\nZOO = "hidden zoo"\n')
        environ = {}
        manifest = {
            'runtime_env': {'TORCH_MODEL_ZOO': 'zoo', 'ZOO': 'public'},
            'secret_runtime_env_file': '.env.runtime',
        }
        applied = apply_runtime_env(manifest, environ, cwd=self.dir)
        self.assertEqual(applied, {'TORCH_MODEL_ZOO': 'zoo', 'ZOO': 'hidden zoo', 'TOKEN': 'secret'})
        self.assertEqual(environ, applied)

    def test_applies_to_os_environ_by_default(self):
        with mock.patch.dict(os.environ, {}):
            apply_runtime_env({'runtime_env': {'RTJW_TEST_VAR': 'v'}}, cwd=self.dir)
            self.assertEqual(os.environ['RTJW_TEST_VAR'], 'v')

    def test_missing_secret_file_is_a_warning_and_keeps_the_environment(self):
        environ = {'TOKEN': 'from-the-cluster'}
        with self.assertLogs('racetrack_job_wrapper.manifest', 'WARNING') as logs:
            applied = apply_runtime_env(
                {'runtime_env': {'ZOO': 'zoo'}, 'secret_runtime_env_file': '.env.runtime'}, environ, cwd=self.dir
            )
        self.assertEqual(applied, {'ZOO': 'zoo'})
        self.assertEqual(environ, {'TOKEN': 'from-the-cluster', 'ZOO': 'zoo'})
        self.assertIn("secret_runtime_env_file '.env.runtime' does not exist", logs.output[0])
        self.assertIn('using the variables already in the environment', logs.output[0])
        self.assertNotIn('.dist', logs.output[0])

    def test_missing_secret_file_with_dist_template_names_the_template(self):
        self.write('.env.runtime.dist', 'TOKEN=\n')
        with self.assertLogs('racetrack_job_wrapper.manifest', 'WARNING') as logs:
            apply_runtime_env({'secret_runtime_env_file': '.env.runtime'}, {}, cwd=self.dir)
        self.assertIn("copy the template '.env.runtime.dist' to '.env.runtime'", logs.output[0])

    def test_reserved_names(self):
        for name in ('PUB_URL', 'JOB_NAME'):
            with self.subTest(name=name):
                environ = {}
                with self.assertRaises(ManifestError) as caught:
                    apply_runtime_env({'runtime_env': {name: 'x'}}, environ, cwd=self.dir)
                self.assertIn(f'runtime env var {name} is reserved', str(caught.exception))
                self.assertEqual(environ, {})

    def test_reserved_name_in_secret_file(self):
        self.write('.env.runtime', 'PUB_URL=http://x\n')
        with self.assertRaises(ManifestError) as caught:
            apply_runtime_env({'secret_runtime_env_file': '.env.runtime'}, {}, cwd=self.dir)
        self.assertIn('runtime env var PUB_URL is reserved', str(caught.exception))

    def test_bad_runtime_env(self):
        cases = (
            ({'runtime_env': ['A=1']}, "runtime_env must be a mapping of NAME: value, got list ['A=1']"),
            (
                {'runtime_env': {'A': None}},
                "runtime_env.A must be a string, number or boolean, got NoneType None; write '' for an empty string",
            ),
            ({'runtime_env': {'A': [1]}}, 'runtime_env.A must be a string, number or boolean, got list [1]'),
            ({'runtime_env': {'BAD NAME': 'x'}}, "runtime_env has an invalid variable name 'BAD NAME'"),
            ({'runtime_env': {'A': 'x\x00y'}}, 'runtime env var A must not contain a NUL character'),
            ({'secret_runtime_env_file': 5}, 'secret_runtime_env_file must be a file path, got int 5'),
        )
        for manifest, message in cases:
            with self.subTest(manifest=manifest):
                with self.assertRaises(ManifestError) as caught:
                    apply_runtime_env(manifest, {}, cwd=self.dir)
                self.assertEqual(str(caught.exception), message)

    def test_malformed_secret_file_names_file_and_line(self):
        self.write('.env.runtime', '# secrets\nTOKEN\n')
        with self.assertRaises(ManifestError) as caught:
            apply_runtime_env({'secret_runtime_env_file': '.env.runtime'}, {}, cwd=self.dir)
        self.assertEqual(str(caught.exception), ".env.runtime, line 2: expected KEY=VALUE, got 'TOKEN'")


class BuildSettingsTest(unittest.TestCase):
    def test_valid_build_settings_are_not_applied(self):
        environ_before = dict(os.environ)
        validate_build_settings(
            {'build_env': {'DEBIAN_FRONTEND': 'noninteractive'}, 'secret_build_env_file': '.env.build'}
        )
        self.assertEqual(dict(os.environ), environ_before)

    def test_bad_build_settings(self):
        cases = (
            (
                {'build_env': 'DEBIAN_FRONTEND=noninteractive'},
                "build_env must be a mapping of NAME: value, got str 'DEBIAN_FRONTEND=noninteractive'",
            ),
            ({'build_env': {'A': {'b': 1}}}, "build_env.A must be a string, number or boolean, got dict {'b': 1}"),
            ({'secret_build_env_file': ['.env']}, "secret_build_env_file must be a file path, got list ['.env']"),
        )
        for manifest, message in cases:
            with self.subTest(manifest=manifest):
                with self.assertRaises(ManifestError) as caught:
                    validate_build_settings(manifest)
                self.assertEqual(str(caught.exception), message)


if __name__ == '__main__':
    unittest.main()
