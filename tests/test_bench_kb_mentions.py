"""benchmarks/bench_kb_mentions.py on small inputs: short lines skipped, none is a usage error."""

import pytest
from benchmark_scripts import load_benchmark


def test_texts_skip_lines_without_the_column(tmp_path):
    bench = load_benchmark("bench_kb_mentions")
    path = tmp_path / "s.tsv"
    path.write_text("id1\tOne.\nid2\nid3\t \nid4\tTwo.\nid5\tThree.\n", encoding="utf-8")
    assert bench.read_texts(str(path), 1, 2) == ["One.", "Two."]
    assert bench.read_texts(str(path), 1, 10) == ["One.", "Two.", "Three."]


def test_no_sentences_is_one_usage_error(tmp_path, capsys):
    bench = load_benchmark("bench_kb_mentions")
    (tmp_path / "s.tsv").write_text("id1\n\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        bench.main(["--kb", str(tmp_path), "--sentences", str(tmp_path / "s.tsv")])
    assert stop.value.code == 2
    assert "s.tsv: no sentences in column 1" in capsys.readouterr().err
