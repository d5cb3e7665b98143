"""The relbridge Beam DAG, wired from its stages.

    ReadBitext -> [SkipExisting] -> Tokenize -> LabelWithKb -> AlignWords
      -> ProjectLabels -> WriteShards

Run it with ``relbridge run --corpus ... --kb ... --src-lang en --tgt-lang de
--output DIR [Beam flags]``; any flag we do not know goes to Beam's
`PipelineOptions` (``--runner DataflowRunner --project ... --region ...
--temp_location gs://...``, or ``--direct_running_mode multi_processing``).
Workers get the code as the installed package: on Dataflow pass
``--setup_file`` pointing at a ``setup.py`` shim or ``--sdk_location``/
``--extra_package`` with a wheel built from ``pyproject.toml`` (see README).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from relbridge.pipeline.align import AlignWords
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG
from relbridge.pipeline.ingest import ReadBitext, open_text
from relbridge.pipeline.label import LabelWithKb, read_kb
from relbridge.pipeline.options import PipelineConfig, add_arguments, config_from_args
from relbridge.pipeline.project import ProjectLabels
from relbridge.pipeline.tokenize import Tokenize
from relbridge.pipeline.write_shards import COMPLETED, STATS, WriteShards
from relbridge.runtime.encoders import check_model_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handled:
    """Input that earlier runs into the same output already handled (refresh mode).

    A refresh processes only new input: pairs already in a shard, and input
    lines already in a dead letter, are counted as skipped instead of being
    processed (and dead-lettered) again on every scheduled run.

    Attributes:
      pair_ids: pair ids of the shard rows.
      lines: ``(source_file, line)`` of the dead letters; a line that could not
        even be parsed has no pair id.
    """

    pair_ids: frozenset[str] = frozenset()
    lines: frozenset[tuple[str, int]] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.pair_ids or self.lines)

    def covers(self, record) -> bool:
        """Whether a `BitextRecord` was handled before."""
        return record.pair_id in self.pair_ids or (record.source_file, record.line) in self.lines

    def covers_letter(self, letter: dict) -> bool:
        """Whether an input line's dead letter was written before."""
        return (letter["source_file"], letter["line"]) in self.lines

    def fingerprint(self) -> str:
        keys = sorted(self.pair_ids) + [f"{f}\x1f{n}" for f, n in sorted(self.lines)]
        return hashlib.sha1("\n".join(keys).encode()).hexdigest()


def existing_outputs(output: str) -> Handled:
    """What earlier runs wrote to ``output``: shard pair ids and dead-letter lines."""
    import pyarrow.parquet as pq

    ids: list[str] = []
    pattern = FileSystems.join(output, "shards", "*.parquet")
    for meta in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(meta.path) as f:
            ids.extend(pq.read_table(f, columns=["pair_id"]).column("pair_id").to_pylist())
    lines = set()  # dead letters: (source_file, line)
    pattern = FileSystems.join(output, "dead_letter", "*.jsonl")
    for meta in FileSystems.match([pattern])[0].metadata_list:
        with open_text(meta.path) as letters:
            for text in letters:
                if text.strip():
                    letter = json.loads(text)
                    lines.add((letter["source_file"], letter["line"]))
    return Handled(frozenset(ids), frozenset(lines))


def previous_outputs(output: str) -> list[str]:
    """Shard and dead-letter files that earlier runs left in ``output``."""
    patterns = [
        FileSystems.join(output, "shards", "part-*.parquet"),
        FileSystems.join(output, "dead_letter", "part-*.jsonl"),
    ]
    return sorted(m.path for result in FileSystems.match(patterns) for m in result.metadata_list)


def clear_previous_outputs(cfg: PipelineConfig) -> None:
    """Makes a full (non-refresh) run's output hold that run's files only.

    A full run rewrites everything, so its own earlier files go first (a
    changed shard count would otherwise leave old parts beside the new ones).
    Files of another run (other input or settings) are replaced only with
    ``overwrite``; otherwise the run stops here, before writing anything,
    since readers take every shard in the directory and would mix both runs.
    """
    old = previous_outputs(cfg.write.output)
    if not old:
        return
    mine = f"part-{cfg.write.run_id}-"
    others = [path for path in old if not FileSystems.split(path)[1].startswith(mine)]
    if others and not cfg.overwrite:
        raise ValueError(
            f"{cfg.write.output} holds {len(others)} shard/dead-letter file(s) of another run "
            f"(other input or settings), e.g. {others[0]}: pass --overwrite to replace them, "
            "--skip-existing to add only new input beside them, or choose another --output"
        )
    if others:
        logger.warning(
            "--overwrite: removing %d file(s) of earlier runs from %s",
            len(others),
            cfg.write.output,
        )
    completed = cfg.write.path(COMPLETED)
    FileSystems.delete([completed, *old] if FileSystems.exists(completed) else old)


