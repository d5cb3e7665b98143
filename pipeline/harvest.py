"""HarvestAliases: the target-language names that projection found for KB entities.

Every projected mention of a KB entity is a target-language name of that
entity, seen in a translation: ``Vereinigten Staaten`` for an entity that the
KB knows only as ``United States``. This stage counts them per (entity,
language, name), with their mean projection confidence and the pair ids they
come from, and writes them as one KB-format alias file,
``OUTPUT/aliases.jsonl`` (format: `relbridge.data_specs.aliases`), which
``relbridge extract --kb-aliases`` and ``relbridge triples --kb-aliases``
add to the KB so that German text links to entities with English names only.

    counts = projected_rows | HarvestAliases(HarvestConfig(output="out/aliases.jsonl"))

A name is the target text under the projected span (raw characters, so a
Chinese name has no spaces added between its words). Two kinds of projected
mention are counted instead of harvested (`relbridge.data_specs.aliases.name_problem`):
one that projection retyped is not a name of its entity (``belgischen`` for
*Belgium*, typed ``MISC``; ``harvest:retyped``), and one whose source text is
no name: raw KB aliases such as ``human``, ``attack`` or ``1`` match common words and
numbers, whose translations, ``Menschen`` or ``Angriff``, would then link every
German sentence to an entity; ``harvest:not_a_name``).

The file is sorted, so the same rows give the same bytes in any runner; it is
written to a temporary name and renamed, so a reader sees the old file or the
new one, never half of one. With ``HarvestConfig.previous`` (a refresh), the
earlier file's names and counts are merged in, so the file always describes
every row of the output folder. The transform returns a PCollection of one
`Counter` (``harvest:entities``, ``harvest:names``, ``harvest:mentions``,
``harvest:retyped``, ``harvest:not_a_name``), emitted after the file is in place: `WriteShards` sums
it into ``stats.json``, so ``COMPLETED`` is never written before the file.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from relbridge.data_specs.aliases import (
    MAX_PAIR_IDS,
    HarvestedName,
    entity_lines,
    name_problem,
    parse_alias_lines,
)
from relbridge.data_specs.schema import ShardRow, token_offsets

logger = logging.getLogger(__name__)

ALIASES = "aliases.jsonl"

NameKey = tuple[str, str, str, str]
"""``(entity id, entity type, language, name)``"""

Stats = tuple[int, float, tuple[str, ...]]
"""``(mentions, sum of their confidences, smallest pair ids)``"""


@dataclass(frozen=True)
class HarvestConfig:
    """Where the harvested aliases go.

    Attributes:
      output: the alias file to write (any Beam filesystem path).
      previous: an earlier alias file whose names to merge in (a refresh,
        whose rows add to the rows of the earlier runs); ``None``: none.
    """

    output: str
    previous: str | None = None


def projected_names(row: ShardRow) -> Iterator[tuple[NameKey, Stats] | str]:
    """The (entity, language, name) of each projected mention of a row, with its stats.

    Yields one item per projected mention, in order: the reason instead
    (``"retyped"``, ``"not_a_name"``) for a mention that is not harvested (see
    the module docstring).
    """
    try:
        offsets = token_offsets(row.tgt_text, row.tgt_tokens)
    except ValueError:  # tokens not substrings of the text: fall back to joined tokens
        offsets = None
    for m in row.tgt_mentions:
        problem = name_problem(row, m)
        if problem:
            yield problem
            continue
        source = row.src_mentions[m.source_index]
        if offsets is not None:
            name = row.tgt_text[offsets[m.start][0] : offsets[m.end - 1][1]]
        else:
            name = " ".join(row.tgt_tokens[m.start : m.end])
        name = " ".join(name.split())
        if not name:  # not expected: tokens are never blank
            yield "empty"
            continue
        yield (source.kb_id, source.type, row.tgt_lang, name), (1, m.confidence, (row.pair_id,))


def merge_stats(stats: Iterable[Stats]) -> Stats:
    """Sums counts and confidences; keeps the `MAX_PAIR_IDS` smallest pair ids."""
    count, total, ids = 0, 0.0, set()
    for n, conf_sum, pair_ids in stats:
        count += n
        total += conf_sum
        ids.update(pair_ids)
    return count, total, tuple(sorted(ids)[:MAX_PAIR_IDS])


class NameStatsFn(beam.CombineFn):
    """Combines the `Stats` of one name (associative: counts and sums add)."""

    def create_accumulator(self) -> Stats:
        return 0, 0.0, ()

    def add_input(self, acc: Stats, stats: Stats) -> Stats:
        return merge_stats((acc, stats))

    def merge_accumulators(self, accs: Iterable[Stats]) -> Stats:
        return merge_stats(accs)

    def extract_output(self, acc: Stats) -> Stats:
        return acc


def previous_names(path: str) -> Iterator[tuple[NameKey, Stats]]:
    """The names of an earlier alias file as `Stats`, to merge with this run's."""
    from relbridge.pipeline.ingest import open_text

    if not FileSystems.exists(path):
        return
    with open_text(path) as lines:
        for n in parse_alias_lines(lines, path):
            key = (n.entity_id, n.entity_type, n.lang, n.alias)
            yield key, (n.count, n.confidence * n.count, n.pair_ids)


def write_alias_file(names: list[tuple[NameKey, Stats]], path: str) -> Counter:
    """Writes the alias file atomically; returns the counts for ``stats.json``."""
    harvested = [
        HarvestedName(eid, etype, lang, name, count, total / count, ids)
        for (eid, etype, lang, name), (count, total, ids) in names
    ]
    lines = entity_lines(harvested)
    tmp = f"{path}.tmp"
    with FileSystems.create(tmp) as f:
        for line in lines:
            f.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])
    logger.info("harvested %d names of %d KB entities -> %s", len(harvested), len(lines), path)
    return Counter(
        {
            "harvest:entities": len(lines),
            "harvest:names": len(harvested),
            "harvest:mentions": sum(n.count for n in harvested),
        }
    )


class HarvestAliases(beam.PTransform):
    """Counts the projected names of KB entities and writes them as an alias file.

    Takes projected `ShardRow`s; returns one `Counter` for ``stats.json``,
    emitted once the file is written.
    """

    def __init__(self, cfg: HarvestConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, rows):
        # found: (entity id, type, lang, name) -> (1, confidence, (pair id,)), or "retyped"
        found = rows | "ProjectedNames" >> beam.FlatMap(projected_names)
        names, skipped = found | "SplitSkipped" >> beam.Partition(
            lambda x, _: int(isinstance(x, str)), 2
        )
        sources = [names]
        if self.cfg.previous:
            sources.append(
                rows.pipeline
                | "PreviousAliasFile" >> beam.Create([self.cfg.previous])
                | "ReadPreviousNames" >> beam.FlatMap(previous_names)
            )
        # name_to_stats: one (key, (count, confidence sum, pair ids)) per distinct name
        name_to_stats = (
            sources
            | "MergeNameSources" >> beam.Flatten()
            | "CombinePerName" >> beam.CombinePerKey(NameStatsFn())
        )
        output = self.cfg.output
        written = (
            name_to_stats
            | "AllNames" >> beam.combiners.ToList()
            | "WriteAliasFile" >> beam.Map(lambda names: write_alias_file(sorted(names), output))
        )
        skipped_counts = (
            skipped
            | "CountSkipped" >> beam.combiners.Count.PerElement()
            | "SkippedCounter" >> beam.MapTuple(lambda reason, n: Counter({f"harvest:{reason}": n}))
        )
        return (written, skipped_counts) | "HarvestCounts" >> beam.Flatten()
