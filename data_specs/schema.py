"""The Parquet schema of a relbridge shard, defined once.

A shard row is one sentence pair after the whole pipeline: its provenance, both
sides' tokens, the word alignment, the source mentions found by distant
supervision, their projections into the target side, and the relation instances
between mentions. The pipeline's WriteShards stage and the trainer's reader both
import `SHARD_SCHEMA` and the row dataclasses from here.

Conventions:
  * Spans are word (token) offsets ``[start, end)``: ``start`` inclusive, ``end``
    exclusive, indexing the side's ``*_tokens`` list.
  * An alignment is a sorted list of ``(src_idx, tgt_idx)`` word-index pairs, the
    format of simalign's ``get_word_aligns``. ``fallback_alignment`` is a second,
    denser link set (e.g. itermax) that projection consults only for words the
    main ``alignment`` leaves unlinked; empty when the run did not ask for one.
  * Relation instances are directed: ``subject``/``object`` index into the source
    mention list; ``tgt_subject``/``tgt_object`` index into the target mention
    list and are ``None`` when the relation did not project.
  * Pairs found by sentence alignment (``relbridge run --documents``) carry their
    document id, the 0-based indices of the document sentences they join on each
    side (``src_sentence_ids``, ``tgt_sentence_ids``) and the aligner's unit
    score; all four are null for a line-aligned corpus.

Bump `SCHEMA_VERSION` whenever a column is added, removed or changes meaning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 3  # 2: fallback_alignment; 3: doc_id, src/tgt_sentence_ids, sentence_score

MENTION_TYPE = pa.struct(
    [
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("kb_id", pa.string()),
        ("type", pa.string()),
        ("text", pa.string()),
    ]
)

PROJECTED_MENTION_TYPE = pa.struct(
    [
        *MENTION_TYPE,  # a projected mention is a mention plus where it came from
        pa.field("source_index", pa.int32()),
        pa.field("confidence", pa.float32()),
    ]
)

LINK_TYPE = pa.struct([("src", pa.int32()), ("tgt", pa.int32())])

RELATION_TYPE = pa.struct(
    [
        ("subject", pa.int32()),
        ("object", pa.int32()),
        ("label", pa.string()),
        ("tgt_subject", pa.int32()),
        ("tgt_object", pa.int32()),
        ("distant", pa.bool_()),
        ("projected", pa.bool_()),
    ]
)

SHARD_SCHEMA = pa.schema(
    [
        ("pair_id", pa.string()),
        ("corpus", pa.string()),
        ("source_file", pa.string()),
        ("line", pa.int64()),
        ("src_lang", pa.string()),
        ("tgt_lang", pa.string()),
        ("src_text", pa.string()),
        ("tgt_text", pa.string()),
        ("src_tokens", pa.list_(pa.string())),
        ("tgt_tokens", pa.list_(pa.string())),
        ("alignment", pa.list_(LINK_TYPE)),
        ("src_mentions", pa.list_(MENTION_TYPE)),
        ("tgt_mentions", pa.list_(PROJECTED_MENTION_TYPE)),
        ("relations", pa.list_(RELATION_TYPE)),
        ("fallback_alignment", pa.list_(LINK_TYPE)),
        ("doc_id", pa.string()),
        ("src_sentence_ids", pa.list_(pa.int32())),
        ("tgt_sentence_ids", pa.list_(pa.int32())),
        ("sentence_score", pa.float32()),
    ],
    metadata={b"relbridge.schema_version": str(SCHEMA_VERSION).encode()},
)

DEAD_LETTER_FIELDS = ("stage", "reason", "source_file", "line", "record")
"""Keys of one dead-letter JSONL record: the stage that rejected it, why, where
the input came from (file and 1-based line) and the original record."""


class _Struct:
    """A flat dataclass stored as one Arrow struct: a dict per row, and back."""

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]):
        return cls(**row)


class _Span(_Struct):
    """A struct with a word span ``[start, end)`` that must be non-empty."""

    def __post_init__(self):
        if not 0 <= self.start < self.end:
            raise ValueError(f"empty or negative span [{self.start}, {self.end})")


@dataclass(frozen=True)
class Mention(_Span):
    """An entity mention: word span ``[start, end)`` linked to a KB entity."""

    start: int
    end: int
    kb_id: str
    type: str = ""
    text: str = ""


@dataclass(frozen=True)
class ProjectedMention(_Span):
    """A source mention carried into the target side.

    ``source_index`` points into the source mention list; ``confidence`` in
    [0, 1] says how much the projection rule trusts the span.
    """

    start: int
    end: int
    kb_id: str
    type: str
    text: str
    source_index: int
    confidence: float


@dataclass(frozen=True)
class RelationInstance(_Struct):
    """A directed relation between two source mentions, and its projection.

    ``label`` is a relation name from the inventory, ``NA`` when the KB holds
    no triple between the two entities. ``distant`` is True when the label came
    from the KB (distant supervision); ``projected`` is True when both
    arguments projected, and then ``tgt_subject``/``tgt_object`` are set.
    """

    subject: int
    object: int
    label: str
    tgt_subject: int | None = None
    tgt_object: int | None = None
    distant: bool = True
    projected: bool = False


def _links_to_row(links: Sequence[tuple[int, int]]) -> list[dict[str, int]]:
    return [{"src": s, "tgt": t} for s, t in links]


def _links_from_row(links: Sequence[dict[str, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((link["src"], link["tgt"]) for link in links)


def _optional_list(values: Sequence[int] | None) -> list[int] | None:
    return None if values is None else list(values)


def _optional_tuple(values: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(values)


@dataclass(frozen=True)
class ShardRow:
    """One sentence pair as stored in a shard (see `SHARD_SCHEMA`)."""

    pair_id: str
    corpus: str
    source_file: str
    line: int
    src_lang: str
    tgt_lang: str
    src_text: str
    tgt_text: str
    src_tokens: tuple[str, ...]
    tgt_tokens: tuple[str, ...]
    alignment: tuple[tuple[int, int], ...] = ()
    src_mentions: tuple[Mention, ...] = ()
    tgt_mentions: tuple[ProjectedMention, ...] = ()
    relations: tuple[RelationInstance, ...] = field(default=())
    fallback_alignment: tuple[tuple[int, int], ...] = ()
    doc_id: str | None = None
    src_sentence_ids: tuple[int, ...] | None = None
    tgt_sentence_ids: tuple[int, ...] | None = None
    sentence_score: float | None = None

    def to_row(self) -> dict[str, Any]:
        """Returns a plain dict that `pa.Table.from_pylist(..., SHARD_SCHEMA)` accepts."""
        return {
            "pair_id": self.pair_id,
            "corpus": self.corpus,
            "source_file": self.source_file,
            "line": self.line,
            "src_lang": self.src_lang,
            "tgt_lang": self.tgt_lang,
            "src_text": self.src_text,
            "tgt_text": self.tgt_text,
            "src_tokens": list(self.src_tokens),
            "tgt_tokens": list(self.tgt_tokens),
            "alignment": _links_to_row(self.alignment),
            "src_mentions": [m.to_row() for m in self.src_mentions],
            "tgt_mentions": [m.to_row() for m in self.tgt_mentions],
            "relations": [r.to_row() for r in self.relations],
            "fallback_alignment": _links_to_row(self.fallback_alignment),
            "doc_id": self.doc_id,
            "src_sentence_ids": _optional_list(self.src_sentence_ids),
            "tgt_sentence_ids": _optional_list(self.tgt_sentence_ids),
            "sentence_score": self.sentence_score,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ShardRow:
        return cls(
            pair_id=row["pair_id"],
            corpus=row["corpus"],
            source_file=row["source_file"],
            line=row["line"],
            src_lang=row["src_lang"],
            tgt_lang=row["tgt_lang"],
            src_text=row["src_text"],
            tgt_text=row["tgt_text"],
            src_tokens=tuple(row["src_tokens"]),
            tgt_tokens=tuple(row["tgt_tokens"]),
            alignment=_links_from_row(row["alignment"]),
            fallback_alignment=_links_from_row(row.get("fallback_alignment") or ()),  # v1: absent
            doc_id=row.get("doc_id"),  # v1-2: absent
            src_sentence_ids=_optional_tuple(row.get("src_sentence_ids")),
            tgt_sentence_ids=_optional_tuple(row.get("tgt_sentence_ids")),
            sentence_score=row.get("sentence_score"),
            src_mentions=tuple(Mention.from_row(m) for m in row["src_mentions"]),
            tgt_mentions=tuple(ProjectedMention.from_row(m) for m in row["tgt_mentions"]),
            relations=tuple(RelationInstance.from_row(r) for r in row["relations"]),
        )


def token_offsets(text: str, tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character span ``[start, end)`` of each token in ``text``.

    Shard tokens are substrings of the text in order (the tokenizers only drop
    whitespace), so a left-to-right search recovers them.

    Raises:
      ValueError: a token is not found where expected.
    """
    offsets, pos = [], 0
    for token in tokens:
        start = text.find(token, pos)
        if start < 0:
            raise ValueError(f"token {token!r} not found in text after offset {pos}")
        offsets.append((start, start + len(token)))
        pos = start + len(token)
    return offsets


