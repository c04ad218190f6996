"""`template TEMPLATE_FILE OUT_FILE`: the manifest's values, the output text and the errors."""

from __future__ import annotations

import sys
import tempfile
import textwrap
import unittest
from pathlib import Path
from unittest import mock

from racetrack_job_wrapper.manifest import ManifestError
from racetrack_job_wrapper.template import TemplateError, read_merged_manifest, render, render_file, template_context

# A manifest the existing implementation renders (it rejects mappings and lists in the manifest),
# the template and the text its `template` command wrote for them, byte for byte.
BASE_MANIFEST = """\
name: adder
owner_email: a@b.c
git:
  remote: https://github.com/x/y
  directory: sub
version: 1.0.0
"""
OVERLAY_MANIFEST = """\
extends: base.yaml
version: 2.0.1
jobtype: python3:2.4.0
secret_build_env_file: .env.build
"""
SECRET_BUILD_ENV = 'PIP_INDEX="https://pypi.example/simple"\nTOKEN=abc\n'
TEMPLATE = """\
{# a comment #}FROM base:{{ manifest.version }}
{% for env_key, env_value in env_vars.items() %}
ENV {{ env_key }} "{{ env_value }}"
{% endfor %}
{%- if manifest.system_dependencies and manifest.system_dependencies|length > 0 %}
RUN apt-get install {{ manifest.system_dependencies | join(" ") }}
{% endif -%}
{% if manifest.python.requirements_path %}COPY x{% else %}no python{% endif %}
[{{ manifest.git.branch }}|{{ manifest.git.directory }}|{{ manifest.extends }}|{{ manifest.get_jobtype() }}\
|{{ manifest.resources.cpu_min }}]
[{{ manifest.labels | default("none") }}|{{ nothing | default("dflt") }}|{{ manifest.name | upper }}\
|{{ "  x " | trim }}|{{ manifest.owner_email | lower }}]
[{{ manifest.replicas > 0 }}|{{ manifest.jobtype == "python3:2.4.0" }}|{{ "py" in manifest.jobtype }}\
|{{ not manifest.labels }}|{{ manifest.labels is none }}|{{ nothing is defined }}|{{ manifest.name is defined }}]
[{{ manifest_jobtype_extra }}|{{ manifest_jobtype_extra.x }}|{{ env_vars["TOKEN"] }}|{{ env_vars.TOKEN }}\
|{{ env_vars.get("NOPE", "d") }}|{{ manifest.version or "v" }}|{{ 3 }}|{{ 1.5 }}|{{ true }}|{{ none }}\
|{{ [1, "a"] }}]
{{- "  " }}tail

"""
RENDERED = """\
FROM base:2.0.1

ENV PIP_INDEX "https://pypi.example/simple"

ENV TOKEN "abc"
no python
[None|sub|None|python3:2.4.0|]
[None|dflt|ADDER|x|a@b.c]
[True|True|True|True|True|False|True]
[{}||abc|abc|d|2.0.1|3|1.5|True|None|[1, 'a']]  tail
"""
# The Dockerfile template of Racetrack's Python job type, the use the command exists for.
JOB_TYPE_TEMPLATE = """\
FROM {{ base_image }}

{% for env_key, env_value in env_vars.items() %}
ENV {{ env_key }} "{{ env_value }}"
{% endfor %}

{% if manifest.system_dependencies and manifest.system_dependencies|length > 0 %}
RUN apt-get update -y && apt-get install -y \\
    {{ manifest.system_dependencies | join(' ') }}
{% endif %}

{% if manifest_jobtype_extra.requirements_path %}
COPY "{{ manifest_jobtype_extra.requirements_path }}" /src/job/
RUN pip install -r "{{ manifest_jobtype_extra.requirements_path }}"
{% endif %}

CMD racetrack_job_runner run "{{ manifest_jobtype_extra.entrypoint_path }}" "{{ manifest_jobtype_extra.entrypoint_class }}"
ENV JOB_NAME "{{ manifest.name }}"
ENV JOB_VERSION "{{ manifest.version }}"
"""  # noqa: E501 - Racetrack's template as it is, its CMD line included


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding='utf-8')
    return path


class TempDirTestCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self._tmp.cleanup)
        self.dir = Path(self._tmp.name)


