"""kg build on a tiny random model: records equal extract's, dead letters, refresh, load, export."""

import csv
import glob
import json
import os

import pytest
import torch

from relbridge.cli.main import main
from relbridge.kg.build import run
from relbridge.kg.export import EDGE_HEADER, NODE_HEADER
from relbridge.models.extract import extract_file
from relbridge.models.extractor import RelationExtractor
from relbridge.models.model_config import ModelConfig
from relbridge.kb import TextMentions

GOOD = [
    "Angela Merkel was born in Hamburg and lives in Berlin .",
    "",
    '{"text": "Siemens was founded in Berlin by Werner Siemens .", "id": "doc-2"}',
    "Paris is a city in France , and Macron lives in Paris .",
    "<e1> </e1>Merkel was born in <e2>Hamburg</e2> .",  # e1 covers no word
]
BAD = ['{"text": 3}', "Emmanuel Macron was born in Amiens .", "{not json"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_encoder):
    tmp = tmp_path_factory.mktemp("kg")
    torch.manual_seed(3)
    model = RelationExtractor(
        ModelConfig(encoder=tiny_encoder, relations=("NA", "per:employee_of", "org:founded_by"))
    )
    model.save_pretrained(str(tmp / "model"))
    kb = tmp / "kb"
    kb.mkdir()
    (kb / "entities.tsv").write_text(
        "Q1\tPER\ten\tAngela Merkel\nQ2\tLOC\ten\tHamburg\nQ3\tLOC\ten\tBerlin\n"
        "Q4\tORG\ten\tSiemens\nQ5\tLOC\ten\tParis\nQ6\tPER\ten\tMacron\nQ7\tLOC\ten\tAmiens\n"
        "Q8\tLOC\ten\tFrance\n"
    )
    (kb / "triples.tsv").write_text("Q1\tper:employee_of\tQ4\n")
    inputs = tmp / "in"
    inputs.mkdir()
    (inputs / "good.txt").write_text("\n".join(GOOD) + "\n")
    (inputs / "bad.jsonl").write_text("\n".join(BAD) + "\n")
    return tmp


def _argv(tmp, *extra, out="out", model="model"):
    return ["--input", str(tmp / "in" / "*"), "--output", str(tmp / out), "--model",
            str(tmp / model), "--kb", str(tmp / "kb"), "--lang", "en", "--no-split",
            "--min-confidence", "0", "--num-shards", "2", *extra]  # fmt: skip


