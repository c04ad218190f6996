"""A small, safe reader of the YAML subset that job manifests use.

It reads one document made of block and flow collections, plain, quoted and block scalars, and
types plain scalars the way PyYAML's ``safe_load`` does (the YAML 1.1 resolver): ``yes``/``on``
are booleans, ``010`` is octal, ``1e3`` is a string, ``2024-01-01`` is a ``datetime.date``.
Everything outside the subset (anchors, aliases, tags, directives, complex keys, merge keys,
several documents, tabs used as whitespace) raises ``YamlSubsetError`` instead of being guessed.
"""

from __future__ import annotations

import bisect
import datetime
import math
import re
from typing import Any

__all__ = ['YamlSubsetError', 'load']


class YamlSubsetError(ValueError):
    """YAML text outside the supported subset, or malformed; carries a 1-based line and column."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f'{message} (line {line}, column {column})')
        self.problem = message
        self.line = line
        self.column = column


def load(text: str) -> Any:
    """Parse one YAML document of the supported subset into plain Python values (None if empty)."""
    return _Parser(text).parse_document()


# YAML 1.1 scalar types, as https://yaml.org/type/ defines them for implicit (plain) scalars.
_NULLS = frozenset({'~', 'null', 'Null', 'NULL'})
_TRUES = frozenset({'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON'})
_FALSES = frozenset({'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF'})
_INT = re.compile(
    r"""
      [-+]?0b[01_]+                       # binary
    | [-+]?0[0-7_]+                       # octal (leading zero)
    | [-+]?(?:0|[1-9][0-9_]*)             # decimal
    | [-+]?0x[0-9a-fA-F_]+                # hexadecimal
    | [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+  # base 60
    """,
    re.VERBOSE,
)
_FLOAT = re.compile(
    r"""
      [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?   # exponent needs a sign in YAML 1.1
    | \.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*    # base 60
    | [-+]?\.(?:inf|Inf|INF)
    | \.(?:nan|NaN|NAN)
    """,
    re.VERBOSE,
)
_TIMESTAMP = re.compile(
    r"""
    (?P<year>[0-9]{4})-(?P<month>[0-9]{1,2})-(?P<day>[0-9]{1,2})
    (?:(?:[Tt]|[ \t]+)
       (?P<hour>[0-9]{1,2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})
       (?:\.(?P<fraction>[0-9]*))?
       (?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9]{1,2})(?::(?P<tz_minute>[0-9]{2}))?))?
    )?
    """,
    re.VERBOSE,
)
# A date alone must be written with two-digit month and day; only full timestamps allow one.
_DATE_ONLY = re.compile(r'[0-9]{4}-[0-9]{2}-[0-9]{2}')

_ESCAPES = {
    '0': '\0',
    'a': '\x07',
    'b': '\x08',
    't': '\t',
    '\t': '\t',
    'n': '\n',
    'v': '\x0b',
    'f': '\x0c',
    'r': '\r',
    'e': '\x1b',
    ' ': ' ',
    '"': '"',
    '/': '/',
    '\\': '\\',
    'N': '\x85',
    '_': '\xa0',
    'L': '\u2028',
    'P': '\u2029',
}
_HEX_ESCAPES = {'x': 2, 'u': 4, 'U': 8}
_HEX_DIGITS = frozenset('0123456789abcdefABCDEF')
_REFUSED_STARTS = {
    '&': 'anchors (&) are not supported',
    '*': 'aliases (*) are not supported',
    '!': 'tags (!) are not supported',
    '%': 'directives (%) are not supported',
    '@': "'@' is a reserved YAML indicator and cannot start a plain value; quote the value",
    '`': "'`' is a reserved YAML indicator and cannot start a plain value; quote the value",
}
_FLOW_INDICATORS = frozenset(',[]{}')


def _is_printable(ch: str) -> bool:
    """Tell whether YAML allows the character in a stream (tab and line feed included)."""
    code = ord(ch)
    return (
        ch in '\t\n'
        or 0x20 <= code <= 0x7E
        or code == 0x85
        or 0xA0 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _resolve_plain(value: str, parser: _Parser, start: int) -> Any:
    """Type a plain scalar the way the YAML 1.1 resolver of PyYAML's safe loader does."""
    if value in _NULLS:
        return None
    if value in _TRUES:
        return True
    if value in _FALSES:
        return False
    if value == '<<':
        raise parser.error('merge keys (<<) are not supported', start)
    if value == '=':
        raise parser.error("a plain '=' has no YAML 1.1 meaning here; quote it", start)
    if _INT.fullmatch(value):
        return _construct_int(value, parser, start)
    if _FLOAT.fullmatch(value):
        return _construct_float(value)
    match = _TIMESTAMP.fullmatch(value)
    if match and (match['hour'] or _DATE_ONLY.fullmatch(value)):
        return _construct_timestamp(match, parser, start)
    return value


