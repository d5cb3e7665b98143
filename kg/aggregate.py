"""AggregateTriples: records -> KB-linked triples, one per (subject, relation, object), in bounded memory.

Linking and merging are `relbridge.models.triples`, the code of ``relbridge
triples``. Which triple a record joins depends on the record and the KB alone
(`TripleKeys`), so the records are sorted into buckets by their triple before
any merging:

1. ``SpillRecords``: batches of records are linked, and each record is written
   as a JSON line into its bucket's spill file (``hash(triple) % buckets``)
   under ``spill``; the step yields ``(bucket, file)`` per file it wrote.
2. ``GroupFilesByBucket``: the shuffle carries file names, not records.
3. ``AggregateBuckets``: a bucket's records are read, put in a stable order
   (file, line, sentence, spans) and aggregated at once. Every record of a
   triple is in the triple's bucket, so the triples equal those of ``relbridge
   triples`` over all the records, and the buckets' counts add up to its counts.

Why not group the records themselves: grouping by relation held every record
of a relation in one worker's memory (peak RSS 1.8 GB at 10k input lines, 9.1 GB
at 100k, `benchmarks/bench_kg_build.py`), and one relation was one hot key. A
bucket holds the records of about `BUCKET_INPUT_BYTES` of input, so memory
follows the bucket size, not the corpus (`buckets_for`). The caller deletes
``spill`` once the job has finished.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections import Counter

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from relbridge.models.triples import TriplesConfig, TripleKeys, aggregate_triples

BUCKET_INPUT_BYTES = 256 << 10
"""Input text per bucket: 256 KiB is about 2,000 news sentences. A bucket's records are
held at once, and a model that finds many names writes 30 records per sentence (the
tiny test model does), so a bucket of 2 MiB held 300,000 of them (about 400 MiB)."""

MAX_BUCKETS = 4096


def buckets_for(input_bytes: int) -> int:
    """How many buckets keep each near `BUCKET_INPUT_BYTES` of input (at least 1)."""
    return max(1, min(MAX_BUCKETS, math.ceil(input_bytes / BUCKET_INPUT_BYTES)))


def record_order(record: dict) -> tuple:
    return (
        record.get("source_file", ""),
        record.get("line", 0),
        record.get("sentence_in_line", 0),
        tuple(record.get("subject_span", ())),
        tuple(record.get("object_span", ())),
    )


def bucket_of(key: tuple | None, record: dict, buckets: int) -> int:
    """The record's bucket: by its triple's key, or by its line when it makes no triple."""
    basis = key if key is not None else (record.get("source_file", ""), record.get("line", 0))
    digest = hashlib.sha1(json.dumps(basis, default=str).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


class _WithKeys(beam.DoFn):
    """Holds the KB and its linker (`TripleKeys`), loaded once per worker."""

    def __init__(self, cfg: TriplesConfig, kb: str | None):
        self.cfg = cfg
        self.kb_path = kb
        self._kb = None
        self._keys = None

    def setup(self):
        if self.kb_path:
            from relbridge.data_specs.kb_format import load_kb

            self._kb = load_kb(self.kb_path)
        self._keys = TripleKeys(self.cfg, self._kb)


class SpillRecordsFn(_WithKeys):
    """Writes a batch of records into their buckets' spill files; yields ``(bucket, path)``."""

    def __init__(self, cfg: TriplesConfig, kb: str | None, spill: str, buckets: int):
        super().__init__(cfg, kb)
        self.spill = spill
        self.buckets = buckets

    def process(self, batch):
        lines: dict[int, list[str]] = {}
        for record in batch:
            _, key, _ = self._keys(record)
            bucket = bucket_of(key, record, self.buckets)
            lines.setdefault(bucket, []).append(json.dumps(record, ensure_ascii=False))
        for bucket, texts in sorted(lines.items()):
            path = FileSystems.join(self.spill, f"{bucket:05d}-{uuid.uuid4().hex}.jsonl")
            with FileSystems.create(path) as f:
                f.write(("\n".join(texts) + "\n").encode("utf-8"))
            yield bucket, path


class AggregateBucketFn(_WithKeys):
    """Aggregates one bucket's records; yields triples and, tagged ``counts``, their counts."""

    def process(self, bucket_paths):
        _, paths = bucket_paths
        records = []
        for path in sorted(paths):
            with FileSystems.open(path) as f:
                records += [json.loads(line) for line in f.read().decode("utf-8").splitlines()]
        records.sort(key=record_order)
        triples, counts = aggregate_triples(
            ((f"{r.get('source_file')}:{r.get('line')}", r) for r in records),
            self.cfg,
            self._kb,
            self._keys,
        )
        yield from triples
        yield beam.pvalue.TaggedOutput(
            "counts", Counter({f"triples:{k}": v for k, v in counts.items()})
        )


class AggregateTriples(beam.PTransform):
    """Returns a tagged result: ``triples`` (dicts) and ``counts``.

    Args:
      cfg: thresholds and the aggregation.
      kb: the KB directory (links entities, marks known facts), or None.
      spill: a folder for the spill files (any Beam filesystem; deleted by the caller).
      buckets: how many buckets (`buckets_for` the input's size).
    """

    def __init__(self, cfg: TriplesConfig, kb: str | None, spill: str, buckets: int = 1):
        super().__init__()
        self.cfg = cfg
        self.kb = kb
        self.spill = spill
        self.buckets = buckets

    def expand(self, records):
        return (
            records
            | "BatchRecords" >> beam.BatchElements(min_batch_size=256, max_batch_size=20_000)
            | "SpillRecords" >> beam.ParDo(SpillRecordsFn(self.cfg, self.kb, self.spill, self.buckets))
            | "GroupFilesByBucket" >> beam.GroupByKey()
            | "AggregateBuckets"
            >> beam.ParDo(AggregateBucketFn(self.cfg, self.kb)).with_outputs(
                "counts", main="triples"
            )
        )
