"""Projection evaluation: metrics on hand-made spans, gold loaders and the CLI (no model)."""

import json

import pytest

from relbridge.cli.main import main
from relbridge.data_specs.formats import bio_spans
from relbridge.data_specs.languages import language_in_name
from relbridge.data_specs.schema import Mention, RelationInstance
from relbridge.projection.projection import ProjectConfig
from relbridge.projection.projection_eval import (
    GoldPair,
    evaluate,
    load_conll_pairs,
    load_relx_pairs,
    score_spans,
    strip_edge_punctuation,
)

RELX_EN = (
    '1\t"<e1> Acme Corp </e1> hired <e2> John Smith </e2> ."\n'
    "per:employee_of(e2,e1)\n\n"
    '2\t"<e1> Paris </e1> is in <e2> France </e2> ."\n'
    "no_relation\n\n"
)
# the German side reorders record 1: John Smith comes first, so the label flips
RELX_DE = (
    '1\t"<e1> John Smith </e1> arbeitet für <e2> Acme Corp </e2> ."\n'
    "per:employee_of(e1,e2)\n\n"
    '2\t"<e1> Paris </e1> liegt in <e2> Frankreich </e2> ."\n'
    "no_relation\n\n"
)
CONLL_EN = "the\tO\nEuropean\tB-ORG\nUnion\tI-ORG\nand\tO\nSpain\tB-LOC\n\nhello\tO\n\n"
CONLL_ES = "la\tO\nUnión\tB-ORG\nEuropea\tI-ORG\ny\tO\nEspaña\tB-LOC\n\nhola\tO\n\n"


def test_score_spans_exact_and_tokens():
    pred = [(0, 2, "ORG"), (3, 4, "LOC")]
    gold = [(0, 2, "ORG"), (3, 5, "LOC")]
    assert score_spans(pred, gold) == (2, 2, 1, 3, 4, 3)
    # a right span with the wrong type counts for neither
    assert score_spans([(0, 2, "PER")], [(0, 2, "ORG")]) == (1, 1, 0, 2, 2, 0)
    assert score_spans([], [(0, 1, "X")]) == (0, 1, 0, 0, 1, 0)


def test_bio_spans():
    tags = ["O", "B-ORG", "I-ORG", "B-ORG", "I-LOC", "O", "I-PER"]
    assert bio_spans(tags) == [(1, 3, "ORG"), (3, 4, "ORG"), (4, 5, "LOC"), (6, 7, "PER")]


def test_evaluate_counts_roles_not_marker_order(tmp_path):
    (tmp_path / "en.txt").write_text(RELX_EN, encoding="utf-8")
    (tmp_path / "de.txt").write_text(RELX_DE, encoding="utf-8")
    pairs = load_relx_pairs(str(tmp_path / "en.txt"), str(tmp_path / "de.txt"))
    assert len(pairs) == 2
    first = pairs[0]
    subject = next(m for m in first.src_mentions if m.type == "subject")
    assert first.src_words[subject.start : subject.end] == ("John", "Smith")
    assert ("subject" in {g[2] for g in first.tgt_gold}) and len(first.tgt_gold) == 2
    # en: Acme(0) Corp(1) hired(2) John(3) Smith(4) .(5); de: John Smith arbeitet für Acme Corp .
    links = [
        [(0, 4), (1, 5), (2, 2), (3, 0), (4, 1), (5, 6)],
        [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)],
    ]
    cfg = ProjectConfig(verbatim_spans=False, verbatim_anchors=False)
    scores = evaluate(pairs, links, cfg).as_dict()
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0 and scores["f1"] == 1.0
    assert scores["both_exact"] == 1.0 and scores["token_f1"] == 1.0
    # 'France' has no link: it is missed in recall, not in precision
    links[1] = [(0, 0)]
    errors = []
    scores = evaluate(pairs, links, cfg, errors).as_dict()
    assert scores["precision"] == 1.0 and scores["recall"] == 0.75
    assert scores["both_exact"] == 0.5 and len(errors) == 1


def test_evaluate_conll_by_type(tmp_path):
    (tmp_path / "en.conll").write_text(CONLL_EN, encoding="utf-8")
    (tmp_path / "es.conll").write_text(CONLL_ES, encoding="utf-8")
    pairs = load_conll_pairs(str(tmp_path / "en.conll"), str(tmp_path / "es.conll"))
    assert [m.type for m in pairs[0].src_mentions] == ["ORG", "LOC"]
    assert pairs[0].tgt_gold == ((1, 3, "ORG"), (4, 5, "LOC"))
    links = [[(0, 0), (1, 2), (2, 1), (3, 3), (4, 4)], [(0, 0)]]
    scores = evaluate(pairs, links, ProjectConfig()).as_dict()
    assert scores["f1"] == 1.0 and "both_exact" not in scores
    assert scores["counts"]["mentions_projected"] == 2


