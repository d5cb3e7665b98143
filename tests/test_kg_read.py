"""kg build's two-pass reader: ranges read back exactly the lines one pass reads."""

import gzip
import io
import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from relbridge.data_specs.formats import InputError
from relbridge.data_specs.kg import TextLine
from relbridge.kg.options import ReadConfig
from relbridge.kg.read import (
    COUNTS_TAG, HANDLED_TAG, FileRange, ReadTexts, merge_ranges, read_lines, read_range, scan_file,
)  # fmt: skip
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG

LINES = [
    "\ufeffFirst line .",  # a byte-order mark, dropped
    "",
    '{"text": "Second , with an id .", "id": "a"}',
    "   ",
    "{not json",  # plain text that starts with a brace
    "Ünïcode ✓ line .",
    '{"text": 3}',
    "Last but one .",
    "Last but two .",
]
DATA = "\n".join(LINES).encode() + b"\n\xff bad byte\nlast, without a newline"


def _one_pass(handled=()):
    return [x for x in read_lines("f", iter(io.BytesIO(DATA).readlines()), handled)
            if isinstance(x, TextLine)]  # fmt: skip


@pytest.mark.parametrize("per_range", [1, 2, 3, 4, 100])
@pytest.mark.parametrize("handled", [(), ((1, 3), (8, 8))])
def test_ranges_read_back_exactly_the_lines_of_one_pass(per_range, handled):
    f = io.BytesIO(DATA)
    items = list(scan_file("f", iter(f.readlines()), handled, True, per_range))
    ranges = [x for x in items if isinstance(x, FileRange)]
    keys = [x for x in items if isinstance(x, str)]
    errors = [x.line for x in items if isinstance(x, InputError)]
    assert len(keys) == DATA.count(b"\n") + 1  # one count key per line
    assert errors == [7, 10]
    got = [line for r in ranges for line in read_range(r, io.BytesIO(DATA), handled)]
    assert got == _one_pass(handled) and len(got) >= 4
    assert len({(r.start, r.stop) for r in ranges}) == len(ranges)
    assert all(r.stop is None or r.start < r.stop for r in ranges)


def test_a_refresh_numbers_its_lines_as_a_full_run_does():
    """A bad line an earlier run handled is no sentence: ordinals past it match a full run's."""
    handled = ((1, 7),)  # line 7, '{"text": 3}', was dead-lettered before
    full = {t.line: t.ordinal for t in _one_pass()}
    for per_range in (1, 2, 3):
        items = list(scan_file("f", iter(io.BytesIO(DATA).readlines()), handled, True, per_range))
        ranges = [x for x in items if isinstance(x, FileRange)]
        got = [t for r in ranges for t in read_range(r, io.BytesIO(DATA), handled)]
        assert [(t.line, t.ordinal) for t in got] == [(t, full[t]) for t in (8, 9, 11)]
        assert [x.line for x in items if isinstance(x, InputError)] == [10]  # not 7 again


def test_a_range_with_nothing_to_read_is_not_emitted():
    items = list(scan_file("f", iter(io.BytesIO(DATA).readlines()), [(1, 11)], True, 2))
    assert not [x for x in items if isinstance(x, FileRange)]
    assert items.count("skipped_existing") == 9 and items.count("blank") == 2


def test_a_file_that_is_not_splittable_is_one_range():
    items = list(scan_file("f", iter(io.BytesIO(DATA).readlines()), (), False, 2))
    assert [x for x in items if isinstance(x, FileRange)] == [FileRange("f", 1, 0, 0, None)]


def test_merge_ranges_joins_overlapping_and_adjacent_ones():
    assert merge_ranges([[7, 9], [1, 2], [3, 5], [8, 10]]) == [[1, 5], [7, 10]]
    assert merge_ranges([]) == []


@pytest.mark.parametrize("compressed", [False, True])
def test_read_texts_in_beam_gives_lines_counts_dead_letters_and_handled(tmp_path, compressed):
    path = tmp_path / ("in.txt.gz" if compressed else "in.txt")
    path.write_bytes(gzip.compress(DATA) if compressed else DATA)
    want = [TextLine(str(path), t.line, t.ordinal, t.id, t.text) for t in _one_pass()]
    with TestPipeline() as p:
        read = p | ReadTexts(ReadConfig(input=(str(path),)), lines_per_range=2)
        assert_that(read["lines"], equal_to(want), label="lines")
        assert_that(
            read[COUNTS_TAG], equal_to([{"files": 1, "lines": 11, "lines_read": 7,
                                         "lines_blank": 2, "lines_bad": 2}]),  # fmt: skip
            label="counts",
        )
        assert_that(
            read[DEAD_LETTER_TAG] | beam.Map(lambda d: d["line"]), equal_to([7, 10]),
            label="letters",
        )
        handled = [{"source_file": str(path), "ranges": [[1, 1], [3, 3], [5, 11]]}]
        assert_that(
            read[HANDLED_TAG] | beam.Map(json.dumps), equal_to(list(map(json.dumps, handled))),
            label="handled",
        )
