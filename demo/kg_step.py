"""The demo's last step: its held-out raw text through ``kg build``, into a store, one SPARQL query.

For each language the held-out sentences (written by `extract_knowledge_graph`)
go through the Beam job (``relbridge kg build``, one named graph per
language's run), both graphs are bulk-loaded into one pyoxigraph store
(``relbridge kg load``), and two queries are answered: the number of
statements, which must equal the triples written, and the most confident
facts with their evidence.
"""

from __future__ import annotations

import os

TOP_FACTS = """
SELECT DISTINCT ?subject ?relation ?object ?confidence ?sentence WHERE { GRAPH ?g {
  ?st rdf:reifies <<( ?s ?r ?o )>> ; rb:confidence ?confidence ; prov:wasDerivedFrom ?ev .
  ?s rdfs:label ?subject . ?o rdfs:label ?object . ?ev rb:sentence ?sentence .
  BIND(STR(?r) AS ?relation) } }
ORDER BY DESC(?confidence) ?subject ?object LIMIT 3
"""
COUNT = "SELECT (COUNT(*) AS ?statements) WHERE { GRAPH ?g { ?st rdf:reifies ?t } }"


def build_and_query(kg_dir: str, model_dir: str, kb_dir: str, langs=("de", "en")) -> dict:
    """Runs kg build per language on ``kg_dir/heldout_LANG.jsonl``, loads, queries; returns a summary."""
    from relbridge.kg.build import run
    from relbridge.kg.rdf import iri_id
    from relbridge.kg.store import load_graphs, nquads_files, query

    triples, outputs = 0, []
    for lang in langs:
        out = os.path.join(kg_dir, f"build_{lang}")
        stats = run(
            ["--input", os.path.join(kg_dir, f"heldout_{lang}.jsonl"), "--output", out,
             "--model", model_dir, "--kb", kb_dir, "--lang", lang, "--no-split", "--overwrite"]
        )  # fmt: skip
        triples += stats["triples"]
        outputs.append(out)
    store = os.path.join(kg_dir, "store")
    loaded = load_graphs([f for out in outputs for f in nquads_files(out)], store)
    (count,) = list(query(store, COUNT)[1])
    return {
        "store": store,
        "graphs": loaded["graphs"],
        "triples_written": triples,
        "sparql_statements": count["statements"],
        "top_facts_sparql": TOP_FACTS.strip(),
        # the relation's name, as written in the inventory, from its IRI
        "top_facts": [
            {**row, "relation": iri_id(row["relation"])} for row in query(store, TOP_FACTS)[1]
        ],
    }
