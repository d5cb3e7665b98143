import logging

from relbridge.pipeline.progress import Progress


def test_progress_logs_count_and_rate_at_most_every_interval(caplog):
    now = [100.0]
    progress = Progress("AlignWords", "pairs", interval=30.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="relbridge.pipeline.progress"):
        now[0] = 110.0
        assert not progress.add(500)  # 10 s in: too soon
        now[0] = 140.0
        assert progress.add(700)  # 40 s in: 1,200 pairs, 30/s
        now[0] = 150.0
        assert not progress.add(100)  # 10 s after the last message
    assert [r.getMessage() for r in caplog.records] == [
        "AlignWords: 1,200 pairs in this process, 30.0 pairs/s"
    ]
    assert progress.done == 1300
