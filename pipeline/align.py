"""AlignWords: word alignment of each tokenised sentence pair.

Pairs are grouped into batches with `BatchElements` and embedded together by
`relbridge.alignment`'s `WordAligner`; the encoder is loaded once per worker
process (`beam.utils.shared.Shared`) in `DoFn.setup`, never pickled. A pair the
aligner cannot align (an empty side after subword tokenisation, say) goes to
the dead-letter output with the aligner's reason.

    rows, dead = rows | AlignWords(AlignConfig(method="argmax", layer=6))
"""

from __future__ import annotations

import logging
from dataclasses import replace

import apache_beam as beam
from apache_beam.utils.shared import Shared

from relbridge.alignment.aligner import AlignConfig, WordAligner
from relbridge.data_specs.schema import ShardRow
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG, reject

logger = logging.getLogger(__name__)


class _SharedAligner:
    """A weak-referenceable holder for the per-process aligner."""

    def __init__(self, aligner: WordAligner):
        self.aligner = aligner


class AlignBatchFn(beam.DoFn):
    """Aligns a batch of rows; emits each row with its links, or a dead letter."""

    def __init__(self, cfg: AlignConfig, shared: Shared):
        self.cfg = cfg
        self._shared = shared
        self.aligned = beam.metrics.Metrics.counter(self.__class__, "aligned_pairs")
        self.failed = beam.metrics.Metrics.counter(self.__class__, "unaligned_pairs")
        self.links = beam.metrics.Metrics.counter(self.__class__, "links")

    def setup(self):
        cfg = self.cfg
        self._aligner = self._shared.acquire(lambda: _SharedAligner(WordAligner(cfg)), tag=repr(cfg)).aligner

    def process(self, batch: list[ShardRow]):
        results = self._aligner.align_batch([(row.src_tokens, row.tgt_tokens) for row in batch])
        for row, result in zip(batch, results, strict=True):
            if result.links is None:
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, reject("AlignWords", result.error, row))
                continue
            self.aligned.inc()
            self.links.inc(len(result.links))
            yield replace(row, alignment=tuple(sorted(result.links)))


class AlignWords(beam.PTransform):
    """Adds word alignments to rows; returns ``rows`` plus ``dead_letter``."""

    def __init__(self, cfg: AlignConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, rows):
        return (
            rows
            | "BatchPairs" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.cfg.batch_size)
            | "AlignBatches"
            >> beam.ParDo(AlignBatchFn(self.cfg, Shared())).with_outputs(DEAD_LETTER_TAG, main="rows")
        )
