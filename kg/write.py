"""WriteKg: mention records, triples, N-Quads shards, dead letters, handled lines, stats.

Layout of ``--output`` (any Beam filesystem)::

    records/part-<batch>-SSSSS-of-NNNNN.jsonl   mention records with provenance
    triples/part-<run>-SSSSS-of-NNNNN.jsonl     aggregated triples (all records so far)
    rdf/part-<run>-SSSSS-of-NNNNN.nq            RDF 1.2 N-Quads of the triples (kg load)
    dead_letter/part-<batch>-....jsonl          rejected lines and sentences, with reasons
    handled/part-<batch>-....jsonl              per input file, the line ranges handled
    kg_config.json, stats.json                  resolved config; counts that add up
    COMPLETED                                   written last

``<run>`` is the run id (input and config); ``<batch>`` is the run id for a full
run and a hash of it and the lines already handled for a refresh, so a refresh
adds records beside the old ones while triples and N-Quads, re-aggregated over
all records, replace theirs (`LAYOUT`). The job writes into a staging folder
beside ``--output`` and `KgOutputFolder` publishes it, with the lock, the
atomic swap and ``COMPLETED`` of ``relbridge run``'s outputs
(`relbridge.pipeline.staging`): a failed or killed job leaves the earlier
output whole, a second job into the same folder stops, and a reader never sees
a mix, nor a staged N-Quads file that ``kg load`` would take.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from relbridge.kg.rdf import RdfConfig, to_nquads
from relbridge.pipeline.dead_letter import to_json
from relbridge.pipeline.staging import STATS, Layout, StagedFolder, delete_paths
from relbridge.pipeline.stats import SumCountsFn, dead_letter_stats, summed

logger = logging.getLogger(__name__)

KG_CONFIG = "kg_config.json"
SUFFIX = {"records": ".jsonl", "triples": ".jsonl", "rdf": ".nq", "dead_letter": ".jsonl",
          "handled": ".jsonl"}  # fmt: skip
LAYOUT = Layout(
    data={folder: f"part-*{suffix}" for folder, suffix in SUFFIX.items()},
    files=(KG_CONFIG,),
    kept_on_refresh=("records", "dead_letter", "handled"),  # a refresh adds to these
    extra=("_staging",),  # where kg build staged inside --output before it shared run's staging
)


@dataclass(frozen=True)
class WriteConfig:
    """Attributes: output (the staging folder the job writes into); run_id; batch_id
    (see the module docstring); rdf; num_shards."""

    output: str
    run_id: str
    batch_id: str
    rdf: RdfConfig
    num_shards: int = 0

    def path(self, *parts: str) -> str:
        return FileSystems.join(self.output, *parts)

    def prefix(self, folder: str) -> str:
        name = self.batch_id if folder in LAYOUT.kept_on_refresh else self.run_id
        return self.path(folder, f"part-{name}")


class WriteStatsFn(beam.DoFn):
    """Writes the staged ``stats.json`` once every sink has finalised (their files are side inputs)."""

    def __init__(self, cfg: WriteConfig):
        self.cfg = cfg

    def process(self, counts: dict[str, int], **files):
        stats = stats_of(counts, self.cfg)
        stats["files"] = {k: len(v) for k, v in files.items()}
        with FileSystems.create(self.cfg.path(STATS)) as f:
            f.write(json.dumps(stats, indent=2, sort_keys=True).encode())
        yield stats


def stats_of(counts: dict[str, int], cfg: WriteConfig) -> dict:
    """``stats.json``: the counts and whether they add up.

    ``lines`` = ``lines_read`` + ``lines_blank`` + ``lines_bad`` +
    ``lines_skipped_existing``; the read lines' ``sentences`` =
    ``sentences_extracted`` + their dead letters (``find_mentions``,
    ``extract_relations``); every bad line is a ``read`` dead letter.
    """
    c = Counter(counts)
    sentence_letters = c["dead_letter:find_mentions"] + c["dead_letter:extract_relations"]
    checks = {
        "lines": c["lines"]
        == c["lines_read"] + c["lines_blank"] + c["lines_bad"] + c["lines_skipped_existing"],
        "sentences": c["sentences"] == c["sentences_extracted"] + sentence_letters,
        "bad_lines": c["lines_bad"] == c["dead_letter:read"],
    }
    return {
        "run_id": cfg.run_id,
        "batch_id": cfg.batch_id,
        "graph": cfg.rdf.graph,
        "lines": c["lines"],
        "sentences": c["sentences"],
        "records": c["records"],
        "records_total": c["records"] + c["records_earlier"],
        "triples": c["triples:triples"],
        "dead_letters": c["dead_letters"],
        "counts": dict(sorted(c.items())),
        "checks": checks,
        "balanced": all(checks.values()),
    }


def _write(pcoll, cfg: WriteConfig, folder: str, label: str):
    return pcoll | label >> beam.io.WriteToText(
        cfg.prefix(folder), file_name_suffix=SUFFIX[folder], num_shards=cfg.num_shards
    )


class WriteKg(beam.PTransform):
    """Writes the outputs into the staging folder; returns the stats dict's PCollection.

    Takes ``{"records", "triples", "dead_letter", "handled", "counts"}``:
    new records, all triples, dead letters, the handled line ranges of each
    input file (``{"source_file", "ranges"}``), and `Counter`s of the stages.
    """

    def __init__(self, cfg: WriteConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, pcolls):
        cfg = self.cfg
        files = {
            "records": _write(
                pcolls["records"] | "RecordsToJson" >> beam.Map(json.dumps, ensure_ascii=False),
                cfg, "records", "WriteRecords",
            ),
            "triples": _write(
                pcolls["triples"] | "TriplesToJson" >> beam.Map(json.dumps, ensure_ascii=False),
                cfg, "triples", "WriteTriples",
            ),
            "rdf": _write(
                pcolls["triples"]
                | "ToNQuads" >> beam.Map(lambda t: to_nquads([t], cfg.rdf).decode().rstrip("\n"))
                | "DropEmpty" >> beam.Filter(bool),
                cfg, "rdf", "WriteNQuads",
            ),
            "dead_letter": _write(
                pcolls["dead_letter"] | "DeadLettersToJson" >> beam.Map(to_json),
                cfg, "dead_letter", "WriteDeadLetters",
            ),
            "handled": _write(
                pcolls["handled"] | "HandledToJson" >> beam.Map(json.dumps, ensure_ascii=False),
                cfg, "handled", "WriteHandled",
            ),
        }  # fmt: skip
        letter_counts = (
            pcolls["dead_letter"]
            | "CountDeadLetters" >> beam.Map(dead_letter_stats)
            | summed("SumDeadLetterCounts")
        )
        return (
            (pcolls["counts"], letter_counts)
            | "MergeCounts" >> beam.Flatten()
            | "SumCounts" >> beam.CombineGlobally(SumCountsFn())
            | "WriteStats"
            >> beam.ParDo(
                WriteStatsFn(cfg), **{k: beam.pvalue.AsList(v) for k, v in files.items()}
            )
        )


class KgOutputFolder(StagedFolder):
    """One ``kg build``'s hold on its ``--output`` (`relbridge.pipeline.staging.StagedFolder`).

    ``with KgOutputFolder(output, run_id, overwrite, refresh) as out:`` run the
    job into ``out.stage(batch_id)``, then ``stats = out.publish()``.
    """

    def __init__(self, output: str, run_id: str, overwrite: bool = False, refresh: bool = False):
        super().__init__(output, run_id, LAYOUT, refresh)
        self.overwrite = overwrite

    def check(self) -> None:
        """Refuses to replace another run's output unless ``overwrite``.

        A refresh with ``overwrite`` of another run's output is a full run: the
        other run's records, extracted with other settings, and its handled
        lines are not this run's, so none of them is kept or skipped.
        """
        stats = FileSystems.join(self.output, STATS)
        if not FileSystems.exists(stats):
            return
        with FileSystems.open(stats) as f:
            other = json.loads(f.read()).get("run_id")
        if other == self.run_id:
            return
        if not self.overwrite:
            raise ValueError(
                f"{self.output} holds run {other} (other input or settings): pass --overwrite to "
                "replace it, or choose another --output"
            )
        if self.refresh:
            logger.warning("--overwrite: %s holds run %s, so this refresh starts over",
                           self.output, other)  # fmt: skip
            self.refresh = False

    def publish(self) -> dict:
        """Makes the staged output the output; returns the ``stats.json`` the job wrote."""
        with FileSystems.open(FileSystems.join(self.staging, STATS)) as f:
            stats = json.loads(f.read())
        if self.refresh:  # a refresh adds no empty files beside the old ones, as run's does:
            # one that finds nothing new leaves the handled lines, so the batch id, as they were,
            # and the next such refresh would stage files of the same names again
            staged = LAYOUT.data_files(self.staging, LAYOUT.kept_on_refresh)
            delete_paths([p for p in staged if _size(p) == 0])
        return super().publish(lambda folder, output: stats)


def _size(path: str) -> int:
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes
