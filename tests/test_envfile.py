"""The `.env` reader held against python-dotenv, line by line.

The user guide points env files at Docker Compose's `.env` syntax. The rule this reader keeps:

1. where python-dotenv and Compose read a line alike, it reads it so too;
2. where either of them gives a line no value (skips it, ignores it or refuses it), it refuses
   the line, naming the file and the line: a secret that silently went missing is worse;
3. where they read it differently otherwise, it reads it as Compose does, except that a `$`
   not starting `${` (Compose's `$NAME`, `$$`, `\\$`) and the backslash escapes Compose alone
   reads (`\\0NNN`) are plain text, as python-dotenv and racetrack-job-runner (whose reader,
   `configparser`, takes values as written) read them, so a secret with a `$` or a `\\` in it
   needs no escaping; and `${NAME}` reads the file's earlier lines before the environment, as
   python-dotenv does, because the file's values win over the environment when applied.

AGREED is checked against python-dotenv itself. DIFFERENCES lists every line read otherwise,
with our answer, python-dotenv's (checked too, so the list stays true) and Compose's.
"""

from __future__ import annotations

import logging
import os
import tempfile
import unittest
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from racetrack_job_wrapper.manifest import ManifestError, apply_runtime_env, parse_env_file, read_build_env

try:
    from dotenv import dotenv_values
except ImportError:
    if os.environ.get('CI') == 'true':
        raise  # CI installs the test extra: there a missing python-dotenv is a failure, not a skip
    dotenv_values = None

# The environment every case is read with; RJW_T_UNSET is removed.
ENV = {'RJW_T_SET': 'from-env', 'RJW_T_EMPTY': ''}


@dataclass(frozen=True)
class Refused:
    """The line the error names."""

    line: int


