"""WriteShards: Parquet round trip, dead letters and the run's stats.json."""

import glob
import json
import os
from dataclasses import replace
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.parquetio import ReadFromParquet
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from relbridge.data_specs import SHARD_SCHEMA, Mention, ProjectedMention, RelationInstance, ShardRow
from relbridge.data_specs.schema import char_span_to_words, token_offsets
from relbridge.pipeline.dead_letter import dead_letter
from relbridge.pipeline import write_shards
from relbridge.pipeline.write_shards import (
    COMPLETED, STATS, WriteConfig, WriteShards, pack_chunk, parquet_bytes, row_line,
    shard_of, split_chunk, unpack_chunk,
)  # fmt: skip


def make_row(i: int) -> ShardRow:
    return ShardRow(
        pair_id=f"toy:{i}",
        corpus="toy",
        source_file="toy.tsv",
        line=i,
        src_lang="en",
        tgt_lang="de",
        src_text=f"A{i} likes B{i}",
        tgt_text=f"A{i} mag B{i}",
        src_tokens=(f"A{i}", "likes", f"B{i}"),
        tgt_tokens=(f"A{i}", "mag", f"B{i}"),
        alignment=((0, 0), (1, 1), (2, 2)),
        src_mentions=(Mention(0, 1, "a", "PER", f"A{i}"), Mention(2, 3, "b", "PER", f"B{i}")),
        relations=(RelationInstance(0, 1, "likes"), RelationInstance(1, 0, "NA", distant=False)),
    )


def test_shards_round_trip_and_stats_add_up(tmp_path):
    rows = [make_row(i) for i in range(1, 6)]
    dead = [dead_letter("Tokenize", "empty", "toy.tsv", 9, {"src": ""})]
    cfg = WriteConfig(str(tmp_path), run_id="t1", num_shards=2)
    with TestPipeline() as p:
        _ = {
            "rows": p | "Rows" >> beam.Create(rows),
            "dead_letter": p | "Dead" >> beam.Create(dead),
            "input_records": p | "Inputs" >> beam.Create([1] * 7),
            "skipped": p | "Skipped" >> beam.Create(["toy:0"]),
        } | WriteShards(cfg)

    shard_files = sorted(glob.glob(str(tmp_path / "shards" / "part-t1-*.parquet")))
    assert len(shard_files) == 2
    for name in shard_files:
        assert pq.read_schema(name).equals(SHARD_SCHEMA, check_metadata=False)
    stats = json.loads((tmp_path / STATS).read_text())
    assert (
        stats["input_records"],
        stats["rows"],
        stats["dead_letters"],
        stats["skipped_existing"],
    ) == (7, 5, 1, 1)
    assert stats["balanced"] is True
    assert stats["counts"]["label:likes"] == 5 and stats["counts"]["na_instances"] == 5
    assert not os.path.exists(tmp_path / COMPLETED)  # the output folder writes it (publish)
    letters = [
        json.loads(x)
        for f in glob.glob(str(tmp_path / "dead_letter" / "*.jsonl"))
        for x in Path(f).read_text().splitlines()
    ]
    assert letters == [
        {
            "stage": "Tokenize",
            "reason": "empty",
            "source_file": "toy.tsv",
            "line": 9,
            "record": {"src": ""},
        }
    ]

    with TestPipeline() as p:
        back = (
            p
            | ReadFromParquet(str(tmp_path / "shards" / "*.parquet"))
            | beam.Map(ShardRow.from_row)
        )
        assert_that(back, equal_to(rows))


def test_unbalanced_counts_are_flagged(tmp_path):
    cfg = WriteConfig(str(tmp_path), run_id="t2", num_shards=1)
    with TestPipeline() as p:
        _ = {
            "rows": p | "Rows" >> beam.Create([make_row(1)]),
            "dead_letter": p | "Dead" >> beam.Create([]),
            "input_records": p | "Inputs" >> beam.Create([1, 1]),
            "skipped": p | "Skipped" >> beam.Create([]),
        } | WriteShards(cfg)
    assert json.loads((tmp_path / STATS).read_text())["balanced"] is False


def test_token_offsets_map_char_spans_to_words():
    text = "Die Sacramento Heatwave ist in Kalifornien."
    tokens = ["Die", "Sacramento", "Heatwave", "ist", "in", "Kalifornien", "."]
    offsets = token_offsets(text, tokens)
    assert offsets[5] == (31, 42)
    assert char_span_to_words(offsets, 4, 23) == (1, 3)
    assert char_span_to_words(offsets, 100, 101) is None


def test_row_lines_decode_to_the_same_rows_in_any_batch_size(monkeypatch):
    """A shard's rows travel as JSON lines; the file holds exactly the rows, batch or not."""
    rows = [make_row(i) for i in range(5)]
    rows[1] = replace(
        rows[1],
        tgt_text="Zoë mag 北京\n",
        tgt_tokens=("Zoë", "mag", "北京"),
        tgt_mentions=(ProjectedMention(0, 1, "a", "PER", "Zoë", 0, 0.8125),),
        doc_id="d1",
        src_sentence_ids=(0,),
        tgt_sentence_ids=(0, 1),
        sentence_score=0.375,  # float32 in the schema: exact
    )
    lines = [row_line(r) for r in rows]
    assert not any(b"\n" in line for line in lines)

    whole = parquet_bytes(lines)
    monkeypatch.setattr(write_shards, "DECODE_BATCH", 2)
    batched = parquet_bytes(lines)
    assert batched == whole
    table = pq.read_table(pa.BufferReader(batched))
    assert [ShardRow.from_row(r) for r in table.to_pylist()] == rows


def test_chunks_split_by_shard_keep_every_key_and_line():
    """Packed chunks survive odd keys, and splitting one by shard loses and adds nothing."""
    items = [(f"k{i}\t\n\x00é", f'{{"i":{i},"s":"a\\tb"}}'.encode()) for i in range(40)]
    blob = pack_chunk(items)
    assert len(blob) < sum(len(k.encode()) + len(v) for k, v in items)
    assert unpack_chunk(blob) == items
    assert unpack_chunk(pack_chunk([])) == []

    parts = list(split_chunk(blob, 3))
    assert [i for i, _ in parts] == sorted({shard_of(k, 3) for k, _ in items})
    regrouped = [(i, kv) for i, part in parts for kv in unpack_chunk(part)]
    assert all(shard_of(k, 3) == i for i, (k, _) in regrouped)
    assert sorted(kv for _, kv in regrouped) == sorted(items)


def test_split_stage_trims_the_heap_once_a_bundle(monkeypatch):
    """The shuffle's parse leftovers are returned on a bundle's first chunk, not on every one."""
    from relbridge.pipeline import heap

    calls = []
    monkeypatch.setattr(heap, "release_free_heap", lambda: calls.append(1))
    fn = write_shards.SplitChunksFn()
    blob = pack_chunk([("a", b'{"x":1}'), ("b", b'{"x":2}')])
    for bundle in range(2):
        fn.start_bundle()
        out = [kv for _ in range(3) for kv in fn.process(blob, 2)]
        assert sorted(kv for _, part in out for kv in unpack_chunk(part)) == sorted(
            [("a", b'{"x":1}'), ("b", b'{"x":2}')] * 3
        )
        assert len(calls) == bundle + 1
