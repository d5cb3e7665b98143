"""Issue 16: nothing lost, nothing corrupted, nothing unsafe, on the pipeline's output side.

Each test reproduces one defect found by fault and bad-input testing (see the
issue) on the tiny random encoder, and shows the fix.
"""

import glob
import json
import os
import shutil
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
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


CORPUS = [
    "1\tAngela Merkel was born in Hamburg .\tAngela Merkel wurde in Hamburg geboren .",
    "2\tMerkel joined the CDU in 1990 .\tMerkel trat 1990 der CDU bei .",
    "3\tthe weather was fine .\tdas Wetter war gut .",
    "only one column",
]


class HookedPipeline(beam.Pipeline):
    """A pipeline that calls ``hook()`` when it is run, before (or instead of) running."""

    def __init__(self, hook):
        super().__init__(runner="DirectRunner")
        self.hook = hook

    def run(self, test_runner_api="AUTO"):
        self.hook()
        return super().run(test_runner_api)


def shard_rows(out: Path) -> int:
    return sum(pq.read_metadata(f).num_rows for f in glob.glob(str(out / "shards" / "*.parquet")))


def readable(out: Path) -> dict:
    """What a reader that loads ``out`` finds: complete marker, stats, rows under shards/."""
    stats = json.loads((out / "stats.json").read_text())
    return {
        "completed": (out / "COMPLETED").exists(),
        "stats_rows": stats["rows"],
        "rows": shard_rows(out),
        "everything": sorted(str(p.relative_to(out)) for p in (out / "shards").rglob("*")),
    }


def test_a_second_run_into_a_locked_output_folder_stops_with_exit_2(
    tmp_path, tiny_encoder, capsys
):
    from relbridge.cli.main import main

    first = base_argv(tmp_path, tiny_encoder, CORPUS)
    second = base_argv(tmp_path, tiny_encoder, CORPUS[:2], "--max-mentions", "3", name="b.tsv")
    codes = []
    run(first, test_pipeline=HookedPipeline(lambda: codes.append(main(["run", *second]))))
    assert codes == [2]  # the second run refused while the first ran
    err = capsys.readouterr().err
    assert str(tmp_path / "out") in err and "in use by another run" in err and "pid" in err
    config = json.loads((tmp_path / "out" / "pipeline_config.json").read_text())
    assert config["ingest"]["corpus"].endswith("toy.tsv")  # one run's files only
    assert shard_rows(tmp_path / "out") == 3
    # the lock died with its holder: a lock file left behind does not stop a run
    (tmp_path / ".out.relbridge.lock").write_text('{"pid": 999999999}')
    assert run(second + ["--overwrite"])["rows"] == 2


