"""Alias harvesting: projected names per KB entity, the alias file, and using it to link."""

import json

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from relbridge.cli.main import main
from relbridge.data_specs import InputError, KnowledgeBase, Mention, ProjectedMention, ShardRow
from relbridge.data_specs.aliases import add_aliases, load_alias_files, parse_alias_lines
from relbridge.data_specs.kb_format import Entity, parse_entities
from relbridge.models.triples import EntityLinker
from relbridge.pipeline.harvest import HarvestAliases, HarvestConfig, projected_names


def _row(pair_id, src, tgt, tgt_lang, mentions):
    """A projected row: ``mentions`` are (kb_id, type, src span, tgt span, tgt type, confidence)."""
    src_tokens, tgt_tokens = src.split(), tgt.split() if tgt_lang != "zh" else list(tgt)
    src_m = tuple(Mention(s, e, kb, t) for kb, t, (s, e), _, _, _ in mentions)
    tgt_m = tuple(
        ProjectedMention(s, e, kb, tt, "", k, c)
        for k, (kb, _, _, (s, e), tt, c) in enumerate(mentions)
    )
    return ShardRow(pair_id, "c", "f", 1, "en", tgt_lang, src, tgt, tuple(src_tokens),
                    tuple(tgt_tokens), src_mentions=src_m, tgt_mentions=tgt_m)  # fmt: skip


ROWS = [
    _row("p1", "the United States and Belgium", "die Vereinigten Staaten und belgische", "de",
         [("Q30", "LOC", (1, 3), (1, 3), "LOC", 0.9), ("Q31", "LOC", (4, 5), (4, 5), "MISC", 0.8)]),
    _row("p2", "United States troops", "Truppen der Vereinigten Staaten", "de",
         [("Q30", "LOC", (0, 2), (2, 4), "LOC", 0.7)]),
    _row("p0", "the United States", "die USA", "de", [("Q30", "LOC", (1, 3), (1, 2), "LOC", 1.0)]),
    _row("p3", "Xi Jinping spoke", "习近平讲话", "zh", [("Q15", "PER", (0, 2), (0, 3), "PER", 0.6)]),
    _row("p4", "every human", "jeder Mensch", "de", [("Q5", "MISC", (1, 2), (1, 2), "MISC", 1.0)]),
]  # fmt: skip


def test_a_projected_mention_is_a_name_in_the_raw_target_text():
    assert list(projected_names(ROWS[0])) == [
        (("Q30", "LOC", "de", "Vereinigten Staaten"), (1, 0.9, ("p1",))),
        "retyped",  # belgische is an adjective of Belgium, not a name of it
    ]
    (name,) = projected_names(ROWS[3])
    assert name[0] == ("Q15", "PER", "zh", "习近平")  # no spaces between its words
    assert list(projected_names(ROWS[4])) == ["not_a_name"]  # a raw KB alias that is a common noun


def test_harvest_counts_names_per_entity_and_merges_an_earlier_file(tmp_path):
    previous = tmp_path / "old.jsonl"
    previous.write_text(
        json.dumps({"id": "Q30", "type": "LOC", "aliases": {"de": ["USA"]}, "harvested": {"de": [
            {"alias": "USA", "count": 3, "confidence": 0.5, "pair_ids": ["p9"]}]}}) + "\n"
    )  # fmt: skip
    out = tmp_path / "aliases.jsonl"
    with TestPipeline() as p:
        counts = (
            p | beam.Create(ROWS) | HarvestAliases(HarvestConfig(str(out), previous=str(previous)))
        )
        assert_that(
            counts,
            equal_to([{"harvest:entities": 2, "harvest:names": 3, "harvest:mentions": 7},
                      {"harvest:retyped": 1}, {"harvest:not_a_name": 1}]),
        )  # fmt: skip
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [e["id"] for e in lines] == ["Q15", "Q30"]  # sorted: the same bytes in any runner
    us = lines[1]
    assert us["type"] == "LOC" and us["aliases"] == {"de": ["USA", "Vereinigten Staaten"]}
    usa, vs = us["harvested"]["de"]
    assert (usa["count"], usa["pair_ids"]) == (4, ["p0", "p9"])
    assert usa["confidence"] == pytest.approx((3 * 0.5 + 1.0) / 4)
    assert (vs["count"], vs["pair_ids"], vs["confidence"]) == (2, ["p1", "p2"], pytest.approx(0.8))
    assert not (tmp_path / "aliases.jsonl.tmp").exists()
    # the file is a KB entities file as it is
    entities = parse_entities(out.read_text().splitlines(), "aliases.jsonl")
    assert entities["Q15"].aliases == {"zh": ("习近平",)}


