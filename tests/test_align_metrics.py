"""AER / precision / recall, Pharaoh and 'src ||| tgt' readers, and the eval-align CLI."""

import argparse
import json
import os

import pytest

from relbridge.alignment.metrics import (
    alignment_scores,
    check_gold_fits,
    format_pharaoh,
    parse_pair_line,
    parse_pharaoh,
    read_pairs,
    read_pharaoh,
)


def test_parse_pharaoh_sure_and_possible():
    gold = parse_pharaoh("1-1 2p3 3-2\n", one_based=True)
    assert gold.sure == {(0, 0), (2, 1)}
    assert gold.possible == {(0, 0), (1, 2), (2, 1)}  # P includes S
    assert parse_pharaoh("0-0 1p1").sure == {(0, 0)}
    assert parse_pharaoh("").possible == frozenset()


@pytest.mark.parametrize("line", ["1-x", "1:2", "1-2-3", "-1-2"])
def test_parse_pharaoh_rejects_garbage(line):
    with pytest.raises(ValueError, match="not a Pharaoh link"):
        parse_pharaoh(line)


def test_zero_index_in_one_based_gold_is_an_error():
    with pytest.raises(ValueError, match="below index 1"):
        parse_pharaoh("0-1", one_based=True)


def test_aer_on_hand_made_gold():
    # pair 1: S = {0-0, 1-1}, P = S + {1-2}; pair 2: S = {0-1}, P = S
    gold = [parse_pharaoh("0-0 1-1 1p2"), parse_pharaoh("0-1")]
    hyps = [[(0, 0), (1, 2), (2, 2)], [(0, 1)]]
    # |A| = 4, |S| = 3, |A&S| = 2 (0-0, 0-1), |A&P| = 3 (0-0, 1-2, 0-1)
    s = alignment_scores(hyps, gold)
    assert s.precision == pytest.approx(3 / 4)
    assert s.recall == pytest.approx(2 / 3)
    assert s.aer == pytest.approx(1 - (2 + 3) / (4 + 3))
    assert (s.pairs, s.hyp_links, s.sure_links) == (2, 4, 3)


def test_perfect_and_rejected_hypotheses():
    gold = [parse_pharaoh("0-0 1p1"), parse_pharaoh("0-0")]
    assert alignment_scores([[(0, 0)], [(0, 0)]], gold).aer == 0.0
    # a rejected pair (None) counts as no links: recall drops, precision does not
    s = alignment_scores([[(0, 0)], None], gold)
    assert s.precision == 1.0 and s.recall == 0.5
    with pytest.raises(ValueError, match="2 gold"):
        alignment_scores([[(0, 0)]], gold)


def test_pair_line_strips_separator_padding_and_keeps_ideographic_space():
    assert parse_pair_line("2 .   ||| 2 .  \n") == (["2", "."], ["2", "."])
    src, tgt = parse_pair_line("我 \u3000 好 ||| I am fine")
    assert src == ["我", "\u3000", "好"] and tgt == ["I", "am", "fine"]
    assert parse_pair_line(" ||| a") == ([], ["a"])
    with pytest.raises(ValueError, match="separator"):
        parse_pair_line("no separator here")


def test_readers_name_file_and_line(tmp_path):
    pairs = tmp_path / "x.src-tgt"
    pairs.write_text("a b ||| c\nbroken line\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x.src-tgt:2"):
        read_pairs(str(pairs))
    assert read_pairs(str(pairs), limit=1) == [(["a", "b"], ["c"])]
    gold = tmp_path / "x.gold"
    gold.write_text("0\t0-0 1p0\n1\t0-1\n", encoding="utf-8")  # simalign's id<TAB> prefix
    assert [g.sure for g in read_pharaoh(str(gold))] == [{(0, 0)}, {(0, 1)}]
    gold.write_text("1-1\n1-x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x.gold:2"):
        read_pharaoh(str(gold), one_based=True)


