"""ReadBitext: parallel corpus files -> `BitextRecord`s with provenance.

Reads TSV, JSONL or two line-aligned text files (see `data_specs.formats`)
through Beam's filesystems, so local paths, globs and gs:// paths work alike.
Each file is read sequentially by one worker so every record keeps its 1-based
line number; a corpus split into many files is read in parallel. Malformed
lines go to the dead-letter output with the file, line and reason.

    records, dead = pcoll_of_nothing | ReadBitext(IngestConfig(corpus="a.tsv", ...))
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import os
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import zip_longest

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from relbridge.data_specs.formats import (
    CORPUS_FORMATS,
    PAIR_PARSERS,
    BitextRecord,
    InputError,
    corpus_format,
    decode_lines,
    make_text_pair,
    strict_lines,
)
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG, dead_letter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestConfig:
    """Where the parallel corpus is and how to read it.

    Attributes:
      corpus: a TSV/JSONL file or glob, or for ``text`` a prefix P with files
        ``P.<src_lang>`` and ``P.<tgt_lang>``, or the two files themselves as
        ``SRC_FILE,TGT_FILE`` (OpenNMT's ``src-train.txt,tgt-train.txt``).
      src_lang: source language code (ISO 639-1, e.g. ``en``).
      tgt_lang: target language code.
      corpus_format: ``tsv``, ``jsonl``, ``text`` or ``auto`` (by file name).
      corpus_name: recorded as provenance and part of every pair id; defaults
        to the corpus file's base name.
      unescape: decode HTML/XML character references in both sentences
        (``&apos;``, ``&amp;``, ``&#124;``), as Moses' tokenizer escapes
        them; otherwise they would be tokenised as words and could never match
        a KB alias.
    """

    corpus: str
    src_lang: str
    tgt_lang: str
    corpus_format: str = "auto"
    corpus_name: str = ""
    unescape: bool = False

    def __post_init__(self):
        if self.corpus_format not in (*CORPUS_FORMATS, "auto"):
            raise ValueError(
                f"corpus_format must be one of {CORPUS_FORMATS} or 'auto', got {self.corpus_format!r}"
            )
        if not self.src_lang or not self.tgt_lang or self.src_lang == self.tgt_lang:
            raise ValueError(
                f"need two different languages, got {self.src_lang!r} and {self.tgt_lang!r}"
            )

    @property
    def resolved_format(self) -> str:
        if self.corpus_format != "auto":
            return self.corpus_format
        return "text" if self.file_pair else corpus_format(self.corpus)

    @property
    def file_pair(self) -> tuple[str, str] | None:
        """``(src_file, tgt_file)`` when the corpus names the two files of a text pair."""
        parts = self.corpus.split(",")
        return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None

    @property
    def name(self) -> str:
        if self.corpus_name:
            return self.corpus_name
        base = os.path.basename((self.file_pair or (self.corpus,))[0].rstrip("/"))
        for ext in (".gz", ".tsv", ".jsonl", ".json"):
            base = base.removesuffix(ext)
        return base or "corpus"

    def input_files(self) -> list[str]:
        """Expands the corpus into the files to read (pairs of files for ``text``)."""
        if self.resolved_format == "text":
            names = self.file_pair or (
                f"{self.corpus}.{self.src_lang}",
                f"{self.corpus}.{self.tgt_lang}",
            )
            pair = tuple(local_absolute(p) for p in names)
            missing = [p for p in pair if not FileSystems.exists(p)]
            if missing:
                raise FileNotFoundError(f"corpus file(s) not found: {', '.join(missing)}")
            return [f"{pair[0]}\t{pair[1]}"]
        matches = FileSystems.match([local_absolute(self.corpus)])[0].metadata_list
        if not matches:
            raise FileNotFoundError(f"no corpus file matches {self.corpus}")
        return sorted(m.path for m in matches)


def local_absolute(path: str) -> str:
    """A local path or glob made absolute; another filesystem's path unchanged.

    Provenance (``source_file``) then names one file from any working
    directory, so that a refresh started elsewhere knows the earlier dead
    letters; and Beam's local match finds nothing for a relative glob
    without a folder (``c*.tsv``).
    """
    return os.path.abspath(path) if FileSystems.get_scheme(path) is None else path


def binary_lines(f) -> Iterator[bytes]:
    """The lines of a binary file object from Beam's filesystems, newline kept."""
    return iter(f.readline, b"")


@contextmanager
def open_text(path: str) -> Iterator[Iterator[str]]:
    """Any Beam-filesystem path's UTF-8 lines (gzip by extension), for ``with``.

    A line that is not UTF-8 raises `InputError` naming the file and line.
    """
    with FileSystems.open(path) as f:
        yield strict_lines(binary_lines(f), path)


def read_records(spec: str, cfg: IngestConfig) -> Iterator[BitextRecord | InputError]:
    """Yields the records of one input (a file, or a tab-joined text-file pair).

    Bad lines, including lines that are not UTF-8, are yielded as `InputError`s
    (with the line as ``raw``) rather than raised, so one bad line does not
    lose the rest of the file.
    """
    fmt = cfg.resolved_format
    if fmt == "text":
        src_path, tgt_path = spec.split("\t")
        with FileSystems.open(src_path) as src, FileSystems.open(tgt_path) as tgt:
            sides = zip_longest(
                decode_lines(binary_lines(src), src_path), decode_lines(binary_lines(tgt), tgt_path)
            )
            for line, (s, t) in enumerate(sides, start=1):
                bad = next((x for x in (s, t) if isinstance(x, InputError)), None)
                if bad is not None:
                    yield bad
                    continue
                try:
                    yield make_text_pair(s, t, cfg.name, src_path, line)
                except InputError as e:
                    yield _with_raw(e, {"src": _chomp(s), "tgt": _chomp(t)})
        return
    parse = PAIR_PARSERS[fmt]
    with FileSystems.open(spec) as f:
        for line, text in enumerate(decode_lines(binary_lines(f), spec), start=1):
            if isinstance(text, InputError):
                yield text
                continue
            try:
                yield parse(text, cfg.name, spec, line)
            except InputError as e:
                yield _with_raw(e, _chomp(text))


def unescape_record(record: BitextRecord) -> BitextRecord:
    """Decodes character references (``&apos;`` -> ``'``) in both sentences."""
    return dataclasses.replace(record, src=html.unescape(record.src), tgt=html.unescape(record.tgt))


def _chomp(text: str | None) -> str | None:
    return None if text is None else text.rstrip("\r\n")


def _with_raw(error: InputError, raw) -> InputError:
    return InputError(error.source_file, error.line, error.reason, raw=raw)


class ReadCorpusFileFn(beam.DoFn):
    """Reads one corpus input; emits records, and bad lines as dead letters."""

    def __init__(self, cfg: IngestConfig):
        self.cfg = cfg
        self.records = beam.metrics.Metrics.counter(self.__class__, "records")
        self.errors = beam.metrics.Metrics.counter(self.__class__, "parse_errors")

    def process(self, spec: str):
        for item in read_records(spec, self.cfg):
            if isinstance(item, InputError):
                self.errors.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG,
                    dead_letter(
                        "ReadBitext", item.reason, item.source_file, item.line, {"raw": item.raw}
                    ),
                )
            else:
                self.records.inc()
                yield unescape_record(item) if self.cfg.unescape else item


def unique_pair_ids(records: Iterable[BitextRecord]) -> Iterator[BitextRecord | InputError]:
    """Gives every record of one pair id an id of its own, or rejects it.

    ``records`` share one `BitextRecord.pair_id`. In (file, line) order, the
    first keeps it. A later record with an explicit id is an `InputError`
    naming the line that used the id first: its text may differ, and rows
    sharing an id would share eflomal's links, which are joined by id. Later
    identical lines without an id are numbered (``occurrence``), which gives
    them ids of their own that stay the same on a rerun of the same corpus.
    """
    first, *later = sorted(records, key=lambda r: (r.source_file, r.line))
    yield first
    for n, record in enumerate(later, start=2):
        if record.record_id:
            yield InputError(
                record.source_file,
                record.line,
                f"pair id {record.record_id!r} was already used by "
                f"{first.source_file}:{first.line}: ids must be unique in a corpus",
                raw=dataclasses.asdict(record),
            )
        else:
            yield dataclasses.replace(record, occurrence=n)


def pack_record(record: BitextRecord) -> bytes:
    """A record as it crosses the pair-id shuffle: its fields as JSON, zlib level 1.

    Beam's local runner hands each worker its whole share of a shuffle as one
    message and keeps it for the whole stage after it, which here is alignment:
    packed, a record takes about 250 bytes of that message against 570 pickled.
    JSON's ASCII escapes carry any string, lone surrogates included.
    """
    values = [getattr(record, f.name) for f in dataclasses.fields(BitextRecord)]
    return zlib.compress(json.dumps(values).encode("ascii"), 1)


def unpack_record(packed: bytes) -> BitextRecord:
    """`pack_record` undone (its only lists are the sentence-id tuples)."""
    values = json.loads(zlib.decompress(packed))
    return BitextRecord(*(tuple(v) if isinstance(v, list) else v for v in values))


class UniquePairIdsFn(beam.DoFn):
    """`unique_pair_ids` over the records grouped under one pair id."""

    def __init__(self):
        self.repeated = beam.metrics.Metrics.counter(self.__class__, "repeated_pair_ids")

    def process(self, element: tuple[str, Iterable[bytes | dict]]):
        key, items = element
        if key.startswith("\x00"):  # an input line's dead letter (`_bad_line_key`)
            for letter in items:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)
            return
        for item in unique_pair_ids(unpack_record(b) for b in items):
            if isinstance(item, InputError):
                self.repeated.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG,
                    dead_letter("ReadBitext", item.reason, item.source_file, item.line, item.raw),
                )
            else:
                yield item


