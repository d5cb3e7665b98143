"""The whole DAG on a tiny random encoder: counts add up, shards match the schema."""

import glob
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_pipeline_stages import write_kb

from relbridge.data_specs import SHARD_SCHEMA, read_shards
from relbridge.pipeline.main import build_pipeline, run
from relbridge.pipeline.options import add_arguments, config_from_args
from relbridge.pipeline.write_shards import COMPLETED

CORPUS = [
    "1\tAngela Merkel was born in Hamburg .\tAngela Merkel wurde in Hamburg geboren .",
    "2\tMerkel joined the CDU in 1990 .\tMerkel trat 1990 der CDU bei .",
    "3\tthe weather was fine .\tdas Wetter war gut .",
    "only one column",
    "5\tHamburg is a city .\t   ",
]


def pipeline_argv(tmp_path, tiny_encoder, *extra):
    corpus = tmp_path / "toy.tsv"
    if not corpus.exists():
        corpus.write_text("\n".join(CORPUS) + "\n")
    return [
        "--corpus", str(corpus), "--kb", write_kb(tmp_path), "--src-lang", "en", "--tgt-lang", "de",
        "--output", str(tmp_path / "out"), "--model", tiny_encoder, "--align-layer", "1", "--num-shards", "1",
        *extra,
    ]  # fmt: skip


def test_pipeline_end_to_end(tmp_path, tiny_encoder):
    stats = run(pipeline_argv(tmp_path, tiny_encoder))
    assert stats["input_records"] == 5
    assert stats["rows"] == 3 and stats["dead_letters"] == 2 and stats["balanced"]
    assert stats["counts"]["dead_letter:ReadBitext"] == 2
    # projection counts: every source mention is projected or dropped for a reason
    counts = stats["counts"]
    dropped = sum(v for k, v in counts.items() if k.startswith("projection:mentions_dropped"))
    assert counts["projection:mentions"] == counts["src_mentions"]
    assert counts["projection:mentions_projected"] + dropped == counts["projection:mentions"]
    assert counts["projection:mentions_projected"] == counts["tgt_mentions"]
    out = tmp_path / "out"
    assert os.path.exists(out / COMPLETED) and os.path.exists(out / "pipeline_config.json")
    (shard,) = glob.glob(str(out / "shards" / "*.parquet"))
    assert pq.read_schema(shard).names == SHARD_SCHEMA.names
    rows = {r.pair_id: r for r in read_shards(str(out / "shards"))}
    first = rows["toy:1"]
    assert [m.kb_id for m in first.src_mentions] == ["Q1", "Q2"]
    assert [(r.subject, r.object, r.label) for r in first.relations] == [
        (0, 1, "per:city_of_birth"),
        (1, 0, "NA"),
    ]
    assert first.alignment and all(0 <= s < 7 and 0 <= t < 7 for s, t in first.alignment)
    assert all(m.source_index in (0, 1) for m in first.tgt_mentions)
    assert rows["toy:3"].relations == ()
    # the English-only KB entities get the German names they were projected onto
    harvested = {e["id"]: e for e in map(json.loads, (out / "aliases.jsonl").open())}
    assert harvested["Q1"]["aliases"] == {"de": ["Angela Merkel", "Merkel"]}
    (merkel,) = [n for n in harvested["Q1"]["harvested"]["de"] if n["alias"] == "Merkel"]
    assert (merkel["count"], merkel["pair_ids"]) == (1, ["toy:2"]) and merkel["confidence"] > 0
    not_harvested = sum(counts.get(f"harvest:{k}", 0) for k in ("retyped", "not_a_name"))
    assert counts["harvest:mentions"] == counts["tgt_mentions"] - not_harvested
    letters = [
        json.loads(x)
        for f in glob.glob(str(out / "dead_letter" / "*.jsonl"))
        for x in Path(f).read_text().splitlines()
    ]
    assert sorted(d["line"] for d in letters) == [4, 5]


def test_shards_load_in_duckdb(tmp_path, tiny_encoder):
    duckdb = pytest.importorskip("duckdb")
    run(pipeline_argv(tmp_path, tiny_encoder))
    pattern = str(tmp_path / "out" / "shards" / "*.parquet")
    con = duckdb.connect()
    n_rows, n_mentions = con.execute(
        f"SELECT count(*), sum(len(src_mentions)) FROM read_parquet('{pattern}')"
    ).fetchone()
    assert (n_rows, n_mentions) == (3, 4)
    labels = con.execute(
        f"SELECT r.label FROM (SELECT unnest(relations) AS r FROM read_parquet('{pattern}')) ORDER BY 1"
    ).fetchall()
    assert [l for (l,) in labels] == ["NA", "NA", "per:city_of_birth", "per:member_of"]


