"""The `relbridge` command line: one entry point, one module per command group.

Each module in `COMMAND_MODULES` exposes ``register(subparsers)``, which adds its
subcommands with ``set_defaults(func=handler)``; a handler takes the parsed
arguments and returns an exit code. A subcommand that forwards unknown flags
(to Beam's PipelineOptions) sets ``accepts_extra_args=True`` and finds them in
``args.extra_args``. Modules
import heavy libraries inside their handlers, so ``relbridge --help`` is quick.
Bad input (``ValueError``, whose messages name the file and line) and missing
files (``OSError``) end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

logger = logging.getLogger("relbridge")

COMMAND_MODULES = (
    "relbridge.cli.run",
    "relbridge.cli.align",
    "relbridge.cli.projection",
    "relbridge.cli.train",
    "relbridge.cli.triples",
    "relbridge.cli.kg",
    "relbridge.cli.finetune",
    "relbridge.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relbridge",
        description="Cross-lingual distant-supervision relation extraction: "
        "label, align, project, write shards, train and evaluate.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def configure_logging(level: str) -> None:
    """Root logging at ``level``; forced, as importing Beam (at registration) already set it up."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    configure_logging(args.log_level)
    if unknown and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra_args = unknown
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as error:  # bad input or a missing file: one line, not a traceback
        logger.debug("traceback", exc_info=True)
        print(f"relbridge {args.command}: error: {error}", file=sys.stderr)
        if not logger.isEnabledFor(logging.DEBUG):
            print("(run with --log-level DEBUG for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
