"""Progress of long inference loops (`evaluate`, `extract`): a bar on a terminal, log lines elsewhere.

On a terminal, a tqdm bar on stderr appears once the loop has run for two
seconds (a short loop draws nothing). Where stderr is not a terminal (a log
file, CI, a notebook's captured output), a bar would write a line per redraw,
so the count is logged instead, at most every ``interval`` seconds; a loop
shorter than that logs nothing.

    with ProgressBar(len(pairs), "evaluate", "pair") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import IO

logger = logging.getLogger(__name__)


class ProgressBar:
    """Counts done units out of ``total``; draws a tqdm bar on a TTY, logs otherwise.

    Args:
      total: units to do.
      desc: what runs, first in the bar or the message.
      unit: what is counted (``"pair"``).
      enabled: False makes every call a no-op (inner loops of training).
      interval: seconds between two log lines when stderr is not a terminal.
      stream: where the bar goes (default: stderr).
      clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str,
        enabled: bool = True,
        interval: float = 30.0,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.desc, self.unit, self.interval, self.clock = (
            total,
            desc,
            unit,
            interval,
            clock,
        )
        self.done, self.logged = 0, 0
        self.start = self.last = clock()
        stream = stream or sys.stderr
        self._bar = None
        self.enabled = enabled and total > 0
        if self.enabled and getattr(stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, delay=2.0, file=stream)

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._log(now)

    def _log(self, now: float) -> None:
        self.logged += 1
        rate = self.done / max(now - self.start, 1e-9)
        logger.info(
            "%s: %s/%s %ss (%.0f%%), %.1f/s",
            self.desc,
            f"{self.done:,}",
            f"{self.total:,}",
            self.unit,
            100 * self.done / self.total,
            rate,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.logged:  # a long loop says when it ends
            self._log(self.clock())

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
