"""Input formats: parallel corpora, read line by line with the file and line of every error.

Parallel corpora (one sentence pair per record, raw untokenised text):
  * ``tsv``: ``src<TAB>tgt`` or ``id<TAB>src<TAB>tgt`` per line.
  * ``jsonl``: ``{"src": ..., "tgt": ..., "id": optional}`` per line.
  * ``text``: two line-aligned plain-text files, ``PREFIX.<src_lang>`` and
    ``PREFIX.<tgt_lang>`` (Moses/OpenNMT style).

The knowledge base's files are `relbridge.data_specs.kb_format`.

Lines are numbered from 1. Every parse error raises `InputError` naming the file
and line; blank lines and ``#`` comments are never skipped in a corpus, where they
would shift the alignment of the two sides.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from relbridge.data_specs.errors import InputError, unicode_text, whole_gzip_lines

CORPUS_FORMATS = ("tsv", "jsonl", "text")


def decode_lines(
    lines: Iterable[bytes], source_file: str, first_line: int = 1
) -> Iterator[str | InputError]:
    """UTF-8 text of each line (newline kept); a line that is not UTF-8 becomes an `InputError`.

    Lines are split on ``\\n`` only, as ``wc -l`` counts them, and decoded one
    at a time, so one bad byte costs its line, not the file: the caller decides
    whether the error stops the file (the KB) or becomes a dead letter (a
    corpus). The error keeps the line, with the bad bytes escaped, as ``raw``.
    A leading UTF-8 byte-order mark is dropped. ``first_line`` numbers the first
    of ``lines``, for a file read from the middle.
    """
    for line, data in enumerate(lines, start=first_line):
        if line == 1 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        try:
            yield data.decode("utf-8")
        except UnicodeDecodeError as e:
            yield InputError(
                source_file,
                line,
                f"not valid UTF-8 (byte 0x{data[e.start]:02x} at byte {e.start + 1} of the line)",
                raw=data.decode("utf-8", "backslashreplace").rstrip("\r\n"),
            )


def strict_lines(lines: Iterable[bytes], source_file: str) -> Iterator[str]:
    """`decode_lines` that raises the first `InputError` instead of yielding it."""
    for item in decode_lines(lines, source_file):
        if isinstance(item, InputError):
            raise item
        yield item


@contextmanager
def open_lines(path: str) -> Iterator[Iterator[str]]:
    """A local file's UTF-8 lines (`strict_lines`), for ``with``; ``.gz`` files are decompressed."""
    gz = path.endswith(".gz")
    with (gzip.open if gz else open)(path, "rb") as f:
        yield strict_lines(whole_gzip_lines(f, path) if gz else f, path)


@dataclass(frozen=True)
class BitextRecord:
    """One raw sentence pair with its provenance (file and 1-based line).

    A pair found by sentence alignment also names its document, the 0-based
    sentence indices it joins on each side and the unit's score (see
    `data_specs.schema`); a line-aligned pair leaves them ``None``.
    """

    corpus: str
    source_file: str
    line: int
    src: str
    tgt: str
    record_id: str = ""
    occurrence: int = 1
    doc_id: str | None = None
    src_sentence_ids: tuple[int, ...] | None = None
    tgt_sentence_ids: tuple[int, ...] | None = None
    sentence_score: float | None = None

    @property
    def pair_id(self) -> str:
        """A stable id: the record's own id when it has one, else a content hash.

        The hash covers the corpus name and both texts, so re-running on the same
        input yields the same ids (idempotent refreshes) wherever lines move.
        Identical lines without an id share the hash; the reader numbers them
        in (file, line) order (``occurrence``), and the second and later get
        ``~N`` appended, so every pair id of a run is unique.
        """
        if self.record_id:
            return f"{self.corpus}:{self.record_id}"
        digest = hashlib.sha1(f"{self.corpus}\x00{self.src}\x00{self.tgt}".encode()).hexdigest()
        suffix = f"~{self.occurrence}" if self.occurrence > 1 else ""
        return f"{self.corpus}:{digest[:16]}{suffix}"


def corpus_format(path: str) -> str:
    """Guesses a corpus format from its file name (``.tsv``, ``.jsonl``, else text)."""
    lower = path.lower()
    if lower.endswith((".tsv", ".tsv.gz")):
        return "tsv"
    if lower.endswith((".jsonl", ".jsonl.gz", ".json")):
        return "jsonl"
    return "text"


def parse_tsv_pair(text: str, corpus: str, source_file: str, line: int) -> BitextRecord:
    """Parses ``src<TAB>tgt`` or ``id<TAB>src<TAB>tgt``."""
    cols = text.rstrip("\r\n").split("\t")
    if len(cols) == 2:
        record_id, src, tgt = "", *cols
    elif len(cols) == 3:
        record_id, src, tgt = cols
    else:
        raise InputError(
            source_file, line, f"expected 2 or 3 tab-separated columns, got {len(cols)}"
        )
    return _checked(
        BitextRecord(corpus, source_file, line, src.strip(), tgt.strip(), record_id.strip())
    )


def parse_jsonl_pair(text: str, corpus: str, source_file: str, line: int) -> BitextRecord:
    """Parses ``{"src": ..., "tgt": ..., "id": optional}`` (the id: `json_record_id`)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(source_file, line, f"invalid JSON: {e.msg}") from None
    if not isinstance(obj, dict):
        raise InputError(source_file, line, "expected a JSON object")
    missing = [k for k in ("src", "tgt") if not isinstance(obj.get(k), str)]
    if missing:
        raise InputError(source_file, line, f"missing or non-string field(s): {', '.join(missing)}")
    record_id = json_record_id(obj, source_file, line)
    src, tgt = (unicode_text(obj[k], f'"{k}"', source_file, line).strip() for k in ("src", "tgt"))
    return _checked(BitextRecord(corpus, source_file, line, src, tgt, record_id))


def json_record_id(obj: dict, source_file: str, line: int) -> str:
    """The ``"id"`` of a JSONL record, stripped: a string or an integer; null or none: ``""``."""
    record_id = obj.get("id")
    if record_id is None:  # null: no id, as when the field is missing
        return ""
    if isinstance(record_id, bool) or not isinstance(record_id, str | int):
        got = json.dumps(record_id)
        raise InputError(source_file, line, f"id must be a string or an integer, got {got}")
    return unicode_text(str(record_id), '"id"', source_file, line).strip()


def make_text_pair(
    src: str | None, tgt: str | None, corpus: str, source_file: str, line: int
) -> BitextRecord:
    """Pairs line ``line`` of two aligned text files; ``None`` means that file ended."""
    if src is None or tgt is None:
        side = "source" if src is None else "target"
        raise InputError(source_file, line, f"the {side} file has fewer lines than its partner")
    return _checked(BitextRecord(corpus, source_file, line, src.strip(), tgt.strip()))


def _checked(record: BitextRecord) -> BitextRecord:
    if not record.src or not record.tgt:
        side = "source" if not record.src else "target"
        raise InputError(record.source_file, record.line, f"empty {side} sentence")
    return record


PAIR_PARSERS: dict[str, Callable[[str, str, str, int], BitextRecord]] = {
    "tsv": parse_tsv_pair,
    "jsonl": parse_jsonl_pair,
}


def bio_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """IOB2 tags -> ``(start, end, type)`` word spans ``[start, end)``; a stray ``I-t`` opens a span."""
    spans, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-")
        if start is not None and not (prefix == "I" and name == kind):
            spans.append((start, i, kind))
            start = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, name
    return spans