def test_evaluate_requires_one_link_list_per_pair():
    pair = GoldPair(("A",), ("A",), (Mention(0, 1, "x", "LOC"),), ((0, 1, "LOC"),))
    with pytest.raises(ValueError):
        evaluate([pair, pair], [[(0, 0)]], ProjectConfig())


def test_relx_both_exact_needs_both_entities():
    pair = GoldPair(
        ("Ann", "met", "Bob"),
        ("Ann", "traf", "Bob"),
        (Mention(0, 1, "subject", "subject"), Mention(2, 3, "object", "object")),
        ((0, 1, "subject"), (2, 3, "object")),
        (RelationInstance(0, 1, "per:x"),),
    )
    cfg = ProjectConfig(verbatim_spans=False, verbatim_anchors=False)
    assert evaluate([pair], [[(0, 0), (2, 2)]], cfg).as_dict()["both_exact"] == 1.0
    assert evaluate([pair], [[(0, 0), (2, 1)]], cfg).as_dict()["both_exact"] == 0.0


def test_punct_insensitive_scores_forgive_punctuation_inside_the_gold_markers(tmp_path):
    # RELX de 19516: the translator put the comma inside the markers, '<e2>, Jeffrey Skilling </e2>'
    en = '7\t"<e1> Enron </e1> fired <e2> Jeffrey Skilling </e2> ."\nper:employee_of(e2,e1)\n\n'
    de = '7\t"<e1> Enron </e1> entließ <e2>, Jeffrey Skilling </e2> ."\nper:employee_of(e2,e1)\n\n'
    (tmp_path / "en.txt").write_text(en, encoding="utf-8")
    (tmp_path / "de.txt").write_text(de, encoding="utf-8")
    pairs = load_relx_pairs(str(tmp_path / "en.txt"), str(tmp_path / "de.txt"))
    assert pairs[0].tgt_words[2:5] == (",", "Jeffrey", "Skilling")
    links = [[(0, 0), (1, 1), (2, 3), (3, 4), (4, 5)]]
    cfg = ProjectConfig(verbatim_spans=False, verbatim_anchors=False)
    scores = evaluate(pairs, links, cfg).as_dict()
    assert (scores["exact"], scores["both_exact"]) == (1, 0.0)  # the strict metric counts it wrong
    lenient = scores["punct_insensitive"]
    assert (lenient["exact"], lenient["f1"], lenient["both_exact"]) == (2, 1.0, 1.0)
    # a wrong word stays wrong
    links = [[(0, 0), (1, 1), (2, 1), (3, 4), (4, 5)]]
    assert evaluate(pairs, links, cfg).as_dict()["punct_insensitive"]["exact"] == 1


def test_strip_edge_punctuation():
    words = ["(", "CEN", ")", "-", "Metro", "Inc", "."]
    assert strip_edge_punctuation([(0, 3, "ORG"), (3, 7, "ORG")], words) == [
        (1, 2, "ORG"),
        (4, 6, "ORG"),
    ]
    assert strip_edge_punctuation([(3, 4, "X")], words) == [(3, 4, "X")]  # punctuation only: kept


