"""`relbridge demo`: the whole job on the embedded RELX en-de demo data."""

from __future__ import annotations

import argparse
import json

from relbridge.runtime.flags import at_least


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run pipeline -> shards -> training -> evaluation on the embedded demo data",
        description="Runs the Beam pipeline on the embedded RELX en-de corpus and KB, scores the projected "
        "German labels against RELX gold, trains the extractor on the shards and evaluates it on held-out "
        "RELX sentences. Flags not listed here go to Beam.",
    )
    parser.add_argument("--output", default="out/demo", help="output directory (default: out/demo)")
    parser.add_argument(
        "--model", default=None, help="encoder (default: the bundled multilingual-e5-small)"
    )
    parser.add_argument(
        "--epochs",
        type=at_least(1),
        default=None,
        help="training epochs (default: the demo's own)",
    )
    parser.set_defaults(func=_demo, accepts_extra_args=True)


def _demo(args: argparse.Namespace) -> int:
    from relbridge.demo.run_demo import DemoConfig, run_demo

    kwargs = {"epochs": args.epochs} if args.epochs is not None else {}
    summary = run_demo(
        DemoConfig(
            output=args.output, model=args.model, pipeline_args=tuple(args.extra_args), **kwargs
        )
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["records"]["balanced (input = rows + dead letters)"] else 1
