"""benchmarks/bench_kb_scale.py's pipeline-memory helpers: the repeated corpus and the sampler."""

import subprocess
import sys

from benchmark_scripts import load_benchmark


def test_the_repeated_corpus_gives_each_copy_new_ids(tmp_path):
    bench = load_benchmark("bench_kb_scale")
    (tmp_path / "src").write_text("a b\nc d\n", encoding="utf-8")
    (tmp_path / "tgt").write_text("A B\nC D\n", encoding="utf-8")
    bench.repeated_corpus(str(tmp_path / "src"), str(tmp_path / "tgt"), 5, str(tmp_path / "c"))
    rows = [line.split("\t") for line in (tmp_path / "c").read_text().splitlines()]
    assert [r[0] for r in rows] == ["copy0-0", "copy0-1", "copy1-0", "copy1-1", "copy2-0"]
    assert rows[2][1:] == ["a b", "A B"]


def test_the_sampler_sees_the_peak_of_a_grandchild():
    bench = load_benchmark("bench_kb_scale")
    child = "import subprocess, sys; subprocess.run([sys.executable, '-c', " \
            "'import time; b = bytearray(150 * 2**20); b[::4096] = b\"x\" * len(b[::4096]); " \
            "time.sleep(1.5)'])"  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", child])
    with bench.ProcessTreeSampler(proc.pid, period=0.05) as sampler:
        proc.wait()
    grandchildren = [kb for pid, (kb, _) in sampler.peaks.items() if pid != proc.pid]
    assert max(grandchildren) >= 150 * 1024
    assert sampler.peaks[proc.pid][0] < 100 * 1024
    assert sampler.total_kb >= 150 * 1024
