"""RDF 1.2 statements of triples: IRIs, reifiers, escaping (fuzzed), and the pyoxigraph store."""

import json
import random

import pyoxigraph as ox
import pytest

from relbridge.kg.rdf import (
    RdfConfig,
    entity_iri,
    graph_for_run,
    iri_id,
    relation_iri,
    to_nquads,
    triple_quads,
)
from relbridge.kg.store import csv_lines, load_graphs, query

BASE = "https://kb.test/"
CFG = RdfConfig(graph_for_run("run1", BASE), BASE)


def _triple(subject="Q1", obj="relx:Hamburg", relation="per:city_of_birth", **kw):
    t = {
        "subject": subject, "subject_id": subject, "subject_name": "Angela Merkel",
        "subject_type": "PER", "relation": relation, "object": obj, "object_id": obj,
        "object_name": "Hamburg", "confidence": 0.875, "mentions": 2, "in_kb": False,
        "evidence": [
            {"source_file": "gs://b/in.txt", "line": 3, "id": "doc-7", "text": "Merkel ...",
             "confidence": 0.875, "model": "m"},
            {"source_file": "gs://b/in.txt", "line": 9, "text": "...", "confidence": 0.5},
        ],
    }  # fmt: skip
    t.update(kw)
    return t


def test_iris_of_wikidata_kb_and_unlinked_entities():
    assert entity_iri("Q42", "Q42", BASE) == "http://www.wikidata.org/entity/Q42"
    assert entity_iri("wd:Q42", "wd:Q42", BASE) == "http://www.wikidata.org/entity/Q42"
    assert entity_iri("relx:A B", "relx:A B", BASE) == BASE + "entity/relx%3AA%20B"
    assert entity_iri("relbridge:ab12", None, BASE) == BASE + "unlinked/relbridge%3Aab12"
    assert iri_id(relation_iri("org:top_members/employees", BASE)) == "org:top_members/employees"
    with pytest.raises(ValueError, match="base-iri"):
        RdfConfig("https://g/", "https://no-slash")


def _store(tmp_path, nquads: bytes, name="store"):
    path = tmp_path / "run.nq"
    path.write_bytes(nquads)
    return load_graphs([str(path)], str(tmp_path / name)), str(tmp_path / name)


def test_statement_reifier_carries_confidence_mentions_and_evidence(tmp_path):
    data = to_nquads([_triple(), _triple(relation="NA")], CFG)
    assert b"<<(" in data and b"/relation/NA" not in data  # RDF 1.2 triple term; NA never
    stats, store = _store(tmp_path, data)
    assert stats["graphs"] == [CFG.graph]
    cols, rows = query(
        store,
        "SELECT ?s ?o ?conf ?n ?file ?line ?sid WHERE { GRAPH ?g { ?st rdf:reifies <<( ?s ?r ?o )>> ;"
        " rb:confidence ?conf ; rb:mentions ?n ; prov:wasDerivedFrom ?ev . ?s ?r ?o ."
        " ?ev rb:sourceFile ?file ; rb:line ?line ; rb:sentenceId ?sid } } ORDER BY ?line",
    )
    rows = list(rows)
    assert [(r["line"], r["sid"]) for r in rows] == [(3, "doc-7"), (9, "gs://b/in.txt:9")]
    assert rows[0]["s"] == "http://www.wikidata.org/entity/Q1"
    assert rows[0]["o"] == BASE + "entity/relx%3AHamburg"
    assert (rows[0]["conf"], rows[0]["n"], rows[0]["file"]) == (0.875, 2, "gs://b/in.txt")
    lines = list(csv_lines(cols, iter(rows)))
    assert lines[0] == "s,o,conf,n,file,line,sid\n" and len(lines) == 3


