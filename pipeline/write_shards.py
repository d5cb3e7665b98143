"""WriteShards: Parquet shards, the dead-letter JSONL, ``stats.json``, ``COMPLETED``.

Layout of the output directory (any Beam filesystem path, gs:// included)::

    shards/part-<run>-SSSSS-of-NNNNN.parquet   rows in data_specs.SHARD_SCHEMA
    dead_letter/part-<run>-SSSSS-of-NNNNN.jsonl  rejected records, with reasons
    pipeline_config.json                        resolved config (written by main)
    stats.json                                  counts; written after the shards
    COMPLETED                                   written last: the output is whole

``<run>`` identifies the input and config, so a rerun overwrites its own files
and a refresh with new input adds files beside the old ones.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import WriteToParquet

from relbridge.data_specs.schema import SCHEMA_VERSION, SHARD_SCHEMA
from relbridge.pipeline.dead_letter import to_json
from relbridge.pipeline.stats import SumCountsFn, dead_letter_stats, row_stats

logger = logging.getLogger(__name__)

COMPLETED = "COMPLETED"
STATS = "stats.json"


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
        skipped_counts = pcolls["skipped"] | "CountSkipped" >> beam.Map(
            lambda _: Counter(skipped_existing=1)
        )
        shard_files = (
            rows
            | "Reshuffle" >> beam.Reshuffle()
            | "ToParquetRows" >> beam.Map(lambda row: row.to_row())
            | "WriteParquet"
            >> WriteToParquet(
                self.cfg.path("shards", f"part-{self.cfg.run_id}"),
                schema=SHARD_SCHEMA,
                file_name_suffix=".parquet",
                num_shards=self.cfg.num_shards,
            )
        )
        dead_letter_files = (
            dead
            | "DeadLettersToJson" >> beam.Map(to_json)
            | "WriteDeadLetters"
            >> beam.io.WriteToText(
                self.cfg.path("dead_letter", f"part-{self.cfg.run_id}"), file_name_suffix=".jsonl"
            )
        )
        row_counts = rows | "CountRows" >> beam.Map(row_stats)
        dead_counts = dead | "CountDeadLetters" >> beam.Map(dead_letter_stats)
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
