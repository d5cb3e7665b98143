"""`relbridge evaluate | extract | train`: argument and input handling, on tiny files."""

import pytest
import test_loading

from relbridge.cli.train import _read_ids

saved_model = test_loading.saved_model  # a fixture: a tiny saved model


@pytest.mark.parametrize(
    "text, expected",
    [
        ("17647\n", {"17647"}),  # one id that happens to parse as a JSON number
        ("17647\n2\n", {"17647", "2"}),
        ('["a", 3]', {"a", "3"}),
        ('{"test": [1, 2], "dev": [3]}', {"1", "2"}),
        ("\n", set()),
    ],
)
def test_ids_files_one_per_line_or_json(tmp_path, text, expected):
    path = tmp_path / "ids.txt"
    path.write_text(text)
    assert _read_ids(str(path), "test") == expected


def test_an_ids_object_without_the_key_is_a_one_line_error(tmp_path):
    path = tmp_path / "ids.json"
    path.write_text('{"dev": [1]}')
    with pytest.raises(ValueError, match=r"ids.json: no 'test' list of ids .*\['dev'\]"):
        _read_ids(str(path), "test")


@pytest.mark.parametrize(
    "text, reason", [("{bad", "run.json:1: not JSON"), ("[1]", "run.json: expected a JSON object")]
)
def test_a_malformed_train_config_is_one_line_naming_the_file(tmp_path, capsys, text, reason):
    from relbridge.cli.main import main

    (tmp_path / "run.json").write_text(text)
    assert main(["train", "--config", str(tmp_path / "run.json")]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("relbridge train: error: ") and f"{tmp_path}/{reason}" in first


def test_a_failed_extract_leaves_no_partial_file(tmp_path, capsys):
    from relbridge.cli.main import main

    (tmp_path / "in.txt").write_text("Angela Merkel was born in Berlin .\n")
    out = tmp_path / "out.jsonl"
    argv = ["extract", "--input", str(tmp_path / "in.txt"), "--output", str(out)]
    assert main([*argv, "--model", str(tmp_path / "no-model")]) == 2
    assert "no-model is not a trained relbridge model" in capsys.readouterr().err
    assert main([*argv[:1], "--input", str(tmp_path), *argv[3:], "--model", "m"]) == 2  # a folder
    assert list(tmp_path.iterdir()) == [tmp_path / "in.txt"]


def test_extract_counts_and_locates_the_sentences_it_skips(saved_model, tmp_path, capsys):
    import json

    from relbridge.cli.main import main

    lines = ["<e1>Merkel</e1> met <e2>Macron</e2> .", "", "<e1> </e1>Merkel met <e2>Macron</e2> ."]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    argv = ["extract", "--model", str(saved_model), "--input", str(tmp_path / "in.txt")]
    assert main([*argv, "--output", str(tmp_path / "out.jsonl")]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["sentences"], summary["records"], summary["skipped"]) == (2, 1, 1)
    assert f"{tmp_path / 'in.txt'}:3: marked entities cover no word" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["extract", "--model", "m", "--input", "i", "--output", "o", "--batch-size", "-3"],
        ["extract", "--model", "m", "--input", "i", "--output", "o", "--batch-size", "0"],
        ["evaluate", "--model", "m", "--data", "d", "--batch-size", "0"],
        ["benchmark", "relx", "--kbp37", "k", "--relx", "r", "--raw-text-sentences", "-1"],
        ["extract", "--model", "m", "--input", "i", "--output", "o", "--batch-size", "x"],
    ],
)
def test_counts_out_of_range_are_usage_errors(argv, capsys):
    from relbridge.cli.main import main

    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"relbridge {argv[0]}") and f"{argv[-2]}: " in err
    assert ("must be at least" in err) != (argv[-1] == "x")


