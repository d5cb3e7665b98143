"""Document pairs in, sentence pairs out: the encoder, the AlignSentences stage and `run --documents`."""

import glob
import json
from pathlib import Path

import numpy as np
import pytest
from test_pipeline_stages import write_kb

from relbridge.alignment.sentence_align import Unit
from relbridge.alignment.sentence_embed import DocumentEncoder, SentenceEmbedConfig
from relbridge.data_specs import read_shards
from relbridge.data_specs.formats import BitextRecord, InputError
from relbridge.pipeline.align_sentences import (
    AlignSentencesConfig,
    DocumentPair,
    ReadDocumentListFn,
    parse_document_line,
    sentence_counts,
    split_document,
    unit_outputs,
)
from relbridge.pipeline.main import run
from relbridge.pipeline.output import is_sentence_letter

SENTS = [
    "Angela Merkel was born in Hamburg .",
    "Merkel joined the CDU in 1990 .",
    "the weather was fine .",
    "Hamburg is a city in Germany .",
    "Siemens was founded in Berlin .",
]


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return DocumentEncoder(SentenceEmbedConfig(model=tiny_encoder, dtype="float32"))


def test_encoder_vectors_and_blocks(encoder):
    (doc,) = encoder.embed_documents([SENTS[:3]], max_side=2)
    assert doc.vectors.shape == (3, 32) and doc.lengths.tolist() == [len(s) for s in SENTS[:3]]
    assert np.allclose(np.linalg.norm(doc.vectors, axis=1), 1, atol=1e-4)
    assert set(doc.blocks) == {1, 2} and not doc.blocks[2][0].any()  # no block ends at 0 of size 2
    joined = encoder.encode([SENTS[0] + " " + SENTS[1]])[0]
    assert np.allclose(doc.blocks[2][1], joined, atol=1e-5)
    assert not encoder.encode([""]).any()  # no subwords: a zero vector, not NaN


def test_split_document():
    assert split_document("Ein Satz. Noch einer.\n\nDritter", "de", False) == [
        "Ein Satz.",
        "Noch einer.",
        "Dritter",
    ]
    assert split_document("a. b.\n\n  c \n", "en", True) == ["a. b.", "c"]


def test_parse_document_lines(tmp_path):
    (tmp_path / "a.en").write_text("x")
    (tmp_path / "a.de").write_text("y")
    manifest = str(tmp_path / "m.tsv")
    doc = parse_document_line("d1\ta.en\ta.de\n", manifest, 1, is_jsonl=False)
    assert (doc.doc_id, doc.src, doc.tgt) == ("d1", "x", "y")
    with pytest.raises(InputError, match="m.tsv:2: cannot read"):
        parse_document_line("d2\ta.en\tmissing.de", manifest, 2, is_jsonl=False)
    with pytest.raises(InputError, match="doc_id<TAB>"):
        parse_document_line("d3\ta.en", manifest, 3, is_jsonl=False)
    doc = parse_document_line('{"src": "a", "tgt": "b"}', "d.jsonl", 1, is_jsonl=True)
    assert len(doc.doc_id) == 16  # a content hash when there is no id
    with pytest.raises(InputError, match="d.jsonl:2"):
        parse_document_line('{"src": "a"}', "d.jsonl", 2, is_jsonl=True)


def test_unit_outputs_route_every_sentence_once():
    cfg = AlignSentencesConfig("d.jsonl", "en", "de", min_score=0.5)
    doc = DocumentPair("d", "d.jsonl", 4, "", "")
    units = [
        Unit((0,), (0,), 0.9),
        Unit((1, 2), (1,), 0.7),
        Unit((3,), (), 0.0),
        Unit((4,), (2, 3), 0.2),
    ]
    out = list(unit_outputs(doc, list("ABCDE"), list("abcd"), units, cfg))
    records = [o for o in out if isinstance(o, BitextRecord)]
    assert [(r.src, r.tgt, r.src_sentence_ids) for r in records] == [
        ("A", "a", (0,)),
        ("B C", "b", (1, 2)),
    ]
    assert records[1].pair_id == "d:d:1-2:1" and records[1].sentence_score == pytest.approx(0.7)
    letters = [o for o in out if isinstance(o, dict)]
    assert [letter["line"] for letter in letters] == [4, 4]
    assert "no counterpart" in letters[0]["reason"] and "below" in letters[1]["reason"]
    counts = sentence_counts(out)
    assert counts["sentence_alignment:paired_sentences"] == 5
    assert counts["sentence_alignment:unaligned_sentences"] == 4


