"""``relbridge kg build``: the Beam job from raw text to a knowledge graph.

    ReadTexts -> SplitSentences -> FindMentions -> ExtractRelations (RunInference)
      -> AggregateTriples (link + merge) -> WriteKg (records, triples, N-Quads, stats)

Runner-agnostic like ``relbridge run``: flags we do not know go to Beam's
`PipelineOptions` (``--runner DataflowRunner --project P --region R
--temp_location gs://B/tmp``, or ``--direct_running_mode multi_processing
--direct_num_workers 2``). The records equal ``relbridge extract``'s on the
same input and model (with ``--no-split`` and ``--dtype float32``), since each
stage calls extract's functions. ``--refresh`` processes only the input lines
that earlier runs into the same ``--output`` did not handle; the run id, and
so the named graph, stays the one of the input and config, so ``kg load``
replaces the run's graph with the refreshed one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections import Counter

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from relbridge.kg.aggregate import AggregateTriples, buckets_for
from relbridge.kg.inference import ExtractRelations
from relbridge.kg.mentions import FindMentions
from relbridge.kg.options import KgBuildConfig, add_build_arguments, config_from_args
from relbridge.kg.rdf import RdfConfig, graph_for_run
from relbridge.kg.read import COUNTS_TAG, HANDLED_TAG, ReadTexts, merge_ranges
from relbridge.kg.split import SplitSentences
from relbridge.kg.write import KG_CONFIG, KgOutputFolder, WriteConfig, WriteKg
from relbridge.pipeline.dead_letter import DEAD_LETTER_TAG
from relbridge.pipeline.ingest import open_text
from relbridge.pipeline.staging import delete_paths, match_paths, write_json
from relbridge.pipeline.stats import summed

logger = logging.getLogger(__name__)


def earlier_outputs(output: str) -> tuple[dict[str, list], list[str]]:
    """Handled line ranges per input file, and the record files, of earlier runs into ``output``."""
    handled: dict[str, list] = {}
    for path in match_paths(FileSystems.join(output, "handled", "*.jsonl")):
        with open_text(path) as lines:
            for text in lines:
                if text.strip():
                    entry = json.loads(text)
                    handled.setdefault(entry["source_file"], []).extend(entry["ranges"])
    merged = {path: [tuple(r) for r in merge_ranges(ranges)] for path, ranges in handled.items()}
    return merged, match_paths(FileSystems.join(output, "records", "*.jsonl"))


def _ones(key: str):
    return lambda _: Counter({key: 1})


SPILL = "_spill"
"""In the staging folder: `AggregateTriples`' spill files, deleted before publishing."""


def input_bytes(patterns, earlier=()) -> int:
    """The size of the input files (and of earlier runs' record files, on refresh)."""
    results = FileSystems.match(list(patterns) + list(earlier))
    return sum(m.size_in_bytes for r in results for m in r.metadata_list)