def test_extract_refuses_to_write_over_its_input(tmp_path, capsys):
    from relbridge.cli.main import main

    path = tmp_path / "in.txt"
    path.write_text("Angela Merkel was born in Berlin .\n")
    assert main(["extract", "--model", "m", "--input", str(path), "--output", str(path)]) == 2
    assert "--output is the --input file" in capsys.readouterr().err
    assert path.read_text() == "Angela Merkel was born in Berlin .\n"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--pr-curve", "{tmp}/no-folder/pr.png"], "no-folder/pr.png: not a file in an existing"),
        (["--pr-curve", "{tmp}"], ": not a file in an existing folder"),
        (["--raw-text", "--pr-curve", "{tmp}/pr.png"], "--pr-curve and --report only act without"),
        (["--raw-text", "--report", "{tmp}/r.html"], "--pr-curve and --report only act without"),
    ],
)
def test_evaluate_checks_its_figure_flags_before_it_scores(tmp_path, capsys, flags, message):
    """Not after minutes of scoring, when the metrics would be lost with the error."""
    from relbridge.cli.main import main

    argv = ["evaluate", "--model", "m", "--data", "RELX_en.txt"]
    assert main([*argv, *(f.format(tmp=tmp_path) for f in flags)]) == 2
    assert message in capsys.readouterr().err.splitlines()[0]


def test_data_with_nothing_to_train_on_is_one_line_naming_it(tiny_encoder, tmp_path, capsys):
    from test_models import RELX_TEXT

    from relbridge.cli.main import main

    empty, relx = tmp_path / "empty_en.txt", tmp_path / "RELX_en.txt"
    empty.write_text("")
    relx.write_text(RELX_TEXT)
    argv = ["--log-level", "ERROR", "train", "--output", str(tmp_path / "o")]
    argv += ["--model", tiny_encoder, "--no-progress"]
    assert main([*argv, "--relx-train", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"relbridge train: error: {empty}: no training pairs"]
    # RELX pairs have no KB ids, so no bags: was a bare "no instances to sample"
    assert main([*argv, "--relx-train", str(relx), "--aggregation", "attention"]) == 2
    err = capsys.readouterr().err  # (transformers' "Loading weights" bar comes first)
    assert "Traceback" not in err and err.count("error:") == 1
    assert f"{relx}: no training pairs (no bag: no pair has both KB" in err.splitlines()[-1]


def test_a_second_extract_into_the_same_output_is_refused(tmp_path, capsys):
    """Two extracts would write one OUTPUT.partial in turns and rename a mix of both."""
    from relbridge.cli.main import main
    from relbridge.runtime.files import OutputLock

    (tmp_path / "in.txt").write_text("Angela Merkel was born in Berlin .\n")
    out = tmp_path / "out.jsonl"
    argv = ["extract", "--model", "m", "--input", str(tmp_path / "in.txt"), "--output", str(out)]
    with OutputLock(str(out), "extract (pid 7)"):
        assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "out.jsonl is in use by another run (run extract (pid 7)" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_a_training_folder_given_as_the_model_is_named_with_its_model(tmp_path, capsys):
    from relbridge.cli.main import main
    from relbridge.models.model_config import CONFIG_FILE

    (tmp_path / "train" / "model").mkdir(parents=True)
    (tmp_path / "train" / "model" / CONFIG_FILE).write_text("{}")
    relx = tmp_path / "RELX_de.txt"
    relx.write_text('1\t"<e1> A </e1> in <e2> B </e2>"\nno_relation\n\n', encoding="utf-8")
    (tmp_path / "in.txt").write_text("Angela Merkel was born in Berlin .\n")
    for argv in (["evaluate", "--data", str(relx), "--format", "relx"],
                 ["extract", "--input", str(tmp_path / "in.txt"),
                  "--output", str(tmp_path / "r.jsonl")]):  # fmt: skip
        assert main([*argv, "--model", str(tmp_path / "train")]) == 2
        err = capsys.readouterr().err
        assert "train is not a trained relbridge model" in err, err
        assert f"did you mean {tmp_path / 'train' / 'model'}?" in err
    assert not (tmp_path / "r.jsonl").exists()


def test_a_remote_training_folder_is_named_with_its_model_too():
    from relbridge.models.model_config import CONFIG_FILE, check_model_dir

    stored = {f"gs://b/train/model/{CONFIG_FILE}"}  # what a gs:// bucket holds
    check_model_dir("gs://b/train/model", stored.__contains__)
    with pytest.raises(FileNotFoundError, match="did you mean gs://b/train/model\\?"):
        check_model_dir("gs://b/train", stored.__contains__)
    with pytest.raises(FileNotFoundError, match="writes the model to DIR/model"):
        check_model_dir("gs://b/other", stored.__contains__)