def build_pipeline(p: beam.Pipeline, cfg: PipelineConfig, done: Handled = Handled()):
    """Adds the DAG to ``p``; returns the PCollection holding the stats dict.

    Args:
      p: the pipeline.
      cfg: the run's config.
      done: what earlier runs wrote (refresh mode); those records and bad
        lines are counted as skipped instead of processed again.
    """
    # records: BitextRecord (one per parsable input line); bad_lines: dead letters
    ingested = p | "ReadBitext" >> ReadBitext(cfg.ingest)
    records, bad_lines = ingested.records, ingested[DEAD_LETTER_TAG]
    ones = lambda _: 1
    input_records = (
        records | "CountRecords" >> beam.Map(ones),
        bad_lines | "CountBadLines" >> beam.Map(ones),
    ) | "CountInputs" >> beam.Flatten()
    skipped = p | "NoneSkipped" >> beam.Create([])
    if done:
        records, old_records = records | "SkipExisting" >> beam.Partition(
            lambda r, _: int(done.covers(r)), 2
        )
        bad_lines, old_bad_lines = bad_lines | "SkipExistingBadLines" >> beam.Partition(
            lambda d, _: int(done.covers_letter(d)), 2
        )
        skipped = (old_records, old_bad_lines) | "AllSkipped" >> beam.Flatten()
    dead_letters = [bad_lines]

    # rows: ShardRow, filled in stage by stage
    tokenized = records | "Tokenize" >> Tokenize(cfg.tokenize)
    dead_letters.append(tokenized[DEAD_LETTER_TAG])
    labelled = tokenized.rows | "LabelWithKb" >> LabelWithKb(cfg.label)
    aligned = labelled | "AlignWords" >> AlignWords(
        cfg.align, fallback_method=cfg.project.fallback_method
    )
    dead_letters.append(aligned[DEAD_LETTER_TAG])
    projected = aligned.rows | "ProjectLabels" >> ProjectLabels(cfg.project)

    all_dead = dead_letters | "MergeDeadLetters" >> beam.Flatten()
    return {
        "rows": projected.rows,
        "dead_letter": all_dead,
        "input_records": input_records,
        "skipped": skipped,
        "counts": projected.counts,
    } | "WriteShards" >> WriteShards(cfg.write)


def write_config(cfg: PipelineConfig) -> None:
    """Saves the resolved config beside the shards (before the run starts)."""
    if not FileSystems.exists(cfg.write.output):
        FileSystems.mkdirs(cfg.write.output)
    with FileSystems.create(cfg.write.path("pipeline_config.json")) as f:
        f.write(json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=str).encode())


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Parses flags, builds and runs the pipeline; returns ``stats.json``'s content.

    Args:
      argv: our flags plus any Beam flags.
      test_pipeline: a pipeline to build into instead of a new one (tests).
    """
    parser = argparse.ArgumentParser(
        prog="relbridge run",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,  # a Beam flag that is a prefix of one of ours goes to Beam
    )
    add_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    return run_config(config_from_args(args, beam_args), beam_args, test_pipeline)


def run_config(
    cfg: PipelineConfig,
    beam_args: list[str] | None = None,
    test_pipeline: beam.Pipeline | None = None,
) -> dict:
    """Runs the pipeline for a resolved config; returns ``stats.json``'s content.

    The KB is loaded and the encoder name checked once here before anything is
    written or submitted, so a malformed KB or a mistyped model path stops the
    run with its file and line instead of failing on every worker (on
    Dataflow, after the job has started).
    """
    check_model_name(cfg.align.model)
    kb = read_kb(cfg.label.kb)
    logger.info("KB %s: %d entities, %d triples", cfg.label.kb, len(kb.entities), len(kb.triples))
    done = existing_outputs(cfg.write.output) if cfg.skip_existing else Handled()
    if not cfg.skip_existing:
        clear_previous_outputs(cfg)
    if done:
        # A refresh writes new files beside the old ones, never over them.
        run_id = hashlib.sha1((cfg.write.run_id + done.fingerprint()).encode()).hexdigest()[:10]
        cfg = dataclasses.replace(cfg, write=dataclasses.replace(cfg.write, run_id=run_id))
        logger.info(
            "refresh: %d pair ids and %d dead-lettered lines already in %s",
            len(done.pair_ids),
            len(done.lines),
            cfg.write.output,
        )
    write_config(cfg)
    logger.info("run %s: %s -> %s", cfg.write.run_id, cfg.ingest.corpus, cfg.write.output)
    p = test_pipeline or beam.Pipeline(options=PipelineOptions(beam_args or []))
    build_pipeline(p, cfg, done)
    result = p.run()
    result.wait_until_finish()
    with FileSystems.open(cfg.write.path(STATS)) as f:
        return json.loads(f.read())