# (file text, what it reads as). Each is read by python-dotenv and by this reader alike.
AGREED: list[tuple[str, dict[str, str]]] = [
    ('A=1\n', {'A': '1'}),
    ('A = 1\n', {'A': '1'}),
    ('A\t=\t1\n', {'A': '1'}),
    ('   A=1\n', {'A': '1'}),
    ('A=  spaced value  \n', {'A': 'spaced value'}),
    ('A=x\tz\n', {'A': 'x\tz'}),
    ('A=a=b\n', {'A': 'a=b'}),
    ('# comment\n\n   # indented comment\nA=1\n', {'A': '1'}),
    ('A=1', {'A': '1'}),  # no line break at the end
    # Inline comments: after a space, outside quotes.
    ('A=x #c\n', {'A': 'x'}),
    ('A=x  # c # d\n', {'A': 'x'}),
    ('A=x#c\n', {'A': 'x#c'}),
    ('\ufeffA=1\n', {'A': '1'}),  # a byte order mark is skipped (python-dotenv >= 1.2.4)
    ('A="x #c"\n', {'A': 'x #c'}),
    ('A="x" #c\n', {'A': 'x'}),
    ("A='x'#c\n", {'A': 'x'}),
    ('A=;c\n', {'A': ';c'}),
    ('export A=1\n', {'A': '1'}),
    ('export\tA=1\n', {'A': '1'}),
    ('export=1\n', {'export': '1'}),
    # Empty values.
    ('A=\n', {'A': ''}),
    ('A=""\n', {'A': ''}),
    ("A=''\n", {'A': ''}),
    # Quotes and escapes.
    ('A= "x"  \n', {'A': 'x'}),
    ('A="a\\nb"\n', {'A': 'a\nb'}),
    ("A='a\\nb'\n", {'A': 'a\\nb'}),
    ('A=a\\nb\n', {'A': 'a\\nb'}),
    ('A="a\\"b"\n', {'A': 'a"b'}),
    ("A='a\\'b'\n", {'A': "a'b"}),
    ('A="a\\\\b \\x \\t \\a"\n', {'A': 'a\\b \\x \t \a'}),
    ("A='\"'\n", {'A': '"'}),
    ('A="\'"\n', {'A': "'"}),
    ('A=a"b\'c\n', {'A': 'a"b\'c'}),
    ('A="\\0101"\n', {'A': '\\0101'}),  # Compose: `A`, an octal escape
    ('A=100%\n', {'A': '100%'}),
    # Values over several lines.
    ('A="line1\nline2"\nB=2\n', {'A': 'line1\nline2', 'B': '2'}),
    ("A='line1\n  line2 # not a comment'\n", {'A': 'line1\n  line2 # not a comment'}),
    # Line endings.
    ('A=1\r\nB="x\r\ny"\r\n', {'A': '1', 'B': 'x\ny'}),
    ('A=1\rB=2\r', {'A': '1', 'B': '2'}),
    # Names.
    ('A=1\nA=2\n', {'A': '2'}),
    ('a.b-c[0]=1\n', {'a.b-c[0]': '1'}),
    ('\u00c4=1\n', {'\u00c4': '1'}),
    ('lower_case=1\n', {'lower_case': '1'}),
    # Substitution in unquoted and double-quoted values.
    ('A=${RJW_T_SET}\n', {'A': 'from-env'}),
    ('A=${RJW_T_UNSET}\n', {'A': ''}),
    ('A="${RJW_T_SET}/x"\n', {'A': 'from-env/x'}),
    ('A=${RJW_T_UNSET:-fallback}\n', {'A': 'fallback'}),
    ('A=${RJW_T_SET:-fallback}\n', {'A': 'from-env'}),
    ('B=${RJW_T_LATER}\nRJW_T_LATER=x\n', {'B': '', 'RJW_T_LATER': 'x'}),
    # Compose reads the environment first; the file's own value is the one the job will see.
    ('RJW_T_SET=file\nA=${RJW_T_SET}\n', {'RJW_T_SET': 'file', 'A': 'file'}),
    # A `$` not starting `${` is plain text; Compose reads `from-env`, `a$b` and `$RJW_T_SET`.
    ('A=$RJW_T_SET\n', {'A': '$RJW_T_SET'}),
    ('A=a$$b\n', {'A': 'a$$b'}),
    ('A="\\$RJW_T_SET"\n', {'A': '\\$RJW_T_SET'}),
    # The user guide's example.
    (
        "# Git username or email\nGITLAB_USERNAME = 'username@example.com'\n"
        '# Use read_repo access token instead of your password\nGITLAB_TOKEN = "Pa55w0rD"\n',
        {'GITLAB_USERNAME': 'username@example.com', 'GITLAB_TOKEN': 'Pa55w0rD'},
    ),
]


@dataclass(frozen=True)
class Difference:
    text: str
    ours: dict[str, str] | Refused
    dotenv: dict[str, str | None]  # python-dotenv's reading, checked
    compose: str  # Docker Compose's reading, as its parser has it (not run here)


