"""`relbridge align-sentences` / `eval-sentence-align` on bad input: one line, status 2."""

import os
import stat

import pytest

from relbridge.cli.main import main

SENTS = ["Angela Merkel was born in Hamburg .", "Siemens was founded in Berlin ."]


def _error(capsys) -> str:
    """The error line of the last command (the line that names the problem)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if ": error: " in x]
    return line


@pytest.fixture
def docs(tmp_path):
    (tmp_path / "a.en").write_text("\n".join(SENTS) + "\n", encoding="utf-8")
    (tmp_path / "a.de").write_text("\n".join(SENTS) + "\n", encoding="utf-8")
    return tmp_path


def test_a_file_that_is_not_utf8_names_its_line(docs, capsys):
    (docs / "bad.en").write_bytes(b"fine\n\xff\xfe broken\n")
    argv = ["align-sentences", "--src", str(docs / "bad.en"), "--tgt", str(docs / "a.de")]
    assert main([*argv, "--output", str(docs / "out.txt")]) == 2
    assert f"{docs / 'bad.en'}:2: not valid UTF-8" in _error(capsys)
    (docs / "bad.gold").write_bytes(b"[0]:[0]\n[1]:\xff[1]\n")
    argv = ["eval-sentence-align", "--src", str(docs / "a.en"), "--tgt", str(docs / "a.de")]
    assert main([*argv, "--gold", str(docs / "bad.gold")]) == 2
    assert f"{docs / 'bad.gold'}:2: not valid UTF-8" in _error(capsys)


def test_a_gold_file_with_a_byte_order_mark_is_read(docs):
    from relbridge.alignment.sentence_eval import read_alignment

    (docs / "bom.gold").write_bytes(b"\xef\xbb\xbf[0]:[0]\n[1]:[1]\n")
    assert read_alignment(str(docs / "bom.gold")) == [((0,), (0,)), ((1,), (1,))]


@pytest.mark.parametrize("content", ["", "\n", "  \n\n"])
def test_an_empty_document_is_an_error(docs, capsys, content):
    (docs / "empty.de").write_text(content, encoding="utf-8")
    # no encoder exists there: the check must come before one is loaded
    argv = ["align-sentences", "--src", str(docs / "a.en"), "--tgt", str(docs / "empty.de"),
            "--model", str(docs / "no-model")]  # fmt: skip
    assert main([*argv, "--output", str(docs / "out.txt")]) == 2
    assert f"{docs / 'empty.de'}: no sentences" in _error(capsys)
    assert not (docs / "out.txt").exists()


def test_a_gold_unit_outside_the_documents_names_its_line(docs, capsys):
    (docs / "a.gold").write_text("[0]:[0]\n\n[1]:[5]\n", encoding="utf-8")
    argv = ["eval-sentence-align", "--src", str(docs / "a.en"), "--tgt", str(docs / "a.de")]
    assert main([*argv, "--gold", str(docs / "a.gold")]) == 2
    assert f"{docs / 'a.gold'}:3: unit [1]:[5] is outside" in _error(capsys)


def test_an_empty_gold_file_is_an_error(docs, capsys):
    (docs / "a.gold").write_text("\n", encoding="utf-8")
    argv = ["eval-sentence-align", "--src", str(docs / "a.en"), "--tgt", str(docs / "a.de"),
            "--model", str(docs / "no-model")]  # fmt: skip
    assert main([*argv, "--gold", str(docs / "a.gold")]) == 2
    assert f"{docs / 'a.gold'}: no alignment units" in _error(capsys)


def test_units_file_is_readable_like_any_output(docs, tiny_encoder):
    """The units are written whole under the umask's permissions, no temp file left beside."""
    out = docs / "units.txt"
    argv = ["align-sentences", "--src", str(docs / "a.en"), "--tgt", str(docs / "a.de"),
            "--model", tiny_encoder, "--dtype", "float32", "--output", str(out)]  # fmt: skip
    old = os.umask(0o022)
    try:
        assert main(argv) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert len(out.read_text().splitlines()) == 2
    assert sorted(os.listdir(docs)) == ["a.de", "a.en", "units.txt"]


def test_a_mistyped_split_language_is_an_error(docs, capsys):
    argv = ["align-sentences", "--src", str(docs / "a.en"), "--tgt", str(docs / "a.de"),
            "--split", "en", "deutsch", "--model", str(docs / "no-model"),
            "--output", "-"]  # fmt: skip
    assert main(argv) == 2
    assert "unknown target language code 'deutsch'" in _error(capsys)


def test_splitting_documents_does_not_import_beam(tmp_path):
    """align-sentences splits text as run --documents does, without Beam's 2 s import."""
    import subprocess
    import sys

    (tmp_path / "a.txt").write_text("Ein Satz. Noch einer.\n")
    (tmp_path / "b.txt").write_text("Une phrase. Encore une.\n")
    code = (
        "import argparse, sys\n"
        "from relbridge.cli.sentences import _documents\n"
        f"a = argparse.Namespace(src=[{str(tmp_path / 'a.txt')!r}], "
        f"tgt=[{str(tmp_path / 'b.txt')!r}], split=['de', 'fr'])\n"
        "print(_documents(a), 'apache_beam' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "[(['Ein Satz.', 'Noch einer.'], ['Une phrase.', 'Encore une.'])] False"
    )
