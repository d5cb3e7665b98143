"""The one error type for malformed input: it names the file and line."""

from __future__ import annotations

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
