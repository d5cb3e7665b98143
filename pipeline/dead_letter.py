"""Dead letters: every record a stage cannot process, with the reason.

Each stage routes its rejects to the ``dead_letter`` tagged output as a plain
dict (`data_specs.schema.DEAD_LETTER_FIELDS`), so nothing is dropped silently:
input records = shard rows + dead letters, and `stats.json` checks that sum.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from relbridge.data_specs.schema import DEAD_LETTER_FIELDS

DEAD_LETTER_TAG = "dead_letter"


def dead_letter(
    stage: str, reason: str, source_file: str, line: int, record: Any
) -> dict[str, Any]:
    """Builds one dead-letter record; ``record`` is a dataclass, dict or None."""
    if dataclasses.is_dataclass(record):
        record = dataclasses.asdict(record)
    out = dict(zip(DEAD_LETTER_FIELDS, (stage, reason, source_file, line, record)))
    return out


def reject(stage: str, reason: str, element: Any) -> dict[str, Any]:
    """A dead letter for an element that carries its own provenance."""
    return dead_letter(stage, reason, element.source_file, element.line, element)


def to_json(letter: dict[str, Any]) -> str:
    return json.dumps(letter, ensure_ascii=False, sort_keys=True, default=list)