def _construct_int(value: str, parser: _Parser, start: int) -> int:
    """Build an int from text already matched by the YAML 1.1 int pattern."""
    digits = value.replace('_', '')
    sign = -1 if digits[0] == '-' else 1
    digits = digits.lstrip('+-')
    try:
        if digits.startswith('0b'):
            return sign * int(digits[2:], 2)
        if digits.startswith('0x'):
            return sign * int(digits[2:], 16)
        if ':' in digits:
            total = 0
            for part in digits.split(':'):
                total = total * 60 + int(part)
            return sign * total
        if digits != '0' and digits.startswith('0'):
            return sign * int(digits, 8)
        return sign * int(digits)
    except ValueError:
        raise parser.error(f'{value!r} looks like an integer but has no digits', start) from None


def _construct_float(value: str) -> float:
    """Build a float from text already matched by the YAML 1.1 float pattern."""
    digits = value.replace('_', '').lower()
    sign = -1.0 if digits[0] == '-' else 1.0
    digits = digits.lstrip('+-')
    if digits == '.inf':
        return sign * math.inf
    if digits == '.nan':
        return math.nan
    if ':' in digits:
        total = 0.0
        for part in digits.split(':'):
            total = total * 60 + float(part)
        return sign * total
    return sign * float(digits)


def _construct_timestamp(match: re.Match[str], parser: _Parser, start: int) -> datetime.date:
    """Build a date or datetime from a matched YAML 1.1 timestamp."""
    try:
        year, month, day = int(match['year']), int(match['month']), int(match['day'])
        if not match['hour']:
            return datetime.date(year, month, day)
        fraction = (match['fraction'] or '')[:6].ljust(6, '0')
        tzinfo = None
        if match['tz_sign']:
            delta = datetime.timedelta(hours=int(match['tz_hour']), minutes=int(match['tz_minute'] or 0))
            tzinfo = datetime.timezone(-delta if match['tz_sign'] == '-' else delta)
        elif match['tz']:
            tzinfo = datetime.UTC
        return datetime.datetime(
            year,
            month,
            day,
            int(match['hour']),
            int(match['minute']),
            int(match['second']),
            int(fraction),
            tzinfo=tzinfo,
        )
    except ValueError as exc:
        raise parser.error(f'invalid date or time {match.group(0)!r}: {exc}', start) from None