def _sentences_in(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def _letters(out: Path) -> list[dict]:
    return [
        json.loads(x)
        for f in glob.glob(str(out / "dead_letter" / "*.jsonl"))
        for x in Path(f).read_text().splitlines()
    ]


def test_run_documents_counts_every_sentence(tmp_path, tiny_encoder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "1.en").write_text("\n".join(SENTS) + "\n")
    (docs / "1.de").write_text("\n".join(SENTS[:2] + SENTS[3:]) + "\n")  # one sentence dropped
    (docs / "2.en").write_text("\n".join(SENTS[2:4]) + "\n")
    (docs / "2.de").write_text("")  # an empty side: every source sentence unaligned
    manifest = tmp_path / "docs.tsv"
    manifest.write_text(
        "d1\tdocs/1.en\tdocs/1.de\n"
        "d2\tdocs/2.en\tdocs/2.de\n"
        "d1\tdocs/2.en\tdocs/2.de\n"  # a repeated id
        "d4\tdocs/4.en\tdocs/4.de\n"  # missing files
        "not a manifest line\n"
    )
    out = tmp_path / "out"
    stats = run([
        "--documents", str(manifest), "--presplit", "--kb", write_kb(tmp_path),
        "--src-lang", "en", "--tgt-lang", "de", "--output", str(out), "--model", tiny_encoder,
        "--align-layer", "1", "--num-shards", "1", "--min-sentence-score", "0.5",
    ])  # fmt: skip
    assert stats["balanced"]
    counts = stats["counts"]
    total = sum(_sentences_in(docs / f) for f in ("1.en", "1.de", "2.en", "2.de"))
    assert counts["sentence_alignment:document_sentences"] == total == 11
    assert counts["sentence_alignment:documents"] == 2
    rows = read_shards(str(out / "shards")) if stats["rows"] else []
    letters = _letters(out)
    in_rows = sum(len(r.src_sentence_ids) + len(r.tgt_sentence_ids) for r in rows)
    in_letters = sum(
        len(d["record"]["src_sentence_ids"]) + len(d["record"]["tgt_sentence_ids"])
        for d in letters
        if d["record"] and "src_sentence_ids" in d["record"]
    )
    assert in_rows + in_letters == total  # every sentence in one pair or one dead letter
    seen = {(r.doc_id, "s", i) for r in rows for i in r.src_sentence_ids}
    seen |= {(r.doc_id, "t", j) for r in rows for j in r.tgt_sentence_ids}
    for d in letters:
        if d["record"] and "src_sentence_ids" in d["record"]:
            rec = d["record"]
            seen |= {(rec["doc_id"], "s", i) for i in rec["src_sentence_ids"]}
            seen |= {(rec["doc_id"], "t", j) for j in rec["tgt_sentence_ids"]}
    assert len(seen) == total
    reasons = " | ".join(d["reason"] for d in letters)
    assert "repeats" in reasons and "cannot read" in reasons and "doc_id<TAB>" in reasons
    # identical sentences embed identically: the dropped one is the only gap in d1
    by_src = {r.src_sentence_ids: r.tgt_sentence_ids for r in rows}
    assert by_src == {(0,): (0,), (1,): (1,), (3,): (2,), (4,): (3,)}
    assert all(r.doc_id == "d1" and r.line == 1 and r.sentence_score > 0.5 for r in rows)
    assert counts["sentence_alignment:unaligned_sentences"] == 3  # d1's sentence 2, d2's two


def test_align_and_eval_commands(tmp_path, tiny_encoder, capsys):
    from relbridge.cli.main import main

    (tmp_path / "a.en").write_text("\n".join(SENTS) + "\n")
    (tmp_path / "a.de").write_text("\n".join(SENTS[:2] + SENTS[3:]) + "\n")
    (tmp_path / "b.en").write_text("\n".join(SENTS[:2]) + "\n")
    (tmp_path / "b.de").write_text("\n".join(SENTS[:2]) + "\n")
    (tmp_path / "a.gold").write_text("[0]:[0]\n[1]:[1]\n[2]:[]\n[3]:[2]\n[4]:[3]\n")
    (tmp_path / "b.gold").write_text("[0, 1]:[0, 1]\n")  # the gold is wrong on purpose
    docs = ["--src", str(tmp_path / "a.en"), "--tgt", str(tmp_path / "a.de"),
            "--src", str(tmp_path / "b.en"), "--tgt", str(tmp_path / "b.de"),
            "--model", tiny_encoder, "--dtype", "float32"]  # fmt: skip
    out = tmp_path / "units.txt"
    assert main(["align-sentences", *docs, "--output", str(out)]) == 0
    first, second = out.read_text().strip().split("\n\n")
    assert [line.rsplit(":", 1)[0] for line in first.splitlines()] == (
        (tmp_path / "a.gold").read_text().split()
    )
    assert second.splitlines()[0].startswith("[0]:[0]:")
    capsys.readouterr()
    gold = ["--gold", str(tmp_path / "a.gold"), "--gold", str(tmp_path / "b.gold")]
    assert main(["eval-sentence-align", *docs, *gold]) == 0
    result = json.loads(capsys.readouterr().out)
    # 5 of 7 test units exact (a's five), b's two 1-1 units are lax matches of its 2-2
    assert result["precision_strict"] == pytest.approx(5 / 7, abs=1e-4)
    assert result["precision_lax"] == 1.0 and result["recall_lax"] == 1.0
    assert result["sentences"] == 13 and result["sentences_per_s"] > 0
    (tmp_path / "bad.gold").write_text("[0]:[9]\n")
    assert main(["eval-sentence-align", *docs[:4], "--model", tiny_encoder,
                 "--gold", str(tmp_path / "bad.gold")]) == 2  # fmt: skip


def test_refresh_skips_documents_already_aligned(tmp_path, tiny_encoder):
    (tmp_path / "1.en").write_text("\n".join(SENTS) + "\n")
    (tmp_path / "1.de").write_text("\n".join(SENTS[:2] + SENTS[3:]) + "\n")
    (tmp_path / "2.en").write_text("\n".join(SENTS[2:4]) + "\n")
    (tmp_path / "2.de").write_text("")  # all of d2 ends in sentence dead letters, no rows
    manifest = tmp_path / "docs.tsv"
    manifest.write_text("d1\t1.en\t1.de\nd4\t4.en\t4.de\n")  # d4: missing files
    out = tmp_path / "out"
    argv = [
        "--documents", str(manifest), "--presplit", "--kb", write_kb(tmp_path),
        "--src-lang", "en", "--tgt-lang", "de", "--output", str(out), "--model", tiny_encoder,
        "--align-layer", "1", "--num-shards", "1",
    ]  # fmt: skip
    first = run(argv)
    assert first["rows"] == 4 and first["dead_letters"] == 2  # d1's dropped sentence, d4
    with open(manifest, "a") as f:
        f.write("d2\t2.en\t2.de\n")
    stats = run(argv + ["--skip-existing"])
    own = stats["run"]
    assert own["counts"]["sentence_alignment:documents"] == 1  # d1 was not embedded again
    assert own["skipped_existing"] == 2  # d1, and d4's unreadable line
    assert (own["rows"], own["dead_letters"]) == (0, 2)  # d2's two source sentences
    assert stats["balanced"] and (stats["rows"], stats["dead_letters"]) == (4, 4)
    stats = run(argv + ["--skip-existing"])  # nothing new: d2 is known from its dead letters
    own = stats["run"]
    assert "sentence_alignment:documents" not in own["counts"]
    assert (own["rows"], own["dead_letters"], own["skipped_existing"]) == (0, 0, 3)
    assert stats["balanced"] and (stats["rows"], stats["dead_letters"]) == (4, 4)
    assert len(_letters(out)) == 4  # no letter written twice


def test_an_empty_document_pair_is_one_dead_letter():
    """A manifest line whose two documents hold no sentence must not vanish."""
    cfg = AlignSentencesConfig("d.tsv", "en", "de")
    doc = DocumentPair("d9", "d.tsv", 4, " \n", "")
    (letter,) = unit_outputs(doc, [], [], [], cfg)
    assert (letter["source_file"], letter["line"]) == ("d.tsv", 4)
    assert letter["stage"] == "AlignSentences"
    assert "no sentence" in letter["reason"]
    assert is_sentence_letter(letter)  # a refresh knows the document as handled
    assert (letter["record"]["corpus"], letter["record"]["doc_id"]) == ("d", "d9")
    assert sentence_counts([letter]) == {"sentence_alignment:unaligned_sentences": 0}


@pytest.mark.parametrize(
    "ident,expected",
    [(None, None), ("", None), (7, "7"), (" a7 ", "a7"), (["a"], InputError), (True, InputError)],
)
def test_a_document_id_is_a_string_or_an_integer(ident, expected):
    """``"id": null`` means no id (a content hash), never the id "None" for every such line."""
    texts = [json.dumps({"src": f"a{i}", "tgt": "b", "id": ident}) for i in range(2)]
    if expected is InputError:
        with pytest.raises(InputError, match="d.jsonl:1: id must be a string or an integer"):
            parse_document_line(texts[0], "d.jsonl", 1, is_jsonl=True)
        return
    ids = [parse_document_line(t, "d.jsonl", 1, is_jsonl=True).doc_id for t in texts]
    if expected is None:
        assert len(ids[0]) == 16 and ids[0] != ids[1]  # one content hash per document
    else:
        assert ids == [expected, expected]


def test_a_lone_surrogate_in_a_jsonl_document_is_a_bad_line_with_its_raw_text(tmp_path):
    listing = tmp_path / "d.jsonl"
    lines = ['{"src": "a \\ud800 b", "tgt": "c"}', '{"src": "a", "tgt": "c", "id": "\\udc00"}']
    listing.write_text("\n".join([*lines, "not json"]) + "\n")
    fn = ReadDocumentListFn(AlignSentencesConfig(str(listing), "en", "de"))
    letters = [out.value for out in fn.process(str(listing))]
    assert [d["line"] for d in letters] == [1, 2, 3]
    assert "lone surrogate (\\ud800)" in letters[0]["reason"]
    assert '"id" holds a lone surrogate' in letters[1]["reason"]
    assert [d["record"]["raw"] for d in letters] == [*lines, "not json"]  # the line as read