# Every line read otherwise than python-dotenv reads it, on purpose.
DIFFERENCES: list[Difference] = [
    # Compose's reading (rule 3).
    Difference('A=x\t#c\n', {'A': 'x\t#c'}, {'A': 'x'}, 'x\\t#c: a comment starts at a space only'),
    Difference("A='a\\\\b'\n", {'A': 'a\\\\b'}, {'A': 'a\\b'}, "a\\\\b: single quotes are literal but for \\'"),
    Difference('A="a\\\'b"\n', {'A': "a\\'b"}, {'A': "a'b"}, "a\\'b: \\' is no double-quote escape"),
    # The spaces after = go first, so the value is `#c`; python-dotenv >= 1.2.4 reads a comment.
    Difference('A= #c\n', {'A': '#c'}, {'A': ''}, '#c: a comment starts after a space in the value'),
    Difference(
        "A='${RJW_T_SET}'\n", {'A': '${RJW_T_SET}'}, {'A': 'from-env'}, '${RJW_T_SET}: single quotes are literal'
    ),
    Difference('A=${RJW_T_EMPTY:-d}\n', {'A': 'd'}, {'A': ''}, 'd: :- takes the default for an empty variable'),
    Difference('A=${RJW_T_UNSET-d}\n', {'A': 'd'}, {'A': ''}, 'd'),
    Difference('A=${RJW_T_SET-d}\n', {'A': 'from-env'}, {'A': ''}, 'from-env'),
    Difference('A=${RJW_T_SET:+alt}\n', {'A': 'alt'}, {'A': '${RJW_T_SET:+alt}'}, 'alt'),
    Difference('A=${RJW_T_UNSET:+alt}\n', {'A': ''}, {'A': '${RJW_T_UNSET:+alt}'}, 'empty'),
    Difference('A=${RJW_T_SET:?needed}\n', {'A': 'from-env'}, {'A': '${RJW_T_SET:?needed}'}, 'from-env'),
    Difference('A=${RJW_T_UNSET:-${RJW_T_SET}}\n', {'A': 'from-env'}, {'A': '${RJW_T_SET}'}, 'from-env'),
    Difference('A=$${RJW_T_SET}\n', {'A': '${RJW_T_SET}'}, {'A': '$from-env'}, '${RJW_T_SET}: $${ is a literal ${'),
    Difference('A="\\${RJW_T_SET}"\n', {'A': '${RJW_T_SET}'}, {'A': '\\from-env'}, '${RJW_T_SET}: so is \\${'),
    # Refused (rule 2): one of the two gives the line no value.
    Difference('A=1\nNO_VALUE\n', Refused(2), {'A': '1', 'NO_VALUE': None}, 'NO_VALUE from the environment'),
    Difference('export A\n', Refused(1), {'A': None}, 'A from the environment'),
    Difference('A:1\n', Refused(1), {'A:1': None}, 'A=1, as racetrack-job-runner'),
    Difference('A: 1\n', Refused(1), {}, 'A=1, as racetrack-job-runner'),
    Difference('1A=x\n', Refused(1), {'1A': 'x'}, 'dropped: a name starting with a digit'),
    Difference('A B=1\n', Refused(1), {}, 'refused: a name with a space'),
    Difference('=x\n', Refused(1), {}, 'an empty name'),
    Difference("'A'=1\n", Refused(1), {'A': '1'}, "refused: ' in a name"),
    Difference('A$=1\n', Refused(1), {'A$': '1'}, 'refused: $ in a name'),
    Difference('A="x"y\n', Refused(1), {}, 'A=x, then y from the environment'),
    Difference("A='x' y\n", Refused(1), {}, 'A=x, then y from the environment'),
    Difference('A=1\nB="x\ny" z\n', Refused(2), {'A': '1'}, 'A, B, then z from the environment'),
    Difference('A="open\nB=2\n', Refused(1), {'B': '2'}, 'refused: unterminated quote'),
    Difference('A=${RJW_T_UNSET:?needed}\n', Refused(1), {'A': '${RJW_T_UNSET:?needed}'}, 'refused: needed'),
    Difference('A=${RJW_T_EMPTY?needed}\nB=${RJW_T_UNSET?}\n', Refused(2), {'A': '', 'B': ''}, 'refused'),
    Difference('A=${1A}\n', Refused(1), {'A': ''}, 'refused: not a variable name'),
    Difference('A=${}\n', Refused(1), {'A': ''}, 'refused: no variable name'),
    Difference('A=${RJW_T_SET\n', Refused(1), {'A': '${RJW_T_SET'}, 'refused: unterminated'),
    # The comment is cut first, leaving `${RJW_T_UNSET:-x` (python-dotenv too).
    Difference('A=${RJW_T_UNSET:-x #y}\n', Refused(1), {'A': '${RJW_T_UNSET:-x'}, 'refused: unterminated'),
]


