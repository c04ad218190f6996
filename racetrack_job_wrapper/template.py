"""`template TEMPLATE_FILE OUT_FILE`: render a file (an image build's Dockerfile, say) with the manifest's values.

A template sees three names, as with the existing implementation:
- `manifest`: every field of the manifest schema as an attribute; a field the manifest leaves
  out is its schema default (`version` 0.0.1, `image_type` docker, `replicas` 1, else None).
  A manifest with `extends: base.yaml` is merged over that base first.
- `manifest_jobtype_extra`: `jobtype_extra` (or its older names `golang`, `python`,
  `wrapper_properties`), `{}` when there is none.
- `env_vars`: `build_env`, with the values of `secret_build_env_file` over it.

Templates are Jinja2's, rendered by Jinja2 with its default settings as the existing
implementation renders them. Jinja2 is a build-time tool, optional here: it is imported only
by this command, and its absence is a clear error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from racetrack_job_wrapper.manifest import MANIFEST_FILENAME, ManifestError, read_build_env, read_manifest
from racetrack_job_wrapper.settings import MANIFEST_FIELDS

# Schema defaults of the fields templates see; a field without one here is None when left out.
_MANIFEST_DEFAULTS: Mapping[str, Any] = {'version': '0.0.1', 'image_type': 'docker', 'replicas': 1}
# Nested fields with a schema of their own: their field names and defaults.
_NESTED_FIELDS: Mapping[str, tuple[tuple[str, ...], Mapping[str, Any]]] = {
    'git': (('remote', 'branch', 'directory'), {'directory': '.'}),
    'resources': (('memory_min', 'memory_max', 'cpu_min', 'cpu_max'), {}),
}
_JOBTYPE_EXTRA_FIELDS = ('jobtype_extra', 'golang', 'python', 'wrapper_properties')  # the first one set wins


class TemplateError(ValueError):
    """A template outside the supported syntax, or one that cannot be rendered; the message names the line."""


def render_file(
    template_file: str, out_file: str, manifest_path: str = MANIFEST_FILENAME, cwd: Path | None = None
) -> None:
    """Render `template_file` into `out_file` with the manifest's values; paths are relative to `cwd`.

    Raises TemplateError (also when OUT_FILE cannot be written) or ManifestError (a missing or unusable manifest).
    """
    base = Path.cwd() if cwd is None else Path(cwd)
    path = base / template_file
    if not path.is_file():
        raise TemplateError(f"template file '{template_file}' does not exist (looked at {path})")
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read template file '{template_file}': {exc}") from None
    manifest = read_merged_manifest(manifest_path, base)
    context = template_context(manifest, read_build_env(manifest, base))
    rendered = render(text, context, template_file)
    try:
        (base / out_file).write_text(rendered, encoding='utf-8')
    except OSError as exc:
        raise TemplateError(f"cannot write '{out_file}': {exc.strerror or exc}") from None


def read_merged_manifest(manifest_path: str, cwd: Path) -> dict[str, Any]:
    """The manifest, merged over the base manifest its `extends` names (a path relative to it)."""
    manifest = read_manifest(manifest_path, cwd=cwd)
    extends = manifest.get('extends')
    if not extends:
        return manifest
    if not isinstance(extends, str) or Path(extends).is_absolute():
        raise ManifestError(f'extends must be a path relative to the manifest, got {extends!r}')
    base = read_manifest(str((cwd / manifest_path).parent / extends), cwd=cwd)
    if base.get('extends'):
        raise ManifestError(f"the base manifest '{extends}' must not extend another one")
    merged = _merge(base, manifest)
    merged['extends'] = None  # resolved, as the existing implementation shows it
    return merged


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class ManifestFields:
    """A manifest mapping as a template sees it: fields as attributes, a known field left out as its default."""

    def __init__(self, values: Mapping[str, Any], known: Iterable[str], defaults: Mapping[str, Any]):
        self._values = {name: defaults.get(name) for name in known}
        self._values.update(values)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get('_values', {})
        if name not in values:
            raise AttributeError(name)
        return values[name]

    def __repr__(self) -> str:
        return repr(self._values)

    def get_jobtype(self) -> Any:
        """`jobtype`, or the older `lang`."""
        return self._values.get('jobtype') or self._values.get('lang')

    def get_jobtype_extra(self) -> Any:
        """`jobtype_extra`, or the first of its older names that is set."""
        return next((self._values[name] for name in _JOBTYPE_EXTRA_FIELDS if self._values.get(name) is not None), None)


def template_context(manifest: Mapping[str, Any], build_env: Mapping[str, str]) -> dict[str, Any]:
    """The names a template sees: `manifest`, `manifest_jobtype_extra`, `env_vars`."""
    values = dict(manifest)
    for name, (known, defaults) in _NESTED_FIELDS.items():
        if isinstance(values.get(name), Mapping):
            values[name] = ManifestFields(values[name], known, defaults)
    fields = ManifestFields(values, sorted(MANIFEST_FIELDS), _MANIFEST_DEFAULTS)
    return {'manifest': fields, 'manifest_jobtype_extra': fields.get_jobtype_extra() or {}, 'env_vars': dict(build_env)}


def render(text: str, context: Mapping[str, Any], source: str = 'template') -> str:
    """Render template text with `context`; TemplateError names `source`, and the line where Jinja2 knows it."""
    try:
        import jinja2
    except ImportError:
        raise TemplateError(
            'the template command renders with Jinja2, which is not installed here; pip install Jinja2'
        ) from None
    try:
        template: jinja2.Template = jinja2.Template(text)  # Template.__new__ is typed as returning Any
        return template.render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f'{source}, line {exc.lineno}: {exc.message}') from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f'{source}: {exc}') from None
