"""`relbridge run`: the Beam pipeline (corpus + KB -> Parquet shards)."""

from __future__ import annotations

import argparse
import json
import time


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        allow_abbrev=False,  # a Beam flag that is a prefix of one of ours goes to Beam
        help="run the pipeline: label, align, project, write Parquet shards",
        description="Reads a parallel corpus, labels the source side by distant supervision against a KB, "
        "word-aligns each pair, projects mentions and relations into the target language and writes "
        "Parquet shards, dead letters, stats.json and COMPLETED to --output. Flags not listed here go to "
        "Beam's PipelineOptions, e.g. --runner DataflowRunner --project P --region R "
        "--temp_location gs://B/tmp, or --direct_running_mode multi_processing --direct_num_workers 2.",
    )
    from relbridge.pipeline.options import add_arguments

    add_arguments(parser)
    parser.set_defaults(func=_run, accepts_extra_args=True)


def _run(args: argparse.Namespace) -> int:
    from relbridge.pipeline.main import run_config
    from relbridge.pipeline.options import config_from_args
    from relbridge.report import REPORT, try_write_report

    cfg = config_from_args(args, args.extra_args)
    start = time.perf_counter()
    stats = run_config(cfg, args.extra_args)
    seconds = time.perf_counter() - start
    # this run's own counts (a refresh's: new input only), then the whole folder's
    own = stats["run"]
    report = try_write_report(
        cfg.write.path(REPORT), title=f"relbridge run {own['run_id']}", pipeline=cfg.write.output
    )
    keys = ("run_id", "input_records", "rows", "dead_letters", "skipped_existing")
    summary = {k: own.get(k) for k in keys}
    summary.update(
        balanced=stats["balanced"],
        output=cfg.write.output,
        folder={k: stats[k] for k in ("input_records", "rows", "dead_letters")},
        seconds=round(seconds, 1),
        records_per_s=round(own["input_records"] / seconds, 1),
        report=report,
    )
    print(json.dumps(summary))
    return 0 if stats["balanced"] else 1