class _Files:
    """Each case in a file of its own, read as production reads it: bytes on disk, UTF-8."""

    def __init__(self, test: unittest.TestCase):
        temp = tempfile.TemporaryDirectory()
        test.addCleanup(temp.cleanup)
        self.dir = Path(temp.name)
        self.test = test

    def write(self, text: str) -> Path:
        path = self.dir / '.env'
        path.write_bytes(text.encode('utf-8'))
        return path

    def ours(self, text: str) -> dict[str, str]:
        self.write(text)
        # Warnings of unset variables are expected in some cases; keep them out of the test output.
        with self.test.assertLogs('racetrack_job_wrapper.manifest', logging.WARNING):
            logging.getLogger('racetrack_job_wrapper.manifest').warning('reading')
            values = read_build_env({'secret_build_env_file': '.env'}, cwd=self.dir, environ=os.environ)
        return values

    def dotenv(self, text: str) -> dict[str, str | None]:
        assert dotenv_values is not None
        path = self.write(text)
        with mock.patch.object(logging.getLogger('dotenv.main'), 'disabled', True):
            return dict(dotenv_values(path, encoding='utf-8'))


@unittest.skipIf(dotenv_values is None, 'python-dotenv is not installed (the test extra has it)')
class DifferentialTest(unittest.TestCase):
    def setUp(self) -> None:
        patcher = mock.patch.dict(os.environ, ENV)
        patcher.start()
        self.addCleanup(patcher.stop)
        os.environ.pop('RJW_T_UNSET', None)
        os.environ.pop('RJW_T_LATER', None)
        self.files = _Files(self)

    def test_corpus_is_large_enough(self) -> None:
        self.assertGreaterEqual(len(AGREED) + len(DIFFERENCES), 40)

    def test_agreed_lines_read_as_python_dotenv_reads_them(self) -> None:
        for text, expected in AGREED:
            with self.subTest(text=text):
                self.assertEqual(self.files.dotenv(text), expected)
                self.assertEqual(self.files.ours(text), expected)

    def test_each_difference_is_real_and_deliberate(self) -> None:
        for case in DIFFERENCES:
            with self.subTest(text=case.text):
                self.assertEqual(self.files.dotenv(case.text), case.dotenv)
                self.assertNotEqual(case.ours, case.dotenv)
                if isinstance(case.ours, Refused):
                    with self.assertRaises(ManifestError) as caught:
                        self.files.ours(case.text)
                    self.assertTrue(
                        str(caught.exception).startswith(f'.env, line {case.ours.line}: '), str(caught.exception)
                    )
                else:
                    self.assertEqual(self.files.ours(case.text), case.ours)

    def test_no_line_is_in_both_lists(self) -> None:
        agreed = {text for text, _ in AGREED}
        self.assertEqual([case.text for case in DIFFERENCES if case.text in agreed], [])


class ErrorMessageTest(unittest.TestCase):
    def assert_error(self, text: str, message: str) -> None:
        with self.assertRaises(ManifestError) as caught:
            parse_env_file(text, '.env.runtime', {})
        self.assertEqual(str(caught.exception), message)

    def test_a_line_without_equals(self) -> None:
        self.assert_error('A=1\n\nTOKEN\n', ".env.runtime, line 3: expected KEY=VALUE, got 'TOKEN'")

    def test_a_bad_name_says_what_a_name_is(self) -> None:
        self.assert_error(
            '1A=x\n',
            ".env.runtime, line 1: expected KEY=VALUE, got '1A=x'"
            ' (a name is letters, digits and _ . - [ ], not starting with a digit)',
        )

    def test_an_unterminated_quote_names_the_line_it_opens_on(self) -> None:
        self.assert_error('A=1\nB="x\nC=2\n', '.env.runtime, line 2: unterminated " quote in \'B="x\'')

    def test_the_line_after_a_value_over_several_lines(self) -> None:
        self.assert_error('A="x\ny"\nB\n', ".env.runtime, line 3: expected KEY=VALUE, got 'B'")

    def test_a_required_variable(self) -> None:
        self.assert_error(
            'A=${TOKEN:?set TOKEN first}\n',
            ".env.runtime, line 1: TOKEN is not set: set TOKEN first in 'A=${TOKEN:?set TOKEN first}'",
        )
        self.assert_error('A=${TOKEN:?}\n', ".env.runtime, line 1: TOKEN is not set in 'A=${TOKEN:?}'")
        with self.assertRaises(ManifestError) as caught:
            parse_env_file('A=${TOKEN:?}\n', '.env', {'TOKEN': ''})
        self.assertIn('TOKEN is empty', str(caught.exception))

    def test_text_after_a_closing_quote(self) -> None:
        self.assert_error("A='x' y\n", ".env.runtime, line 1: unexpected text after the closing ' quote in \"A='x' y\"")


