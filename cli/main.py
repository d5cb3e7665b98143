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

from relbridge.runtime.devices import bound_native_caches

logger = logging.getLogger("relbridge")

COMMAND_MODULES = {
    "relbridge.cli.run": ("run",),
    "relbridge.cli.align": ("eval-align",),
    "relbridge.cli.sentences": ("align-sentences", "eval-sentence-align"),
    "relbridge.cli.projection": ("eval-projection",),
    "relbridge.cli.train": ("train", "evaluate", "extract", "benchmark"),
    "relbridge.cli.triples": ("triples",),
    "relbridge.cli.kg": ("kg",),
    "relbridge.cli.kb": ("kb",),
    "relbridge.cli.finetune": ("finetune-aligner",),
    "relbridge.cli.demo": ("demo",),
}
"""Each command module and the subcommands it registers. A command runs with only its
own module imported (registering ``run`` imports Beam, ``train`` torch: seconds that
``extract`` should not pay); ``--help`` and unknown commands import them all."""


def command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is no option or option value)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relbridge",
        description="Cross-lingual distant-supervision relation extraction: "
        "label, align, project, write shards, train and evaluate.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    owners = [m for m, commands in COMMAND_MODULES.items() if command in commands]
    for name in owners or COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def configure_logging(level: str) -> None:
    """Root logging at ``level``; forced, as importing Beam (at registration) already set it up.

    Below DEBUG, libraries' chatter that does not concern the user is dropped
    (`relbridge.cli.logs`); their warnings and errors still show.
    """
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        from relbridge.cli.logs import install_log_filters

        install_log_filters()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    bound_native_caches()  # inherited by Beam's local worker processes
    parser = build_parser(command_of(argv))
    args, unknown = parser.parse_known_args(argv)
    configure_logging(args.log_level)
    if unknown and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra_args = unknown
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as error:  # bad input or a missing file: one line, not a traceback
        logger.debug("traceback", exc_info=True)  # --log-level DEBUG shows where it came from
        print(f"relbridge {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