def char_span_to_words(
    offsets: Sequence[tuple[int, int]], start: int, end: int
) -> tuple[int, int] | None:
    """The word span ``[first, last + 1)`` of the tokens inside chars ``[start, end)``.

    A token counts when it overlaps the character span; ``None`` if none does.
    """
    inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
    return (inside[0], inside[-1] + 1) if inside else None


def read_shards(path_or_glob: str) -> list[ShardRow]:
    """Reads every shard under a directory (or matching a glob) into rows.

    Args:
      path_or_glob: a shard directory (reads ``*.parquet`` in it) or a glob.

    Returns:
      The rows, in file order.
    """
    import glob
    import os

    import pyarrow.parquet as pq

    pattern = (
        os.path.join(path_or_glob, "*.parquet") if os.path.isdir(path_or_glob) else path_or_glob
    )
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no Parquet shards match {pattern}")
    rows: list[ShardRow] = []
    for name in files:
        try:
            columns = pq.read_schema(name).names
        except pa.ArrowInvalid as error:  # a damaged file: name it, as a ValueError
            raise ValueError(f"{name}: not a Parquet file ({error})") from error
        missing = [c for c in SHARD_SCHEMA.names if c not in columns]
        missing = [c for c in missing if c not in _OPTIONAL_COLUMNS]
        if missing:  # read with the schema, they would be nulls and fail as a TypeError
            raise ValueError(f"{name}: not a relbridge shard: no column {', '.join(missing)}")
        table = pq.read_table(name, schema=SHARD_SCHEMA)
        for number, row in enumerate(table.to_pylist(), start=1):
            try:
                rows.append(ShardRow.from_row(row))
            except ValueError as error:  # an empty span
                raise ValueError(f"{name}: row {number}: {error}") from error
    return rows


_OPTIONAL_COLUMNS = {
    "fallback_alignment", "doc_id", "src_sentence_ids", "tgt_sentence_ids", "sentence_score",
}  # fmt: skip
"""Columns that older shards lack (`ShardRow.from_row` reads them as absent)."""
