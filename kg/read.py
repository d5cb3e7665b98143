"""ReadTexts: input files (any Beam filesystem, globs) -> `TextLine`s, bad lines -> dead letters.

A line is plain text (one sentence or document), or, when it starts with
``{``, JSON with a string ``text`` and an optional ``id`` (parsed by
`relbridge.models.extract.parse_input_line`, the same as ``relbridge
extract``). One worker reads a file in order, so lines keep their numbers;
``Reshuffle`` then spreads them over the workers. In refresh mode the lines
that earlier runs handled (`Handled`) are counted ``skipped_existing``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from relbridge.data_specs.formats import InputError, decode_lines
from relbridge.data_specs.kg import TextLine
from relbridge.kg.options import ReadConfig
from relbridge.models.extract import parse_input_line
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG, dead_letter
from relbridge.pipeline.ingest import binary_lines

COUNTS_TAG = "counts"

Ranges = Sequence[tuple[int, int]]
"""Sorted, disjoint 1-based line ranges ``[first, last]``."""


def to_ranges(lines: Sequence[int]) -> list[list[int]]:
    """Line numbers as ranges.

    >>> to_ranges([5, 1, 2, 3, 7, 8])
    [[1, 3], [5, 5], [7, 8]]
    """
    out: list[list[int]] = []
    for n in sorted(set(lines)):
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def in_ranges(n: int, ranges: Ranges) -> bool:
    k = bisect.bisect_right(ranges, n, key=lambda r: r[0]) - 1
    return k >= 0 and ranges[k][0] <= n <= ranges[k][1]


def read_lines(
    path: str, lines: Iterator[bytes], handled: Ranges = ()
) -> Iterator[TextLine | InputError | str]:
    """Parses one file's lines: `TextLine`s, `InputError`s of bad lines, and a count key per line.

    Yields, for every line, one of ``"blank"``, ``"skipped_existing"``,
    ``"bad"`` or ``"read"`` (so the counts add up to the file's lines), and
    before that key the `TextLine` or `InputError` of a read or bad line.
    """
    ordinal = 0
    for n, text in enumerate(decode_lines(lines, path), 1):
        if not isinstance(text, InputError):
            try:
                record_id, text = parse_input_line(text, path, n)
            except InputError as error:
                text = error
        if isinstance(text, InputError):
            if not in_ranges(n, handled):
                yield text
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


class ReadLinesFn(beam.DoFn):
    """Reads one matched file; main output `TextLine`, plus dead letters and counts."""

    def __init__(self, handled: Mapping[str, Ranges]):
        self.handled = handled

    def process(self, path: str):
        counts = Counter(files=1)
        with FileSystems.open(path) as f:
            for item in read_lines(path, binary_lines(f), self.handled.get(path, ())):
                if isinstance(item, TextLine):
                    yield item
                elif isinstance(item, InputError):
                    yield beam.pvalue.TaggedOutput(
                        DEAD_LETTER_TAG,
                        dead_letter("read", item.reason, path, item.line, item.raw),
                    )
                else:
                    counts[f"lines_{item}"] += 1
                    counts["lines"] += 1
        yield beam.pvalue.TaggedOutput(COUNTS_TAG, counts)


def match_inputs(patterns: Sequence[str]) -> list[str]:
    """The files the patterns match, sorted; a pattern that matches none is an error."""
    paths = []
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        if not result.metadata_list:
            raise FileNotFoundError(f"{pattern}: no input file matches")
        paths += [m.path for m in result.metadata_list]
    return sorted(set(paths))


class ReadTexts(beam.PTransform):
    """Input lines of every matched file, spread over the workers.

    Returns:
      A tagged result: ``lines`` (`TextLine`), ``dead_letter`` and ``counts``
      (a `Counter` per file: ``lines`` = ``lines_read`` + ``lines_blank`` +
      ``lines_bad`` + ``lines_skipped_existing``).
    """

    def __init__(self, cfg: ReadConfig, handled: Mapping[str, Ranges] | None = None):
        super().__init__()
        self.cfg = cfg
        self.handled = dict(handled or {})

    def expand(self, p):
        files = match_inputs(self.cfg.input)
        read = (
            p
            | "ListFiles" >> beam.Create(files)
            | "ReadLines"
            >> beam.ParDo(ReadLinesFn(self.handled)).with_outputs(
                DEAD_LETTER_TAG, COUNTS_TAG, main="lines"
            )
        )
        lines = read.lines | "Redistribute" >> beam.Reshuffle()
        return {"lines": lines, DEAD_LETTER_TAG: read[DEAD_LETTER_TAG], COUNTS_TAG: read[COUNTS_TAG]}