class _Parser:
    """Recursive-descent reader over the whole text with a cursor; one instance per document."""

    def __init__(self, text: str) -> None:
        if text.startswith('\ufeff'):
            text = text[1:]
        self.text = text.replace('\r\n', '\n').replace('\r', '\n')
        self.pos = 0
        self.line_starts = [0]
        for index, ch in enumerate(self.text):
            if ch == '\n':
                self.line_starts.append(index + 1)
            elif not _is_printable(ch):
                raise self.error(f'character {ch!r} is not allowed in YAML', index)

    # ----- cursor helpers
    def error(self, message: str, pos: int | None = None) -> YamlSubsetError:
        """Build an error located at `pos` (the cursor by default)."""
        pos = self.pos if pos is None else pos
        line = bisect.bisect_right(self.line_starts, pos)
        return YamlSubsetError(message, line, pos - self.line_starts[line - 1] + 1)

    def peek(self, offset: int = 0) -> str:
        """Return the character `offset` places ahead, or '' past the end."""
        index = self.pos + offset
        return self.text[index] if index < len(self.text) else ''

    def _line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.line_starts, pos)

    def column(self) -> int:
        """Return the 0-based column of the cursor."""
        return self.pos - self.line_starts[bisect.bisect_right(self.line_starts, self.pos) - 1]

    def _is_blank(self, ch: str) -> bool:
        return ch in ('', ' ', '\t', '\n')

    def _at_document_marker(self) -> bool:
        return self.column() == 0 and self.text.startswith(('---', '...'), self.pos) and self._is_blank(self.peek(3))

    def _at_sequence_entry(self) -> bool:
        return self.peek() == '-' and self._is_blank(self.peek(1))

    def _reject_tab(self) -> None:
        if self.peek() == '\t':
            raise self.error('tab characters are not allowed as indentation or separators; use spaces')

    def _skip_spaces(self) -> None:
        while self.peek() == ' ':
            self.pos += 1
        self._reject_tab()

    def _skip_comment(self) -> None:
        if self.peek() == '#':
            end = self.text.find('\n', self.pos)
            self.pos = len(self.text) if end == -1 else end

    def _at_line_end(self) -> bool:
        # A '#' where a token could start is a comment, as in PyYAML.
        return self.peek() in ('', '\n', '#')

    def _skip_to_content(self, in_flow: bool = False) -> None:
        """Move past spaces, comments and line breaks to the next token (or the end).

        Inside a flow collection a document marker at the start of a line is an error.
        """
        while True:
            self._skip_spaces()
            self._skip_comment()
            if self.peek() != '\n':
                return
            self.pos += 1
            if in_flow and self._at_document_marker():
                raise self.error('a document marker cannot appear inside a flow collection')

    def _finish_line(self) -> None:
        """Require that nothing but a comment follows a value on its line."""
        self._skip_spaces()
        self._skip_comment()
        if self.peek() in ('', '\n'):
            return
        line_start = self.line_starts[bisect.bisect_right(self.line_starts, self.pos) - 1]
        if self.text[line_start : self.pos].strip(' '):
            if self.peek() == ':':
                raise self.error('mapping values are not allowed here')
            raise self.error('unexpected content after a value')

    # ----- document
    def parse_document(self) -> Any:
        """Parse the single document of the stream."""
        self._skip_to_content()
        if self.peek() == '%':
            raise self.error(_REFUSED_STARTS['%'])
        if self._at_document_marker() and self.peek() == '-':
            self.pos += 3
            self._skip_spaces()
            if self._at_line_end():
                value = self._parse_block_child(-1, compact_sequence=False)
            else:
                value = self._parse_node(-1, block_collections=False)
        else:
            value = self._parse_block_child(-1, compact_sequence=False)
        self._finish_line()
        self._skip_to_content()
        if self._at_document_marker() and self.peek() == '.':
            self.pos += 3
            self._skip_to_content()
        if self.peek() == '':
            return value
        if self._at_document_marker():
            raise self.error('only one document is supported; found a second document marker')
        raise self.error('unexpected content; check the indentation')

    # ----- block structure
    def _parse_block_child(self, parent_indent: int, compact_sequence: bool) -> Any:
        """Parse a value that starts on a later line, or None if the next line is not deeper."""
        self._skip_to_content()
        if self.peek() == '' or self._at_document_marker():
            return None
        column = self.column()
        if column > parent_indent:
            return self._parse_node(parent_indent, block_collections=True)
        if compact_sequence and column == parent_indent and self._at_sequence_entry():
            return self._parse_sequence(column)
        return None

    def _parse_node(self, parent_indent: int, block_collections: bool) -> Any:
        """Parse the node starting at the cursor, inside a block collection at `parent_indent`."""
        ch = self.peek()
        start = self.pos
        if ch == '':
            raise self.error('expected a value')
        if self._at_sequence_entry():
            if not block_collections:
                raise self.error('sequence entries are not allowed here')
            return self._parse_sequence(self.column())
        if ch in '|>':
            return self._parse_block_scalar(parent_indent)
        if block_collections and self._looks_like_key():
            return self._parse_mapping(self.column())
        if ch in '[{':
            value = self._parse_flow_collection()
            self._skip_spaces()
            if self.peek() == ':' and self._is_blank(self.peek(1)):
                raise self.error('complex mapping keys (collections as keys) are not supported', start)
            return value
        if ch in '\'"':
            return self._scan_quoted()
        return _resolve_plain(self._scan_plain(parent_indent, flow=False), self, start)

    def _looks_like_key(self) -> bool:
        """Tell whether the current line holds `key:` (a block mapping entry) at the cursor."""
        if self.peek() in '[{':
            return False
        saved = self.pos
        try:
            if self.peek() in '\'"':
                self._scan_quoted()
                while self.peek() == ' ':
                    self.pos += 1
                return self.peek() == ':' and self.peek(1) in ('', ' ', '\t', '\n')
            index = self.pos
            while index < len(self.text):
                ch = self.text[index]
                if ch == '\n' or (ch == '#' and self.text[index - 1] == ' '):
                    return False
                if ch == ':' and (index + 1 == len(self.text) or self.text[index + 1] in ' \t\n'):
                    return True
                index += 1
            return False
        finally:
            self.pos = saved

    def _parse_mapping(self, indent: int) -> dict[Any, Any]:
        """Parse a block mapping whose keys sit at column `indent`."""
        result: dict[Any, Any] = {}
        while True:
            key = self._parse_key()
            self._skip_spaces()
            if self.peek() != ':' or not self._is_blank(self.peek(1)):
                raise self.error("expected ': ' after a mapping key")
            self.pos += 1
            self._skip_spaces()
            if self._at_line_end():
                value = self._parse_block_child(indent, compact_sequence=True)
            else:
                value = self._parse_node(indent, block_collections=False)
            self._finish_line()
            # As in PyYAML, a repeated key keeps the last value.
            result[key] = value
            self._skip_to_content()
            if self.peek() == '' or self._at_document_marker() or self.column() < indent:
                return result
            if self.column() > indent:
                raise self.error('bad indentation of a mapping entry')
            if self._at_sequence_entry():
                raise self.error('a sequence entry cannot follow mapping entries at the same indentation')

    def _parse_key(self) -> Any:
        """Parse a single-line block mapping key at the cursor."""
        start = self.pos
        ch = self.peek()
        if ch == '?' and self._is_blank(self.peek(1)):
            raise self.error('complex mapping keys (?) are not supported')
        if ch in ('[', '{'):
            raise self.error('complex mapping keys (collections as keys) are not supported')
        if ch in ("'", '"'):
            line = self._line_of(self.pos)
            key = self._scan_quoted()
            if self._line_of(self.pos) != line:
                raise self.error('a mapping key must fit on one line', start)
            return key
        return _resolve_plain(self._scan_plain(-1, flow=False, single_line=True), self, start)

    def _parse_sequence(self, indent: int) -> list[Any]:
        """Parse a block sequence whose '-' entries sit at column `indent`."""
        result: list[Any] = []
        while True:
            self.pos += 1
            self._skip_spaces()
            if self._at_line_end():
                item = self._parse_block_child(indent, compact_sequence=False)
            else:
                item = self._parse_node(indent, block_collections=True)
            self._finish_line()
            result.append(item)
            self._skip_to_content()
            if self.peek() == '' or self._at_document_marker() or self.column() < indent:
                return result
            if self.column() > indent:
                raise self.error('bad indentation of a sequence entry')
            if not self._at_sequence_entry():
                # A sequence at its mapping key's indentation ends at the next key.
                return result

    # ----- scalars
    def _check_plain_start(self, flow: bool) -> None:
        ch, after = self.peek(), self.peek(1)
        if ch in _REFUSED_STARTS:
            raise self.error(_REFUSED_STARTS[ch])
        if ch == '?' and (flow or self._is_blank(after)):
            raise self.error('complex mapping keys (?) are not supported')
        if ch == ':' and (flow or self._is_blank(after)):
            raise self.error('a mapping key is missing before ":"')
        if ch == '-' and self._is_blank(after):
            raise self.error('sequence entries are not allowed here')
        if flow and ch in ('|', '>'):
            raise self.error('block scalars are not allowed inside flow collections')
        if ch in _FLOW_INDICATORS or ch in ('#', "'", '"', '|', '>'):
            raise self.error(f'unexpected character {ch!r}')
        if ch in ('', '\n'):
            raise self.error('expected a value')
        self._reject_tab()

    def _plain_stops(self, flow: bool) -> bool:
        ch = self.peek()
        if ch in ('', ' ', '\t', '\n'):
            return True
        if ch == ':':
            after = self.peek(1)
            return self._is_blank(after) or (flow and after in _FLOW_INDICATORS)
        return flow and (ch in _FLOW_INDICATORS or ch == '?')

    def _scan_plain(self, parent_indent: int, flow: bool, single_line: bool = False) -> str:
        """Scan a plain scalar, folding continuation lines deeper than `parent_indent`."""
        self._check_plain_start(flow)
        chunks: list[str] = []
        pending = ''
        while self.peek() != '#':
            start = self.pos
            while not self._plain_stops(flow):
                self.pos += 1
            if self.pos == start:
                break
            chunks.append(pending)
            chunks.append(self.text[start : self.pos])
            spaces = self._scan_plain_spaces(single_line)
            if spaces is None or (not flow and self.column() <= parent_indent):
                break
            pending = spaces
        return ''.join(chunks)

    def _scan_plain_spaces(self, single_line: bool) -> str | None:
        """Consume whitespace inside a plain scalar; return its folded form, None to stop."""
        start = self.pos
        while self.peek() == ' ':
            self.pos += 1
        self._reject_tab()
        if self.peek() != '\n':
            return self.text[start : self.pos] if self.pos > start else None
        if single_line:
            return None
        breaks = 0
        while self.peek() == '\n':
            self.pos += 1
            if self._at_document_marker():
                return None
            self._skip_spaces()
            if self.peek() == '\n':
                breaks += 1
        return '\n' * breaks if breaks else ' '

    def _scan_quoted(self) -> str:
        """Scan a single- or double-quoted scalar, folding line breaks as YAML does."""
        start = self.pos
        quote = self.peek()
        double = quote == '"'
        self.pos += 1
        chunks: list[str] = []
        while True:
            ch = self.peek()
            if ch == '':
                raise self.error('unterminated quoted scalar', start)
            if ch == quote:
                if not double and self.peek(1) == "'":
                    chunks.append("'")
                    self.pos += 2
                    continue
                self.pos += 1
                return ''.join(chunks)
            if double and ch == '\\':
                chunks.append(self._scan_escape())
            elif ch in ' \t\n':
                chunks.append(self._scan_quoted_spaces(start))
            else:
                chunks.append(ch)
                self.pos += 1

    def _scan_escape(self) -> str:
        """Scan one backslash escape of a double-quoted scalar."""
        start = self.pos
        code = self.peek(1)
        if code in _ESCAPES:
            self.pos += 2
            return _ESCAPES[code]
        if code in _HEX_ESCAPES:
            width = _HEX_ESCAPES[code]
            digits = self.text[self.pos + 2 : self.pos + 2 + width]
            if len(digits) != width or not set(digits) <= _HEX_DIGITS:
                raise self.error(f'expected {width} hexadecimal digits after \\{code}', start)
            self.pos += 2 + width
            return chr(int(digits, 16))
        if code == '\n':
            # An escaped line break joins the lines without a space.
            self.pos += 2
            return '\n' * self._skip_quoted_breaks(start)
        raise self.error(f'unknown escape sequence \\{code}', start)

    def _scan_quoted_spaces(self, start: int) -> str:
        """Consume whitespace in a quoted scalar and fold line breaks."""
        begin = self.pos
        while self.peek() in (' ', '\t'):
            self.pos += 1
        if self.peek() != '\n':
            return self.text[begin : self.pos]
        self.pos += 1
        breaks = self._skip_quoted_breaks(start)
        return '\n' * breaks if breaks else ' '

    def _skip_quoted_breaks(self, start: int) -> int:
        """Skip indentation and blank lines inside a quoted scalar; return the blank lines."""
        breaks = 0
        while True:
            if self._at_document_marker():
                raise self.error('a document marker cannot appear inside a quoted scalar', start)
            while self.peek() in (' ', '\t'):
                self.pos += 1
            if self.peek() != '\n':
                return breaks
            breaks += 1
            self.pos += 1

    def _parse_block_scalar(self, parent_indent: int) -> str:
        """Parse a literal (|) or folded (>) block scalar with its chomping and indentation."""
        folded = self.peek() == '>'
        self.pos += 1
        keep: bool | None = None
        increment: int | None = None
        for _ in range(2):
            ch = self.peek()
            if ch in ('+', '-') and keep is None:
                keep = ch == '+'
            elif ch in '0123456789' and ch and increment is None:
                if ch == '0':
                    raise self.error('a block scalar indentation indicator must be 1 to 9')
                increment = int(ch)
            else:
                break
            self.pos += 1
        if not self._is_blank(self.peek()):
            raise self.error(
                'expected a chomping (+ -) or indentation (1-9) indicator, a space'
                ' or a line break after a block scalar indicator'
            )
        self._skip_spaces()
        self._skip_comment()
        if self.peek() not in ('', '\n'):
            raise self.error('expected a comment or a line break after a block scalar header')
        if self.peek() == '\n':
            self.pos += 1
        min_indent = max(parent_indent + 1, 1)
        if increment is None:
            breaks, max_indent = self._block_scalar_indentation()
            indent = max(min_indent, max_indent)
        else:
            indent = min_indent + increment - 1
            breaks = self._block_scalar_breaks(indent)
        chunks: list[str] = []
        line_break = ''
        while self.column() == indent and self.peek() != '':
            chunks.extend(breaks)
            leading_non_space = self.peek() not in ' \t'
            end = self.text.find('\n', self.pos)
            end = len(self.text) if end == -1 else end
            chunks.append(self.text[self.pos : end])
            self.pos = end
            line_break = ''
            if self.peek() == '\n':
                line_break = '\n'
                self.pos += 1
            breaks = self._block_scalar_breaks(indent)
            if self.column() != indent or self.peek() == '':
                break
            # Folding joins two text lines with a space unless either is more indented.
            if folded and line_break and leading_non_space and self.peek() not in ' \t':
                if not breaks:
                    chunks.append(' ')
            else:
                chunks.append(line_break)
        if keep is not False:
            chunks.append(line_break)
        if keep is True:
            chunks.extend(breaks)
        return ''.join(chunks)

    def _block_scalar_indentation(self) -> tuple[list[str], int]:
        """Skip leading blank lines of a block scalar; return them and the deepest column seen."""
        breaks: list[str] = []
        max_indent = 0
        while self.peek() in (' ', '\n') and self.peek():
            if self.peek() == '\n':
                breaks.append('\n')
                self.pos += 1
            else:
                self.pos += 1
                max_indent = max(max_indent, self.column())
        return breaks, max_indent

    def _block_scalar_breaks(self, indent: int) -> list[str]:
        """Skip indentation up to `indent` and any blank lines; return the line breaks."""
        breaks: list[str] = []
        while self.column() < indent and self.peek() == ' ':
            self.pos += 1
        while self.peek() == '\n':
            breaks.append('\n')
            self.pos += 1
            while self.column() < indent and self.peek() == ' ':
                self.pos += 1
        return breaks

    # ----- flow collections
    def _parse_flow_node(self) -> Any:
        """Parse one node inside a flow collection."""
        start = self.pos
        ch = self.peek()
        if ch in '[{':
            return self._parse_flow_collection()
        if ch in '\'"':
            return self._scan_quoted()
        return _resolve_plain(self._scan_plain(-1, flow=True), self, start)

    def _parse_flow_key(self) -> Any:
        start = self.pos
        key = self._parse_flow_node()
        if isinstance(key, (list, dict)):
            raise self.error('complex mapping keys (collections as keys) are not supported', start)
        return key

    def _parse_flow_collection(self) -> list[Any] | dict[Any, Any]:
        """Parse a [...] sequence or {...} mapping, which may span lines."""
        start = self.pos
        is_mapping = self.peek() == '{'
        close = '}' if is_mapping else ']'
        self.pos += 1
        result: list[Any] | dict[Any, Any] = {} if is_mapping else []
        while True:
            self._skip_to_content(in_flow=True)
            if self.peek() == close:
                self.pos += 1
                return result
            if self.peek() == '':
                raise self.error(f'unterminated flow collection, expected {close!r}', start)
            entry_start = self.pos
            key = self._parse_flow_key() if is_mapping else self._parse_flow_node()
            self._skip_to_content(in_flow=True)
            has_value = self.peek() == ':'
            value = None
            if has_value and self._line_of(self.pos) != self._line_of(entry_start):
                raise self.error("a key and its ':' must be on the same line", entry_start)
            if has_value:
                if not is_mapping and isinstance(key, (list, dict)):
                    raise self.error('complex mapping keys (collections as keys) are not supported', entry_start)
                self.pos += 1
                self._skip_to_content(in_flow=True)
                if self.peek() not in (',', close):
                    value = self._parse_flow_node()
                    self._skip_to_content(in_flow=True)
            if isinstance(result, dict):
                result[key] = value
            elif has_value:
                result.append({key: value})
            else:
                result.append(key)
            if self.peek() == ',':
                self.pos += 1
            elif self.peek() == '':
                raise self.error(f'unterminated flow collection, expected {close!r}', start)
            elif self.peek() != close:
                raise self.error(f"expected ',' or {close!r} in a flow collection")