def test_a_crashed_rerun_keeps_the_old_output_whole_and_readable(tmp_path, tiny_encoder):
    out = tmp_path / "out"
    argv = base_argv(tmp_path, tiny_encoder, CORPUS)
    run(argv)
    before = readable(out)
    assert before["completed"] and before["rows"] == before["stats_rows"] == 3

    def crash():
        assert readable(out) == before  # while the new run runs, readers see the old output
        raise RuntimeError("killed mid-run")

    rerun = argv + ["--max-mentions", "3", "--overwrite"]
    with pytest.raises(RuntimeError, match="killed"):
        run(rerun, test_pipeline=HookedPipeline(crash))
    assert readable(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []

    def check_old():
        assert readable(out) == before

    stats = run(rerun, test_pipeline=HookedPipeline(check_old))
    after = readable(out)
    assert after["completed"] and after["rows"] == stats["rows"] == 3
    assert after["everything"] != before["everything"]  # the new run's files


def test_leftover_cleanup_of_one_output_leaves_a_similar_names_staging_alone(tmp_path):
    from relbridge.pipeline.staging import remove_leftovers

    (tmp_path / ".run[1].staging-a").mkdir()  # this output's killed run
    (tmp_path / ".run1.staging-b").mkdir()  # a run into "run1", which "run[1]" matches as a glob
    remove_leftovers(str(tmp_path / "run[1]"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run1.staging-b"]


def test_leftovers_of_a_killed_run_are_removed_by_the_rerun(tmp_path, tiny_encoder):
    out = tmp_path / "out"
    argv = base_argv(tmp_path, tiny_encoder, CORPUS)
    run(argv)
    (shard,) = glob.glob(str(out / "shards" / "*.parquet"))
    # what kill -9 left: Beam's temp folder holding a complete Parquet file,
    # and a half-written staging folder
    temp = out / "shards" / "beam-temp-part-x-0123456789abcdef"
    temp.mkdir()
    shutil.copy(shard, temp / "0123.parquet")
    (tmp_path / ".out.staging-x" / "shards").mkdir(parents=True)
    assert shard_rows(out) == 3 and len(pq.ParquetDataset(str(out / "shards")).files) == 2
    run(argv)
    assert not temp.exists() and not (tmp_path / ".out.staging-x").exists()
    assert len(pq.ParquetDataset(str(out / "shards")).files) == 1
    assert pq.ParquetDataset(str(out / "shards")).read().num_rows == 3


def test_stats_json_of_a_refresh_describes_the_whole_folder(tmp_path, tiny_encoder):
    out = tmp_path / "out"
    argv = base_argv(tmp_path, tiny_encoder, CORPUS)
    run(argv)
    with open(tmp_path / "toy.tsv", "a") as f:
        f.write("5\tMerkel visited Hamburg .\tMerkel besuchte Hamburg .\n")
    stats = run(argv + ["--skip-existing"])
    assert stats["rows"] == shard_rows(out) == 4
    assert stats["dead_letters"] == 1 and stats["input_records"] == 5 and stats["balanced"]
    assert (stats["run"]["rows"], stats["run"]["skipped_existing"]) == (1, 4)
    assert stats["counts"]["rows"] == 4 and len(stats["shard_files"]) == 2
    assert all(os.path.exists(f) for f in stats["shard_files"] + stats["dead_letter_files"])
    stats = run(argv + ["--skip-existing"])  # nothing new
    assert (stats["rows"], stats["run"]["rows"], stats["run"]["skipped_existing"]) == (4, 0, 5)
    assert stats["balanced"] and stats["rows"] == shard_rows(out)
    assert len(stats["shard_files"]) == 2 and len(stats["dead_letter_files"]) == 1  # no empty files


def output_files(out: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for sub in ("shards", "dead_letter") for p in (out / sub).iterdir()
    }


def test_identical_runs_give_identical_shards_or_say_why_not(tmp_path, tiny_encoder):
    import hashlib

    lines = CORPUS + [
        f"{i}\tMerkel saw Hamburg {i} times .\tMerkel sah {i} mal Hamburg ." for i in range(5, 15)
    ]
    off = ("--align-statistical", "off", "--num-shards", "3")
    a = run(base_argv(tmp_path, tiny_encoder, lines, *off, out="a"))
    workers = ("--direct_running_mode", "multi_threading", "--direct_num_workers", "2")
    run(base_argv(tmp_path, tiny_encoder, lines, *off, *workers, out="b"))
    assert a["reproducible"] == {"byte_identical": True} and a["rows"] == 13
    assert output_files(tmp_path / "a") == output_files(tmp_path / "b")  # names and bytes
    assert len([n for n in output_files(tmp_path / "a") if n.endswith(".parquet")]) == 3

    # eflomal cannot be seeded: stats.json says so, and a name always means one content
    c = run(base_argv(tmp_path, tiny_encoder, lines, out="c"))
    files_c = output_files(tmp_path / "c")
    run(base_argv(tmp_path, tiny_encoder, lines, out="c"))  # the same run again
    assert c["reproducible"]["byte_identical"] is False and "eflomal" in c["reproducible"]["why"]
    files_d = output_files(tmp_path / "c")
    for name in files_c.keys() & files_d.keys():
        assert files_c[name] == files_d[name], name
    for name, data in {**files_c, **files_d}.items():
        assert name.split("-")[2] == hashlib.sha1(data).hexdigest()[:12]


def test_an_unparseable_beam_flag_is_an_error(tmp_path, tiny_encoder, capsys):
    from relbridge.cli.main import main

    argv = base_argv(tmp_path, tiny_encoder, CORPUS, "--runnr", "DirectRunner")
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert "--runnr" in err and "did you mean --runner?" in err
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_a_refresh_of_a_renamed_corpus_file_warns_and_names_corpus_name(
    tmp_path, tiny_encoder, caplog
):
    run(base_argv(tmp_path, tiny_encoder, CORPUS))
    grown = CORPUS + ["5\tMerkel visited Hamburg .\tMerkel besuchte Hamburg ."]
    argv = base_argv(tmp_path, tiny_encoder, grown, "--skip-existing", name="toy-v2.tsv")
    with caplog.at_level("WARNING"):
        stats = run(argv)
    assert stats["run"]["skipped_existing"] == 0  # every pair again, under new ids
    (warning,) = [r.getMessage() for r in caplog.records if "skipped nothing" in r.getMessage()]
    assert "--corpus-name toy" in warning and "'toy-v2'" in warning
    caplog.clear()
    with caplog.at_level("WARNING"):  # as the warning says: nothing is added twice
        grown.append("6\tParis is a city .\tParis ist eine Stadt .")
        stats = run(base_argv(tmp_path, tiny_encoder, grown, "--skip-existing", "--corpus-name",
                              "toy", name="toy-v3.tsv"))  # fmt: skip
    # toy:1-3 are skipped; the bad line 4 is dead-lettered again (dead letters are
    # known by file and line) and line 5 is added as toy:5 beside toy-v2:5
    assert stats["run"]["rows"] == 2 and stats["run"]["skipped_existing"] == 3
    assert not [r for r in caplog.records if "skipped nothing" in r.getMessage()]


def test_an_output_that_is_a_file_is_refused_and_kept(tmp_path, tiny_encoder, capsys):
    """``--output`` naming a file (the corpus itself, by a typo) never replaces that file."""
    from relbridge.cli.main import main

    argv = base_argv(tmp_path, tiny_encoder, CORPUS)
    corpus = argv[argv.index("--corpus") + 1]
    argv[argv.index("--output") + 1] = corpus
    before = Path(corpus).read_bytes()
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert f"{corpus} exists and is not a folder" in err and "Traceback" not in err
    assert Path(corpus).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_refresh_with_other_settings_is_refused_and_keeps_the_output(tmp_path, tiny_encoder):
    """--skip-existing adds rows beside the old ones: made two ways, they would mix unseen."""
    out = tmp_path / "out"
    run(base_argv(tmp_path, tiny_encoder, CORPUS))
    before = output_files(out)
    grown = CORPUS + ["5\tMerkel visited Hamburg .\tMerkel besuchte Hamburg ."]
    other = ("--skip-existing", "--max-mentions", "3", "--align-statistical", "off")
    conflicts = r"made with other settings \(align\..*label\.max_mentions"
    with pytest.raises(ValueError, match=conflicts):
        run(base_argv(tmp_path, tiny_encoder, grown, *other))
    assert output_files(out) == before
    # where the input is and how many threads compute it may change
    stats = run(base_argv(tmp_path, tiny_encoder, grown, "--skip-existing", name="toy-v2.tsv",
                          out="out"))  # fmt: skip
    assert stats["balanced"] and stats["rows"] == shard_rows(out)
