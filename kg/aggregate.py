"""AggregateTriples: records -> KB-linked triples, one per (subject, relation, object).

Linking and merging are `relbridge.models.triples.aggregate_triples`, the code
of ``relbridge triples``. A triple's mentions all share its relation, so the
records are grouped by relation and each group is aggregated at once (in a
stable order: file, line, sentence, spans), giving the same triples as
``relbridge triples`` over the same records. The KB loads once per worker.
"""

from __future__ import annotations

from collections import Counter

import apache_beam as beam

from relbridge.models.triples import TriplesConfig, aggregate_triples


def record_order(record: dict) -> tuple:
    return (
        record.get("source_file", ""),
        record.get("line", 0),
        record.get("sentence_in_line", 0),
        tuple(record.get("subject_span", ())),
        tuple(record.get("object_span", ())),
    )


class AggregateRelationFn(beam.DoFn):
    """Aggregates one relation's records; yields triples and, tagged ``counts``, their counts."""

    def __init__(self, cfg: TriplesConfig, kb: str | None):
        self.cfg = cfg
        self.kb_path = kb
        self._kb = None

    def setup(self):
        if self.kb_path:
            from relbridge.data_specs.formats import load_kb

            self._kb = load_kb(self.kb_path)

    def process(self, relation_records):
        _, records = relation_records
        ordered = sorted(records, key=record_order)
        triples, counts = aggregate_triples(
            ((f"{r.get('source_file')}:{r.get('line')}", r) for r in ordered), self.cfg, self._kb
        )
        yield from triples
        yield beam.pvalue.TaggedOutput(
            "counts", Counter({f"triples:{k}": v for k, v in counts.items()})
        )


class AggregateTriples(beam.PTransform):
    """Returns a tagged result: ``triples`` (dicts) and ``counts``."""

    def __init__(self, cfg: TriplesConfig, kb: str | None = None):
        super().__init__()
        self.cfg = cfg
        self.kb = kb

    def expand(self, records):
        return (
            records
            | "ByRelation" >> beam.Map(lambda r: (r["relation"], r))
            | "GroupByRelation" >> beam.GroupByKey()
            | "Aggregate"
            >> beam.ParDo(AggregateRelationFn(self.cfg, self.kb)).with_outputs(
                "counts", main="triples"
            )
        )
