import datetime
import math
import unittest
from pathlib import Path

import yaml

from racetrack_job_wrapper.yamlsub import YamlSubsetError, load

MANIFESTS = Path(__file__).parent / 'manifests'


class BlockCollectionTest(unittest.TestCase):
    def test_nested_mapping(self):
        self.assertEqual(load('a:\n  b:\n    c: 1\n  d: 2\ne: 3\n'), {'a': {'b': {'c': 1}, 'd': 2}, 'e': 3})

    def test_sequence_of_scalars(self):
        self.assertEqual(load('- a\n- b\n- 3\n'), ['a', 'b', 3])

    def test_sequence_at_key_indentation(self):
        self.assertEqual(load('a:\n- b\n- c\nd: e\n'), {'a': ['b', 'c'], 'd': 'e'})

    def test_sequence_item_mapping_continues_on_following_lines(self):
        self.assertEqual(
            load('- name: x\n  value: 1\n- name: y\n  value: [2]\n'),
            [{'name': 'x', 'value': 1}, {'name': 'y', 'value': [2]}],
        )

    def test_sequence_item_mapping_with_nested_block(self):
        self.assertEqual(load('- a:\n    b: 1\n  c:\n    - d\n'), [{'a': {'b': 1}, 'c': ['d']}])

    def test_nested_sequence_in_sequence(self):
        self.assertEqual(load('- - a\n  - b\n- c\n'), [['a', 'b'], 'c'])

    def test_empty_sequence_item_and_item_on_next_line(self):
        self.assertEqual(load('-\n- \n  k: v\n-\n'), [None, {'k': 'v'}, None])

    def test_indented_document(self):
        self.assertEqual(load('  a: 1\n  b: 2\n'), {'a': 1, 'b': 2})

    def test_duplicate_key_last_wins(self):
        self.assertEqual(load('a: 1\nb: 2\na: 3\n'), {'a': 3, 'b': 2})

    def test_keys_are_typed(self):
        self.assertEqual(load("1: a\n'1': b\ntrue: c\n~: d\n2.5: e\n"), {1: 'c', '1': 'b', None: 'd', 2.5: 'e'})

    def test_space_before_colon(self):
        self.assertEqual(load("a : 1\n'b' : 2\n"), {'a': 1, 'b': 2})