class SubstitutionTest(unittest.TestCase):
    def test_an_unset_variable_is_a_warning_naming_file_and_line(self) -> None:
        with self.assertLogs('racetrack_job_wrapper.manifest', logging.WARNING) as logs:
            self.assertEqual(parse_env_file('A=1\nB=x${NOPE}y\n', '.env', {}), {'A': '1', 'B': 'xy'})
        self.assertEqual(
            logs.output,
            ['WARNING:racetrack_job_wrapper.manifest:.env, line 2: NOPE is not set; ${NOPE} reads as an empty string'],
        )

    def test_the_file_before_the_environment(self) -> None:
        values = parse_env_file('HOST=file\nURL=http://${HOST}:${PORT}/\n', '.env', {'HOST': 'env', 'PORT': '80'})
        self.assertEqual(values, {'HOST': 'file', 'URL': 'http://file:80/'})

    def test_operators(self) -> None:
        environ = {'SET': 'v', 'EMPTY': ''}
        cases: dict[str, str] = {
            '${SET:-d}': 'v',
            '${EMPTY:-d}': 'd',
            '${UNSET:-d}': 'd',
            '${SET-d}': 'v',
            '${EMPTY-d}': '',
            '${UNSET-d}': 'd',
            '${SET:+a}': 'a',
            '${EMPTY:+a}': '',
            '${UNSET:+a}': '',
            '${SET+a}': 'a',
            '${EMPTY+a}': 'a',
            '${UNSET+a}': '',
            '${SET?m}': 'v',
            '${EMPTY?m}': '',
            '${SET:?m}': 'v',
            '${UNSET:-${SET}-${UNSET:-x}}': 'v-x',
            '${UNSET:-}': '',
            'a${SET}b${SET}c': 'avbvc',
        }
        for template, expected in cases.items():
            with self.subTest(template=template):
                self.assertEqual(parse_env_file(f'A={template}\n', '.env', environ), {'A': expected})
                self.assertEqual(parse_env_file(f'A="{template}"\n', '.env', environ), {'A': expected})
                self.assertEqual(parse_env_file(f"A='{template}'\n", '.env', environ), {'A': template})

    def test_a_default_is_read_only_when_used(self) -> None:
        self.assertEqual(parse_env_file('A=${SET:-${UNSET:?never}}\n', '.env', {'SET': 'v'}), {'A': 'v'})


class RuntimeEnvSubstitutionTest(unittest.TestCase):
    def test_secret_file_sees_runtime_env_and_the_environment(self) -> None:
        with tempfile.TemporaryDirectory() as temp:
            Path(temp, '.env.runtime').write_text('URL=${SCHEME}://${HOST}\n', encoding='utf-8')
            environ = {'HOST': 'from-env'}
            manifest: dict[str, Any] = {
                'runtime_env': {'SCHEME': 'https', 'HOST': 'from-manifest'},
                'secret_runtime_env_file': '.env.runtime',
            }
            apply_runtime_env(manifest, environ, cwd=Path(temp))
        # The environment wins over runtime_env, so `${HOST}` reads it too.
        self.assertEqual(environ, {'HOST': 'from-env', 'SCHEME': 'https', 'URL': 'https://from-env'})


if __name__ == '__main__':
    unittest.main()
