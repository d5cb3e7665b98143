"""The one error type for malformed input: it names the file and line."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from typing import Any


class InputError(ValueError):
    """A malformed input record; the message names the file and 1-based line.

    ``raw`` optionally keeps the offending input (JSON-serialisable), so a
    dead letter can carry what it could not parse.
    """

    def __init__(self, source_file: str, line: int, reason: str, raw: Any = None):
        super().__init__(f"{source_file}:{line}: {reason}")
        self.source_file = source_file
        self.line = line
        self.reason = reason
        self.raw = raw


def unicode_text(value: str, what: str, source_file: str, line: int) -> str:
    """``value`` unchanged, or `InputError` where it holds a lone surrogate.

    JSON's ``\\ud800`` escapes decode to such code points, which are no text:
    UTF-8, Parquet and every later stage refuse them.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        code = f"\\u{ord(value[e.start]):04x}"
        raise InputError(source_file, line, f"{what} holds a lone surrogate ({code})") from None
    return value


def whole_gzip_lines(lines: Iterable[bytes], source_file: str) -> Iterator[bytes]:
    """The lines of an open ``.gz`` file; one cut short, or no gzip at all, raises `InputError`
    at the line where it stops (gzip and zlib name no file, and ``EOFError`` is no input error)."""
    read = 0
    try:
        for read, data in enumerate(lines, 1):
            yield data
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(source_file, read + 1, f"not a whole gzip file ({e})") from None
