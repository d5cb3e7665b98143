"""`relbridge run`: the Beam pipeline (corpus + KB -> Parquet shards)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
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

    stats = run_config(config_from_args(args), args.extra_args)
    print(
        json.dumps(
            {k: stats[k] for k in ("run_id", "input_records", "rows", "dead_letters", "balanced")}
        )
    )
    return 0 if stats["balanced"] else 1
