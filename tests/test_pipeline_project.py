"""ProjectLabels: the pipeline stage projects with the row's fallback links, as eval-projection does."""

import dataclasses

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from relbridge.projection.projection import ProjectConfig
from relbridge.data_specs import Mention, ShardRow
from relbridge.pipeline.project import ProjectLabels

# 'Lebanon' has no main link; the fallback (itermax) links it to 'Libanon'
ROW = ShardRow(
    "c:1", "c", "c.tsv", 1, "en", "de", "she left Lebanon early", "sie verließ früh Libanon",
    ("she", "left", "Lebanon", "early"), ("sie", "verließ", "früh", "Libanon"),
    alignment=((0, 0), (1, 1), (3, 2)),
    fallback_alignment=((0, 0), (1, 1), (1, 2), (1, 3), (2, 3), (3, 2)),
    src_mentions=(Mention(0, 1, "SHE"), Mention(2, 3, "LB")),
)  # fmt: skip
CFG = ProjectConfig(verbatim_spans=False, verbatim_anchors=False, spelling_anchor_ratio=0.0)


def test_fallback_links_project_an_entity_the_main_links_miss():
    with TestPipeline() as p:
        out = (p | beam.Create([ROW]) | ProjectLabels(CFG)).rows
        assert_that(
            out | beam.Map(lambda r: sorted((m.start, m.end) for m in r.tgt_mentions)),
            equal_to([[(0, 1), (3, 4)]]),
        )


def test_without_a_fallback_method_the_extra_links_are_ignored():
    off = dataclasses.replace(CFG, fallback_method="")
    with TestPipeline() as p:
        out = (p | beam.Create([ROW]) | ProjectLabels(off)).rows
        assert_that(
            out | beam.Map(lambda r: sorted((m.start, m.end) for m in r.tgt_mentions)),
            equal_to([[(0, 1)]]),
        )


def test_rows_project_with_their_own_languages():
    # 'in der' is linked into the name; German function words leave the span
    row = ShardRow(
        "c:2", "c", "c.tsv", 2, "en", "de", "he lives in Germany", "er lebt in der Bundesrepublik",
        ("he", "lives", "in", "Germany"), ("er", "lebt", "in", "der", "Bundesrepublik"),
        alignment=((0, 0), (1, 1), (3, 2), (3, 3), (3, 4)),
        src_mentions=(Mention(3, 4, "DE"),),
    )  # fmt: skip
    unknown = dataclasses.replace(row, pair_id="c:3", tgt_lang="qq")
    with TestPipeline() as p:
        out = (p | beam.Create([row, unknown]) | ProjectLabels(CFG)).rows
        assert_that(
            out | beam.Map(lambda r: (r.tgt_lang, [(m.start, m.end) for m in r.tgt_mentions])),
            equal_to([("de", [(4, 5)]), ("qq", [(2, 5)])]),
        )
