"""Issue 16: nothing lost, nothing corrupted, nothing unsafe, on the pipeline's output side.

Each test reproduces one defect found by fault and bad-input testing (see the
issue) on the tiny random encoder, and shows the fix.
"""

import glob
import json
from pathlib import Path

from test_pipeline_stages import write_kb

from relbridge.data_specs import read_shards
from relbridge.pipeline.main import run


def base_argv(tmp_path, tiny_encoder, corpus_lines, *extra, name="toy.tsv", out="out"):
    corpus = tmp_path / name
    corpus.write_text("".join(line + "\n" for line in corpus_lines))
    return [
        "--corpus", str(corpus), "--kb", write_kb(tmp_path), "--src-lang", "en", "--tgt-lang", "de",
        "--output", str(tmp_path / out), "--model", tiny_encoder, "--align-layer", "1",
        "--num-shards", "1", *extra,
    ]  # fmt: skip


def dead_letters(out: Path) -> list[dict]:
    return [
        json.loads(text)
        for f in sorted(glob.glob(str(out / "dead_letter" / "*.jsonl")))
        for text in Path(f).read_text().splitlines()
    ]


def test_a_repeated_pair_id_is_a_dead_letter_and_identical_lines_get_ids_of_their_own(
    tmp_path, tiny_encoder
):
    lines = [
        "1\tAngela Merkel was born in Hamburg .\tAngela Merkel wurde in Hamburg geboren .",
        "2\tMerkel joined the CDU in 1990 , long after she was born .\tMerkel trat 1990 der CDU bei .",
        "1\tthe weather was fine .\tdas Wetter war gut .",  # id 1 again, other text
        "Paris is a city .\tParis ist eine Stadt .",
        "Paris is a city .\tParis ist eine Stadt .",  # identical, no id
    ]
    stats = run(base_argv(tmp_path, tiny_encoder, lines))
    rows = read_shards(str(tmp_path / "out" / "shards"))
    letters = dead_letters(tmp_path / "out")
    ids = [r.pair_id for r in rows]
    assert len(ids) == len(set(ids)) == 4  # every pair id once
    assert stats["rows"] == 4 and stats["dead_letters"] == 1 and stats["balanced"]
    (letter,) = letters
    assert letter["line"] == 3 and letter["stage"] == "ReadBitext"
    assert "toy.tsv:1" in letter["reason"] and "'1'" in letter["reason"]
    by_id = {r.pair_id: r for r in rows}
    assert by_id["toy:1"].src_tokens[0] == "Angela"  # the first line keeps its id
    for row in rows:  # links stay inside their own sentence
        assert all(
            s < len(row.src_tokens) and t < len(row.tgt_tokens) for s, t in row.alignment
        ), row.pair_id
