"""Python annotations -> JSON Schema (2020-12, as OpenAPI 3.1 uses it).

Annotations this module does not understand (arbitrary classes, numpy arrays, `Any`, none at
all) get the schema `{}`. A pydantic model describes itself (`model_json_schema()`); the
models and enums it defines join the named schemas, renamed where a name is taken by
another schema.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from racetrack_job_wrapper.convert import ValidationMode
from racetrack_job_wrapper.serialize import json_default
from racetrack_job_wrapper.typeinfo import JSON_TYPE_NAMES, Kind, TypeInfo, classify, json_type_name

# ValidationMode lives in convert.py; manifest.py still imports it from here.
__all__ = ['REF_PREFIX', 'SchemaBuilder', 'ValidationMode', 'json_schema']
REF_PREFIX = '#/components/schemas/'
_PYDANTIC_REF_PREFIX = '#/$defs/'
logger = logging.getLogger(__name__)
_NUMBER_PATTERNS = {'integer': r'^-?[0-9]+$', 'number': r'^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$'}


class SchemaBuilder:
    """Turns annotations into JSON Schema.

    Dataclasses, TypedDicts, Enums and pydantic models become named schemas in `components`,
    referenced with `$ref`, which also makes recursive types finite. Not thread-safe; build at
    start-up.
    """

    def __init__(self, ref_prefix: str = REF_PREFIX):
        self.ref_prefix = ref_prefix
        self.components: dict[str, dict[str, Any]] = {}
        self._names: dict[Any, str] = {}

    def schema(self, annotation: Any) -> dict[str, Any]:
        """JSON Schema of `annotation`; `{}` when it is absent, `Any` or not understood."""
        return self._schema(classify(annotation))

    def _schema(self, info: TypeInfo) -> dict[str, Any]:
        kind = info.kind
        if kind in JSON_TYPE_NAMES:
            return {'type': JSON_TYPE_NAMES[kind]}
        if kind is Kind.UNION:
            return {'anyOf': [self._schema(member) for member in info.parts]}
        if kind is Kind.LITERAL:
            return _literal_schema(info.values)
        if kind in (Kind.ENUM, Kind.DATACLASS, Kind.TYPEDDICT):
            return {'$ref': self.ref_prefix + self._component(info)}
        if kind is Kind.MODEL:
            return self._model_schema(info)
        if kind is Kind.TUPLE:
            if not info.parts:
                return {'type': 'array', 'maxItems': 0}
            return {
                'type': 'array',
                'prefixItems': [self._schema(item) for item in info.parts],
                'minItems': len(info.parts),
                'maxItems': len(info.parts),
            }
        if kind in (Kind.SEQUENCE, Kind.SET):
            schema: dict[str, Any] = {'type': 'array'}
            if kind is Kind.SET:
                schema['uniqueItems'] = True
            if info.item.kind is not Kind.ANY:
                schema['items'] = self._schema(info.item)
            return schema
        if kind is Kind.DICT:
            return self._dict_schema(info)
        return {}

    def _dict_schema(self, info: TypeInfo) -> dict[str, Any]:
        schema: dict[str, Any] = {'type': 'object'}
        if info.key.kind not in (Kind.STR, Kind.ANY):
            # Object keys are strings: numbers are spelled out as patterns, other keys not described.
            key_schema = self._schema(info.key)
            if key_schema.get('type') in _NUMBER_PATTERNS:
                key_schema = {'type': 'string', 'pattern': _NUMBER_PATTERNS[key_schema['type']]}
            if key_schema.get('type') == 'string' or 'enum' in key_schema or '$ref' in key_schema:
                schema['propertyNames'] = key_schema
        if info.value.kind is not Kind.ANY:
            schema['additionalProperties'] = self._schema(info.value)
        return schema

    def _component(self, info: TypeInfo) -> str:
        cls = info.annotation
        name = self._names.get(cls)
        if name is not None:
            return name
        description = _own_doc(info)
        if info.kind is Kind.ENUM:
            # Not recursive, so known before it is named: the same enum in a pydantic model's schema shares it.
            schema = {'title': info.name, **_literal_schema(tuple(member.value for member in info.values))}
            if description:
                schema['description'] = description
            name = self._claim(info.name, schema)
            self._names[cls] = name
            return name
        name = info.name
        counter = 2
        # Two classes of one name from different modules; pydantic's definitions hold names too.
        while name in self.components:
            name = f'{info.name}{counter}'
            counter += 1
        self._names[cls] = name
        self.components[name] = {}  # reserved first, so recursive references terminate
        schema = self._object_schema(info)
        if description:
            schema['description'] = description
        self.components[name] = schema
        return name

    def _model_schema(self, info: TypeInfo) -> dict[str, Any]:
        """A pydantic model's own schema, its definitions merged into `components`."""
        cls = info.annotation
        name = self._names.get(cls)
        if name is not None:
            return {'$ref': self.ref_prefix + name}
        try:
            document = dict(cls.model_json_schema(ref_template=_PYDANTIC_REF_PREFIX + '{model}'))
        except Exception as e:  # noqa: BLE001 -- a field pydantic cannot describe raises its own errors
            logger.warning('%s cannot be described in JSON Schema (%s); documented as any value', info.name, e)
            return {}
        definitions: dict[str, Any] = document.pop('$defs', {})
        renames: dict[str, str] = {}
        claimed: dict[str, Any] = {}
        for def_name, definition in definitions.items():
            target = self._claim(def_name, self._rewrite_refs(definition, renames))
            renames[def_name] = target
            claimed[target] = definition
        for target, definition in claimed.items():  # names settled, forward references included
            self.components[target] = self._rewrite_refs(definition, renames)
        document = dict(self._rewrite_refs(document, renames))
        if set(document) == {'$ref'}:  # a recursive model: the document points at its own definition
            self._names[cls] = document['$ref'][len(self.ref_prefix) :]
            return document
        name = self._claim(info.name, document)
        self._names[cls] = name
        return {'$ref': self.ref_prefix + name}

    def _claim(self, name: str, schema: dict[str, Any]) -> str:
        """The component name `schema` is kept under: `name`, unless another schema has it."""
        candidate, counter = name, 2
        while candidate in self.components and self.components[candidate] != schema:
            candidate = f'{name}{counter}'
            counter += 1
        self.components[candidate] = schema
        return candidate

    def _rewrite_refs(self, value: Any, renames: dict[str, str]) -> Any:
        """`value` with pydantic's `#/$defs/Name` references pointing into `components`."""
        if isinstance(value, dict):
            ref = value.get('$ref')
            rewritten = {key: self._rewrite_refs(item, renames) for key, item in value.items()}
            if isinstance(ref, str) and ref.startswith(_PYDANTIC_REF_PREFIX):
                target = ref[len(_PYDANTIC_REF_PREFIX) :]
                rewritten['$ref'] = self.ref_prefix + renames.get(target, target)
            return rewritten
        if isinstance(value, list):
            return [self._rewrite_refs(item, renames) for item in value]
        return value

    def _object_schema(self, info: TypeInfo) -> dict[str, Any]:
        """A dataclass or TypedDict: its fields as properties, no others allowed."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in info.fields:
            prop = dict(self._schema(field.info))
            if not field.init:
                # Filled in by the class itself: shown in results, not accepted as input.
                prop['readOnly'] = True
            elif field.has_default:
                has_json_form, default = json_default(field.default)
                if has_json_form:
                    prop['default'] = default
            elif field.required:
                required.append(field.name)
            properties[field.name] = prop
        schema: dict[str, Any] = {'type': 'object', 'title': info.name, 'properties': properties}
        if required:
            schema['required'] = required
        schema['additionalProperties'] = False
        return schema


def _literal_schema(values: tuple[Any, ...]) -> dict[str, Any]:
    converted = [json_default(value)[1] for value in values]
    kinds = {json_type_name(value) for value in converted}
    schema: dict[str, Any] = {}
    if len(kinds) == 1:
        schema['type'] = kinds.pop()
    schema['enum'] = converted
    return schema


def _own_doc(info: TypeInfo) -> str:
    doc = info.annotation.__dict__.get('__doc__')
    if not doc or (info.kind is Kind.DATACLASS and doc.startswith(f'{info.name}(')):
        return ''  # dataclasses generate a docstring from the signature; it says nothing new
    if info.kind is Kind.ENUM and doc == 'An enumeration.':
        return ''
    return inspect.cleandoc(doc)


def json_schema(annotation: Any) -> dict[str, Any]:
    """A standalone JSON Schema of `annotation`, named types under `$defs`."""
    builder = SchemaBuilder(ref_prefix='#/$defs/')
    schema = builder.schema(annotation)
    if builder.components:
        schema = {**schema, '$defs': builder.components}
    return schema