def build_pipeline(p, cfg: KgBuildConfig, write: WriteConfig, handled=None, earlier=()):
    """Adds the DAG to ``p``; returns the PCollection of the stats dict."""
    # lines: TextLine, one per non-blank new input line
    read = p | "ReadTexts" >> ReadTexts(cfg.read, handled)
    # sentences: Sentence
    sentences = read["lines"] | "SplitSentences" >> SplitSentences(cfg.split)
    # prepared: (Sentence, PreparedSentence)
    prepared = sentences | "FindMentions" >> FindMentions(cfg.mentions)
    # results: PredictionResult(Sentence, [record, ...])
    extracted = prepared.prepared | "ExtractRelations" >> ExtractRelations(cfg.inference)
    records = extracted["results"] | "Records" >> beam.FlatMap(lambda r: r.inference)
    all_records = records
    counts = [
        read[COUNTS_TAG],
        sentences | "CountSentences" >> beam.Map(_ones("sentences")) | summed("SumSentences"),
        extracted["results"]
        | "CountExtracted"
        >> beam.Map(lambda r: Counter(sentences_extracted=1, records=len(r.inference)))
        | summed("SumExtracted"),
    ]
    if earlier:
        old = (
            p
            | "EarlierRecordFiles" >> beam.Create(list(earlier))
            | "ReadEarlierRecords" >> beam.io.ReadAllFromText()
            | "ParseEarlierRecords" >> beam.Map(json.loads)
        )
        counts.append(
            old | "CountEarlier" >> beam.Map(_ones("records_earlier")) | summed("SumEarlier")
        )
        all_records = (records, old) | "AllRecords" >> beam.Flatten()
    spill = FileSystems.join(write.output, SPILL)
    buckets = buckets_for(input_bytes(cfg.read.input, earlier))
    triples = all_records | "AggregateTriples" >> AggregateTriples(
        cfg.triples, cfg.mentions.kb, spill, buckets
    )
    counts.append(triples.counts)
    dead = (
        read[DEAD_LETTER_TAG],
        prepared[DEAD_LETTER_TAG],
        extracted["dead_letter"],
    ) | "MergeDeadLetters" >> beam.Flatten()
    return {
        "records": records,
        "triples": triples.triples,
        "dead_letter": dead,
        "handled": read[HANDLED_TAG],
        "counts": counts | "MergeStageCounts" >> beam.Flatten(),
    } | "WriteKg" >> WriteKg(write)


def run_config(
    cfg: KgBuildConfig, beam_args: list[str] | None = None, test_pipeline=None
) -> dict:
    """Runs the job for a resolved config; returns ``stats.json``'s content."""
    from relbridge.models.model_config import check_model_dir

    # local or gs://: a training folder's message names its model/
    check_model_dir(cfg.inference.model, FileSystems.exists)
    if cfg.mentions.kb:
        from relbridge.data_specs.kb_format import load_kb

        load_kb(cfg.mentions.kb)  # a malformed KB stops here, naming its file and line
    graph = cfg.graph or graph_for_run(cfg.run_id, cfg.base_iri)
    with KgOutputFolder(cfg.output, cfg.run_id, cfg.overwrite, cfg.refresh) as out:
        # under the lock: the earlier output stays as it is until publish swaps it
        handled, earlier = earlier_outputs(out.output) if out.refresh else ({}, [])
        batch_id = cfg.run_id
        if handled:
            key = json.dumps(sorted(handled.items()), default=list)
            batch_id = hashlib.sha1((cfg.run_id + key).encode()).hexdigest()[:10]
        staging = out.stage(batch_id)
        write = WriteConfig(staging, cfg.run_id, batch_id, RdfConfig(graph, cfg.base_iri),
                            cfg.num_shards)  # fmt: skip
        write_json(FileSystems.join(staging, KG_CONFIG), {**cfg.to_dict(), "graph": graph})
        logger.info("kg build %s (batch %s): %s -> %s", cfg.run_id, batch_id, cfg.read.input,
                    cfg.output)  # fmt: skip
        p = test_pipeline or beam.Pipeline(options=PipelineOptions(beam_args or []))
        build_pipeline(p, cfg, write, handled, earlier)
        p.run().wait_until_finish()
        spill = FileSystems.join(staging, SPILL)
        delete_paths(match_paths(FileSystems.join(spill, "*")))
        if FileSystems.exists(spill):  # a local folder; object stores have none
            delete_paths([spill])
        stats = out.publish()
    if not stats["balanced"]:
        logger.error("kg build counts do not add up: %s", stats["checks"])
    return stats


def run(argv: list[str] | None = None, test_pipeline=None) -> dict:
    """Parses flags (ours and Beam's), runs the job; returns ``stats.json``'s content."""
    parser = argparse.ArgumentParser(prog="relbridge kg build", allow_abbrev=False)
    add_build_arguments(parser)
    args, beam_args = parser.parse_known_args(argv)
    return run_config(config_from_args(args), beam_args, test_pipeline)