class ReadBitext(beam.PTransform):
    """Reads a parallel corpus into `BitextRecord`s with unique pair ids.

    The records are grouped by pair id (`unique_pair_ids`); that shuffle also
    spreads the records of one file, read in order by one worker, over every
    worker for the stages after.

    Returns:
      A tagged result: the main output holds `BitextRecord`s, ``dead_letter``
      holds dicts for lines that could not be parsed or repeat an id.
    """

    def __init__(self, cfg: IngestConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, pbegin):
        files = self.cfg.input_files()
        logger.info("ReadBitext: %d input file(s) for %s", len(files), self.cfg.corpus)
        read = (
            pbegin
            | "ListCorpusFiles" >> beam.Create(files)
            | "ReadCorpusFiles"
            >> beam.ParDo(ReadCorpusFileFn(self.cfg)).with_outputs(DEAD_LETTER_TAG, main="records")
        )
        # (pair_id, packed record), and (a key of its own, dead letter) for bad lines
        keyed = (
            read.records
            | "KeyByPairId" >> beam.Map(lambda record: (record.pair_id, pack_record(record))),
            read[DEAD_LETTER_TAG] | "KeyBadLines" >> beam.Map(_bad_line_key),
        ) | "MergeKeyed" >> beam.Flatten()
        return (
            keyed
            | "GroupByPairId" >> beam.GroupByKey()
            | "UniquePairIds"
            >> beam.ParDo(UniquePairIdsFn()).with_outputs(DEAD_LETTER_TAG, main="records")
        )


def _bad_line_key(letter: dict) -> tuple[str, dict]:
    """A key no pair id has (ids start with the corpus name), unique per input line."""
    return f"\x00{letter['source_file']}\x00{letter['line']}", letter
