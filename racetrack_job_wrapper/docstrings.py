"""Docstring parsing: the description text and per-parameter descriptions (reST, Google and NumPy styles)."""

from __future__ import annotations

import inspect
import re

from racetrack_job_wrapper.records import Record, field

_REST_FIELD = re.compile(r'^:(param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$')
_REST_RETURN = re.compile(r'^:(returns?|return)\s*:\s*(.*)$')
_REST_OTHER = re.compile(r'^:\w[^:]*:')
_GOOGLE_SECTION = re.compile(
    r'^(Args|Arguments|Parameters|Params|Keyword Args|Returns|Return|Raises|Yields'
    r'|Examples?|Notes?)\s*:\s*$'
)
_GOOGLE_PARAM = re.compile(r'^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$')
# NumPy style: a section title alone on its line, underlined with dashes; entries `name : type`
# (or `x, y : type`, or a bare name), their descriptions indented below them.
_NUMPY_UNDERLINE = re.compile(r'^-{3,}$')
_NUMPY_PARAM_SECTIONS = frozenset({'parameters', 'other parameters', 'keyword arguments', 'arguments', 'params'})
_NUMPY_RETURN_SECTIONS = frozenset({'returns', 'yields'})
_NUMPY_OTHER_SECTIONS = frozenset(
    {'receives', 'raises', 'warns', 'warnings', 'see also', 'notes', 'references', 'examples', 'attributes', 'methods'}
)
_NUMPY_PARAM = re.compile(r'^(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::\s*(.*))?$')


class Docstring(Record):
    """What a docstring says: free text, parameter descriptions, the return description."""

    description: str = ''
    params: dict[str, str] = field(default_factory=dict)
    returns: str = ''


def parse_docstring(doc: str | None) -> Docstring:
    """Parse a docstring written in reST (`:param x: ...`), Google (`Args:`) or NumPy (`Parameters` / `----`) style.

    A NumPy `Returns` entry contributes its description, or its type when it has none.
    """
    if not doc:
        return Docstring()
    lines = inspect.cleandoc(doc).splitlines()
    text: list[str] = []
    params: dict[str, list[str]] = {}  # each description's lines, joined at the end
    returns: list[str] = []
    return_types: list[str] = []  # NumPy `Returns` entries, read when none has a description
    current: list[str] | None = None  # the description being continued by indented lines
    section = ''
    entry_indent = -1  # indentation of parameter entries in a Google `Args:` section
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        stripped = line.strip()
        numpy_section = _numpy_section(line, lines[index] if index < len(lines) else '')
        if numpy_section:
            section = numpy_section
            current = None
            index += 1  # the underline
            continue
        if section.startswith('numpy'):
            if not stripped:
                continue
            if _indent(line) > 0:
                if current is not None:
                    current.append(stripped)
            elif section == 'numpy params' and (numpy_param := _NUMPY_PARAM.match(stripped)):
                current = []
                for name in numpy_param.group(1).split(','):
                    params[name.strip().lstrip('*')] = current
            elif section == 'numpy returns':
                current = returns
                return_types.append(stripped.partition(' : ')[2] or stripped)
            else:
                current = None
            continue
        rest_param = _REST_FIELD.match(stripped)
        rest_return = _REST_RETURN.match(stripped)
        google_section = _GOOGLE_SECTION.match(stripped) if not line.startswith(' ') else None
        if rest_param:
            current = [rest_param.group(3)]
            params[rest_param.group(2)] = current
            section = 'rest'
        elif rest_return:
            current = returns
            returns.append(rest_return.group(2))
            section = 'rest'
        elif _REST_OTHER.match(stripped):
            current = None
            section = 'rest'
        elif google_section:
            section = google_section.group(1).lower()
            current = returns if section in ('returns', 'return') else None
            entry_indent = -1
        elif section in ('args', 'arguments', 'parameters', 'params', 'keyword args') and stripped:
            google_param = _GOOGLE_PARAM.match(stripped)
            if entry_indent < 0:
                entry_indent = _indent(line)
            if google_param and _indent(line) <= entry_indent:
                current = [google_param.group(2)]
                params[google_param.group(1).lstrip('*')] = current
            elif current is not None:
                current.append(stripped)
        elif section and stripped and current is not None and line.startswith(' '):
            current.append(stripped)
        elif section in ('returns', 'return') and stripped:
            returns.append(stripped)
        elif not section:
            text.append(line)
        elif not stripped:
            current = None if section == 'rest' else current
    returned = ' '.join(part for part in returns if part).strip() or ', '.join(return_types)
    return Docstring(
        description='\n'.join(text).strip(),
        params={name: ' '.join(part for part in value if part).strip() for name, value in params.items()},
        returns=returned,
    )


def _numpy_section(line: str, following: str) -> str:
    """The kind of NumPy section `line` opens when `following` underlines it, else ''."""
    if line.startswith((' ', '\t')) or not _NUMPY_UNDERLINE.match(following.strip()):
        return ''
    title = line.strip().lower()
    if title in _NUMPY_PARAM_SECTIONS:
        return 'numpy params'
    if title in _NUMPY_RETURN_SECTIONS:
        return 'numpy returns'
    return 'numpy other' if title in _NUMPY_OTHER_SECTIONS else ''


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())