class RenderFileTest(TempDirTestCase):
    def test_same_text_as_the_existing_implementation(self):
        write(self.dir, 'base.yaml', BASE_MANIFEST)
        write(self.dir, 'job.yaml', OVERLAY_MANIFEST)
        write(self.dir, '.env.build', SECRET_BUILD_ENV)
        write(self.dir, 'Dockerfile.template', TEMPLATE)
        render_file('Dockerfile.template', 'Dockerfile', cwd=self.dir)
        self.assertEqual((self.dir / 'Dockerfile').read_bytes(), RENDERED.encode())

    def test_the_job_type_dockerfile_with_lists_and_mappings(self):
        write(
            self.dir,
            'job.yaml',
            textwrap.dedent("""\
            name: primer
            owner_email: a@b.c
            git: {remote: 'https://github.com/x/y'}
            system_dependencies: [curl, git]
            build_env: {DEBIAN_FRONTEND: noninteractive, STRICT: true}
            jobtype_extra:
              requirements_path: requirements.txt
              entrypoint_path: job.py
              entrypoint_class: Job
            """),
        )
        write(self.dir, 'in', JOB_TYPE_TEMPLATE)
        render_file('in', 'out', cwd=self.dir)
        self.assertEqual(
            (self.dir / 'out').read_text(),
            textwrap.dedent("""\
            FROM 


            ENV DEBIAN_FRONTEND "noninteractive"

            ENV STRICT "true"



            RUN apt-get update -y && apt-get install -y \\
                curl git



            COPY "requirements.txt" /src/job/
            RUN pip install -r "requirements.txt"


            CMD racetrack_job_runner run "job.py" "Job"
            ENV JOB_NAME "primer"
            ENV JOB_VERSION "0.0.1\""""),  # noqa: W291 - `FROM {{ base_image }}` without a base image
        )

    def test_manifest_path_and_missing_files(self):
        write(self.dir, 'in', '{{ manifest.name }}')
        with self.assertRaises(ManifestError) as caught:
            render_file('in', 'out', cwd=self.dir)
        self.assertIn("manifest file 'job.yaml' does not exist", str(caught.exception))
        write(self.dir, 'other.yaml', 'name: other\n')
        render_file('in', 'out', manifest_path='other.yaml', cwd=self.dir)
        self.assertEqual((self.dir / 'out').read_text(), 'other')
        with self.assertRaises(TemplateError) as caught:
            render_file('absent', 'out', manifest_path='other.yaml', cwd=self.dir)
        self.assertEqual(str(caught.exception), f"template file 'absent' does not exist (looked at {self.dir}/absent)")
        with self.assertRaises(TemplateError) as caught:
            render_file('in', 'no/such/dir/out', manifest_path='other.yaml', cwd=self.dir)
        self.assertEqual(str(caught.exception), "cannot write 'no/such/dir/out': No such file or directory")

    def test_extends_merges_nested_fields_and_refuses_chains(self):
        write(self.dir, 'base.yaml', 'name: a\ngit: {remote: r, branch: main}\nextends: ""\n')
        write(self.dir, 'job.yaml', 'extends: base.yaml\ngit: {branch: dev}\n')
        merged = read_merged_manifest('job.yaml', self.dir)
        self.assertEqual(merged, {'name': 'a', 'git': {'remote': 'r', 'branch': 'dev'}, 'extends': None})
        write(self.dir, 'base.yaml', 'extends: other.yaml\n')
        with self.assertRaises(ManifestError) as caught:
            read_merged_manifest('job.yaml', self.dir)
        self.assertEqual(str(caught.exception), "the base manifest 'base.yaml' must not extend another one")
        write(self.dir, 'job.yaml', 'extends: /etc/base.yaml\n')
        with self.assertRaises(ManifestError):
            read_merged_manifest('job.yaml', self.dir)


class ContextTest(unittest.TestCase):
    def render(self, text: str, manifest: dict | None = None, build_env: dict | None = None) -> str:
        return render(text, template_context(manifest or {}, build_env or {}))

    def test_schema_defaults_for_fields_left_out(self):
        self.assertEqual(
            self.render(
                '{{ manifest.version }} {{ manifest.image_type }} {{ manifest.replicas }}'
                ' {{ manifest.labels }} {{ manifest.git }} {{ manifest.nonsense }}.'
            ),
            '0.0.1 docker 1 None None .',
        )

    def test_jobtype_extra_and_its_older_names(self):
        self.assertEqual(self.render('{{ manifest_jobtype_extra }}', {'python': {'a': 1}}), "{'a': 1}")
        self.assertEqual(
            self.render('{{ manifest_jobtype_extra }}', {'golang': {'g': 1}, 'jobtype_extra': {'j': 2}}), "{'j': 2}"
        )
        self.assertEqual(self.render('{{ manifest.get_jobtype() }}', {'lang': 'python3'}), 'python3')

    def test_values_keep_their_yaml_types(self):
        self.assertEqual(
            self.render('{{ manifest.labels.team }}|{{ manifest.labels["n"] > 2 }}', {'labels': {'team': 'x', 'n': 3}}),
            'x|True',
        )


class JinjaTest(unittest.TestCase):
    def test_syntax_errors_name_the_source_and_line(self):
        with self.assertRaises(TemplateError) as caught:
            render('a\n{% if x %}', {}, 't')
        self.assertRegex(str(caught.exception), r'^t, line 2: Unexpected end of template')
        with self.assertRaises(TemplateError) as caught:
            render('{{ missing.field }}', {}, 't')
        self.assertEqual(str(caught.exception), "t: 'missing' is undefined")

    def test_without_jinja2_the_command_says_what_to_install(self):
        with mock.patch.dict(sys.modules, {'jinja2': None}), self.assertRaises(TemplateError) as caught:
            render('{{ x }}', {'x': 1})
        self.assertIn('pip install Jinja2', str(caught.exception))


if __name__ == '__main__':
    unittest.main()
