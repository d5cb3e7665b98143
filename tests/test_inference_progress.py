"""`ProgressBar`: log lines off a terminal, a tqdm bar on one, nothing when disabled."""

import io
import logging

from relbridge.runtime.progress import ProgressBar


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_logs_count_every_interval_off_a_terminal(caplog):
    now = [0.0]
    with caplog.at_level(logging.INFO, logger="relbridge.runtime.progress"):
        with ProgressBar(100, "evaluate", "pair", interval=30, stream=io.StringIO(),
                         clock=lambda: now[0]) as bar:  # fmt: skip
            now[0] = 10.0
            bar.update(20)  # too soon
            now[0] = 40.0
            bar.update(40)  # 60 pairs in 40 s
            now[0] = 50.0
            bar.update(40)
    assert [r.getMessage() for r in caplog.records] == [
        "evaluate: 60/100 pairs (60%), 1.5/s",
        "evaluate: 100/100 pairs (100%), 2.0/s",  # the end of a long loop
    ]


def test_short_or_disabled_loops_say_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="relbridge.runtime.progress"):
        with ProgressBar(10, "evaluate", "pair", stream=io.StringIO()) as bar:
            bar.update(10)
        tty = _Tty()
        with ProgressBar(10, "extract", "pair", enabled=False, stream=tty) as bar:
            bar.update(10)
    assert caplog.records == [] and tty.getvalue() == ""


def test_draws_a_bar_on_a_terminal():
    tty = _Tty()
    with ProgressBar(10, "extract: relations", "pair", stream=tty) as bar:
        bar._bar.delay = 0  # draw at once
        bar.update(10)
    assert "extract: relations" in tty.getvalue() and "10/10" in tty.getvalue()
