"""The run report: sections from what exists, figures embedded, and a real browser loads it."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from browser import render
from matplotlib.image import imread

from relbridge.data_specs.relations import NA
from relbridge.models.evaluate import diagnostics, held_out_auc
from relbridge.report import write_report
from relbridge.report.render import pr_figure_of

RELS = [NA, "per:spouse", "org:founded_by", "per:city_of_birth"]


def fake_metrics(seed: int) -> dict:
    """An evaluate result's metrics with diagnostics, from random scores (not hand-written)."""
    rng = np.random.default_rng(seed)
    gold_ids = rng.integers(0, len(RELS), 60)
    rows = rng.dirichlet(np.ones(len(RELS)), 60)
    rows[np.arange(60), gold_ids] += 0.5 * rng.random(60)  # better than chance
    pred = [RELS[i] for i in rows.argmax(1)]
    gold = [RELS[i] for i in gold_ids]
    return {"pairs": 60, "micro_f1": 50.0, "auc": held_out_auc(rows, gold_ids),
            "diagnostics": diagnostics(gold, pred, rows, gold_ids)}  # fmt: skip


def evaluation() -> dict:
    return {
        "overall": fake_metrics(0),
        "per_language": {"de": fake_metrics(1), "en": fake_metrics(2)},
    }


def write_training(path):
    path.mkdir()
    history = [{"epoch": e, "global_step": 10 * (e + 1), "micro_f1": 20.0 + 10 * e,
                "train_loss": 1.0 / (e + 1)} for e in range(3)]  # fmt: skip
    stats = {"history": history, "dev_metric": "micro_f1", "best_dev": history[-1],
             "languages": {"en": 40, "de": 35}, "epochs_run": 3}  # fmt: skip
    (path / "train_stats.json").write_text(json.dumps(stats))
    return str(path)


def test_diagnostics_add_up():
    d = fake_metrics(3)["diagnostics"]
    matrix = np.array(d["confusion"]["matrix"])
    assert matrix.sum() == 60 and d["confusion"]["labels"][0] == NA
    for rel, m in d["per_relation"].items():
        i = d["confusion"]["labels"].index(rel)
        assert m["support"] == matrix[i].sum()
        assert m["precision"] == pytest.approx(100 * matrix[i, i] / matrix[:, i].sum(), abs=0.01)
    assert len(d["pr_curve"]["recall"]) <= 300 and d["pr_curve"]["recall"][-1] <= 1.0


def test_sections_appear_for_what_exists(tmp_path):
    only_training = write_report(str(tmp_path / "a.html"), training=write_training(tmp_path / "t"))
    html = Path(only_training).read_text()
    assert "<h2>Training</h2>" in html and "<h2>Pipeline</h2>" not in html
    assert html.count("data:image/png;base64,") == 1
    full = write_report(str(tmp_path / "b.html"), evaluations={"RELX <de>": evaluation()},
                        scores={"raw text": {"de": {"recall": 12.5}}})  # fmt: skip
    html = Path(full).read_text()
    assert "RELX &lt;de&gt;" in html and "RELX <de>" not in html  # autoescaped
    assert html.count("data:image/png;base64,") == 2  # PR curves, confusion matrix
    assert "per:spouse" in html and "de.recall" in html and "12.50" in html


def test_pr_curve_png_has_a_sane_size(tmp_path):
    path = tmp_path / "pr.png"
    path.write_bytes(pr_figure_of(evaluation(), "Held-out precision/recall"))
    image = imread(str(path))
    assert 500 <= image.shape[1] <= 1000 and 400 <= image.shape[0] <= 800  # not 400 px square


def check_in_browser(report: str, tmp_path) -> np.ndarray:
    """Asserts the page loads with every figure decoded and no console message; returns the screenshot."""
    shot = str(tmp_path / "shot.png")
    page = render(report, shot, str(tmp_path / "profile"))
    n_images = Path(report).read_text().count("<img ")
    assert re.search(rf'data-figures="{n_images}/{n_images}"', page["dom"]), "figures did not load"
    assert page["console"] == []
    image = imread(shot)[..., :3]  # (H, W, RGB) in [0, 1]
    assert image.std() > 0.05 and (image < 0.5).mean() > 0.005  # drawn on, not blank
    return image


def test_report_loads_in_a_browser(tmp_path):
    report = write_report(str(tmp_path / "r.html"), training=write_training(tmp_path / "t"),
                          evaluations={"RELX de": evaluation()})  # fmt: skip
    check_in_browser(report, tmp_path)


def write_pipeline(path, src_tokens, tgt_tokens, pair_id="c:1", label="per:spouse"):
    """A one-row pipeline output: stats.json, one shard, one dead letter."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from relbridge.data_specs.schema import (
        SHARD_SCHEMA, Mention, ProjectedMention, RelationInstance, ShardRow,
    )  # fmt: skip

    (path / "shards").mkdir(parents=True)
    (path / "dead_letter").mkdir()
    row = ShardRow(
        pair_id=pair_id, corpus="c", source_file="c.tsv", line=1, src_lang="en", tgt_lang="de",
        src_text=" ".join(src_tokens), tgt_text=" ".join(tgt_tokens),
        src_tokens=tuple(src_tokens), tgt_tokens=tuple(tgt_tokens), alignment=((0, 0), (1, 1)),
        src_mentions=(Mention(0, 1, "Q1", "PER", src_tokens[0]),
                      Mention(1, 2, "Q2", "PER", src_tokens[1])),
        tgt_mentions=(ProjectedMention(0, 1, "Q1", "PER", tgt_tokens[0], 0, 0.9),
                      ProjectedMention(1, 2, "Q2", "PER", tgt_tokens[1], 1, 0.8)),
        relations=(RelationInstance(0, 1, label, 0, 1, True, True),),
    )  # fmt: skip
    table = pa.Table.from_pylist([row.to_row()], SHARD_SCHEMA)
    pq.write_table(table, str(path / "shards" / "part-0.parquet"))
    letter = {"stage": "ReadBitext", "reason": "bad <b>tab</b>", "source_file": "<i>c.tsv",
              "line": 2, "record": "x"}  # fmt: skip
    (path / "dead_letter" / "part-0.jsonl").write_text(json.dumps(letter) + "\n")
    stats = {"input_records": 2, "rows": 1, "dead_letters": 1, "balanced": True,
             "counts": {"dead_letter:ReadBitext": 1, "src_mentions": 2, "tgt_mentions": 2,
                        "relation_instances": 1, "projected_relation_instances": 1}}  # fmt: skip
    (path / "stats.json").write_text(json.dumps(stats))
    return str(path)


def test_corpus_text_is_drawn_as_written(tmp_path):
    """Dollar signs in words, ids and labels are text, not mathtext (which may not parse)."""
    out = write_pipeline(tmp_path / "run", ["$x_$", "<script>"], ["$\\foo$", "</td>"],
                         pair_id="c:$1$", label="per:$^$")  # fmt: skip
    html = Path(write_report(str(tmp_path / "r.html"), pipeline=out)).read_text()
    assert 'alt="sentence pair c:$1$ with alignment"' in html  # the sample pair was drawn
    assert "<script>" not in html.split("<script>\n  // Self-check")[0]
    assert "&lt;i&gt;c.tsv:2" in html and "bad &lt;b&gt;tab&lt;/b&gt;" in html


def test_a_report_that_cannot_be_written_leaves_no_partial_file(tmp_path):
    (tmp_path / "report.html").mkdir()  # e.g. a folder where the report should go
    with pytest.raises(OSError):
        write_report(str(tmp_path / "report.html"), scores={"s": {"x": 1}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
