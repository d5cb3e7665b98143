"""ProjectLabels: carry source mentions and relations into the target language.

The per-pair logic is `relbridge.projection.projection.project_pair`, shared
with `relbridge eval-projection`, so what is measured is what the pipeline
does. This stage only wraps it and counts projected, dropped, repaired,
retyped and trimmed mentions and relations, in Beam counters and in a ``counts`` output
that `WriteShards` sums into ``stats.json`` (as ``projection:<name>``).

    projected = rows | ProjectLabels(ProjectConfig())
    projected.rows, projected.counts

With ``ProjectConfig.fallback_method`` set (the default, itermax), AlignWords
also computes that method and rows carry its links in ``fallback_alignment``;
they reach `project_pair` as ``extra_links``, exactly as in eval-projection.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import replace

import apache_beam as beam

from relbridge.data_specs.schema import ShardRow
from relbridge.projection.projection import ProjectConfig, project_pair


def projection_counts(counts) -> dict[str, int]:
    """The projection's counts as a plain name -> int mapping."""
    if dataclasses.is_dataclass(counts):
        counts = dataclasses.asdict(counts)
    return {str(k): int(v) for k, v in dict(counts).items()}


COUNTS_TAG = "counts"


class ProjectLabelsFn(beam.DoFn):
    """Wraps `project_pair` for one aligned row; its counts go to ``COUNTS_TAG``."""

    def __init__(self, cfg: ProjectConfig):
        self.cfg = cfg

    def process(self, row: ShardRow):
        result = project_pair(
            row.src_tokens,
            row.tgt_tokens,
            row.alignment,
            row.src_mentions,
            row.relations,
            self.cfg,
            extra_links=row.fallback_alignment if self.cfg.fallback_method else None,
            src_lang=row.src_lang,
            tgt_lang=row.tgt_lang,
        )
        counts = projection_counts(result.counts)
        for name, value in counts.items():
            beam.metrics.Metrics.counter(self.__class__, name).inc(value)
        yield beam.pvalue.TaggedOutput(
            COUNTS_TAG, Counter({f"projection:{k}": v for k, v in counts.items() if v})
        )
        yield replace(
            row, tgt_mentions=tuple(result.tgt_mentions), relations=tuple(result.relations)
        )


class ProjectLabels(beam.PTransform):
    """Adds projected target mentions and relation roles to rows.

    Returns ``rows`` (the projected rows) and ``counts`` (one `Counter` of
    projection counts per row, for ``stats.json``).
    """

    def __init__(self, cfg: ProjectConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, rows):
        return rows | "ProjectSpansAndRelations" >> beam.ParDo(
            ProjectLabelsFn(self.cfg)
        ).with_outputs(COUNTS_TAG, main="rows")
