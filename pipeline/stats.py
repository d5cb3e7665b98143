"""Counts per stage, summed inside the pipeline for ``stats.json``.

Beam metrics are best-effort on some runners and live only as long as the job
handle, so the counts that must add up (input records = shard rows + dead
letters) are computed as ordinary PCollections and written with the shards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import apache_beam as beam

from relbridge.data_specs.relations import NA
from relbridge.data_specs.schema import ShardRow


def row_stats(row: ShardRow) -> Counter:
    """The counts one shard row contributes."""
    stats = Counter(rows=1, src_mentions=len(row.src_mentions), tgt_mentions=len(row.tgt_mentions))
    stats["alignment_links"] = len(row.alignment)
    for rel in row.relations:
        kind = "na_instances" if rel.label == NA else "relation_instances"
        stats[kind] += 1
        if rel.projected:
            stats[f"projected_{kind}"] += 1
        if rel.label != NA:
            stats[f"label:{rel.label}"] += 1
    return stats


def dead_letter_stats(letter: dict[str, Any]) -> Counter:
    return Counter({"dead_letters": 1, f"dead_letter:{letter['stage']}": 1})


class SumCountsFn(beam.CombineFn):
    """Sums `Counter`s (an empty input sums to an empty Counter)."""

    def create_accumulator(self) -> Counter:
        return Counter()

    def add_input(self, acc: Counter, counts: Counter) -> Counter:
        acc.update(counts)
        return acc

    def merge_accumulators(self, accs: Iterable[Counter]) -> Counter:
        total = Counter()
        for acc in accs:
            total.update(acc)
        return total

    def extract_output(self, acc: Counter) -> dict[str, int]:
        return dict(sorted(acc.items()))


def summed(label: str):
    """A labelled `SumCountsFn` over a whole PCollection, to apply right where counts are made.

    Combiner lifting then pre-sums each bundle in the worker that made them.
    Summed only after a Flatten of several stages' counts, Beam's local runner
    held one `Counter` per element until the end (kg build: 818 against 767 MiB
    peak on 100k lines).
    """
    return label >> beam.CombineGlobally(SumCountsFn())
