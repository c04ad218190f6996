"""Python annotations -> JSON Schema (2020-12, as OpenAPI 3.1 uses it).

Annotations this module does not understand (arbitrary classes, numpy arrays, `Any`, none at
all) get the schema `{}`.
"""

from __future__ import annotations

import inspect
from typing import Any

from racetrack_job_wrapper.convert import ValidationMode
from racetrack_job_wrapper.serialize import json_default
from racetrack_job_wrapper.typeinfo import JSON_TYPE_NAMES, Kind, TypeInfo, classify, json_type_name

# ValidationMode lives in convert.py; manifest.py still imports it from here.
__all__ = ['REF_PREFIX', 'SchemaBuilder', 'ValidationMode', 'json_schema']
REF_PREFIX = '#/components/schemas/'
_NUMBER_PATTERNS = {'integer': r'^-?[0-9]+$', 'number': r'^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$'}


class SchemaBuilder:
    """Turns annotations into JSON Schema.

    Dataclasses, TypedDicts and Enums become named schemas in `components`, referenced with
    `$ref`, which also makes recursive types finite. Not thread-safe; build at start-up.
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
        name = info.name
        taken = set(self._names.values())
        counter = 2
        while name in taken:  # two classes of one name from different modules
            name = f'{info.name}{counter}'
            counter += 1
        self._names[cls] = name
        self.components[name] = {}  # reserved first, so recursive references terminate
        if info.kind is Kind.ENUM:
            schema = {'title': info.name, **_literal_schema(tuple(member.value for member in info.values))}
        else:
            schema = self._object_schema(info)
        description = _own_doc(info)
        if description:
            schema['description'] = description
        self.components[name] = schema
        return name

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
