"""AlignWords: word alignment of each tokenised sentence pair.

Pairs are grouped into batches with `BatchElements` and embedded together by
`relbridge.alignment`'s `WordAligner`; the encoder is loaded once per worker
process (`beam.utils.shared.Shared`) in `DoFn.setup`, never pickled. A pair the
aligner cannot align (an empty side after subword tokenisation, say) goes to
the dead-letter output with the aligner's reason.

With ``AlignConfig.statistical`` on, eflomal also runs, once, over the whole
corpus (`AlignStatistically`: every pair gathered into one list, since eflomal
learns from all of them together); its links, keyed by pair id, reach the
neural step as a dict side input and are merged pair by pair
(`alignment.aligner.merge_links`). eflomal holds the corpus in one process
anyway, so the side input is never the larger cost.

    rows, dead = rows | AlignWords(AlignConfig(method="argmax", layer=6))
    rows, dead = rows | AlignWords(AlignConfig(statistical="fill"))  # + eflomal
"""

from __future__ import annotations

import logging
from dataclasses import replace

import apache_beam as beam
from apache_beam.utils.shared import Shared

from relbridge.alignment.aligner import AlignConfig, AlignResult, WordAligner, with_statistical
from relbridge.alignment.statistical import EflomalConfig, eflomal_align
from relbridge.data_specs.schema import ShardRow
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG, reject

logger = logging.getLogger(__name__)


class _SharedAligner:
    """A weak-referenceable holder for the per-process aligner."""

    def __init__(self, aligner: WordAligner):
        self.aligner = aligner


class AlignBatchFn(beam.DoFn):
    """Aligns a batch of rows; emits each row with its links, or a dead letter.

    When the pipeline runs eflomal, ``process`` gets its links as the
    ``statistical`` side input (pair id -> links) and merges them in.
    """

    def __init__(self, cfg: AlignConfig, shared: Shared):
        self.cfg = cfg
        self._shared = shared
        self.aligned = beam.metrics.Metrics.counter(self.__class__, "aligned_pairs")
        self.failed = beam.metrics.Metrics.counter(self.__class__, "unaligned_pairs")
        self.links = beam.metrics.Metrics.counter(self.__class__, "links")

    def setup(self):
        cfg = self.cfg
        self._aligner = self._shared.acquire(lambda: _SharedAligner(WordAligner(cfg)), tag=repr(cfg)).aligner

    def process(self, batch: list[ShardRow], statistical: dict | None = None):
        results = self._aligner.align_batch([(row.src_tokens, row.tgt_tokens) for row in batch])
        for row, result in zip(batch, results, strict=True):
            if result.links is not None and statistical is not None:
                result = _merge(result, statistical.get(row.pair_id), self.cfg.statistical)
            if result.links is None:
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, reject("AlignWords", result.error, row))
                continue
            self.aligned.inc()
            self.links.inc(len(result.links))
            yield replace(row, alignment=tuple(sorted(result.links)))


def _merge(result: AlignResult, links, how: str) -> AlignResult:
    if links is None:
        return AlignResult.failed("eflomal gave this pair no links")
    return with_statistical(result, [tuple(link) for link in links], how)


def _tokens(row: ShardRow) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    return row.pair_id, tuple(row.src_tokens), tuple(row.tgt_tokens)


class EflomalFn(beam.DoFn):
    """Trains eflomal on the whole corpus (one element: every pair) and emits links per pair."""

    def __init__(self, cfg: EflomalConfig):
        self.cfg = cfg

    def process(self, corpus: list[tuple[str, tuple[str, ...], tuple[str, ...]]]):
        # sorted by pair id: the gathered list's order depends on the runner
        pairs = sorted((pid, src, tgt) for pid, src, tgt in corpus if src and tgt)
        if not pairs:
            return
        links = eflomal_align([(src, tgt) for _, src, tgt in pairs], self.cfg)
        for (pair_id, _, _), pair_links in zip(pairs, links, strict=True):
            yield pair_id, pair_links


class AlignStatistically(beam.PTransform):
    """rows -> ``(pair_id, links)`` from eflomal trained once on all rows (and the extra corpus)."""

    def __init__(self, cfg: EflomalConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, rows):
        return (
            rows
            # (pair_id, src_tokens, tgt_tokens)
            | "ToTokens" >> beam.Map(_tokens)
            # one element: the whole corpus
            | "GatherCorpus" >> beam.combiners.ToList()
            | "RunEflomal" >> beam.ParDo(EflomalFn(self.cfg))
        )


class AlignWords(beam.PTransform):
    """Adds word alignments to rows; returns ``rows`` plus ``dead_letter``."""

    def __init__(self, cfg: AlignConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, rows):
        side = {}
        if self.cfg.statistical != "off":
            pair_id_to_links = rows | "AlignStatistically" >> AlignStatistically(self.cfg.eflomal)
            side["statistical"] = beam.pvalue.AsDict(pair_id_to_links)
        return (
            rows
            | "BatchPairs" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.cfg.batch_size)
            | "AlignBatches"
            >> beam.ParDo(AlignBatchFn(self.cfg, Shared()), **side).with_outputs(DEAD_LETTER_TAG, main="rows")
        )
