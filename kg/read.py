"""ReadTexts: input files (any Beam filesystem, globs) -> `TextLine`s, bad lines -> dead letters.

A line is plain text (one sentence or document), or, when it starts with
``{``, JSON with a string ``text`` and an optional ``id`` (parsed by
`relbridge.models.extract.parse_input_line`, the same as ``relbridge
extract``). In refresh mode the lines that earlier runs handled (`Handled`)
are counted ``skipped_existing``.

Reading takes two passes, so that no shuffle carries the text. The first pass
reads each file in order (lines keep their numbers) and cuts it into
`FileRange`s of `LINES_PER_RANGE` lines; it counts every line, dead-letters the
bad ones and records the handled line ranges. ``Reshuffle`` spreads the ranges,
a few dozen bytes each, over the workers, and the second pass reads each range
again from its byte offset and yields its `TextLine`s. A local runner holds a
shuffle in memory: a shuffle of the lines themselves made ``kg build``'s peak
memory grow by about 1 KB per input line. Compressed files cannot be entered
at an offset, so each is one range, read by one worker.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from relbridge.data_specs.formats import InputError, decode_lines
from relbridge.data_specs.kg import TextLine
from relbridge.kg.options import ReadConfig
from relbridge.models.extract import parse_input_line
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG, dead_letter
from relbridge.pipeline.ingest import binary_lines

COUNTS_TAG = "counts"
HANDLED_TAG = "handled"

LINES_PER_RANGE = 256
"""Lines per `FileRange`: a few extraction chunks, and 400 ranges in 100k lines."""

Ranges = Sequence[tuple[int, int]]
"""Sorted, disjoint 1-based line ranges ``[first, last]``."""


def add_line(ranges: list[list[int]], n: int) -> None:
    """Adds line ``n``, not below any line in ``ranges``, to them in place."""
    if ranges and ranges[-1][1] >= n - 1:
        ranges[-1][1] = max(ranges[-1][1], n)
    else:
        ranges.append([n, n])


def merge_ranges(ranges: Iterable[Sequence[int]]) -> list[list[int]]:
    """Ranges, overlapping or adjacent ones joined.

    >>> merge_ranges([(5, 9), (1, 3), (4, 4), (8, 12)])
    [[1, 12]]
    """
    out: list[list[int]] = []
    for first, last in sorted(ranges):
        if out and out[-1][1] >= first - 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return out


def in_ranges(n: int, ranges: Ranges) -> bool:
    k = bisect.bisect_right(ranges, n, key=lambda r: r[0]) - 1
    return k >= 0 and ranges[k][0] <= n <= ranges[k][1]


def read_lines(
    path: str, lines: Iterator[bytes], handled: Ranges = (), first_line: int = 1, ordinal: int = 0
) -> Iterator[TextLine | InputError | str]:
    """Parses a file's lines, from line ``first_line`` whose `TextLine` would have ``ordinal``:
    `TextLine`s, `InputError`s of bad lines, and a count key per line.

    Yields, for every line, one of ``"blank"``, ``"skipped_existing"``,
    ``"bad"`` or ``"read"`` (so the counts add up to the file's lines), and
    before that key the `TextLine` of a read line or the `InputError` of a bad
    one (also of a bad line handled before, which no `TextLine.ordinal` counts).
    """
    for n, text in enumerate(decode_lines(lines, path, first_line), first_line):
        if not isinstance(text, InputError):
            try:
                record_id, text = parse_input_line(text, path, n)
            except InputError as error:
                text = error
        if isinstance(text, InputError):
            yield text  # also when handled before: the caller then skips it, knowing it bad
            yield "skipped_existing" if in_ranges(n, handled) else "bad"
            continue
        if not text:
            yield "blank"
            continue
        if in_ranges(n, handled):
            yield "skipped_existing"
        else:
            yield TextLine(path, n, ordinal, record_id, text)
            yield "read"
        ordinal += 1


@dataclass(frozen=True)
class FileRange:
    """Lines ``first_line`` .. of ``path``, at bytes [``start``, ``stop``) (``stop`` None: to the
    end); ``ordinal`` is the first line's `TextLine.ordinal`."""

    path: str
    first_line: int
    ordinal: int
    start: int
    stop: int | None


class _Tally:
    """The bytes of a line iterator, counted as it is consumed."""

    def __init__(self, lines: Iterator[bytes]):
        self.lines, self.position = lines, 0

    def __iter__(self):
        for data in self.lines:
            self.position += len(data)
            yield data


def scan_file(
    path: str, lines: Iterator[bytes], handled: Ranges = (), splittable: bool = True,
    lines_per_range: int = LINES_PER_RANGE,
) -> Iterator[FileRange | InputError | str]:  # fmt: skip
    """The first pass over one file: its `FileRange`s (only those with a line to read), the
    `InputError`s of its bad lines and the count key of every line, as `read_lines` yields them.

    A range's ``stop`` is where the next one starts; the last range, and the only one of a
    file that is not ``splittable``, runs to the end.
    """
    tally = _Tally(lines)
    start = FileRange(path, 1, 0, 0, None)
    n = ordinal = 0
    to_read = False
    error = None
    for item in read_lines(path, iter(tally), handled):
        if not isinstance(item, str):
            error = item if isinstance(item, InputError) else None
            continue
        if error and item == "bad":  # a bad line handled before was dead-lettered then
            yield error
        yield item
        n += 1
        ordinal += item == "read" or (item == "skipped_existing" and not error)
        error = None
        to_read |= item == "read"
        if splittable and n % lines_per_range == 0:
            if to_read:
                yield FileRange(path, start.first_line, start.ordinal, start.start, tally.position)
            start, to_read = FileRange(path, n + 1, ordinal, tally.position, None), False
    if to_read:
        yield start


def byte_range(f, start: int, stop: int | None) -> Iterator[bytes]:
    """The lines of the open binary file ``f`` that start in bytes [``start``, ``stop``)."""
    f.seek(start)
    position = start
    for data in binary_lines(f):
        if stop is not None and position >= stop:
            return
        yield data
        position += len(data)


def read_range(rng: FileRange, f, handled: Ranges = ()) -> Iterator[TextLine]:
    """The second pass: the `TextLine`s of one range of the open binary file ``f``."""
    lines = byte_range(f, rng.start, rng.stop)
    for item in read_lines(rng.path, lines, handled, rng.first_line, rng.ordinal):
        if isinstance(item, TextLine):
            yield item


class ScanFileFn(beam.DoFn):
    """The first pass over one matched file: main output `FileRange`, plus dead letters, the
    file's `Counter` and its handled line ranges (``{"source_file", "ranges"}``)."""

    def __init__(self, handled: Mapping[str, Ranges], lines_per_range: int = LINES_PER_RANGE):
        self.handled = handled
        self.lines_per_range = lines_per_range

    def process(self, path: str):
        counts = Counter(files=1)
        handled: list[list[int]] = []
        splittable = CompressionTypes.detect_compression_type(path) == (
            CompressionTypes.UNCOMPRESSED
        )
        with FileSystems.open(path) as f:
            items = scan_file(path, binary_lines(f), self.handled.get(path, ()), splittable,
                              self.lines_per_range)  # fmt: skip
            for item in items:
                if isinstance(item, FileRange):
                    yield item
                elif isinstance(item, InputError):
                    yield beam.pvalue.TaggedOutput(
                        DEAD_LETTER_TAG,
                        dead_letter("read", item.reason, path, item.line, item.raw),
                    )
                else:
                    counts[f"lines_{item}"] += 1
                    counts["lines"] += 1
                    if item in ("read", "bad"):  # a key per line: the count is its number
                        add_line(handled, counts["lines"])
        yield beam.pvalue.TaggedOutput(COUNTS_TAG, counts)
        if handled:
            yield beam.pvalue.TaggedOutput(HANDLED_TAG, {"source_file": path, "ranges": handled})


class ReadRangeFn(beam.DoFn):
    """The second pass: the `TextLine`s of one `FileRange`."""

    def __init__(self, handled: Mapping[str, Ranges]):
        self.handled = handled

    def process(self, rng: FileRange):
        with FileSystems.open(rng.path) as f:
            yield from read_range(rng, f, self.handled.get(rng.path, ()))


def match_inputs(patterns: Sequence[str]) -> list[str]:
    """The files the patterns match, sorted; a pattern that matches none is an error."""
    paths = []
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        if not result.metadata_list:
            raise FileNotFoundError(f"{pattern}: no input file matches")
        paths += [m.path for m in result.metadata_list]
    return sorted(set(paths))


class ReadTexts(beam.PTransform):
    """Input lines of every matched file, spread over the workers in ranges.

    Returns:
      A tagged result: ``lines`` (`TextLine`), ``dead_letter``, ``counts`` (a
      `Counter` per file: ``lines`` = ``lines_read`` + ``lines_blank`` +
      ``lines_bad`` + ``lines_skipped_existing``) and ``handled`` (per file, the
      ranges of its read and bad lines).
    """

    def __init__(
        self, cfg: ReadConfig, handled: Mapping[str, Ranges] | None = None,
        lines_per_range: int = LINES_PER_RANGE,
    ):  # fmt: skip
        super().__init__()
        self.cfg = cfg
        self.handled = dict(handled or {})
        self.lines_per_range = lines_per_range

    def expand(self, p):
        files = match_inputs(self.cfg.input)
        scanned = (
            p
            | "ListFiles" >> beam.Create(files)
            | "ScanFiles"
            >> beam.ParDo(ScanFileFn(self.handled, self.lines_per_range)).with_outputs(
                DEAD_LETTER_TAG, COUNTS_TAG, HANDLED_TAG, main="ranges"
            )
        )
        lines = (
            scanned.ranges
            | "Redistribute" >> beam.Reshuffle()
            | "ReadRanges" >> beam.ParDo(ReadRangeFn(self.handled))
        )
        return {
            "lines": lines,
            DEAD_LETTER_TAG: scanned[DEAD_LETTER_TAG],
            COUNTS_TAG: scanned[COUNTS_TAG],
            HANDLED_TAG: scanned[HANDLED_TAG],
        }
