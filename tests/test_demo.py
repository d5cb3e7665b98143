"""The demo job end to end on the embedded RELX data, with a tiny random encoder."""

import json
import os

import pytest
from test_report import check_in_browser

from relbridge.demo.run_demo import DemoConfig, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_encoder):
    """One demo run (tiny encoder) shared by the tests below: (summary, output directory)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    summary = run_demo(
        DemoConfig(
            output=str(tmp_path), model=tiny_encoder, epochs=1, pipeline_args=("--align-layer", "1")
        )
    )
    return summary, tmp_path


def test_demo_runs_every_step_and_accounts_for_every_record(demo):
    summary, tmp_path = demo
    records = summary["records"]
    assert records["input_pairs"] == 409  # the train split; the 93 test ids never enter
    assert records["input_pairs"] == records["shard_rows"] + records["dead_letters"]
    assert records["balanced (input = rows + dead letters)"]
    assert summary["per_stage"]["relation_instances"] > 0
    assert 0.0 <= summary["projection_vs_relx_de_gold"]["f1"] <= 1.0
    for lang in ("de", "en"):
        scores = summary["extraction_on_heldout_relx"][lang]
        assert scores["overall"]["pairs"] == 93, scores["overall"]
    kg = summary["knowledge_graph_from_heldout_raw_text"]
    for lang in ("de", "en"):
        raw = kg["raw_text_extraction_vs_relx"][lang]
        assert raw["sentences"] == 93
        for key in ("relx_f1", "mention_recall", "pair_recall", "triple_recall", "linked_share"):
            assert 0.0 <= raw[key] <= 100.0, (key, raw)
        assert raw["pair_recall"] <= raw["mention_recall"] or raw["mention_recall"] == 0
    counts = kg["triples"]
    assert counts["records"] == sum(
        kg["raw_text_extraction_vs_relx"][lang]["triples"] for lang in ("de", "en")
    )
    left_out = ("below_threshold", "function_word_argument", "type_mismatch")
    assert counts["records"] == counts["used"] + sum(counts[k] for k in left_out)
    assert counts["triples"] == counts["in_kb"] + counts["new"] + counts["unlinked"]
    with open(os.path.join(kg["output"], "triples.jsonl")) as f:
        assert sum(1 for _ in f) == counts["triples"]
    graph = summary["knowledge_graph_store"]
    assert graph["sparql_statements"] == graph["triples_written"]  # a tiny model may find none
    assert len(graph["top_facts"]) == min(3, graph["triples_written"])
    assert os.path.isfile(os.path.join(summary["model"], "relations.json"))
    assert os.path.isfile(os.path.join(summary["model"], "encoder", "config.json"))
    with open(os.path.join(summary["model"], "threshold.json")) as f:
        calibration = json.load(f)  # chosen on the training split's English sentences
    assert calibration["chosen_on"].endswith("RELX_en.txt") and calibration["sentences"] == 409
    with open(tmp_path / "summary.json") as f:
        assert json.load(f)["shards"] == summary["shards"]


def test_demo_report_names_every_step_and_loads_in_a_browser(demo, tmp_path):
    summary, out = demo
    assert summary["report"] == str(out / "report.html")
    with open(out / "summary.json") as f:
        assert json.load(f)["report"] == summary["report"]
    html = (out / "report.html").read_text()
    for heading in ("Pipeline", "Dead letters", "Label projection", "Sample sentence pairs",
                    "Training", "Evaluation: held-out RELX de", "Evaluation: held-out RELX en",
                    "raw-text extraction on held-out RELX"):  # fmt: skip
        assert heading in html, heading
    assert "diagnostics" not in json.dumps(summary)  # the printed summary stays short
    image = check_in_browser(str(out / "report.html"), tmp_path)
    assert image.shape[1] == 1200


def test_demo_epochs_below_one_is_a_usage_error(monkeypatch, capsys):
    """``--epochs 0`` used to run the demo's own 3 epochs; -1 failed only after the pipeline."""
    import relbridge.demo.run_demo as run_demo_module
    from relbridge.cli.main import main

    monkeypatch.setattr(run_demo_module, "run_demo", lambda cfg: pytest.fail(f"ran {cfg}"))
    for value in ("0", "-1"):
        with pytest.raises(SystemExit) as stop:
            main(["demo", "--epochs", value])
        assert stop.value.code == 2
        assert f"--epochs: must be at least 1, got {value}" in capsys.readouterr().err
