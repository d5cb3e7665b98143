"""A KB's relation_map.json turns its source properties into the relations a model learns.

Both KB readers, `load_kb` (in memory) and `build_index` (streamed into SQLite),
must apply the same rules: first matching rule wins, types test the source
fact's arguments, levels its object, ``reverse`` swaps the arguments, and a fact
no rule maps is dropped.
"""

from __future__ import annotations

import json

import pytest

from relbridge.data_specs.formats import InputError
from relbridge.data_specs.kb_format import load_kb
from relbridge.data_specs.relation_map import MapRule, map_triple, parse_relation_map
from relbridge.kb import KbIndex, MatchProfile, build_index

RULES = {
    "P108": [{"kbp37": "per:employee_of", "reverse": False, "subject_type": ["PER"],
              "object_type": None, "object_level": None}],
    "P159": [
        {"kbp37": "org:city_of_headquarters", "reverse": False, "subject_type": None,
         "object_type": None, "object_level": ["city"]},
        {"kbp37": "org:country_of_headquarters", "reverse": False, "subject_type": None,
         "object_type": None, "object_level": ["country"]},
    ],
    "P527": [{"kbp37": "per:employee_of", "reverse": True, "subject_type": ["ORG"],
              "object_type": ["PER"], "object_level": None}],
}
ENTITIES = [
    ("Q1", "PER", "Ada Lovelace"),
    ("Q2", "ORG", "Analytical Society"),
    ("Q3", "LOC", "London"),
    ("Q4", "LOC", "England"),
    ("Q5", "ORG", "The Band"),
    ("Q6", "ORG", "Holding"),
]
FACTS = [
    ("Q1", "P108", "Q2"),  # PER employer ORG -> per:employee_of
    ("Q6", "P108", "Q2"),  # subject not PER: no rule matches, dropped
    ("Q2", "P159", "Q3"),  # object level city -> org:city_of_headquarters
    ("Q2", "P159", "Q4"),  # object level country -> org:country_of_headquarters
    ("Q5", "P159", "Q6"),  # object has no level: dropped
    ("Q5", "P527", "Q1"),  # band has part member -> member per:employee_of band
    ("Q1", "P31", "Q4"),  # property without rules: dropped
]
EXPECTED = {
    ("Q1", "per:employee_of", "Q2"),
    ("Q2", "org:city_of_headquarters", "Q3"),
    ("Q2", "org:country_of_headquarters", "Q4"),
    ("Q1", "per:employee_of", "Q5"),
}


@pytest.fixture
def mapped_kb(tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    with open(kb / "entities.jsonl", "w", encoding="utf-8") as f:
        for qid, kind, name in ENTITIES:
            f.write(json.dumps({"id": qid, "type": kind, "aliases": {"en": [name]}}) + "\n")
    with open(kb / "triples.jsonl", "w", encoding="utf-8") as f:
        for s, p, o in FACTS:
            f.write(json.dumps({"subject": s, "relation": p, "object": o}) + "\n")
    (kb / "relation_map.json").write_text(json.dumps(RULES))
    (kb / "location_levels.tsv").write_text("Q3\tcity\nQ4\tcountry\n")
    return kb


def test_the_first_matching_rule_decides_and_reverse_swaps_the_arguments():
    rules = parse_relation_map(json.dumps(RULES), "relation_map.json")
    assert rules["P527"] == (MapRule("per:employee_of", True, frozenset({"ORG"}), frozenset({"PER"})),)
    assert map_triple(rules, ("B", "P527", "M"), "ORG", "PER", None) == ("M", "per:employee_of", "B")
    assert map_triple(rules, ("O", "P159", "X"), "ORG", "LOC", "country") == (
        "O", "org:country_of_headquarters", "X")
    assert map_triple(rules, ("O", "P159", "X"), "ORG", "LOC", None) is None
    assert map_triple(rules, ("A", "P31", "B"), "PER", "LOC", None) is None


def test_the_in_memory_kb_reads_its_facts_through_the_map(mapped_kb):
    kb = load_kb(str(mapped_kb))
    assert set(kb.triples) == EXPECTED
    assert kb.relations == (
        "org:city_of_headquarters", "org:country_of_headquarters", "per:employee_of")


def test_the_index_maps_exactly_as_the_in_memory_kb(mapped_kb, tmp_path):
    out = tmp_path / "kb.kbindex"
    meta = build_index(str(mapped_kb), str(out), [MatchProfile("en")])
    assert meta["triples"] == len(EXPECTED)
    index = KbIndex.open(str(out))
    ids = [qid for qid, _, _ in ENTITIES]
    got = {(s, r, o) for s in ids for o in ids for r in index.relations(s, o)}
    assert got == EXPECTED
    assert index.relations_in_kb == list(load_kb(str(mapped_kb)).relations)


def test_without_a_levels_file_level_rules_never_fire(mapped_kb):
    (mapped_kb / "location_levels.tsv").unlink()
    assert set(load_kb(str(mapped_kb)).triples) == EXPECTED - {
        ("Q2", "org:city_of_headquarters", "Q3"),
        ("Q2", "org:country_of_headquarters", "Q4"),
    }


@pytest.mark.parametrize(
    "text, reason",
    [
        ("[1]", "expected"),
        ('{"P1": {"kbp37": "x"}}', "list of rules"),
        ('{"P1": [{"reverse": false}]}', "needs a relation name"),
        ('{"P1": [{"kbp37": "x", "subject_type": "PER"}]}', "list of names"),
        ('{"P1": [{"kbp37": "x", "reverse": "yes"}]}', "true or false"),
    ],
)
def test_a_malformed_map_names_its_file(text, reason):
    with pytest.raises(InputError, match=f"relation_map.json:1: .*{reason}"):
        parse_relation_map(text, "relation_map.json")


def test_a_malformed_levels_line_names_file_and_line(mapped_kb):
    (mapped_kb / "location_levels.tsv").write_text("Q3\tcity\nQ4 country\n")
    with pytest.raises(InputError, match=r"location_levels.tsv:2: expected id<TAB>level"):
        load_kb(str(mapped_kb))