def test_cli_with_saved_links(tmp_path, capsys):
    (tmp_path / "en.conll").write_text(CONLL_EN, encoding="utf-8")
    (tmp_path / "es.conll").write_text(CONLL_ES, encoding="utf-8")
    (tmp_path / "links.txt").write_text("0-0 1-2 2-1 3-3 4-4\n0-0\n", encoding="utf-8")
    argv = [
        "eval-projection",
        "--format",
        "conll",
        "--src",
        str(tmp_path / "en.conll"),
        "--tgt",
        str(tmp_path / "es.conll"),
        "--links",
        str(tmp_path / "links.txt"),
        "--min-confidence",
        "0.2",
        "--no-verbatim-spans",
        "--errors",
        str(tmp_path / "errors.tsv"),
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["f1"] == 1.0
    assert report["languages"] == ["en", "es"]  # from the file names
    assert report["project_config"]["min_confidence"] == 0.2
    assert report["project_config"]["verbatim_spans"] is False
    assert report["project_config"]["verbatim_anchors"] is True
    assert (tmp_path / "errors.tsv").read_text() == ""


def test_cli_reads_fallback_links_beside_saved_links(tmp_path, capsys):
    # the second sentence's entity word has no main link; its itermax link projects it
    en = CONLL_EN.replace("hello\tO", "Lebanon\tB-LOC")
    es = CONLL_ES.replace("hola\tO", "Líbano\tB-LOC")
    (tmp_path / "en.conll").write_text(en, encoding="utf-8")
    (tmp_path / "es.conll").write_text(es, encoding="utf-8")
    (tmp_path / "links.txt").write_text("0-0 1-2 2-1 3-3 4-4\n\n", encoding="utf-8")
    argv = [
        "eval-projection", "--format", "conll",
        "--src", str(tmp_path / "en.conll"), "--tgt", str(tmp_path / "es.conll"),
        "--links", str(tmp_path / "links.txt"),
    ]  # fmt: skip
    assert main(argv) == 0
    without = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (tmp_path / "links.txt.itermax").write_text("0-0 1-2 2-1 3-3 4-4\n0-0\n", encoding="utf-8")
    assert main(argv) == 0
    with_fallback = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert with_fallback["exact"] == without["exact"] + 1
    assert with_fallback["project_config"]["fallback_method"] == "itermax"
    assert main([*argv, "--fallback-method", ""]) == 0
    off = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert off["exact"] == without["exact"]


def test_demo_scorer_matches_rows_by_role(tmp_path):
    # the demo scores shard rows with the same span matching as eval-projection
    from relbridge.data_specs.relx import read_relx
    from relbridge.data_specs.schema import ProjectedMention, ShardRow
    from relbridge.demo.projection_score import score_rows

    (tmp_path / "en.txt").write_text(RELX_EN, encoding="utf-8")
    (tmp_path / "de.txt").write_text(RELX_DE, encoding="utf-8")
    en = {r.id: r for r in read_relx(str(tmp_path / "en.txt"))}
    de = {r.id: r for r in read_relx(str(tmp_path / "de.txt"))}
    src = ("Acme", "Corp", "hired", "John", "Smith", ".")
    tgt = ("John", "Smith", "arbeitet", "für", "Acme", "Corp", ".")
    rel = RelationInstance(1, 0, "per:employee_of", tgt_subject=0, tgt_object=1, projected=True)

    def row(tgt_mentions):
        return ShardRow(
            "relx:1", "relx", "f", 1, "en", "de", " ".join(src), " ".join(tgt), src, tgt,
            src_mentions=(Mention(0, 2, "ACME"), Mention(3, 5, "JS")),
            tgt_mentions=tgt_mentions, relations=(rel,),
        )  # fmt: skip

    right = (
        ProjectedMention(0, 2, "JS", "", "", 1, 1.0),
        ProjectedMention(4, 6, "ACME", "", "", 0, 1.0),
    )
    got = score_rows([row(right)], en, de)
    assert (got["f1"], got["both_exact"], got["relation_roles_exact"]) == (1.0, 1.0, 1.0)
    half = (ProjectedMention(0, 1, "JS", "", "", 1, 1.0), right[1])
    got = score_rows([row(half)], en, de)
    assert (got["precision"], got["both_exact"], got["relation_roles_exact"]) == (0.5, 0.0, 0.0)


def test_align_pairs_aligns_the_whole_set_like_the_pipeline(tiny_encoder):
    """A preset with eflomal gets the statistical links too: eflomal sees the whole set."""
    from test_statistical import toy_corpus

    from relbridge.alignment.aligner import AlignConfig, WordAligner
    from relbridge.projection.projection_eval import GoldPair, align_pairs

    pairs = [GoldPair(tuple(s), tuple(t), (), ()) for s, t in toy_corpus(40)]
    cfg = AlignConfig(model=tiny_encoder, layer=1, statistical="union")
    links, by_method = align_pairs(pairs, WordAligner(cfg), methods=["eflomal"])
    assert len(links) == len(by_method["eflomal"]) == len(pairs) > 0
    assert all(
        set(map(tuple, e)) <= set(map(tuple, a)) for a, e in zip(links, by_method["eflomal"])
    )
    assert any(by_method["eflomal"])


def test_language_in_name_reads_iso_codes_only():
    assert language_in_name("../shared/data/relx/RELX_de.txt") == "de"
    assert language_in_name("data/es-europarl.test.conll02") == "es"
    assert language_in_name("en.conll") == "en"
    assert language_in_name("de_ner.conll") == "de"
    assert language_in_name("RELX_en_de.txt") == "de"  # the last code wins
    assert language_in_name("gold.txt") is None
    assert language_in_name("kbp37/dev.txt") is None  # not a language called "dev"