def test_alias_files_are_checked_and_filtered(tmp_path):
    path = tmp_path / "aliases.jsonl"
    path.write_text(
        json.dumps({"id": "Q30", "type": "LOC", "harvested": {"de": [
            {"alias": "USA", "count": 4, "confidence": 0.9},
            {"alias": "Staaten", "count": 1, "confidence": 0.9},
            {"alias": "Amerika", "count": 5, "confidence": 0.3}]}}) + "\n"
        + json.dumps({"id": "Q7", "type": "LOC", "aliases": {"ka": ["თბილისი"]}}) + "\n"
    )  # fmt: skip
    kept = load_alias_files([str(path)], min_count=2, min_confidence=0.5)
    assert kept["Q30"].aliases == {"de": ("USA",)} and kept["Q7"].aliases == {"ka": ("თბილისი",)}
    for bad, reason in [
        ('{"id": "Q1", "aliases": {"de": "USA"}}', "must map a language to a list"),
        ('{"id": "Q1", "harvested": {"de": [{"alias": "USA", "count": 0}]}}', "count must be"),
        ('{"id": "Q1", "harvested": {"de": ["USA"]}}', "a harvested name must be an object"),
        ('{"id": null, "aliases": {}}', "expected an entity"),
        ("{broken", "invalid JSON"),
    ]:
        with pytest.raises(InputError, match=f"a.jsonl:2: .*{reason}"):
            list(parse_alias_lines(["", bad], "a.jsonl"))


def test_harvested_names_link_german_text_to_english_only_entities(tmp_path, capsys):
    kb = KnowledgeBase(
        {"Q30": Entity("Q30", "LOC", {"en": ("United States",)}),
         "Q1": Entity("Q1", "PER", {"en": ("Joe Biden",)})},
        frozenset({("Q1", "per:countries_of_residence", "Q30")}),
    )  # fmt: skip
    extra = {"Q30": Entity("Q30", "LOC", {"de": ("Vereinigten Staaten",)}),
             "Q99": Entity("Q99", "PER", {"de": ("Niemand",)})}  # fmt: skip
    merged = add_aliases(kb, extra)
    assert EntityLinker(kb).link("Vereinigten Staaten").id is None
    assert EntityLinker(merged).link("vereinigten  staaten").id == "Q30"
    assert set(merged.entities) == {"Q30", "Q1"} and merged.triples == kb.triples
    assert merged.entities["Q30"].aliases == {
        "en": ("United States",),
        "de": ("Vereinigten Staaten",),
    }
    # the CLI: --kb-aliases with the file the pipeline writes
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    (kb_dir / "entities.tsv").write_text("Q30\tLOC\ten\tUnited States\nQ1\tPER\ten\tJoe Biden\n")
    (kb_dir / "triples.tsv").write_text("Q1\tper:countries_of_residence\tQ30\n")
    aliases = tmp_path / "aliases.jsonl"
    aliases.write_text(json.dumps({"id": "Q30", "type": "LOC", "harvested": {"de": [
        {"alias": "Vereinigten Staaten", "count": 2, "confidence": 0.9, "pair_ids": ["a", "b"]}]}}))  # fmt: skip
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"subject": "Joe Biden", "relation": "per:countries_of_residence",
                                   "object": "Vereinigten Staaten", "confidence": 0.9}) + "\n")  # fmt: skip
    out = tmp_path / "kg.jsonl"
    argv = ["triples", "--input", str(records), "--output", str(out), "--kb", str(kb_dir)]
    for extra_args, linked in (([], None), (["--kb-aliases", str(aliases)], "Q30")):
        assert main([*argv, *extra_args]) == 0
        summary = json.loads(capsys.readouterr().out)
        (triple,) = map(json.loads, out.read_text().splitlines())
        assert triple["object_id"] == linked
        assert summary["in_kb"] == (linked is not None)
    assert main([*argv, "--kb-aliases", str(aliases), "--kb-aliases-min-count", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["in_kb"] == 0


def test_news_linking_benchmark_maps_relations_and_scores_links(tmp_path):
    from benchmark_scripts import load_benchmark

    bench = load_benchmark("news_linking")
    kb = KnowledgeBase(
        {"Q1": Entity("Q1", "ORG", {"en": ("Acme",)}), "Q2": Entity("Q2", "LOC", {"en": ("Bonn",)}),
         "Q3": Entity("Q3", "LOC", {"en": ("Germany", "Bonn")})},
        frozenset({("Q1", "P159", "Q2"), ("Q1", "P159", "Q3")}),
    )  # fmt: skip
    rule = {"kbp37": "org:city_of_headquarters", "reverse": False, "subject_type": None,
            "object_type": None, "object_level": ["city"]}  # fmt: skip
    (tmp_path / "relation_map.json").write_text(json.dumps({"P159": [rule]}))
    (tmp_path / "location_levels.tsv").write_text("Q2\tcity\nQ3\tcountry\n")
    mapped = bench.kbp37_mapper(kb, str(tmp_path))
    assert mapped("Q1", "P159", "Q2") == ("org:city_of_headquarters", False)
    assert mapped("Q1", "P159", "Q3") is None and mapped("Q1", "P17", "Q2") is None
    mentions = [("p", "Q1", "ORG", "ACME"), ("p", "Q2", "LOC", "Bonn"), ("p", "Q3", "LOC", "Bonn"),
                ("p", "Q3", "LOC", "Deutschland")]  # fmt: skip
    shares = bench.link_shares(EntityLinker(kb), mentions)
    assert (shares["linked_right"], shares["ambiguous_with_right"], shares["unknown"]) == (1, 2, 1)
    assert shares["linked_share"] == 0.25
