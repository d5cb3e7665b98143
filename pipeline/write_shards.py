"""WriteShards: Parquet shards, the dead-letter JSONL and the run's ``stats.json``.

Layout of the output directory (any Beam filesystem path, gs:// included)::

    shards/part-<run>-<hash>-SSSSS-of-NNNNN.parquet   rows in data_specs.SHARD_SCHEMA
    dead_letter/part-<run>-<hash>-SSSSS-of-NNNNN.jsonl  rejected records, with reasons
    pipeline_config.json          resolved config (`pipeline.output`)
    stats.json                    counts; written after the shards
    COMPLETED                     written last (`pipeline.output`): the output is whole

``<run>`` identifies the input and config, so a refresh with new input adds
files beside the old ones. ``<hash>`` is a hash of the file's bytes: a file
name always means the same content, also where a rerun's content differs
(eflomal cannot be seeded, see `alignment.statistical`).

Shards are written reproducibly: a row goes to shard ``crc32(pair_id) % N``
and each shard holds its rows sorted by pair id (dead letters: by file and
line), so the same rows give the same bytes whatever the runner's bundling
and worker count. ``N`` is ``num_shards``, or one per `ROWS_PER_SHARD` rows.
Each shard is built in one worker's memory: its rows arrive together from the
``GroupByKey``, so the shard size, not the corpus, bounds a worker's memory.

Elements cross that shuffle *packed*: each element becomes one JSON line, and
`CHUNK_ROWS` lines of a bundle are zlib-compressed together (`pack_chunk`; a row
costs about 350 bytes there, against 650 compressed alone and 1,300 pickled).
Once the shard count is known, each chunk is split into one chunk per shard
(`split_chunk`). Beam's local runner hands each worker its whole share of a
shuffle as one message, held until the stage ends, so the bytes per row, not
only the rows per shard, decide how a worker's memory grows with the corpus.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from relbridge.data_specs.schema import SCHEMA_VERSION, SHARD_SCHEMA, ShardRow
from relbridge.pipeline.dead_letter import to_json
from relbridge.pipeline.heap import TrimsHeapPerBundle
from relbridge.pipeline.staging import COMPLETED, STATS  # noqa: F401 (COMPLETED: for readers)
from relbridge.pipeline.stats import SumCountsFn, dead_letter_stats, row_stats, summed
from relbridge.runtime.devices import release_free_heap

logger = logging.getLogger(__name__)

ROWS_PER_SHARD = 10_000
"""Rows per shard when ``num_shards`` is 0 (about 4 MB of Parquet). A row is about 14 KB as
Python objects and 1.7 KB as a JSON line; a writing worker holds its shard as JSON lines
and decodes them into Arrow `DECODE_BATCH` at a time."""

DECODE_BATCH = 1_000
"""JSON lines decoded into Arrow at a time when a shard is written."""

CHUNK_ROWS = 500
"""Elements compressed together before the shard shuffle (`pack_chunk`)."""


@dataclass(frozen=True)
class WriteConfig:
    """Where and how shards are written.

    Attributes:
      output: output directory.
      run_id: a short id of this run's input and config (file-name part).
      num_shards: number of Parquet files; 0 lets the runner decide.
    """

    output: str
    run_id: str = "run"
    num_shards: int = 0

    def __post_init__(self):
        if self.num_shards < 0:
            raise ValueError(f"num_shards must be >= 0, got {self.num_shards}")

    def path(self, *parts: str) -> str:
        return FileSystems.join(self.output, *parts)


class WriteStatsFn(beam.DoFn):
    """Writes the run's own ``stats.json``.

    Runs once, after both sinks have finalised their files (it takes their file
    names as side inputs). The folder it writes to is a staging folder:
    `pipeline.output.OutputFolder.publish` turns these counts into the whole
    folder's and writes ``COMPLETED``.
    """

    def __init__(self, cfg: WriteConfig):
        self.cfg = cfg

    def process(self, counts: dict[str, int], input_records: int, shard_files, dead_letter_files):
        stats = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.cfg.run_id,
            "input_records": input_records,
            "rows": counts.get("rows", 0),
            "dead_letters": counts.get("dead_letters", 0),
            "counts": counts,
            "shard_files": sorted(shard_files),
            "dead_letter_files": sorted(dead_letter_files),
        }
        stats["skipped_existing"] = counts.get("skipped_existing", 0)
        accounted = stats["rows"] + stats["dead_letters"] + stats["skipped_existing"]
        stats["balanced"] = stats["input_records"] == accounted
        if not stats["balanced"]:
            logger.error("record counts do not add up: %s", stats)
        with FileSystems.create(self.cfg.path(STATS)) as f:
            f.write(json.dumps(stats, indent=2, sort_keys=True).encode())
        yield stats


def shard_of(key: str, n: int) -> int:
    """The shard of an element: a stable hash of its key (unlike a random reshuffle)."""
    return zlib.crc32(key.encode("utf-8")) % n


def shard_name(prefix: str, index: int, n: int, data: bytes, suffix: str) -> str:
    """``<prefix>-<hash of data>-SSSSS-of-NNNNN<suffix>``: the name says what the file holds."""
    return f"{prefix}-{hashlib.sha1(data).hexdigest()[:12]}-{index:05d}-of-{n:05d}{suffix}"


def row_line(row: ShardRow) -> bytes:
    """A row as one JSON line: its `ShardRow.to_row` dict (JSON never holds a raw newline)."""
    return json.dumps(row.to_row(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def letter_line(letter: dict) -> bytes:
    return to_json(letter).encode("utf-8")


def pack_chunk(items: Sequence[tuple[str, bytes]]) -> bytes:
    """(key, JSON line) pairs as one zlib blob of ``<key as JSON> TAB <line>`` lines.

    A JSON string holds no raw tab or newline, so both separators are safe.
    """
    text = b"\n".join(json.dumps(key).encode("utf-8") + b"\t" + line for key, line in items)
    return zlib.compress(text)


def unpack_chunk(blob: bytes) -> list[tuple[str, bytes]]:
    """The (key, JSON line) pairs of a `pack_chunk` blob."""
    text = zlib.decompress(blob)
    if not text:
        return []
    items = []
    for record in text.split(b"\n"):
        key, line = record.split(b"\t", 1)
        items.append((json.loads(key), line))
    return items


def split_chunk(blob: bytes, n: int) -> Iterator[tuple[int, bytes]]:
    """A chunk as one chunk per shard it touches, keyed by shard index."""
    by_shard = defaultdict(list)
    for key, line in unpack_chunk(blob):
        by_shard[shard_of(key, n)].append((key, line))
    for index in sorted(by_shard):
        yield index, pack_chunk(by_shard[index])


def parquet_bytes(lines: Sequence[bytes]) -> bytes:
    """A Parquet file of rows given as JSON lines (`row_line`), decoded `DECODE_BATCH` at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    batches = [
        pa.RecordBatch.from_pylist(
            [json.loads(line) for line in lines[i : i + DECODE_BATCH]], schema=SHARD_SCHEMA
        )
        for i in range(0, len(lines), DECODE_BATCH)
    ]
    table = pa.Table.from_batches(batches, schema=SHARD_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def jsonl_bytes(lines: Sequence[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def row_key(row: ShardRow) -> str:
    return row.pair_id


def letter_key(letter: dict) -> str:
    return f"{letter['source_file']}\x00{letter['line']:012d}\x00{to_json(letter)}"


class SplitChunksFn(TrimsHeapPerBundle, beam.DoFn):
    """`split_chunk` on a worker that has just received its share of the chunks."""

    def process(self, blob: bytes, n: int):
        self.trim_heap()
        yield from split_chunk(blob, n)


class WriteShardFn(beam.DoFn):
    """Writes one shard: its elements sorted by key, under a content-hashed name.

    Each shard starts by returning the free C heap (`release_free_heap`): the
    shuffle's parse leftovers, then the last shard's decoded rows. Without it,
    a worker that writes five 10,000-row shards ended 60-70 MB higher.
    """

    def __init__(self, prefix: str, suffix: str, encode: Callable[[list[bytes]], bytes]):
        self.prefix, self.suffix, self.encode = prefix, suffix, encode

    def process(self, element: tuple[int, Iterable], n: int):
        index, blobs = element
        release_free_heap()
        # (key, line) tuples: a tie in key is broken by the line, so the order is total
        items = sorted(item for blob in blobs if blob is not None for item in unpack_chunk(blob))
        data = self.encode([line for _, line in items])
        path = shard_name(self.prefix, index, n, data, self.suffix)
        with FileSystems.create(path) as f:
            f.write(data)
        yield path


class WriteSortedShards(beam.PTransform):
    """Elements -> files ``prefix-<hash>-SSSSS-of-NNNNN<suffix>``; returns the file names.

    ``key`` orders the elements and picks their shard, ``line`` turns each into
    the JSON line that crosses the shuffle (packed, see the module docstring),
    and ``encode`` turns a shard's lines, in key order, into the file's bytes.
    Every shard index gets a file, an empty one where no element hashes to it.
    """

    def __init__(self, prefix: str, suffix: str, key, line, encode, num_shards: int = 0):
        super().__init__()
        self.prefix, self.suffix, self.key, self.encode = prefix, suffix, key, encode
        self.line, self.num_shards = line, num_shards

    def expand(self, elements):
        fixed, key, line = self.num_shards, self.key, self.line
        # what the runner holds until the shard count is known
        chunks = (
            elements
            | "Line" >> beam.Map(lambda x: (key(x), line(x)))
            | "Batch" >> beam.BatchElements(min_batch_size=CHUNK_ROWS, max_batch_size=CHUNK_ROWS)
            | "Pack" >> beam.Map(pack_chunk)
        )
        n = (
            elements
            | "Count" >> beam.combiners.Count.Globally()
            | "ShardCount" >> beam.Map(lambda c: fixed or max(1, math.ceil(c / ROWS_PER_SHARD)))
        )
        n_side = beam.pvalue.AsSingleton(n)
        keyed = chunks | "KeyByShard" >> beam.ParDo(SplitChunksFn(), n=n_side)
        every_shard = n | "EveryShard" >> beam.FlatMap(lambda n: [(i, None) for i in range(n)])
        return (
            (keyed, every_shard)
            | "Merge" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteFiles"
            >> beam.ParDo(WriteShardFn(self.prefix, self.suffix, self.encode), n=n_side)
        )


class WriteShards(beam.PTransform):
    """Writes rows and dead letters; returns a PCollection with the stats dict.

    Takes a dict ``{"rows": ..., "dead_letter": ..., "input_records": ...,
    "skipped": ..., "counts": ...}``: ``input_records`` holds a 1 per input
    record, ``skipped`` the records and bad lines a refresh skipped because
    earlier runs wrote them (as rows or dead letters), and the optional
    ``counts`` further `Counter`s that stages add to ``stats.json``
    (ProjectLabels' projection counts).
    """

    def __init__(self, cfg: WriteConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, pcolls):
        rows, dead, inputs = pcolls["rows"], pcolls["dead_letter"], pcolls["input_records"]
        skipped_counts = (
            pcolls["skipped"]
            | "CountSkipped" >> beam.Map(lambda _: Counter(skipped_existing=1))
            | summed("SumSkipped")
        )
        prefix = f"part-{self.cfg.run_id}"
        shard_files = rows | "WriteParquet" >> WriteSortedShards(
            self.cfg.path("shards", prefix), ".parquet", row_key, row_line, parquet_bytes,
            self.cfg.num_shards,
        )  # fmt: skip
        dead_letter_files = dead | "WriteDeadLetters" >> WriteSortedShards(
            self.cfg.path("dead_letter", prefix), ".jsonl", letter_key, letter_line, jsonl_bytes
        )
        row_counts = rows | "CountRows" >> beam.Map(row_stats) | summed("SumRowCounts")
        dead_counts = (
            dead | "CountDeadLetters" >> beam.Map(dead_letter_stats) | summed("SumDeadLetterCounts")
        )
        total_inputs = inputs | "SumInputs" >> beam.CombineGlobally(sum)
        stage_counts = (pcolls["counts"],) if "counts" in pcolls else ()
        return (
            (row_counts, dead_counts, skipped_counts, *stage_counts)
            | "MergeCounts" >> beam.Flatten()
            | "SumCounts" >> beam.CombineGlobally(SumCountsFn())
            | "WriteStats"
            >> beam.ParDo(
                WriteStatsFn(self.cfg),
                input_records=beam.pvalue.AsSingleton(total_inputs),
                shard_files=beam.pvalue.AsList(shard_files),
                dead_letter_files=beam.pvalue.AsList(dead_letter_files),
            )
        )
