"""Row types of ``relbridge kg build``: input lines and sentences with their provenance.

Records, triples and dead letters are plain JSON dicts (`relbridge extract`'s
records, `relbridge.models.triples`' triples, `pipeline.dead_letter`); these
two types travel between the Beam stages before a record exists.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextLine:
    """One non-blank input line.

    Attributes:
      source_file: the file it was read from (as matched).
      line: 1-based line number.
      ordinal: 0-based position among the file's non-blank lines (what
        ``relbridge extract`` numbers its records' ``sentence`` by).
      id: the JSONL input's ``id``, else None.
      text: the line's text (JSON input: its ``text``), stripped.
    """

    source_file: str
    line: int
    ordinal: int
    id: str | None
    text: str


@dataclass(frozen=True)
class Sentence:
    """One sentence of a `TextLine`, ``index`` counting from 0 within the line."""

    source_file: str
    line: int
    ordinal: int
    id: str | None
    index: int
    text: str
