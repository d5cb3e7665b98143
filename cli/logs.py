"""What the `relbridge` command logs: our own lines and real warnings, not libraries' chatter.

A 20-pair ``relbridge run`` used to print 78 lines, 47 of them Beam's
``Converting string literal type hint to Any: "ShardRow"`` (one per type hint of
every DoFn, at pipeline construction) and five about the Prism runner, which
Beam tries to download on every DirectRunner run and then gives up on. None
of it concerns the user. `install_log_filters` drops exactly those messages (by a distinctive part of their text)
from the loggers that emit them (a logger's filter sees only the records
created at that logger, so each is attached where its messages originate);
every other message, Beam's warnings and errors included, still comes through,
and ``--log-level DEBUG`` shows everything.

The CLI installs them (`relbridge.cli.main.configure_logging`); importing
relbridge as a library changes no logging.
"""

from __future__ import annotations

import logging
import os

# logger name -> parts of messages that say nothing a user can act on.
NOISE: dict[str, tuple[str, ...]] = {
    # pipeline construction: one line per string type hint of every transform
    "apache_beam.typehints.native_type_compatibility": (
        "Converting string literal type hint to Any",
    ),
    # the DirectRunner tries Prism first, whose binary is downloaded on each run
    "apache_beam.runners.portability.prism_runner": (
        "Downloading prism",
        "Unzipping prism",
        "Prism binary path resolved",
        "Using local prism",
    ),
    "apache_beam.runners.direct.direct_runner": (
        "Running pipeline with PrismRunner",
        "Exception with PrismRunner",
        "Falling back to DirectRunner",
        "Running pipeline with DirectRunner",
    ),
    "root": ("Missing pipeline option (runner)",),  # we run the default runner on purpose
    "apache_beam.runners.worker.worker_pool_main": ("Listening for workers",),
    "apache_beam.runners.worker.statecache": ("Creating state cache",),
    "apache_beam.io.iobase": ("*** WriteImpl min_shards undef",),
    "apache_beam.io.filebasedsink": ("Renamed ", "Starting finalize_write", "Finalize "),
    "apache_beam.transforms.util": ("BatchElements statistics",),
    # eflomal's own steps; relbridge.alignment.statistical logs one line per training
    "eflomal": ("Prepared ", "Reading lexical priors", "pairs of lexical priors used"),
    # the aligner and the extractor window long inputs themselves
    "transformers.tokenization_utils_base": (
        "Token indices sequence length is longer than the specified maximum",
    ),
}


class DropMessages(logging.Filter):
    """Drops records whose message contains one of ``parts`` (up to ``max_level``)."""

    def __init__(self, parts: tuple[str, ...], max_level: int = logging.WARNING):
        super().__init__()
        self.parts, self.max_level = parts, max_level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > self.max_level:  # an error is never noise
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record is shown, not hidden
            return True
        return not any(part in message for part in self.parts)


def install_log_filters(noise: dict[str, tuple[str, ...]] = NOISE) -> list[logging.Logger]:
    """Attaches one `DropMessages` per noisy logger (once); returns those loggers."""
    loggers = []
    for name, parts in noise.items():
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(parts))
        loggers.append(logger)
    # Hugging Face's "Loading weights" bar, drawn by every worker that loads an encoder.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return loggers


def remove_log_filters() -> None:
    """Undoes `install_log_filters` (for tests, which share one process)."""
    for name in NOISE:
        logger = logging.getLogger() if name == "root" else logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, DropMessages)]:
            logger.removeFilter(f)