def test_gold_links_past_the_words_are_an_error_that_names_the_flag():
    pairs = [(["a", "b"], ["c"]), (["d"], ["e", "f"])]
    one_based = [parse_pharaoh("1-1 2-1", one_based=True), parse_pharaoh("1-2", one_based=True)]
    check_gold_fits(one_based, pairs, "g.gold", one_based=True)
    read_as_zero_based = [parse_pharaoh("1-1 2-1"), parse_pharaoh("1-2")]
    with pytest.raises(ValueError, match=r"g.gold:1: link 1-1 .* 2 x 1 words .*--gold-one-based"):
        check_gold_fits(read_as_zero_based, pairs, "g.gold")


def test_cli_reports_bad_input_in_one_line_with_status_2(tmp_path, capsys):
    from relbridge.cli.main import main

    pairs, gold = tmp_path / "t.src-tgt", tmp_path / "t.gold"
    pairs.write_text("a b ||| c\nno separator\n", encoding="utf-8")
    gold.write_text("1-1\n1-1\n", encoding="utf-8")
    assert main(["eval-align", "--pairs", str(pairs), "--gold", str(gold)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err  # one line, nothing after it
    assert err[0].startswith("relbridge eval-align: error: ") and "t.src-tgt:2" in err[0]
    assert main(["eval-align", "--pairs", str(tmp_path / "missing"), "--gold", str(gold)]) == 2
    assert "No such file" in capsys.readouterr().err
    # one pair, no gold line: stops before the model loads
    pairs.write_text("a b ||| c\n", encoding="utf-8")
    gold.write_text("", encoding="utf-8")
    assert main(["eval-align", "--pairs", str(pairs), "--gold", str(gold)]) == 2
    assert "t.gold has 0 lines for 1 pairs" in capsys.readouterr().err


def test_format_pharaoh_sorts():
    assert format_pharaoh([(2, 0), (0, 1)]) == "0-1 2-0"


@pytest.mark.parametrize("pair", ["enfr", "roen", "zhen"])
def test_dev_gold_indices_fit_the_sentences(shared_data, pair):
    folder = os.path.join(shared_data, "alignment", pair)
    pairs = read_pairs(os.path.join(folder, f"{pair}.src-tgt"))
    gold = read_pharaoh(os.path.join(folder, f"{pair}.gold"), one_based=True)
    assert len(pairs) == len(gold)
    check_gold_fits(gold, pairs, f"{pair}.gold", one_based=True)


def _eval_align(tmp_path, pairs_text: str, gold_text: str, *flags: str) -> dict:
    """Runs ``eval-align`` on two small files; returns its one JSON line."""
    import contextlib
    import io

    from relbridge.cli import align

    pairs, gold = tmp_path / "t.src-tgt", tmp_path / "t.gold"
    pairs.write_text(pairs_text, encoding="utf-8")
    gold.write_text(gold_text, encoding="utf-8")
    parser = argparse.ArgumentParser()
    align.register(parser.add_subparsers())
    args = parser.parse_args(["eval-align", "--pairs", str(pairs), "--gold", str(gold), *flags])
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert args.func(args) == 0
    lines = stdout.getvalue().strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_eval_align_cli_prints_one_json_line(tiny_encoder, tmp_path):
    out = tmp_path / "links.txt"
    report = _eval_align(
        tmp_path,
        "the city of Berlin  ||| die Stadt Berlin \nAngela Merkel ||| Angela Merkel \n",
        "1-1 2-2 4p3\n1-1 2-2\n",
        *("--gold-one-based", "--model", tiny_encoder, "--layer", "1", "--method", "mai"),
        *("--device", "cpu", "--output", str(out), "--batch-size", "1"),
        *("--aligner", "simalign.argmax.v1"),
    )
    assert report["pairs"] == 2 and report["failed"] == 0 and report["pairs_per_s"] > 0
    assert set(report["by_method"]) == {"argmax", "itermax", "match"}
    assert 0.0 <= report["aer"] <= 1.0 and report["config"]["layer"] == 1
    assert report["aer"] == report["by_method"]["argmax"]["aer"]
    assert len(out.read_text().splitlines()) == 2


def test_eval_align_defaults_to_the_pipeline_preset():
    from relbridge.alignment.aligner import DEFAULT_PRESET, aligner_config
    from relbridge.cli import align

    parser = argparse.ArgumentParser()
    align.register(parser.add_subparsers())
    args = parser.parse_args(["eval-align", "--pairs", "p", "--gold", "g", "--layer", "5"])
    assert align.config_from_args(args) == aligner_config(DEFAULT_PRESET, layer=5)


def test_eval_align_cli_preset_and_limit(tiny_encoder, tmp_path):
    report = _eval_align(
        tmp_path,
        "Paris ||| Paris\nBerlin ||| Berlin\n",
        "0-0\n0-0\n",
        *("--model", tiny_encoder, "--layer", "2", "--aligner", "simalign.itermax.v1"),
        *("--limit", "1", "--device", "cpu"),
    )
    assert report["pairs"] == 1 and report["config"]["method"] == "itermax" and report["aer"] == 0.0


def test_eval_align_cli_statistical_links(tiny_encoder, tmp_path):
    extra = tmp_path / "extra.src-tgt"
    extra.write_text("Paris is big ||| Paris ist gross\n" * 20, encoding="utf-8")
    report = _eval_align(
        tmp_path,
        "Paris is big ||| Paris ist gross\nBerlin is big ||| Berlin ist gross\n",
        "0-0 1-1 2-2\n0-0 1-1 2-2\n",
        *("--model", tiny_encoder, "--layer", "1", "--device", "cpu", "--statistical", "only"),
        *("--statistical-extra-corpus", str(extra)),
    )
    assert set(report["by_method"]) == {"argmax", "eflomal"}
    assert report["aer"] == report["by_method"]["eflomal"]["aer"]
    assert report["config"]["statistical"] == "only"
    assert report["config"]["eflomal"]["extra_corpus"] == str(extra)


def test_cli_rejects_gold_and_pairs_that_do_not_match(tmp_path, capsys):
    """Extra gold lines (a gold file for another pairs file) and nothing to score are errors,
    not a silently truncated gold or an AER of 0.0 over no pairs."""
    from relbridge.cli.main import main

    pairs, gold = tmp_path / "t.src-tgt", tmp_path / "t.gold"
    pairs.write_text("a b ||| c\n", encoding="utf-8")
    gold.write_text("0-0\n1-0\n", encoding="utf-8")
    argv = ["eval-align", "--pairs", str(pairs), "--gold", str(gold)]
    assert main(argv) == 2
    assert "t.gold has 2 lines for 1 pairs" in capsys.readouterr().err
    pairs.write_text("", encoding="utf-8")
    gold.write_text("", encoding="utf-8")
    assert main(argv) == 2
    assert f"{pairs}: no sentence pairs" in capsys.readouterr().err
    pairs.write_text("a b ||| c\n", encoding="utf-8")
    gold.write_text("0-0\n", encoding="utf-8")
    assert main([*argv, "--limit", "0"]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err


def test_cli_writes_links_whole(tiny_encoder, tmp_path, monkeypatch):
    """--output appears complete or not at all: a failed write keeps the old file."""
    from relbridge.alignment import metrics

    out = tmp_path / "links.txt"
    flags = ("--model", tiny_encoder, "--layer", "2", "--statistical", "off", "--device", "cpu",
             "--output", str(out))  # fmt: skip
    _eval_align(tmp_path, "Paris ||| Paris\nBerlin ||| Berlin\n", "0-0\n0-0\n", *flags)
    assert out.read_text() == "0-0\n0-0\n"
    real, written = metrics.format_pharaoh, []

    def fails_on_the_second_line(links):
        if written:
            raise OSError("disk full")
        written.append(links)
        return real(links)

    monkeypatch.setattr(metrics, "format_pharaoh", fails_on_the_second_line)
    with pytest.raises(OSError, match="disk full"):
        _eval_align(tmp_path, "Paris ||| Paris\nBerlin ||| Berlin\n", "0-0\n0-0\n", *flags)
    assert out.read_text() == "0-0\n0-0\n"
    assert sorted(os.listdir(tmp_path)) == ["links.txt", "t.gold", "t.src-tgt"]
