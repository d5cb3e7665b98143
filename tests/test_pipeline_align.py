"""AlignWords: batched alignment in Beam, one encoder per process, dead letters."""

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.shared import Shared

from relbridge.alignment.aligner import AlignConfig, AlignResult
from relbridge.data_specs import ShardRow
from relbridge.pipeline.align import AlignBatchFn, AlignWords
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG


def row(i: int, src: str, tgt: str) -> ShardRow:
    return ShardRow(f"c:{i}", "c", "c.tsv", i, "en", "de", src, tgt, tuple(src.split()), tuple(tgt.split()))


ROWS = [row(1, "the city", "die Stadt"), row(2, "Paris is a city", "Paris ist eine Stadt"), row(3, "x", "y z")]


def test_align_words_transform_adds_links(tiny_encoder):
    cfg = AlignConfig(model=tiny_encoder, layer=1, batch_size=2)
    with TestPipeline() as p:
        out = p | beam.Create(ROWS) | AlignWords(cfg)
        assert_that(
            out.rows | beam.Map(lambda r: (r.pair_id, bool(r.alignment), all(
                0 <= s < len(r.src_tokens) and 0 <= t < len(r.tgt_tokens) for s, t in r.alignment))),
            equal_to([("c:1", True, True), ("c:2", True, True), ("c:3", True, True)]),
            label="Rows",
        )
        assert_that(out[DEAD_LETTER_TAG], equal_to([]), label="NoDead")


class FakeAligner:
    """Stands in for WordAligner: fails pairs whose source starts with 'bad'."""

    def align_batch(self, pairs):
        return [
            AlignResult(None, "cannot align") if src[0] == "bad" else AlignResult(((0, 0),), None)
            for src, _ in pairs
        ]


def test_align_batch_fn_lifecycle_with_a_fake_aligner(monkeypatch):
    import relbridge.pipeline.align as align_module

    monkeypatch.setattr(align_module, "WordAligner", lambda cfg: FakeAligner())
    fn = AlignBatchFn(AlignConfig(), Shared())
    fn.setup()
    out = list(fn.process([row(1, "good one", "gut"), row(2, "bad one", "schlecht")]))
    fn.teardown()
    assert out[0].alignment == ((0, 0),)
    assert out[1].tag == DEAD_LETTER_TAG
    assert out[1].value["reason"] == "cannot align" and out[1].value["line"] == 2
