"""The relbridge Beam DAG, wired from its stages.

    ReadBitext -> [SkipExisting] -> Tokenize -> LabelWithKb -> AlignWords
      -> ProjectLabels -> WriteShards
                       -> HarvestAliases (aliases.jsonl: the entities' projected names)

or, from document pairs (``--documents``), ``AlignSentences`` instead of ReadBitext.

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
import logging

import apache_beam as beam

from relbridge.alignment.statistical import NOT_SEEDABLE
from relbridge.pipeline.align import AlignWords
from relbridge.pipeline.align_sentences import AlignSentences
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG
from relbridge.pipeline.harvest import ALIASES, HarvestAliases, HarvestConfig
from relbridge.pipeline.ingest import ReadBitext
from relbridge.pipeline.label import LabelWithKb, prepare_kb
from relbridge.pipeline.options import PipelineConfig, add_arguments, config_from_args
from relbridge.pipeline.preflight import check_dataflow, is_dataflow, pipeline_options
from relbridge.pipeline.output import (
    Handled,
    OutputFolder,
    check_refresh,
    existing_outputs,
    warn_if_refresh_missed,
    write_config,
)
from relbridge.pipeline.project import ProjectLabels
from relbridge.pipeline.stats import summed
from relbridge.pipeline.tokenize import Tokenize
from relbridge.pipeline.write_shards import WriteShards
from relbridge.runtime.encoders import check_model_name

logger = logging.getLogger(__name__)


def build_pipeline(
    p: beam.Pipeline,
    cfg: PipelineConfig,
    done: Handled = Handled(),
    previous_aliases: str | None = None,
):
    """Adds the DAG to ``p``; returns the PCollection holding the stats dict.

    Args:
      p: the pipeline.
      cfg: the run's config.
      done: what earlier runs wrote (refresh mode); those records and bad
        lines are counted as skipped instead of processed again.
      previous_aliases: the published output's alias file, merged into this
        run's (refresh mode), so that it covers every row of the folder.
    """
    # records: BitextRecord (one per parsable input line, or per aligned sentence
    # unit of a document pair); bad_lines: dead letters
    stage_counts = []
    # old_documents: DocumentPair an earlier run aligned (refresh with --documents),
    # each counted as one input record and one skipped one
    old_documents = p | "NoDocumentsSkipped" >> beam.Create([])
    if cfg.documents is not None:
        ingested = p | "AlignSentences" >> AlignSentences(cfg.documents, done.documents)
        records, bad_lines = ingested["records"], ingested[DEAD_LETTER_TAG]
        stage_counts.append(ingested["counts"])
        old_documents = ingested["skipped"]
    else:
        ingested = p | "ReadBitext" >> ReadBitext(cfg.ingest)
        records, bad_lines = ingested.records, ingested[DEAD_LETTER_TAG]
    # counted where they are made: a Flatten of one 1 per record, summed later, was held whole
    input_records = (
        records | "CountRecords" >> beam.combiners.Count.Globally(),
        bad_lines | "CountBadLines" >> beam.combiners.Count.Globally(),
        old_documents | "CountSkippedDocuments" >> beam.combiners.Count.Globally(),
    ) | "CountInputs" >> beam.Flatten()
    skipped = old_documents
    if done:
        if cfg.documents is None:  # a document's pairs were skipped with the document
            records, old_records = records | "SkipExisting" >> beam.Partition(
                lambda r, _: int(done.covers(r)), 2
            )
        else:
            old_records = p | "NoPairsSkipped" >> beam.Create([])
        bad_lines, old_bad_lines = bad_lines | "SkipExistingBadLines" >> beam.Partition(
            lambda d, _: int(done.covers_letter(d)), 2
        )
        skipped = (old_records, old_bad_lines, old_documents) | "AllSkipped" >> beam.Flatten()
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
    harvest = HarvestConfig(cfg.write.path(ALIASES), previous=previous_aliases if done else None)
    harvested = projected.rows | "HarvestAliases" >> HarvestAliases(harvest)

    all_dead = dead_letters | "MergeDeadLetters" >> beam.Flatten()
    return {
        "rows": projected.rows,
        "dead_letter": all_dead,
        "input_records": input_records,
        "skipped": skipped,
        "counts": (
            projected.counts | summed("SumProjectionCounts"), harvested, *stage_counts
        ) | "MergeStageCounts" >> beam.Flatten(),
    } | "WriteShards" >> WriteShards(cfg.write)


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

    The KB's index is built (or found up to date) and the encoder name checked
    once here before anything is written or submitted, so a malformed KB or a
    mistyped model path stops the run with its file and line instead of failing
    on every worker (on Dataflow, after the job has started). A Dataflow job is
    checked first (`relbridge.pipeline.preflight`): extra, credentials, buckets,
    project and region.
    """
    options = pipeline_options(beam_args or [])
    if test_pipeline is None and is_dataflow(options):
        check_dataflow(options, cfg.write.output)
    check_model_name(cfg.align.model)
    cfg = dataclasses.replace(cfg, label=prepare_kb(cfg.label))
    with OutputFolder(cfg.write, overwrite=cfg.overwrite, refresh=cfg.skip_existing) as out:
        if cfg.skip_existing:
            check_refresh(cfg.write.output, cfg.to_dict())
        done = existing_outputs(cfg.write.output) if cfg.skip_existing else Handled()
        if done:
            run_id = done.refresh_run_id(cfg.write.run_id)
            cfg = dataclasses.replace(cfg, write=dataclasses.replace(cfg.write, run_id=run_id))
            logger.info(
                "refresh: %d pair ids and %d dead-lettered lines already in %s",
                len(done.pair_ids),
                len(done.lines),
                cfg.write.output,
            )
        staging = out.stage(cfg.write.run_id)
        write_config(staging, cfg)
        source = cfg.documents.documents if cfg.documents else cfg.ingest.corpus
        logger.info("run %s: %s -> %s", cfg.write.run_id, source, cfg.write.output)
        p = test_pipeline or beam.Pipeline(options=options)
        staged = dataclasses.replace(cfg, write=dataclasses.replace(cfg.write, output=staging))
        build_pipeline(p, staged, done, previous_aliases=cfg.write.path(ALIASES))
        p.run().wait_until_finish()
        stats = out.publish(extra={"reproducible": reproducibility(cfg)})
    warn_if_refresh_missed(done, cfg.documents.name if cfg.documents else cfg.ingest.name, stats)
    return stats


def reproducibility(cfg: PipelineConfig) -> dict:
    """Whether the same input and config give byte-identical shards, and why not.

    Every step but eflomal is deterministic (shards are hashed and sorted,
    see `pipeline.write_shards`); eflomal cannot be seeded.
    """
    if cfg.align.statistical == "off":
        return {"byte_identical": True}
    return {"byte_identical": False, "why": NOT_SEEDABLE}
