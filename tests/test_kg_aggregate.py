"""AggregateTriples (kg/aggregate.py): bucketed aggregation equals `relbridge triples` over all records."""

import json
import random
from collections import Counter

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from relbridge.kg.aggregate import BUCKET_INPUT_BYTES, AggregateTriples, buckets_for, record_order
from relbridge.models.triples import TriplesConfig, aggregate_triples


def _records(n=300, seed=3):
    rng = random.Random(seed)
    names = ["Angela Merkel", "angela  merkel", "Berlin", "Siemens", "Werner", "Paris", "ANGELA MERKEL"]
    relations = ["per:city_of_birth", "org:founded_by", "NA"]
    out = []
    for i in range(n):
        subj, obj = rng.sample(names, 2)
        out.append(
            {
                "source_file": f"in/{i % 3}.txt", "line": i // 3 + 1, "sentence": 0,
                "subject": subj, "subject_span": [0, len(subj)], "object": obj,
                "object_span": [len(subj) + 1, len(subj) + 1 + len(obj)],
                "relation": rng.choice(relations), "subject_type": "", "object_type": "",
                "confidence": round(rng.random(), 4), "model": "m",
            }
        )  # fmt: skip
    return out


def test_bucketed_triples_and_counts_equal_one_pass_over_all_records(tmp_path):
    records = _records()
    cfg = TriplesConfig(min_confidence=0.2, aggregate="noisy-or", max_evidence=2)
    expected, expected_counts = aggregate_triples(
        ((f"{r['source_file']}:{r['line']}", r) for r in sorted(records, key=record_order)), cfg
    )
    assert len(expected) > 5 and expected_counts["below_threshold"] and expected_counts["no_relation"]
    want_counts = Counter({f"triples:{k}": v for k, v in expected_counts.items() if v})
    with TestPipeline() as p:
        result = (
            p
            | beam.Create(records[::-1])  # arrival order must not matter
            | AggregateTriples(cfg, None, str(tmp_path / "spill"), buckets=7)
        )
        assert_that(
            result.triples | "ToJson" >> beam.Map(json.dumps, sort_keys=True),
            equal_to([json.dumps(t, sort_keys=True) for t in expected]),
            label="Triples",
        )
        summed = result.counts | beam.CombineGlobally(sum, Counter())
        assert_that(summed | beam.Map(lambda c: +c), equal_to([want_counts]), label="Counts")
    spilled = list((tmp_path / "spill").iterdir())
    assert len({f.name[:5] for f in spilled}) > 1  # the records did spread over buckets


def test_buckets_follow_the_input_size():
    assert buckets_for(0) == 1
    assert buckets_for(BUCKET_INPUT_BYTES) == 1
    assert buckets_for(10 * BUCKET_INPUT_BYTES + 1) == 11
    assert buckets_for(10**15) == 4096
