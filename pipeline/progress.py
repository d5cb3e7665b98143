"""Progress of long stages in the log: a count and a rate, at most every so often.

A Beam stage has no place for a progress bar (its elements are spread over
worker processes, and on Dataflow there is no terminal), yet aligning a large
corpus runs for hours. Each worker process therefore logs its own running
count and rate, throttled, for the slow stage:

    progress = Progress("AlignWords", "pairs")
    progress.add(len(batch))   # logs "AlignWords: 12,800 pairs in this process, 85.2 pairs/s"
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Progress:
    """Counts work done in this process and logs it at most every ``interval`` seconds.

    Args:
      stage: the stage's name, first in every message.
      unit: what is counted (``"pairs"``).
      interval: the least number of seconds between two messages.
      clock: a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        stage: str,
        unit: str,
        interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stage, self.unit, self.interval, self.clock = stage, unit, interval, clock
        self.done = 0
        self.start = self.last = clock()

    def add(self, n: int) -> bool:
        """Counts ``n`` more; returns whether a message was logged."""
        self.done += n
        now = self.clock()
        if now - self.last < self.interval:
            return False
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        logger.info(
            "%s: %s %s in this process, %.1f %s/s",
            self.stage,
            f"{self.done:,}",
            self.unit,
            rate,
            self.unit,
        )
        return True
