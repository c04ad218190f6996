"""Docstring parsing: the description text and per-parameter descriptions (reST and Google styles)."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

_REST_FIELD = re.compile(r'^:(param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$')
_REST_RETURN = re.compile(r'^:(returns?|return)\s*:\s*(.*)$')
_REST_OTHER = re.compile(r'^:\w[^:]*:')
_GOOGLE_SECTION = re.compile(
    r'^(Args|Arguments|Parameters|Params|Keyword Args|Returns|Return|Raises|Yields'
    r'|Examples?|Notes?)\s*:\s*$'
)
_GOOGLE_PARAM = re.compile(r'^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$')


@dataclass(frozen=True)
class Docstring:
    """What a docstring says: free text, parameter descriptions, the return description."""

    description: str = ''
    params: dict[str, str] = field(default_factory=dict)
    returns: str = ''


def parse_docstring(doc: str | None) -> Docstring:
    """Parse a docstring written in reST (`:param x: ...`) or Google (`Args:`) style."""
    if not doc:
        return Docstring()
    lines = inspect.cleandoc(doc).splitlines()
    text: list[str] = []
    params: dict[str, list[str]] = {}  # each description's lines, joined at the end
    returns: list[str] = []
    current: list[str] | None = None  # the description being continued by indented lines
    section = ''
    entry_indent = -1  # indentation of parameter entries in a Google `Args:` section
    for line in lines:
        stripped = line.strip()
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
    return Docstring(
        description='\n'.join(text).strip(),
        params={name: ' '.join(part for part in value if part).strip() for name, value in params.items()},
        returns=' '.join(part for part in returns if part).strip(),
    )


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())
