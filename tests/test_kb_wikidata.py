"""The Wikidata dump converter, on a few hand-written dump lines."""

from __future__ import annotations

import gzip
import json

import pytest

from relbridge.data_specs.formats import InputError
from relbridge.data_specs.kb_format import load_kb
from relbridge.kb import MatchProfile, open_kb
from relbridge.kb.wikidata import WikidataConfig, convert_dump


def item(qid, labels, aliases=None, claims=None):
    return {
        "type": "item",
        "id": qid,
        "labels": {lang: {"language": lang, "value": v} for lang, v in labels.items()},
        "aliases": {
            lang: [{"language": lang, "value": v} for v in values]
            for lang, values in (aliases or {}).items()
        },
        "claims": {
            prop: [
                {
                    "mainsnak": {
                        "snaktype": "value",
                        "property": prop,
                        "datavalue": {
                            "value": {"entity-type": "item", "numeric-id": int(o[1:]), "id": o},
                            "type": "wikibase-entityid",
                        },
                    },
                    "rank": rank,
                }
                for o, rank in objects
            ]
            for prop, objects in (claims or {}).items()
        },
    }


DUMP = [
    item("Q64", {"en": "Berlin", "de": "Berlin", "fr": "Berlin"}, {"en": ["Berlin, Germany", " Berlin "]},
         {"P17": [("Q183", "normal")], "P31": [("Q515", "preferred")], "P1376": [("Q183", "deprecated")]}),
    item("Q183", {"en": "Germany", "de": "Deutschland"}, {"de": ["BRD"]}, {"P31": [("Q6256", "normal")]}),
    item("Q567", {"en": "Angela  Merkel"}, {}, {"P27": [("Q183", "normal")], "P31": [("Q5", "normal")],
                                                 "P19": [("Q1055", "normal")],  # not in the dump
                                                 "P106": [("Q82955", "normal")]}),
    item("Q90", {"fr": "Paris"}, {}, {"P17": [("Q142", "normal")]}),  # no kept language
    {"type": "property", "id": "P17", "labels": {"en": {"language": "en", "value": "country"}}},
    item("Q82955", {"en": "politician"}),
]


def write_dump(path, entities):
    lines = ["[", *(json.dumps(e) + "," for e in entities[:-1]), json.dumps(entities[-1]), "]"]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def read_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_a_dump_becomes_a_kb_with_kept_languages_and_properties(tmp_path):
    dump = tmp_path / "latest-all.json.gz"
    write_dump(dump, DUMP)
    counts = convert_dump(str(dump), str(tmp_path / "kb"), WikidataConfig(("en", "de"), ("P17", "P27")))
    assert counts["entities"] == 4 and counts["skipped"] == 2 and counts["triples"] == 2
    entities = {e["id"]: e for e in read_gz(tmp_path / "kb" / "entities.jsonl.gz")}
    assert entities["Q64"] == {"id": "Q64", "type": "LOC",
                               "aliases": {"en": ["Berlin", "Berlin, Germany"], "de": ["Berlin"]}}
    assert entities["Q567"]["type"] == "PER" and entities["Q567"]["aliases"] == {"en": ["Angela Merkel"]}
    assert entities["Q183"]["aliases"]["de"] == ["Deutschland", "BRD"]
    assert "Q90" not in entities  # only a French label
    kb = load_kb(str(tmp_path / "kb"))  # the output is a valid KB, gzip and all
    assert sorted(kb.triples) == [("Q567", "P27", "Q183"), ("Q64", "P17", "Q183")]
    index = open_kb(str(tmp_path / "kb"), [MatchProfile("en", ())])
    assert index.relations("Q64", "Q183") == ("P17",)
    found = index.find_mentions(["Angela", "Merkel", "left", "Deutschland"], MatchProfile("en", ()))
    assert [(c.start, c.end, c.entity_ids) for c in found] == [(0, 2, ("Q567",)), (3, 4, ("Q183",))]


def test_a_relation_map_chooses_the_properties_and_declares_the_inventory(tmp_path):
    dump = tmp_path / "dump.json.gz"
    write_dump(dump, DUMP)
    relmap = tmp_path / "relation_map.json"
    relmap.write_text(json.dumps({"P27": [{"kbp37": "per:countries_of_residence"}], "P106": []}))
    convert_dump(str(dump), str(tmp_path / "kb"), WikidataConfig(("en",), relation_map=str(relmap)))
    assert (tmp_path / "kb" / "relation_map.json").read_text() == relmap.read_text()
    with gzip.open(tmp_path / "kb" / "triples.jsonl.gz", "rt", encoding="utf-8") as f:
        kept = sorted((t["subject"], t["relation"], t["object"]) for t in map(json.loads, f))
    assert kept == [("Q567", "P106", "Q82955"), ("Q567", "P27", "Q183")]
    # The KB is read through the map: P27 becomes its relation, P106 (no rule) drops out.
    assert sorted(load_kb(str(tmp_path / "kb")).triples) == [
        ("Q567", "per:countries_of_residence", "Q183")
    ]


def test_a_broken_dump_line_names_its_line_and_leaves_no_output(tmp_path):
    dump = tmp_path / "dump.json"
    dump.write_text("[\n" + json.dumps(DUMP[0]) + ",\n{broken\n]\n")
    with pytest.raises(InputError, match=r"dump.json:3: invalid JSON"):
        convert_dump(str(dump), str(tmp_path / "kb"), WikidataConfig(("en",)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.json"]