def _read(tmp, folder, out="out"):
    rows = []
    for path in sorted(glob.glob(str(tmp / out / folder / "*"))):
        with open(path, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def _key(r):
    return (r["source_file"], r["line"], *r["subject_span"], *r["object_span"], r["relation"])


def test_records_equal_extract_and_counts_add_up(setup):
    tmp = setup
    stats = run(_argv(tmp))
    assert stats["balanced"] and os.path.exists(tmp / "out" / "COMPLETED")
    assert not os.path.exists(tmp / "out" / "_staging")
    good = str(tmp / "in" / "good.txt")
    mentions = TextMentions(str(tmp / "kb"), "en")
    expected, n = extract_file(str(tmp / "model"), good, mentions_of=mentions)
    assert n == 4 and len(expected) > 3
    got = [r for r in _read(tmp, "records") if r["source_file"] == good]
    assert sorted(map(_key, got)) == sorted(map(_key, expected))
    by_key = {_key(r): r for r in got}
    for want in expected:
        have = dict(by_key[_key(want)])
        assert have.pop("sentence_in_line") == 0
        assert have["confidence"] == pytest.approx(want["confidence"], abs=1e-4)
        assert {k: v for k, v in have.items() if k != "confidence"} == {
            k: v for k, v in want.items() if k != "confidence"
        }
    c = stats["counts"]
    assert (c["lines"], c["lines_blank"], c["lines_bad"]) == (8, 1, 2)
    assert c["dead_letter:find_mentions"] == 1 and c["dead_letter:read"] == 2
    letters = _read(tmp, "dead_letter")
    assert sorted((d["stage"], d["line"]) for d in letters) == [
        ("find_mentions", 5), ("read", 1), ("read", 3)]  # fmt: skip
    assert all(d["reason"] for d in letters)
    triples = _read(tmp, "triples")
    assert stats["triples"] == len(triples) > 0
    assert any(t["subject_id"] == "Q1" for t in triples) or any(t["object_id"] for t in triples)


def test_refresh_processes_only_new_lines_and_load_replaces_the_graph(setup, capsys):
    tmp = setup
    first = json.loads((tmp / "out" / "stats.json").read_text())
    with open(tmp / "in" / "good.txt", "a", encoding="utf-8") as f:
        f.write("Werner Siemens was born in Berlin .\n")
    stats = run(_argv(tmp, "--refresh"))
    assert stats["balanced"] and stats["run_id"] == first["run_id"]
    assert stats["graph"] == first["graph"]
    c = stats["counts"]
    assert (c["lines_read"], c["lines_skipped_existing"], c["lines_blank"]) == (1, 7, 1)  # bad: not retried
    records = _read(tmp, "records")
    assert stats["records_total"] == len(records) == first["records"] + stats["records"]
    assert len(_read(tmp, "dead_letter")) == 3  # the first run's, kept
    triples = _read(tmp, "triples")
    assert c["triples:records"] == len(records)  # old and new records are aggregated together
    assert sum(t["mentions"] for t in triples) == c["triples:used"] > 0

    store = str(tmp / "store")
    assert main(["kg", "load", "--input", str(tmp / "out"), "--store", store]) == 0
    loaded = json.loads(capsys.readouterr().out)
    count = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?st rdf:reifies ?t } }"
    assert main(["kg", "query", "--store", store, count]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": len(triples)}
    assert main(["kg", "load", "--input", str(tmp / "out"), "--store", store]) == 0
    assert json.loads(capsys.readouterr().out)["quads_after"] == loaded["quads_after"]
    assert main(["kg", "query", "--store", store, "--format", "csv", count]) == 0
    assert capsys.readouterr().out == f"n\n{len(triples)}\n"

    neo = tmp / "neo4j"
    assert main(["kg", "export", "--store", store, "--format", "neo4j", "--output", str(neo)]) == 0
    assert json.loads(capsys.readouterr().out)["relationships"] == len(triples)
    with open(neo / "nodes.csv", newline="", encoding="utf-8") as f:
        nodes = list(csv.reader(f))
    with open(neo / "relationships.csv", newline="", encoding="utf-8") as f:
        edges = list(csv.reader(f))
    assert nodes[0] == NODE_HEADER and edges[0] == EDGE_HEADER
    ids = {row[0] for row in nodes[1:]}
    assert len(edges) - 1 == len(triples) and all(e[0] in ids and e[1] in ids for e in edges[1:])
    for edge in edges[1:]:
        assert 0 <= float(edge[3]) <= 1 and int(edge[4]) >= 1 and json.loads(edge[7])
    assert {row[2] for row in nodes[1:]} & {"Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8"}

    qs = tmp / "qs.txt"
    argv = ["kg", "export", "--store", store, "--format", "quickstatements", "--output", str(qs)]
    assert main([*argv, "--stated-in", "Q123"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = qs.read_text().splitlines()
    assert summary["statements"] == len(lines)
    assert summary["statements"] + summary["skipped"] == len(triples)
    assert all(line.split("\t")[3:5] == ["S248", "Q123"] for line in lines)


def test_a_different_run_into_the_same_output_needs_overwrite(setup, capsys):
    tmp = setup
    assert main(["kg", "build", *_argv(tmp, "--threshold", "0.3")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def _model_copy(tmp, name):
    """A copy of the fixture's model (to put a threshold file beside), the good input, the KB finder."""
    import shutil

    shutil.copytree(tmp / "model", tmp / name)
    return str(tmp / name), str(tmp / "in" / "good.txt"), TextMentions(str(tmp / "kb"), "en")


def test_kg_build_cuts_at_the_calibrated_threshold_as_extract_does(setup):
    """Without --threshold both commands take threshold.json beside the model: equal records."""
    from relbridge.models.thresholds import THRESHOLD_FILE

    tmp = setup
    model, good, mentions = _model_copy(tmp, "model_cal")
    uncut, _ = extract_file(model, good, mentions_of=mentions)
    # a threshold halfway between two confidences far apart: some records stay, some go
    confidences = sorted({r["confidence"] for r in uncut})
    gaps = [(b - a, (a + b) / 2) for a, b in zip(confidences, confidences[1:])]
    threshold = max(gaps)[1]
    (tmp / "model_cal" / THRESHOLD_FILE).write_text(json.dumps({"threshold": threshold}))

    stats = run(_argv(tmp, out="out_cal", model="model_cal"))
    assert stats["balanced"]
    expected, _ = extract_file(model, good, mentions_of=mentions)
    assert 0 < len(expected) < len(uncut)
    got = [r for r in _read(tmp, "records", out="out_cal") if r["source_file"] == good]
    assert sorted(map(_key, got)) == sorted(map(_key, expected))
    by_key = {_key(r): r["confidence"] for r in got}
    for want in expected:
        assert by_key[_key(want)] == pytest.approx(want["confidence"], abs=1e-4)
    saved = json.loads((tmp / "out_cal" / "kg_config.json").read_text())
    assert saved["inference"]["threshold"] == threshold  # the resolved config names it
    explicit = run(_argv(tmp, "--threshold", str(threshold), out="out_cal", model="model_cal"))
    assert explicit["run_id"] == stats["run_id"]  # the same config, whichever way it was given
    from relbridge.kg.inference import Extractor
    from relbridge.kg.options import InferenceConfig

    alone = InferenceConfig(model, device="cpu")  # not through KgBuildConfig
    assert alone.threshold is None and Extractor(alone).cfg.threshold == threshold


def _snapshot(folder):
    return {
        os.path.relpath(p, folder): open(p, "rb").read()
        for p in glob.glob(str(folder / "**"), recursive=True)
        if os.path.isfile(p)
    }


def test_a_failed_kg_build_leaves_the_earlier_output_whole(setup, monkeypatch):
    """The job writes beside --output (relbridge run's staging): a crash changes nothing there."""
    import apache_beam as beam

    import relbridge.kg.build as build

    tmp = setup
    before = _snapshot(tmp / "out")
    real = build.build_pipeline

    def crashing(p, cfg, write, *args):
        stats = real(p, cfg, write, *args)
        _ = p | "Crash" >> beam.Create([1]) | "Raise" >> beam.Map(lambda _: 1 / 0)
        return stats

    monkeypatch.setattr(build, "build_pipeline", crashing)
    with pytest.raises(ZeroDivisionError):
        run(_argv(tmp, "--overwrite"))
    assert _snapshot(tmp / "out") == before and "COMPLETED" in before
    assert not glob.glob(str(tmp / ".out.staging-*"))  # the staged files went with the job


def test_a_second_kg_build_into_a_locked_output_stops_with_exit_2(setup, capsys):
    from relbridge.runtime.files import OutputLock

    tmp = setup
    with OutputLock(str(tmp / "out"), "other-run"):
        assert main(["kg", "build", *_argv(tmp)]) == 2
    assert "in use by another run (run other-run" in capsys.readouterr().err


def test_kg_build_given_a_training_folder_names_its_model(setup, capsys):
    tmp = setup  # it holds model/, as `relbridge train --output` writes it
    assert main(["kg", "build", *_argv(tmp, out="wrong-model", model="")]) == 2
    err = capsys.readouterr().err
    assert f"it has no extractor_config.json; did you mean {tmp / 'model'}?" in err, err
    assert not (tmp / "wrong-model" / "stats.json").exists()


def test_kg_build_decodes_spans_at_the_calibrated_span_threshold_as_extract_does(setup):
    """A span threshold beside the model switches both commands to span decoding, alike."""
    from relbridge.models.thresholds import THRESHOLD_FILE

    tmp = setup
    model, good, mentions = _model_copy(tmp, "model_span")
    marginal, _ = extract_file(model, good, mentions_of=mentions)
    (tmp / "model_span" / THRESHOLD_FILE).write_text(
        json.dumps({"threshold": 0.0, "span_threshold": 0.15})
    )
    expected, _ = extract_file(model, good, mentions_of=mentions)
    assert sorted(map(_key, expected)) != sorted(map(_key, marginal))  # other mentions, other pairs
    stats = run(_argv(tmp, out="out_span", model="model_span"))
    assert stats["balanced"]
    got = [r for r in _read(tmp, "records", out="out_span") if r["source_file"] == good]
    assert sorted(map(_key, got)) == sorted(map(_key, expected))
    saved = json.loads((tmp / "out_span" / "kg_config.json").read_text())
    assert saved["inference"]["span_threshold"] == 0.15  # in the config, so in the run id


def test_kg_build_weights_confidence_by_the_mentions_as_extract_does(setup):
    """A model calibrated with mention-weighted confidence: both commands weight it, alike."""
    from relbridge.models.thresholds import THRESHOLD_FILE

    tmp = setup
    model, good, mentions = _model_copy(tmp, "model_weighted")
    calibrated = {"threshold": 0.0, "span_threshold": 0.15}
    (tmp / "model_weighted" / THRESHOLD_FILE).write_text(json.dumps(calibrated))
    plain, _ = extract_file(model, good, mentions_of=mentions)
    calibrated["confidence"] = "relation_x_names"
    (tmp / "model_weighted" / THRESHOLD_FILE).write_text(json.dumps(calibrated))
    expected, _ = extract_file(model, good, mentions_of=mentions)

    def confidences(records):
        return sorted((_key(r), round(r["confidence"], 4)) for r in records)

    assert [k for k, _ in confidences(expected)] == [k for k, _ in confidences(plain)]
    assert sum(r["confidence"] for r in expected) < sum(r["confidence"] for r in plain)
    stats = run(_argv(tmp, out="out_weighted", model="model_weighted"))
    assert stats["balanced"]
    got = [r for r in _read(tmp, "records", out="out_weighted") if r["source_file"] == good]
    assert confidences(got) == confidences(expected)
    saved = json.loads((tmp / "out_weighted" / "kg_config.json").read_text())
    assert saved["inference"]["confidence"] == "relation_x_names"


def test_the_run_id_of_a_plain_confidence_config_is_what_it_was_before_the_setting(tmp_path):
    """Outputs built before `confidence` and `readings` were settings keep their run id: a
    refresh finds them."""
    import hashlib

    from relbridge.kg.options import InferenceConfig, KgBuildConfig, ReadConfig

    model = tmp_path / "model"
    model.mkdir()
    cfg = KgBuildConfig(ReadConfig(("in.txt",)), "out", InferenceConfig(str(model)))
    assert cfg.inference.confidence == "relation"  # no threshold.json beside the model
    before = cfg.to_dict()
    for key in ("output", "refresh", "overwrite", "run_id"):
        before.pop(key)
    del before["inference"]["confidence"], before["inference"]["readings"]
    text = json.dumps(before, sort_keys=True, default=list)
    assert cfg.run_id == hashlib.sha1(text.encode()).hexdigest()[:10]
    calibrated = {"threshold": 0.0, "span_threshold": None, "confidence": "relation_x_mentions"}
    (model / "threshold.json").write_text(json.dumps(calibrated))
    weighted = KgBuildConfig(ReadConfig(("in.txt",)), "out", InferenceConfig(str(model)))
    assert weighted.inference.confidence == "relation_x_mentions"
    assert weighted.run_id != cfg.run_id
    (model / "threshold.json").write_text(json.dumps(calibrated | {"readings": "lattice"}))
    lattice = KgBuildConfig(ReadConfig(("in.txt",)), "out", InferenceConfig(str(model)))
    assert lattice.inference.readings == "lattice"
    assert lattice.run_id not in (cfg.run_id, weighted.run_id)


def test_kg_build_scores_a_levitated_model_over_the_tagging_pass_as_extract_does(setup):
    """kg's RunInference handler takes extract's fast path: records as extract's and --exact's."""
    from relbridge.models.model_config import CONFIG_FILE
    from relbridge.models.scoring import ScoringConfig

    tmp = setup
    model, good, mentions = _model_copy(tmp, "model_levitated")
    config = json.loads((tmp / "model_levitated" / CONFIG_FILE).read_text())
    config["marker_mode"] = "levitated"  # the same weights, read with levitated markers
    (tmp / "model_levitated" / CONFIG_FILE).write_text(json.dumps(config))
    from relbridge.models.extract import iter_extract_file

    fast_stats, exact_stats = {}, {}
    fast = list(iter_extract_file(model, good, stats=fast_stats, mentions_of=mentions))
    exact = list(iter_extract_file(
        model, good, stats=exact_stats, mentions_of=mentions, scoring=ScoringConfig(exact=True)
    ))  # fmt: skip
    assert len(fast) > 3 and sorted(map(_key, fast)) == sorted(map(_key, exact))
    assert fast_stats["encoder_passes"] < exact_stats["encoder_passes"]
    stats = run(_argv(tmp, out="out_levitated", model="model_levitated"))
    assert stats["balanced"]
    got = [r for r in _read(tmp, "records", out="out_levitated") if r["source_file"] == good]
    assert sorted(map(_key, got)) == sorted(map(_key, fast))


def test_min_confidence_defaults_to_the_threshold_the_records_are_extracted_at(tmp_path):
    """Extraction already applied the calibrated (or given) threshold; 0.5 only without one."""
    import argparse

    from relbridge.kg.options import add_build_arguments, config_from_args

    model = tmp_path / "model"
    model.mkdir()
    parser = argparse.ArgumentParser()
    add_build_arguments(parser)
    argv = ["--input", "in.txt", "--output", str(tmp_path / "out"), "--model", str(model)]

    def config(*extra):
        return config_from_args(parser.parse_args([*argv, *extra]))

    uncalibrated = config()
    assert uncalibrated.triples.min_confidence == 0.5
    assert uncalibrated.run_id == config("--min-confidence", "0.5").run_id  # as before the default
    assert config("--threshold", "0.3").triples.min_confidence == 0.3
    (model / "threshold.json").write_text(json.dumps({"threshold": 0.1, "span_threshold": 0.1}))
    calibrated = config()
    assert calibrated.inference.threshold == calibrated.triples.min_confidence == 0.1
    assert config("--min-confidence", "0.7").triples.min_confidence == 0.7



def test_refreshes_that_find_nothing_new_succeed_again_and_again(tmp_path):
    """A refresh with no new line keeps the handled lines (so its batch id) as they were: it adds
    no empty files, or the next such refresh would stage a file of the same name and fail."""
    from relbridge.kg.write import KgOutputFolder

    out = tmp_path / "out"

    def publish(batch, refresh, text=""):
        with KgOutputFolder(str(out), "run1", refresh=refresh) as folder:
            staging = folder.stage(batch)
            for sub in ("records", "dead_letter", "handled", "triples"):
                name = "run1" if sub == "triples" else batch  # triples: rewritten by every run
                os.makedirs(os.path.join(staging, sub))
                path = os.path.join(staging, sub, f"part-{name}-00000-of-00001.jsonl")
                with open(path, "w") as f:
                    f.write(text)
            with open(os.path.join(staging, "stats.json"), "w") as f:
                json.dump({"run_id": "run1", "batch_id": batch}, f)
            folder.publish()
        return sorted(os.path.relpath(p, out) for p in glob.glob(str(out / "*" / "*")))

    first = publish("run1", False, "{}\n")
    assert publish("batch2", True) == publish("batch2", True) == first  # nothing new, twice
    assert "records/part-batch2-00000-of-00001.jsonl" in publish("batch2", True, "{}\n")
    (out / "records" / "part-batch3-00000-of-00001.jsonl").write_text("")  # an older version's
    publish("batch3", True, "{}\n")
    assert (out / "records" / "part-batch3-00000-of-00001.jsonl").read_text() == "{}\n"


def test_a_refresh_with_overwrite_of_another_runs_output_starts_over(tmp_path):
    """Records extracted with other settings are not this run's: none is kept or skipped."""
    from relbridge.kg.write import KgOutputFolder

    out = tmp_path / "out"

    def publish(run_id, refresh, overwrite=False):
        with KgOutputFolder(str(out), run_id, overwrite, refresh) as folder:
            staging = folder.stage(run_id)
            os.makedirs(os.path.join(staging, "records"))
            with open(os.path.join(staging, "records", f"part-{run_id}-0-of-1.jsonl"), "w") as f:
                f.write("{}\n")
            with open(os.path.join(staging, "stats.json"), "w") as f:
                json.dump({"run_id": run_id}, f)
            folder.publish()
            return folder.refresh

    assert publish("old", False) is False
    assert publish("old", True) is True  # its own output: a refresh adds to it
    with pytest.raises(ValueError, match="--overwrite"):
        publish("new", True)
    assert publish("new", True, overwrite=True) is False
    assert os.listdir(out / "records") == ["part-new-0-of-1.jsonl"]