class ScalarTest(unittest.TestCase):
    def value(self, text):
        return load(f'v: {text}\n')['v']

    def test_null_forms(self):
        self.assertEqual(
            load('a:\nb: ~\nc: null\nd: Null\ne: NULL\nf: nUll\n'),
            {'a': None, 'b': None, 'c': None, 'd': None, 'e': None, 'f': 'nUll'},
        )

    def test_booleans_follow_yaml_1_1(self):
        for text in ('true', 'True', 'TRUE', 'yes', 'Yes', 'YES', 'on', 'On', 'ON'):
            self.assertIs(self.value(text), True, text)
        for text in ('false', 'False', 'FALSE', 'no', 'No', 'NO', 'off', 'Off', 'OFF'):
            self.assertIs(self.value(text), False, text)
        for text in ('y', 'n', 'tRue', 'oN'):
            self.assertEqual(self.value(text), text)

    def test_integers(self):
        cases = {
            '0': 0,
            '42': 42,
            '-17': -17,
            '+17': 17,
            '-0': 0,
            '010': 8,
            '0_7': 7,
            '0x1A': 26,
            '0xFF_FF': 65535,
            '-0x10': -16,
            '0b1010': 10,
            '1_000': 1000,
            '190:20:30': 685230,
            '-1:30': -90,
        }
        for text, expected in cases.items():
            value = self.value(text)
            self.assertEqual((type(value), value), (int, expected), text)

    def test_integer_lookalikes_are_strings(self):
        for text in ('08', '0X1A', '0o17', '1,000', '1:60', '0xg', '_1'):
            self.assertEqual(self.value(text), text)

    def test_floats(self):
        cases = {
            '1.0': 1.0,
            '3.': 3.0,
            '.5': 0.5,
            '+1.5': 1.5,
            '1.0e+3': 1000.0,
            '6.8523015e-5': 6.8523015e-5,
            '1_0.5': 10.5,
            '190:20:30.15': 685230.15,
            '.inf': math.inf,
            '-.Inf': -math.inf,
            '+.INF': math.inf,
        }
        for text, expected in cases.items():
            value = self.value(text)
            self.assertEqual((type(value), value), (float, expected), text)
        self.assertTrue(math.isnan(self.value('.nan')))
        self.assertTrue(math.isnan(self.value('.NaN')))

    def test_float_lookalikes_are_strings(self):
        # YAML 1.1 needs a dot and a signed exponent: PyYAML reads these as strings.
        for text in ('1e3', '1.e3', '12e03', '1e-3', '-.5', '1.2.3', '.'):
            self.assertEqual(self.value(text), text)

    def test_dates_and_timestamps(self):
        self.assertEqual(self.value('2024-01-01'), datetime.date(2024, 1, 1))
        self.assertEqual(self.value('2002-12-14 01:02:03'), datetime.datetime(2002, 12, 14, 1, 2, 3))
        self.assertEqual(
            self.value('2001-12-15T02:59:43.1Z'),
            datetime.datetime(2001, 12, 15, 2, 59, 43, 100000, tzinfo=datetime.UTC),
        )
        self.assertEqual(
            self.value('2001-12-14 21:59:43.10 -5'),
            datetime.datetime(2001, 12, 14, 21, 59, 43, 100000, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        )
        self.assertEqual(self.value('2001-1-4'), '2001-1-4')
        self.assertEqual(self.value("'2024-01-01'"), '2024-01-01')

    def test_invalid_date_is_an_error(self):
        with self.assertRaises(YamlSubsetError) as caught:
            load('d: 2024-02-30\n')
        self.assertEqual((caught.exception.line, caught.exception.column), (1, 4))

    def test_single_quoted(self):
        self.assertEqual(self.value("'it''s # not a comment'"), "it's # not a comment")
        self.assertEqual(self.value("''"), '')
        self.assertEqual(self.value("'42'"), '42')

    def test_double_quoted_escapes(self):
        self.assertEqual(self.value(r'"a\nb\tc\"d\\e\/f\x41\u00e9\U0001F680\0"'), 'a\nb\tc"d\\e/fAé\U0001f680\0')

    def test_quoted_scalars_fold_line_breaks(self):
        self.assertEqual(load("a: 'one\n  two\n\n  three'\n"), {'a': 'one two\nthree'})
        self.assertEqual(load('a: "no \\\n  space"\n'), {'a': 'no space'})

    def test_plain_scalar_continuation_lines(self):
        self.assertEqual(load('a: one\n  two\n\n  three\nb: x\n'), {'a': 'one two\nthree', 'b': 'x'})

    def test_plain_scalars_with_indicators_inside(self):
        self.assertEqual(
            load('a: x:y\nb: v#c\nc: -x\nd: http://h/#f\ne: a[1], b{2}\n'),
            {'a': 'x:y', 'b': 'v#c', 'c': '-x', 'd': 'http://h/#f', 'e': 'a[1], b{2}'},
        )

    def test_comments(self):
        self.assertEqual(
            load("# top\na: 1  # one\n# between\nb: 'x' # two\nc: # none\n"), {'a': 1, 'b': 'x', 'c': None}
        )

    def test_literal_block_scalar(self):
        self.assertEqual(load('a: |\n  one\n    two\n  three\nb: 1\n'), {'a': 'one\n  two\nthree\n', 'b': 1})

    def test_folded_block_scalar(self):
        self.assertEqual(
            load('a: >\n  one\n  two\n\n  three\n    deeper\n  four\n'), {'a': 'one two\nthree\n  deeper\nfour\n'}
        )

    def test_block_scalar_chomping(self):
        self.assertEqual(load('a: |-\n  x\n\nb: |+\n  y\n\nc: |\n  z\n\n'), {'a': 'x', 'b': 'y\n\n', 'c': 'z\n'})

    def test_block_scalar_indentation_indicator(self):
        self.assertEqual(load('a: |2\n    x\n  y\n'), {'a': '  x\ny\n'})

    def test_block_scalar_in_sequence(self):
        self.assertEqual(load('- |\n  text\n- >-\n  a\n  b\n'), ['text\n', 'a b'])


class FlowCollectionTest(unittest.TestCase):
    def test_nested_flow(self):
        self.assertEqual(
            load("a: [1, [2, {b: c}], {d: [e, 'f'], g: {}}, []]\n"),
            {'a': [1, [2, {'b': 'c'}], {'d': ['e', 'f'], 'g': {}}, []]},
        )

    def test_multiline_flow_with_comments_and_trailing_comma(self):
        self.assertEqual(load('a: [\n  x,  # first\n  y,\n]\nb: {\n  k: v\n}\n'), {'a': ['x', 'y'], 'b': {'k': 'v'}})

    def test_flow_mapping_key_without_value(self):
        self.assertEqual(load('{a, b: 2}'), {'a': None, 'b': 2})

    def test_single_pair_mappings_in_flow_sequence(self):
        self.assertEqual(load('[a: 1, b, c d: e f]'), [{'a': 1}, 'b', {'c d': 'e f'}])

    def test_json_style_flow(self):
        self.assertEqual(load('{"a":1, "b": [true, null]}'), {'a': 1, 'b': [True, None]})

    def test_colon_without_space_in_plain_flow_scalar(self):
        self.assertEqual(load('{a:1, url: http://x:80}'), {'a:1': None, 'url': 'http://x:80'})


class DocumentTest(unittest.TestCase):
    def test_empty_documents_are_none(self):
        for text in ('', '\n\n', '# only a comment\n', '---\n', '---\n...\n'):
            self.assertIsNone(load(text), repr(text))

    def test_document_markers(self):
        self.assertEqual(load('---\na: 1\n...\n# after\n'), {'a': 1})
        self.assertEqual(load('--- plain\n'), 'plain')
        self.assertEqual(load('--- |\n  text\n'), 'text\n')

    def test_crlf_and_bom(self):
        self.assertEqual(load('\ufeffa: 1\r\nb:\r\n  - c\r\n'), {'a': 1, 'b': ['c']})


class RefusedTest(unittest.TestCase):
    def assertRefused(self, text, line, column, words):
        with self.assertRaises(YamlSubsetError) as caught:
            load(text)
        error = caught.exception
        self.assertIsInstance(error, ValueError)
        self.assertEqual((error.line, error.column), (line, column), str(error))
        self.assertIn(words, error.problem)
        self.assertTrue(str(error).endswith(f'(line {line}, column {column})'), str(error))

    def test_anchor(self):
        self.assertRefused('a: 1\nb: &x 2\n', 2, 4, 'anchors')

    def test_alias(self):
        self.assertRefused('a: 1\nb: *x\n', 2, 4, 'aliases')

    def test_tag(self):
        self.assertRefused('a: !!str 1\n', 1, 4, 'tags')

    def test_directive(self):
        self.assertRefused('%YAML 1.1\n---\na: 1\n', 1, 1, 'directives')

    def test_second_document(self):
        self.assertRefused('a: 1\n---\nb: 2\n', 2, 1, 'only one document')

    def test_tab_indentation(self):
        self.assertRefused('a:\n\tb: 1\n', 2, 1, 'tab characters')

    def test_tab_separator(self):
        self.assertRefused('a:\tb\n', 1, 3, 'tab characters')

    def test_complex_key(self):
        self.assertRefused('? a\n: b\n', 1, 1, 'complex mapping keys')

    def test_collection_as_key(self):
        self.assertRefused('[a, b]: c\n', 1, 1, 'complex mapping keys')
        self.assertRefused('x: {[a]: c}\n', 1, 5, 'complex mapping keys')

    def test_merge_key(self):
        self.assertRefused('<<: {a: 1}\n', 1, 1, 'merge keys')

    def test_reserved_indicator(self):
        self.assertRefused('a: @x\n', 1, 4, 'reserved')

    def test_mapping_value_in_plain_scalar(self):
        self.assertRefused('a: b: c\n', 1, 5, 'mapping values are not allowed')
        self.assertRefused('a: b\n  c: d\n', 2, 4, 'mapping values are not allowed')

    def test_sequence_entry_after_key(self):
        self.assertRefused('a: - b\n', 1, 4, 'sequence entries are not allowed')

    def test_bad_indentation(self):
        self.assertRefused('a:\n  b: 1\n c: 2\n', 3, 2, 'bad indentation')
        self.assertRefused('a:\n  - b\n  c: d\n', 3, 3, 'bad indentation')

    def test_key_without_colon(self):
        self.assertRefused('a: 1\nb\n', 2, 2, "expected ': '")

    def test_content_after_quoted_value(self):
        self.assertRefused("a: 'b' c\n", 1, 8, 'unexpected content')

    def test_unterminated_quote(self):
        self.assertRefused('a: "b\n', 1, 4, 'unterminated')

    def test_unknown_escape(self):
        self.assertRefused('a: "\\q"\n', 1, 5, 'unknown escape')

    def test_unterminated_flow(self):
        self.assertRefused('a: [b, c\n', 1, 4, 'unterminated flow')

    def test_missing_comma_in_flow(self):
        self.assertRefused('a: {a: b: c}\n', 1, 9, "expected ',' or '}'")

    def test_empty_flow_entry(self):
        self.assertRefused('a: [,]\n', 1, 5, "unexpected character ','")

    def test_control_character(self):
        self.assertRefused('a: b\x07\n', 1, 5, 'not allowed')

    def test_bad_block_scalar_header(self):
        self.assertRefused('a: |x\n  y\n', 1, 5, 'block scalar indicator')
        self.assertRefused('a: |0\n  y\n', 1, 5, '1 to 9')

    def test_integer_without_digits(self):
        self.assertRefused('a: 0b_\n', 1, 4, 'no digits')


class CorpusTest(unittest.TestCase):
    """Every manifest of the corpus reads the same as with PyYAML's safe_load."""

    def test_corpus_is_large_enough(self):
        self.assertGreaterEqual(len(list(MANIFESTS.glob('*.yaml'))), 30)

    def test_same_as_pyyaml(self):
        for path in sorted(MANIFESTS.glob('*.yaml')):
            # Bytes, so that the CRLF sample keeps its line endings.
            text = path.read_bytes().decode('utf-8')
            with self.subTest(manifest=path.name):
                self.assertEqual(load(text), yaml.safe_load(text))

    def test_corpus_holds_the_guide_examples(self):
        self.assertEqual(
            load((MANIFESTS / 'guide_max_concurrency.yaml').read_text()),
            {'jobtype_extra': {'max_concurrency': 1, 'max_concurrency_queue': 10}},
        )
        self.assertEqual(
            load((MANIFESTS / 'guide_public_endpoints.yaml').read_text()),
            {'public_endpoints': ['/api/v1/perform', '/api/v1/webview']},
        )


if __name__ == '__main__':
    unittest.main()
