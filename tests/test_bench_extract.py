"""benchmarks/bench_extract.py: its table names the baseline; an empty input is one usage error."""

import argparse

import pytest
from benchmark_scripts import load_benchmark


def test_the_header_names_the_baseline_executable():
    bench = load_benchmark("bench_extract")
    args = argparse.Namespace(input="news.tsv", column=1, model="out/m", kb=None,
                              baseline_relbridge="/old/.venv/bin/relbridge")  # fmt: skip
    line = bench.header(args, 3)
    assert line.startswith("3 sentences of news.tsv (column 1), model out/m, KB -")
    assert "baseline /old/.venv/bin/relbridge" in line
    assert "baseline" not in bench.header(argparse.Namespace(**{**vars(args),
                                                                "baseline_relbridge": None}), 3)


def test_an_input_without_sentences_stops_before_any_run(tmp_path, capsys):
    bench = load_benchmark("bench_extract")
    (tmp_path / "empty.tsv").write_text("a\t \n\n", encoding="utf-8")
    bench.run_path = lambda *a, **k: pytest.fail("ran relbridge extract on no sentences")
    with pytest.raises(SystemExit) as stop:
        bench.main(["--model", "m", "--input", str(tmp_path / "empty.tsv"), "--column", "1"])
    assert stop.value.code == 2
    assert "empty.tsv: no sentences to extract from" in capsys.readouterr().err
