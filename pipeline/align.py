"""AlignWords: word alignment of each tokenised sentence pair.

Pairs are grouped into batches with `BatchElements` and embedded together by
`relbridge.alignment`'s `WordAligner`; the encoder is loaded once per worker
process (`beam.utils.shared.Shared`) in `DoFn.setup`, never pickled. A pair the
aligner cannot align (an empty side after subword tokenisation, say) goes to
the dead-letter output with the aligner's reason.

With ``AlignConfig.statistical`` on, eflomal also runs over the corpus
(`AlignStatistically`): every aligned pair and its neural links are gathered
into one list per chunk (a single chunk up to ``EflomalConfig.chunk_pairs``
pairs, else a hash partition by pair id), since eflomal learns from all of a
chunk's pairs together and may take the neural links as priors; chunks train
in parallel on different workers. Its links are joined back to the rows by
pair id (``CoGroupByKey``, so no worker holds every pair's links) and merged
pair by pair (`alignment.aligner.merge_links`); the neural step's dead letters
pass through the join unchanged, so the stage still has one ``rows`` and one
``dead_letter`` output.

    rows, dead = rows | AlignWords(AlignConfig(method="argmax", layer=6))
    rows, dead = rows | AlignWords(aligner_config("relbridge.default.v3"))  # + eflomal
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Iterable
from dataclasses import replace

import apache_beam as beam
from apache_beam.utils.shared import Shared

from relbridge.alignment.aligner import AlignConfig, WordAligner, merge_links
from relbridge.alignment.statistical import EflomalConfig, eflomal_align
from relbridge.data_specs.schema import ShardRow
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG, reject
from relbridge.pipeline.heap import TrimsHeapPerBundle
from relbridge.pipeline.progress import Progress

logger = logging.getLogger(__name__)


class _SharedAligner:
    """A weak-referenceable holder for the per-process aligner."""

    def __init__(self, aligner: WordAligner):
        self.aligner = aligner


class AlignBatchFn(TrimsHeapPerBundle, beam.DoFn):
    """Aligns a batch of rows with the neural aligner; emits each row with its links, or a dead letter."""

    def __init__(self, cfg: AlignConfig, shared: Shared, fallback_method: str = ""):
        self.cfg = cfg
        self._shared = shared
        self.fallback_method = fallback_method
        self.aligned = beam.metrics.Metrics.counter(self.__class__, "aligned_pairs")
        self.failed = beam.metrics.Metrics.counter(self.__class__, "unaligned_pairs")
        self.links = beam.metrics.Metrics.counter(self.__class__, "links")

    def setup(self):
        cfg = self.cfg
        self._aligner = self._shared.acquire(
            lambda: _SharedAligner(WordAligner(cfg)), tag=repr(cfg)
        ).aligner
        self._progress = Progress("AlignWords", "pairs")

    def process(self, batch: list[ShardRow]):
        self.trim_heap()  # the pair-id shuffle's input has arrived: free what parsing it left
        results = self._aligner.align_batch([(row.src_tokens, row.tgt_tokens) for row in batch])
        self._progress.add(len(batch))
        for row, result in zip(batch, results, strict=True):
            if result.links is None:
                self.failed.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG, reject("AlignWords", result.error, row)
                )
                continue
            self.aligned.inc()
            self.links.inc(len(result.links))
            fallback = result.by_method[self.fallback_method] if self.fallback_method else ()
            yield replace(
                row,
                alignment=tuple(sorted(result.links)),
                fallback_alignment=tuple(sorted(fallback)),
            )


class MergeLinksFn(beam.DoFn):
    """Merges eflomal's links into neurally aligned rows; passes dead letters through.

    Elements come from a ``CoGroupByKey`` on pair id: ``(key, {"row": [ShardRow],
    "links": [eflomal links], "dead": [dead letter]})``; dead letters arrive
    under keys of their own.
    """

    def __init__(self, how: str):
        self.how = how
        self.missing = beam.metrics.Metrics.counter(
            self.__class__, "pairs_without_statistical_links"
        )

    def process(self, element: tuple[str, dict]):
        _, groups = element
        for letter in groups.get("dead", ()):
            yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, letter)
        links, rows = list(groups.get("links", ())), list(groups.get("row", ()))
        if len(rows) > 1 or len(links) > 1:  # ReadBitext makes ids unique: never share links
            for row in rows:
                reason = f"pair id {row.pair_id} is shared by {len(rows)} rows"
                yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, reject("AlignWords", reason, row))
            return
        for row in rows:
            if not links:
                self.missing.inc()
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER_TAG, reject("AlignWords", "eflomal gave this pair no links", row)
                )
                continue
            merged = merge_links(row.alignment, [tuple(link) for link in links[0]], self.how)
            yield replace(row, alignment=tuple(sorted(merged)))


def _dead_letter_key(letter: dict) -> tuple[str, dict]:
    """A join key of its own for a dead letter (it has no eflomal links to meet)."""
    return "dead:" + json.dumps(letter, sort_keys=True, default=str), letter


def chunk_of(pair_id: str, n_pairs: int, chunk_pairs: int) -> int:
    """The eflomal chunk of a pair: a stable hash of its id over ``ceil(n / chunk)`` chunks."""
    chunks = math.ceil(n_pairs / chunk_pairs) if chunk_pairs else 1
    return zlib.crc32(pair_id.encode("utf-8")) % max(1, chunks)


def _tokens_and_links(row: ShardRow) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple]:
    return row.pair_id, tuple(row.src_tokens), tuple(row.tgt_tokens), tuple(row.alignment)


class EflomalFn(beam.DoFn):
    """Trains eflomal on one chunk of the corpus and emits ``(pair_id, links)``.

    An element is ``(chunk, pairs)``, the pairs being ``(pair_id, src_tokens,
    tgt_tokens, neural_links)`` tuples; the neural links become priors when
    ``cfg.neural_priors``.
    """

    def __init__(self, cfg: EflomalConfig):
        self.cfg = cfg
        self.chunks = beam.metrics.Metrics.counter(self.__class__, "eflomal_chunks")

    def process(self, element: tuple[int, Iterable[tuple]]):
        _, corpus = element
        # sorted by pair id: the grouped order depends on the runner
        pairs = sorted(p for p in corpus if p[1] and p[2])
        if not pairs:
            return
        self.chunks.inc()
        priors = [p[3] for p in pairs] if self.cfg.neural_priors else None
        links = eflomal_align([(p[1], p[2]) for p in pairs], self.cfg, priors)
        for (pair_id, *_), pair_links in zip(pairs, links, strict=True):
            yield pair_id, pair_links


class AlignStatistically(beam.PTransform):
    """Aligned rows -> ``(pair_id, links)`` from eflomal trained on each chunk of them."""

    def __init__(self, cfg: EflomalConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, rows):
        chunk_pairs = self.cfg.chunk_pairs
        # (pair_id, src_tokens, tgt_tokens, neural_links)
        pairs = rows | "ToTokensAndLinks" >> beam.Map(_tokens_and_links)
        size = pairs | "CountPairs" >> beam.combiners.Count.Globally()
        return (
            pairs
            | "AssignChunks"
            >> beam.Map(
                lambda p, n: (chunk_of(p[0], n, chunk_pairs), p), n=beam.pvalue.AsSingleton(size)
            )
            | "GatherChunks" >> beam.GroupByKey()
            | "RunEflomal" >> beam.ParDo(EflomalFn(self.cfg))
        )


def with_fallback(cfg: AlignConfig, fallback_method: str) -> AlignConfig:
    """``cfg`` computing ``fallback_method`` too (in ``also``), unless it already does.

    `PipelineConfig` applies it when it is built, so the align config it saves
    (``pipeline_config.json``) and hashes into the run id is the one the workers run.
    """
    if fallback_method and fallback_method not in cfg.methods:
        return replace(cfg, also=(*cfg.also, fallback_method))
    return cfg


class AlignWords(beam.PTransform):
    """Adds word alignments to rows; returns ``rows`` plus ``dead_letter``.

    With ``fallback_method`` (e.g. ``"itermax"``, `ProjectConfig.fallback_method`)
    the aligner also computes that method and rows carry its links in
    ``fallback_alignment``, for projection to use where the main links are silent.
    """

    def __init__(self, cfg: AlignConfig, fallback_method: str = ""):
        super().__init__()
        self.cfg = with_fallback(cfg, fallback_method)
        self.fallback_method = fallback_method

    def expand(self, rows):
        # Fixed-size batches: BatchElements' adaptive sizing settles at 30-70
        # pairs, since its fixed-cost model sees no per-call overhead, but the
        # aligner packs forward passes better from more sentences (32 -> 128
        # pairs per call: ~1.2x). A bundle's last batch may be smaller.
        neural = (
            rows
            | "BatchPairs"
            >> beam.BatchElements(
                min_batch_size=self.cfg.batch_size, max_batch_size=self.cfg.batch_size
            )
            | "AlignBatches"
            >> beam.ParDo(AlignBatchFn(self.cfg, Shared(), self.fallback_method)).with_outputs(
                DEAD_LETTER_TAG, main="rows"
            )
        )
        if self.cfg.statistical == "off":
            return neural
        # (pair_id, eflomal links)
        links = neural.rows | "AlignStatistically" >> AlignStatistically(self.cfg.eflomal)
        return (
            {
                "row": neural.rows | "KeyRows" >> beam.Map(lambda row: (row.pair_id, row)),
                "links": links,
                "dead": neural[DEAD_LETTER_TAG] | "KeyDeadLetters" >> beam.Map(_dead_letter_key),
            }
            | "JoinByPairId" >> beam.CoGroupByKey()
            | "MergeStatistical"
            >> beam.ParDo(MergeLinksFn(self.cfg.statistical)).with_outputs(
                DEAD_LETTER_TAG, main="rows"
            )
        )
