"""Exports of a store's statements for other graph tools: Neo4j and Wikidata QuickStatements.

    relbridge kg export --store STORE_DIR --format neo4j --output DIR
    relbridge kg export --store STORE_DIR --format quickstatements --output FILE

**Neo4j** (`export_neo4j`): ``nodes.csv`` and ``relationships.csv`` for
``neo4j-admin database import full --nodes=DIR/nodes.csv
--relationships=DIR/relationships.csv --multiline-fields=true``, with typed
headers: ``id:ID``, ``name``, ``kbId``, ``entityType``, ``:LABEL`` (``Entity``
plus the entity type); ``:START_ID``, ``:END_ID``, ``:TYPE`` (the relation
name), ``confidence:float``, ``mentions:int``, ``inKb:boolean``, ``graph`` and
``evidence`` (the statement's evidence as a JSON list, since a Neo4j array
cannot hold arbitrary strings). Node ids are the entities' IRIs.

**QuickStatements** (`export_quickstatements`): one V1 line per linked fact,
``Q1<TAB>P19<TAB>Q2``, with references: ``S248`` (stated in, ``--stated-in
QID``, e.g. the corpus's item) and ``S854`` (reference URL, each http(s)
evidence file). Only facts between two Wikidata entities whose relation maps to a
Wikidata property (`KBP37_PROPERTIES`, or ``--property-map FILE``, a JSON object
``{relation: "P19"}``) are written; the others are counted as ``skipped``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from relbridge.kg.rdf import WIKIDATA_ENTITY, iri_id
from relbridge.kg.store import query
from relbridge.runtime.files import atomic_file

KBP37_PROPERTIES = {
    "per:city_of_birth": "P19",
    "per:spouse": "P26",
    "per:employee_of": "P108",
    "per:cities_of_residence": "P551",
    "per:countries_of_residence": "P551",
    "per:stateorprovinces_of_residence": "P551",
    "org:founded_by": "P112",
    "org:subsidiaries": "P355",
    "org:city_of_headquarters": "P159",
    "org:stateorprovince_of_headquarters": "P159",
    "org:country_of_headquarters": "P17",
}
"""KBP37 relations with one Wikidata property of the same direction (the others have none)."""

NODE_HEADER = ["id:ID", "name", "kbId", "entityType", ":LABEL"]
EDGE_HEADER = [":START_ID", ":END_ID", ":TYPE", "confidence:float", "mentions:int",
               "inKb:boolean", "graph", "evidence"]  # fmt: skip

_STATEMENTS = """
SELECT ?g ?st ?s ?r ?o ?conf ?n ?inkb WHERE { GRAPH ?g {
  ?st rdf:reifies <<( ?s ?r ?o )>> ; rb:confidence ?conf ; rb:mentions ?n .
  OPTIONAL { ?st rb:inKb ?inkb } } } ORDER BY ?g ?st
"""
_EVIDENCE = """
SELECT ?g ?st ?ev ?p ?v WHERE { GRAPH ?g { ?st prov:wasDerivedFrom ?ev . ?ev ?p ?v } }
"""
_NODES = """
SELECT ?g ?e ?p ?v WHERE { GRAPH ?g { ?e ?p ?v . VALUES ?p { rdfs:label rb:kbId rb:entityType } } }
"""


def _rows(store_dir: str, sparql: str, graph: str | None) -> list[dict[str, Any]]:
    """A query's rows from every named graph, or only from ``graph``."""
    return [r for r in query(store_dir, sparql)[1] if graph is None or r["g"] == graph]


def _statements(store_dir: str, graph: str | None) -> list[dict[str, Any]]:
    statements = _rows(store_dir, _STATEMENTS, graph)
    evidence: dict[str, dict[str, dict]] = defaultdict(lambda: defaultdict(dict))
    for r in _rows(store_dir, _EVIDENCE, graph):
        evidence[r["st"]][r["ev"]][r["p"].rsplit("#", 1)[-1]] = r["v"]
    for s in statements:
        found = evidence.get(s["st"], {})
        s["evidence"] = sorted(found.values(), key=lambda e: -(e.get("confidence") or 0))
    return statements


def _write_csv(path: str, header: list[str], rows) -> int:
    n = 0
    with atomic_file(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            n += 1
    return n


def export_neo4j(store_dir: str, output: str, graph: str | None = None) -> dict[str, int]:
    """Writes ``nodes.csv`` and ``relationships.csv`` (see the module docstring) into ``output``."""
    statements = _statements(store_dir, graph)
    used = {s[k] for s in statements for k in ("s", "o")}
    props: dict[str, dict[str, str]] = defaultdict(dict)
    for r in _rows(store_dir, _NODES, graph):  # names and types as the exported graph has them
        if r["e"] in used:
            key = r["p"].rsplit("#", 1)[-1]
            # an entity named differently by two runs keeps the alphabetically first name
            if key not in props[r["e"]] or str(r["v"]) < props[r["e"]][key]:
                props[r["e"]][key] = str(r["v"])
    os.makedirs(output, exist_ok=True)
    nodes = _write_csv(
        os.path.join(output, "nodes.csv"),
        NODE_HEADER,
        (
            [iri, p.get("label"), p.get("kbId"), p.get("entityType"),
             ";".join(["Entity", *([p["entityType"]] if p.get("entityType") else [])])]
            for iri, p in ((iri, props[iri]) for iri in sorted(used))
        ),
    )  # fmt: skip
    edges = _write_csv(
        os.path.join(output, "relationships.csv"),
        EDGE_HEADER,
        (
            [s["s"], s["o"], iri_id(s["r"]), s["conf"], s["n"],
             None if s["inkb"] is None else str(s["inkb"]).lower(), s["g"],
             json.dumps(s["evidence"], ensure_ascii=False)]
            for s in statements
        ),
    )  # fmt: skip
    return {"nodes": nodes, "relationships": edges}


def _qid(iri: str) -> str | None:
    return iri[len(WIKIDATA_ENTITY) :] if iri.startswith(WIKIDATA_ENTITY) else None


def _qs_string(value: str) -> str:
    return '"' + value.replace('"', "'").replace("\t", " ").replace("\n", " ") + '"'


def export_quickstatements(
    store_dir: str,
    output: str,
    properties: Mapping[str, str] = KBP37_PROPERTIES,
    stated_in: str | None = None,
    graph: str | None = None,
) -> dict[str, int]:
    """Writes QuickStatements V1 lines of the linked facts (see the module docstring)."""
    if stated_in is not None and not re.fullmatch(r"Q[1-9][0-9]*", stated_in):
        raise ValueError(f"--stated-in must be a Wikidata item id (Q...), got {stated_in!r}")
    lines, skipped = [], 0
    for s in _statements(store_dir, graph):
        subj, obj, prop = _qid(s["s"]), _qid(s["o"]), properties.get(iri_id(s["r"]))
        if not (subj and obj and prop):
            skipped += 1
            continue
        refs = [f"S248\t{stated_in}"] if stated_in else []
        urls = sorted({e["sourceFile"] for e in s["evidence"]
                       if str(e.get("sourceFile", "")).startswith(("http://", "https://"))})  # fmt: skip
        refs += [f"S854\t{_qs_string(u)}" for u in urls]
        lines.append("\t".join([subj, prop, obj, *refs]) + "\n")
    with atomic_file(output) as f:
        f.writelines(sorted(set(lines)))
    return {"statements": len(set(lines)), "skipped": skipped}