def test_refresh_skips_pairs_already_written(tmp_path, tiny_encoder, capsys):
    from relbridge.cli.main import main

    def refresh() -> dict:
        assert main(["run", *pipeline_argv(tmp_path, tiny_encoder, "--skip-existing")]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the CLI's summary

    def dead_letter_lines() -> list[int]:
        files = glob.glob(str(tmp_path / "out" / "dead_letter" / "*.jsonl"))
        return sorted(
            json.loads(t)["line"] for f in files for t in Path(f).read_text().splitlines()
        )

    run(pipeline_argv(tmp_path, tiny_encoder))
    corpus = tmp_path / "toy.tsv"
    with open(corpus, "a") as f:
        f.write("6\tMerkel visited Hamburg .\tMerkel besuchte Hamburg .\n")
        f.write("7\t" + "word " * 300 + "\tWort\n")  # too long: a dead letter of Tokenize
    stats = refresh()
    # lines 4 and 5 were dead-lettered by the first run: skipped, not rejected again
    assert (stats["input_records"], stats["rows"], stats["dead_letters"]) == (7, 1, 1)
    assert stats["skipped_existing"] == 5 and stats["balanced"]
    assert stats["output"] == str(tmp_path / "out") and stats["seconds"] > 0
    ids = sorted(r.pair_id for r in read_shards(str(tmp_path / "out" / "shards")))
    assert ids == ["toy:1", "toy:2", "toy:3", "toy:6"]
    # the alias file counts the names of every row in the folder, old and new
    harvested = {e["id"]: e for e in map(json.loads, (tmp_path / "out" / "aliases.jsonl").open())}
    counts = {n["alias"]: (n["count"], n["pair_ids"]) for n in harvested["Q2"]["harvested"]["de"]}
    assert counts == {"Hamburg": (2, ["toy:1", "toy:6"])}
    stats = refresh()  # nothing new: everything skipped, no new rows or dead letters
    assert (stats["rows"], stats["dead_letters"], stats["skipped_existing"]) == (0, 0, 7)
    assert dead_letter_lines() == [4, 5, 7]
    assert len(list(read_shards(str(tmp_path / "out" / "shards")))) == 4


def test_a_run_with_other_settings_does_not_mix_with_an_old_output(tmp_path, tiny_encoder):
    out = tmp_path / "out"
    run(pipeline_argv(tmp_path, tiny_encoder))
    (old_shard,) = glob.glob(str(out / "shards" / "*.parquet"))
    other = pipeline_argv(tmp_path, tiny_encoder, "--max-mentions", "2")  # another run id
    with pytest.raises(ValueError, match="--overwrite"):
        run(other)
    # stopped before writing: the old output is whole and untouched
    assert glob.glob(str(out / "shards" / "*.parquet")) == [old_shard]
    assert os.path.exists(out / COMPLETED)
    stats = run(other + ["--overwrite"])
    (new_shard,) = glob.glob(str(out / "shards" / "*.parquet"))
    assert new_shard != old_shard and len(glob.glob(str(out / "dead_letter" / "*.jsonl"))) == 1
    assert stats["rows"] == len(read_shards(str(out / "shards"))) == 3
    assert json.loads((out / "pipeline_config.json").read_text())["label"]["max_mentions"] == 2
    # the same run again replaces its own files, without --overwrite (the names
    # hash the content, which eflomal's sampling may change)
    assert run(other)["rows"] == 3
    (again,) = glob.glob(str(out / "shards" / "*.parquet"))
    assert os.path.basename(again).split("-")[1] == os.path.basename(new_shard).split("-")[1]


def test_multi_processing_direct_runner(tmp_path, tiny_encoder):
    argv = pipeline_argv(
        tmp_path,
        tiny_encoder,
        "--direct_running_mode",
        "multi_processing",
        "--direct_num_workers",
        "2",
    )
    stats = run(argv)
    assert stats["rows"] == 3 and stats["balanced"]


def test_dataflow_pipeline_constructs_without_running(tmp_path, tiny_encoder):
    """A dry construction with Dataflow options: the DAG is runner-agnostic."""
    import argparse

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args, beam_args = parser.parse_known_args(
        pipeline_argv(tmp_path, tiny_encoder)
        + [
            "--runner",
            "DataflowRunner",
            "--project",
            "p",
            "--region",
            "europe-west1",
            "--temp_location",
            "gs://b/tmp",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.project.min_confidence == 0.3  # the documented default
    assert (
        config_from_args(
            parser.parse_args(
                pipeline_argv(tmp_path, tiny_encoder) + ["--min-projection-confidence", "0.6"]
            )
        ).project.min_confidence
        == 0.6
    )
    options = PipelineOptions(beam_args)
    assert options.get_all_options()["runner"] == "DataflowRunner"
    p = beam.Pipeline(runner="DirectRunner", options=options)
    build_pipeline(p, cfg)
    proto = p.to_runner_api()  # what a runner receives: the portable pipeline graph
    labels = {t.unique_name for t in proto.components.transforms.values()}
    assert {
        "ReadBitext",
        "Tokenize",
        "LabelWithKb",
        "AlignWords",
        "ProjectLabels",
        "WriteShards",
    } <= labels


def test_beam_flags_reach_beam_unabbreviated(tmp_path, tiny_encoder):
    # argparse takes any prefix of one of our flags for it ('--min-proj' for
    # '--min-projection-confidence'; Beam's '--project P' was one of a first name,
    # '--project-min-confidence'): flags we do not define must reach Beam as written
    from relbridge.cli.main import build_parser

    argv = ["run", *pipeline_argv(tmp_path, tiny_encoder), "--project", "p", "--min-proj", "0.5"]
    args, unknown = build_parser().parse_known_args(argv)
    assert unknown == ["--project", "p", "--min-proj", "0.5"]
    assert args.min_projection_confidence == 0.3


@pytest.mark.parametrize(
    "bad,message",
    [
        (["--src-lang", "en", "--tgt-lang", "en"], "two different languages"),
        (["--skip-existing", "--overwrite"], "pass one"),
        (["--min-projection-confidence", "1.5"], r"min_confidence must be in \[0, 1\]"),
    ],
)
def test_bad_options_fail_clearly(tmp_path, tiny_encoder, bad, message):
    with pytest.raises(ValueError, match=message):
        run(pipeline_argv(tmp_path, tiny_encoder) + bad)
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "bad,error,message",
    [
        (["--tgt-lang", "qq"], ValueError, "unknown target language code 'qq'"),
        (["--model", "./no-such-model"], FileNotFoundError, "no such local directory"),
    ],
)
def test_a_typo_stops_the_run_before_anything_is_written(
    tmp_path, tiny_encoder, bad, error, message
):
    with pytest.raises(error, match=message):
        run(pipeline_argv(tmp_path, tiny_encoder) + bad)
    assert not (tmp_path / "out").exists()


def test_a_malformed_kb_stops_the_run_before_anything_is_written(tmp_path, tiny_encoder):
    argv = pipeline_argv(tmp_path, tiny_encoder)
    with open(tmp_path / "kb" / "triples.tsv", "a") as f:
        f.write("Q1\tper:member_of\tQ404\n")
    with pytest.raises(ValueError, match=r"triples.tsv:\d+: .* unknown entity Q404"):
        run(argv)
    assert not (tmp_path / "out").exists()


def test_a_refresh_reads_earlier_dead_letters_line_by_line(tmp_path):
    from relbridge.pipeline.dead_letter import dead_letter, to_json
    from relbridge.pipeline.output import existing_outputs

    (tmp_path / "dead_letter").mkdir()
    letters = [  # JSON keeps U+2028 raw (ensure_ascii=False); only \n ends a letter
        dead_letter("ReadBitext", "bad", "c.tsv", 3, {"raw": "a\u2028b"}),
        dead_letter("Tokenize", "long", "c.tsv", 7, None),
    ]
    (tmp_path / "dead_letter" / "part-x-00000-of-00001.jsonl").write_text(
        "".join(to_json(d) + "\n" for d in letters), encoding="utf-8"
    )
    done = existing_outputs(str(tmp_path))
    corpus = os.path.abspath("c.tsv")  # older runs kept the path as given, relative to the run
    assert done.lines == {(corpus, 3), (corpus, 7)} and not done.pair_ids


def test_a_built_kb_index_labels_as_its_directory_does(tmp_path, tiny_encoder):
    from relbridge.cli.main import main

    argv = pipeline_argv(tmp_path, tiny_encoder)
    kb_dir = argv[argv.index("--kb") + 1]
    index = str(tmp_path / "kb.kbindex")
    assert main(["kb", "build", "--kb", kb_dir, "--output", index, "--profile", "en"]) == 0
    run(argv)
    config = json.loads((tmp_path / "out" / "pipeline_config.json").read_text())
    assert config["label"]["index"].endswith(".kbindex")  # the index the workers opened
    argv[argv.index("--kb") + 1] = index
    argv[argv.index("--output") + 1] = str(tmp_path / "out2")
    run(argv)

    def labels(out):
        return {r.pair_id: (r.src_mentions, r.relations) for r in read_shards(str(out / "shards"))}

    assert labels(tmp_path / "out2") == labels(tmp_path / "out")
    assert labels(tmp_path / "out")["toy:1"][1]  # the pair's fact was found