def test_reloading_a_run_replaces_its_graph(tmp_path):
    stats, store = _store(tmp_path, to_nquads([_triple()], CFG))
    assert stats["quads_before"] == 0
    again, _ = _store(tmp_path, to_nquads([_triple()], CFG))
    assert again["quads_after"] == stats["quads_after"]  # not duplicated
    other = RdfConfig(graph_for_run("run2", BASE), BASE)
    (tmp_path / "two.nq").write_bytes(to_nquads([_triple(confidence=0.5)], other))
    both = load_graphs([str(tmp_path / "two.nq")], store)
    _, rows = query(store, "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?st rdf:reifies ?t } }")
    assert next(rows)["n"] == 2 and len(both["graphs"]) == 1


COUNT = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?st rdf:reifies ?t } }"


def _count(store) -> int:
    return next(query(store, COUNT)[1])["n"]


def _shards(tmp_path, n_triples=3):
    """Two good shards of run1 (``n_triples`` triples) and a run2 shard whose second line is cut."""
    triples = [_triple(subject=f"Q{i}") for i in range(n_triples)]
    paths = []
    for i, part in enumerate((triples[:1], triples[1:])):
        paths.append(tmp_path / f"good-{i}.nq")
        paths[-1].write_bytes(to_nquads(part, CFG))
    other = RdfConfig(graph_for_run("run2", BASE), BASE)
    lines = to_nquads([_triple(subject="Q99")], other).decode().splitlines(keepends=True)
    paths.append(tmp_path / "corrupt.nq")
    paths[-1].write_text(lines[0] + lines[1][: len(lines[1]) // 2] + "\n" + "".join(lines[2:]))
    return [str(p) for p in paths]


def test_loading_twice_leaves_the_count_equal_to_the_triples_written(tmp_path):
    good = _shards(tmp_path)[:2]
    store = str(tmp_path / "store")
    first = load_graphs(good, store)
    assert _count(store) == 3
    again = load_graphs(good, store)
    assert again["quads_before"] == again["quads_after"] == first["quads_after"]
    assert _count(store) == 3


def test_a_load_that_fails_midway_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    """A corrupt shard after good ones: FILE:LINE, and readers keep the previous graph."""
    import relbridge.kg.store as kg_store

    *good, corrupt = _shards(tmp_path)
    store = str(tmp_path / "store")
    load_graphs(good[:1], store)
    before = ox.Store.read_only(store).dump(format=ox.RdfFormat.N_QUADS)
    with pytest.raises(ValueError, match=f"^{corrupt}:2: "):
        load_graphs([*good, corrupt], store)  # found before the store changes
    assert _count(store) == 1

    # the check misses it (a file changed after it was read): the bulk load itself fails
    monkeypatch.setattr(kg_store, "graphs_of", lambda path: {CFG.graph})
    with pytest.raises(ValueError, match=f"^{corrupt}:2: "):
        load_graphs([*good, corrupt], store)  # the good shards were in the staged copy
    assert ox.Store.read_only(store).dump(format=ox.RdfFormat.N_QUADS) == before
    assert not list(tmp_path.glob(".store.staging-*"))
    assert load_graphs(good, store)["quads_before"] > 0 and _count(store) == 3  # lock released


def test_a_killed_load_leaves_the_store_as_it_was_and_the_next_load_cleans_up(tmp_path):
    import subprocess
    import sys

    good = _shards(tmp_path)[:2]
    store = str(tmp_path / "store")
    load_graphs(good[:1], store)
    code = (  # killed once the first file is in the staged copy, with no cleanup
        "import os, sys, relbridge.kg.store as s\n"
        "real, seen = s._lines_named, []\n"
        "def killed(path):\n"
        "    if seen:\n"
        "        os._exit(9)\n"
        "    seen.append(path)\n"
        "    return real(path)\n"
        "s._lines_named = killed\n"
        "s.load_graphs(sys.argv[1:-1], sys.argv[-1])\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *good, store], timeout=120)
    assert done.returncode == 9
    assert list(tmp_path.glob(".store.staging-*"))  # what the killed load left beside the store
    assert _count(store) == 1
    assert load_graphs(good, store)["quads_before"] > 0 and _count(store) == 3
    assert not list(tmp_path.glob(".store.staging-*"))


def test_a_second_load_into_a_locked_store_stops(tmp_path):
    from relbridge.runtime.files import OutputLock

    good = _shards(tmp_path)[:2]
    with OutputLock(str(tmp_path / "store"), "kg load (pid 1)", flag="--store"):
        with pytest.raises(ValueError, match="in use by another run .*--store"):
            load_graphs(good, str(tmp_path / "store"))


def _random_text(rng: random.Random, n: int) -> str:
    pools = ['"', "'", "<", ">", "\\", "\n", "\r", "\t", "\u200f", "\u202e", "\x00", "{", "}",
             " ", "^", "`", "|", "%", "#", "?", "/", ":", "\ufeff", "😀", "é", "中"]  # fmt: skip
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            out.append(rng.choice(pools))
        else:  # any Unicode scalar value (no surrogates: UTF-8 cannot hold them)
            c = rng.randrange(0x10FFFF - 0x800)
            out.append(chr(c if c < 0xD800 else c + 0x800))
    return "".join(out)


def test_any_string_round_trips_through_nquads_and_sparql(tmp_path):
    rng = random.Random(18)
    triples = []
    for k in range(40):
        name, kb_id, text = (_random_text(rng, rng.randrange(1, 12)) for _ in range(3))
        triples.append(
            _triple(
                subject=kb_id, subject_name=name, relation=_random_text(rng, 5) or "r",
                object=f"relbridge:{k}", object_id=None,
                evidence=[{"source_file": name, "line": k, "id": kb_id, "text": text}],
            )
        )  # fmt: skip
    stats, store = _store(tmp_path, to_nquads(triples, CFG))
    _, rows = query(
        store,
        "SELECT ?s ?name ?r ?text WHERE { GRAPH ?g { ?st rdf:reifies <<( ?s ?r ?o )>> ;"
        " prov:wasDerivedFrom ?ev . ?ev rb:sentence ?text ; rb:line ?k . ?s rdfs:label ?name } }"
        " ORDER BY ?k",
    )
    got = [(iri_id(r["s"]), r["name"], iri_id(r["r"]), r["text"]) for r in rows]
    want = [(t["subject"], t["subject_name"], t["relation"], t["evidence"][0]["text"])
            for t in triples]  # fmt: skip
    assert got == want
    # and the N-Quads parse back to the same terms
    parsed = list(ox.parse(to_nquads(triples[:1], CFG), format=ox.RdfFormat.N_QUADS))
    assert set(map(str, parsed)) == set(map(str, triple_quads(triples[0], CFG)))
    json.dumps(got)  # every value is a plain JSON string


def test_quickstatements_only_for_facts_between_wikidata_items(tmp_path):
    from relbridge.kg.export import export_quickstatements

    web = [{"source_file": "https://news.test/a", "line": 1, "text": "t", "confidence": 0.9}]
    triples = [
        _triple(subject="Q1", obj="Q2", object_id="Q2", evidence=web),
        _triple(subject="Q1", obj="relx:X"),  # not a Wikidata item
        _triple(subject="Q1", obj="Q3", object_id="Q3", relation="per:title"),  # no property
    ]
    _, store = _store(tmp_path, to_nquads(triples, CFG))
    counts = export_quickstatements(store, str(tmp_path / "qs.txt"), stated_in="Q5")
    assert counts == {"statements": 1, "skipped": 2}
    assert (tmp_path / "qs.txt").read_text() == (
        'Q1\tP19\tQ2\tS248\tQ5\tS854\t"https://news.test/a"\n'
    )


def test_the_readme_queries_answer(tmp_path):
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    one_entity, new_facts = re.findall(r"```sparql\n(.*?)```", readme, re.S)
    triples = [_triple(subject="Q567", obj="Q2", object_id="Q2", confidence=0.9),
               _triple(subject="Q3", obj="Q2", object_id="Q2", confidence=0.7)]  # fmt: skip
    _, store = _store(tmp_path, to_nquads(triples, CFG))
    rows = list(query(store, one_entity)[1])
    assert {r["line"] for r in rows} == {3, 9} and rows[0]["confidence"] == 0.9
    assert [r["confidence"] for r in query(store, new_facts)[1]] == [0.9]


def test_kg_load_of_a_corrupt_shard_is_one_line_naming_file_and_line(tmp_path, capsys):
    from relbridge.cli.main import main

    *good, corrupt = _shards(tmp_path)
    store = str(tmp_path / "store")
    assert main(["kg", "load", "--input", str(tmp_path), "--store", store]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"relbridge kg: error: {corrupt}:2: ")
    assert not (tmp_path / "store").exists()  # nothing loaded, not even the good shards


@pytest.mark.parametrize("graph", ["", " _:g"])  # the default graph, a blank node
def test_kg_load_names_the_line_of_a_quad_outside_a_named_graph(tmp_path, capsys, graph):
    from relbridge.cli.main import main

    path = tmp_path / "run.nq"
    path.write_text("# a comment\n\n<http://a/s> <http://a/p> <http://a/o> <http://a/g> .\n"
                    f"<http://a/s> <http://a/p> <http://a/o>{graph} .\n")  # fmt: skip
    assert main(["kg", "load", "--input", str(path), "--store", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err.splitlines()[0]
    assert err.startswith(f"relbridge kg: error: {path}:4: a quad outside a named graph")


def test_quickstatements_export_checks_stated_in_and_the_property_map(tmp_path, capsys):
    from relbridge.cli.main import main
    from relbridge.kg.export import export_quickstatements

    _, store = _store(tmp_path, to_nquads([_triple(subject="Q1", obj="Q2", object_id="Q2")], CFG))
    with pytest.raises(ValueError, match="--stated-in must be a Wikidata item"):
        export_quickstatements(store, str(tmp_path / "qs.txt"), stated_in="P5")  # a property
    argv = ["kg", "export", "--store", store, "--format", "quickstatements",
            "--output", str(tmp_path / "qs.txt"), "--property-map"]  # fmt: skip
    for text in ('["P19"]', "{broken"):
        (tmp_path / "map.json").write_text(text)
        assert main([*argv, str(tmp_path / "map.json")]) == 2
        assert f"error: {tmp_path / 'map.json'}:1: expected" in capsys.readouterr().err
    assert not (tmp_path / "qs.txt").exists()


def test_neo4j_export_of_one_graph_names_nodes_as_that_graph_does(tmp_path):
    """Another run's graph may name the same entity otherwise; --graph exports only its own."""
    import csv

    from relbridge.kg.export import export_neo4j

    stats, store = _store(tmp_path, to_nquads([_triple(subject_name="Merkel, Angela")], CFG))
    other = RdfConfig(graph_for_run("run2", BASE), BASE)
    (tmp_path / "two.nq").write_bytes(to_nquads([_triple(subject_name="A. Merkel")], other))
    load_graphs([str(tmp_path / "two.nq")], store)
    for graph, name in ((CFG.graph, "Merkel, Angela"), (other.graph, "A. Merkel")):
        out = tmp_path / graph.rsplit("/", 1)[-1]
        assert export_neo4j(store, str(out), graph=graph) == {"nodes": 2, "relationships": 1}
        with open(out / "nodes.csv", newline="", encoding="utf-8") as f:
            labels = {row[0]: row[1] for row in list(csv.reader(f))[1:]}
        assert labels["http://www.wikidata.org/entity/Q1"] == name
        with open(out / "relationships.csv", newline="", encoding="utf-8") as f:
            (edge,) = list(csv.reader(f))[1:]
        assert edge[6] == graph and len(json.loads(edge[7])) == 2  # its own evidence only
