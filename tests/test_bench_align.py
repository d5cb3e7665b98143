"""benchmarks/bench_align.py runs end to end: stock simalign and WordAligner agree on a tiny encoder."""

import json

from benchmark_scripts import load_benchmark
from single_thread import one_torch_thread  # noqa: F401 (autouse)

PAIRS = [
    ("Angela Merkel was born in Berlin", "Angela Merkel wurde in Berlin geboren"),
    ("Siemens is a company in Munich", "Siemens ist eine Firma in Munich"),
    ("the city of Paris", "die Stadt Paris"),
]


def test_benchmark_prints_both_aligners_with_identical_aer(tiny_encoder, tmp_path, capsys):
    data = tmp_path / "enfr"
    data.mkdir()
    (data / "enfr.src-tgt").write_text(
        "".join(f"{s} ||| {t}\n" for s, t in PAIRS), encoding="utf-8"
    )
    (data / "enfr.gold").write_text("1-1 2-2 3-3\n1-1 2-2\n1-1 3-2 4-3\n", encoding="utf-8")
    args = ["--data", str(tmp_path), "--sets", "enfr", "--model", tiny_encoder]
    args += ["--layer", "1", "--methods", "argmax,mai", "--threads", "1", "--dtype", "float32"]
    report = load_benchmark("bench_align").main(args)
    out = capsys.readouterr().out
    assert "new aligner dtype: float32" in out
    assert json.loads(out.strip().splitlines()[-1])["rows"] == report["rows"]
    assert [r["method"] for r in report["rows"]] == ["argmax", "mai"]
    for row in report["rows"]:
        assert row["pairs"] == len(PAIRS) and row["new_pairs_per_s"] > 0 and row["ratio"] > 0
        assert row["new_aer"] == row["stock_aer"]  # configured alike, same float32 links
    assert set(report["rows"][1]["new_aer"]) == {"argmax", "itermax", "match"}
