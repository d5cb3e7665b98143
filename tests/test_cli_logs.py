"""What `relbridge` prints: its own lines and real warnings, not libraries' chatter."""

import json
import logging
import os
import subprocess
import sys
from importlib import resources

from relbridge.cli.logs import NOISE, DropMessages, install_log_filters, remove_log_filters


def test_filters_drop_the_noise_and_keep_warnings(caplog):
    install_log_filters()
    try:
        hints = logging.getLogger("apache_beam.typehints.native_type_compatibility")
        runner = logging.getLogger("apache_beam.runners.direct.direct_runner")
        with caplog.at_level(logging.INFO):
            hints.info('Converting string literal type hint to Any: "ShardRow"')
            runner.info("Exception with PrismRunner:\n Unable to fetch remote prism binary")
            hints.warning("a real Beam warning")
            runner.error("Exception with PrismRunner: an error is never noise")
            logging.getLogger("apache_beam.io.other").info("Renamed 1 shards")  # other logger
        assert [r.getMessage() for r in caplog.records] == [
            "a real Beam warning",
            "Exception with PrismRunner: an error is never noise",
            "Renamed 1 shards",
        ]
    finally:
        remove_log_filters()
    for name in NOISE:
        logger = logging.getLogger(name if name != "root" else None)
        assert not any(isinstance(f, DropMessages) for f in logger.filters), name


def test_a_20_pair_run_prints_at_most_15_log_lines(tmp_path, tiny_encoder):
    data = resources.files("relbridge.demo") / "data"
    lines = (data / "relx_ende_train.tsv").read_text(encoding="utf-8").splitlines()[:20]
    corpus = tmp_path / "c20.tsv"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = [
        sys.executable, "-m", "relbridge.cli.main", "run", "--corpus", str(corpus),
        "--kb", str(data / "kb"), "--src-lang", "en", "--tgt-lang", "de",
        "--output", str(tmp_path / "out"), "--model", tiny_encoder, "--align-layer", "1",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["input_records"] == 20 and summary["balanced"]
    assert summary["report"] == str(tmp_path / "out" / "report.html")  # named, and there
    assert 'alt="record funnel' in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    log = [line for line in done.stderr.splitlines() if line.strip()]
    assert 3 <= len(log) <= 15, "\n".join(log)  # our own progress lines are still there
    assert any("relbridge.pipeline.main" in line for line in log)
    assert not any("type hint" in line or "rism" in line for line in log), "\n".join(log)
