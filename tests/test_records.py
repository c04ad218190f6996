"""Records behave as the frozen dataclasses they stand for."""

import dataclasses
import unittest

from racetrack_job_wrapper.records import Record, field, fields, replace


class Point(Record):
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)
    secret: str = field(default='', repr=False)


@dataclasses.dataclass(frozen=True)
class DataclassPoint:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    secret: str = dataclasses.field(default='', repr=False)


class Named(Record, eq=False):
    name: str


class Labelled(Point):
    label: str = 'p'


class RecordTest(unittest.TestCase):
    def test_arguments_by_position_and_by_name_as_a_dataclass_takes_them(self):
        for args, kwargs in [((1,), {}), ((1, 2), {}), ((), {'x': 1, 'y': 2}), ((1,), {'secret': 's'})]:
            ours, theirs = Point(*args, **kwargs), DataclassPoint(*args, **kwargs)
            self.assertEqual((ours.x, ours.y, ours.tags, ours.secret), (theirs.x, theirs.y, theirs.tags, theirs.secret))

    def test_bad_arguments_are_a_type_error_naming_the_field(self):
        with self.assertRaisesRegex(TypeError, "missing required argument 'x'"):
            Point()  # type: ignore[call-arg]
        with self.assertRaisesRegex(TypeError, "unexpected keyword argument 'z'"):
            Point(1, z=2)  # type: ignore[call-arg]
        with self.assertRaisesRegex(TypeError, "multiple values for argument 'x'"):
            Point(1, x=2)  # type: ignore[misc]
        with self.assertRaisesRegex(TypeError, 'takes 4 arguments but 5 were given'):
            Point(1, 2, [], 's', 5)  # type: ignore[call-arg]

    def test_a_default_factory_makes_a_new_value_for_each_record(self):
        first, second = Point(1), Point(2)
        self.assertIsNot(first.tags, second.tags)

    def test_frozen(self):
        point = Point(1)
        with self.assertRaisesRegex(AttributeError, "cannot assign to field 'x'"):
            point.x = 2  # type: ignore[misc]
        with self.assertRaises(AttributeError):
            del point.x  # type: ignore[misc]
        self.assertEqual(point.x, 1)

    def test_equal_and_hashed_by_value_unless_eq_is_false(self):
        self.assertEqual(Point(1, 2), Point(1, 2))
        self.assertNotEqual(Point(1, 2), Point(1, 3))
        self.assertNotEqual(Point(1), Labelled(1))  # another class, as with dataclasses
        self.assertEqual(len({Labelled(1, 2, (), label='a'), Labelled(1, 2, (), label='a')}), 1)  # type: ignore[arg-type]
        first, second = Named('a'), Named('a')
        self.assertNotEqual(first, second)
        self.assertEqual(len({first, second}), 2)

    def test_repr_leaves_out_fields_marked_so(self):
        self.assertEqual(repr(Point(1, 2, secret='hidden')), 'Point(x=1, y=2, tags=[])')
        theirs = repr(DataclassPoint(1, 2, secret='hidden'))
        self.assertEqual(repr(Point(1, 2, secret='hidden')), theirs.replace('DataclassPoint', 'Point'))

    def test_a_subclass_adds_its_fields_after_its_base_fields(self):
        labelled = Labelled(1, 2, label='q')
        self.assertEqual([item.name for item in fields(labelled)], ['x', 'y', 'tags', 'secret', 'label'])
        self.assertEqual((labelled.x, labelled.y, labelled.label), (1, 2, 'q'))

    def test_replace_copies_with_changes_and_refuses_an_unknown_field(self):
        point = Point(1, 2, ['a'])
        moved = replace(point, y=5)
        self.assertEqual(moved, Point(1, 5, ['a']))
        self.assertEqual(point.y, 2)
        with self.assertRaisesRegex(TypeError, "Point has no field 'z'"):
            replace(point, z=1)

    def test_a_mutable_default_is_refused_as_dataclasses_refuse_it(self):
        with self.assertRaisesRegex(ValueError, 'mutable default list for field tags'):

            class Bad(Record):
                tags: list[str] = []

    def test_fields_carry_their_defaults_and_metadata(self):
        class Limit(Record):
            size: int = field(default=3, metadata={'help': 'how many'})

        (size,) = fields(Limit)
        self.assertEqual(
            (size.name, size.default, size.metadata['help'], size.required), ('size', 3, 'how many', False)
        )
        self.assertTrue(fields(Point)[0].required)
        self.assertEqual(Limit().size, 3)
        self.assertEqual(Limit.size, 3)  # the class attribute is the plain default, as with dataclasses


if __name__ == '__main__':
    unittest.main()
