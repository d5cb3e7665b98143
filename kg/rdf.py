"""Knowledge-graph triples as RDF 1.2: statements annotated by reifiers, one named graph per run.

`triple_quads(triple, cfg)` turns one triple of `relbridge.models.triples`
(``relbridge triples`` or ``kg build``) into quads of the run's named graph
``cfg.graph``:

* the fact itself, ``<s> <r> <o>`` (asserted, so that plain SPARQL finds it);
* an RDF 1.2 **reifier** ``<stmt> rdf:reifies <<( <s> <r> <o> )>>`` carrying
  ``rb:confidence`` (``xsd:double``), ``rb:mentions`` (``xsd:integer``),
  ``rb:inKb`` (``xsd:boolean``, when a KB was given) and one
  ``prov:wasDerivedFrom <evidence>`` per kept mention; each evidence node has
  ``rb:sourceFile``, ``rb:line``, ``rb:sentenceId`` (the input's ``id``, else
  ``FILE:LINE``), ``rb:sentence``, ``rb:confidence`` and ``rb:model``;
* each entity's ``rdfs:label`` (its most frequent surface string),
  ``rb:kbId`` when linked and ``rb:entityType`` when typed.

pyoxigraph (0.5) reads and writes RDF 1.2 triple terms in N-Quads and SPARQL,
so no RDF-star or ``rdf:Statement`` fallback is needed: ``<<( s p o )>>`` is an
object term, and ``?stmt rdf:reifies <<( ?s ?p ?o )>>`` finds the annotations.

**IRIs.** A KB id that is a Wikidata QID (``Q42``, or ``wd:Q42``) becomes
``http://www.wikidata.org/entity/Q42``; any other id is
``BASE/entity/<id>``, an unlinked entity ``BASE/unlinked/<node id>`` (the
triple's node id: its stable id), and a relation of the inventory
``BASE/relation/<name>``. Ids are percent-encoded (UTF-8, everything but
``A-Z a-z 0-9 - . _ ~``), so that `iri_id` gives back any string exactly;
literals are escaped by pyoxigraph's N-Quads serializer. Statement and
evidence IRIs are hashes of their graph and content, so a rebuilt run writes
the same IRIs. ``NA`` is never a statement.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import pyoxigraph as ox

from relbridge.data_specs.relations import NA

WIKIDATA_ENTITY = "http://www.wikidata.org/entity/"
DEFAULT_BASE_IRI = "https://example.org/relbridge/"
VOCAB = "https://example.org/relbridge/vocab#"
"""The annotation vocabulary (``rb:``); fixed, so queries work under any ``--base-iri``."""
PROV = "http://www.w3.org/ns/prov#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS = "http://www.w3.org/2000/01/rdf-schema#"
XSD = "http://www.w3.org/2001/XMLSchema#"
PREFIXES = (
    f"PREFIX rb: <{VOCAB}>\nPREFIX prov: <{PROV}>\nPREFIX rdf: <{RDF}>\nPREFIX rdfs: <{RDFS}>\n"
    f"PREFIX xsd: <{XSD}>\nPREFIX wd: <{WIKIDATA_ENTITY}>\n"
)
"""SPARQL prefixes of the vocabulary, for queries (`relbridge kg query` adds them)."""

_QID = re.compile(r"(?:wd:)?(Q[1-9][0-9]*)")
_REIFIES = ox.NamedNode(RDF + "reifies")
_LABEL = ox.NamedNode(RDFS + "label")
_DERIVED = ox.NamedNode(PROV + "wasDerivedFrom")


def _rb(name: str) -> ox.NamedNode:
    return ox.NamedNode(VOCAB + name)


@dataclass(frozen=True)
class RdfConfig:
    """Where a run's statements go.

    Attributes:
      graph: the named graph IRI of the run (``kg build`` derives it from the
        run id unless ``--graph`` is given).
      base_iri: namespace of non-Wikidata entities, relations, statements and
        evidence; ends in ``/`` or ``#``.
    """

    graph: str
    base_iri: str = DEFAULT_BASE_IRI

    def __post_init__(self):
        if not self.base_iri.endswith(("/", "#")):
            raise ValueError(f"--base-iri must end in / or #, got {self.base_iri!r}")
        for iri in (self.graph, self.base_iri):
            ox.NamedNode(iri)  # raises ValueError on an invalid IRI


def encode_id(value: str) -> str:
    """An IRI path segment for any string; `decode_id` inverts it exactly."""
    return quote(value, safe="")


def decode_id(segment: str) -> str:
    return unquote(segment, errors="strict")


def graph_for_run(run_id: str, base_iri: str = DEFAULT_BASE_IRI) -> str:
    """The default named graph of a run."""
    return f"{base_iri}graph/{encode_id(run_id)}"


def entity_iri(node: str, kb_id: str | None, base_iri: str) -> str:
    """A linked entity's KB IRI (Wikidata for QIDs), else its unlinked node's IRI."""
    if kb_id:
        match = _QID.fullmatch(kb_id)
        if match:
            return WIKIDATA_ENTITY + match.group(1)
        return f"{base_iri}entity/{encode_id(kb_id)}"
    return f"{base_iri}unlinked/{encode_id(node)}"


def relation_iri(relation: str, base_iri: str) -> str:
    return f"{base_iri}relation/{encode_id(relation)}"


def iri_id(iri: str) -> str:
    """The id or relation name an IRI of `entity_iri`/`relation_iri` encodes."""
    if iri.startswith(WIKIDATA_ENTITY):
        return iri[len(WIKIDATA_ENTITY) :]
    return decode_id(iri.rsplit("/", 1)[1])


def _hash_iri(base_iri: str, kind: str, *parts: Any) -> ox.NamedNode:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()[:32]
    return ox.NamedNode(f"{base_iri}{kind}/{digest}")


def _literal(value: Any) -> ox.Literal:
    if isinstance(value, bool):
        return ox.Literal("true" if value else "false", datatype=ox.NamedNode(XSD + "boolean"))
    if isinstance(value, int):
        return ox.Literal(str(value), datatype=ox.NamedNode(XSD + "integer"))
    if isinstance(value, float):
        return ox.Literal(repr(value), datatype=ox.NamedNode(XSD + "double"))
    return ox.Literal(str(value))


def triple_quads(triple: dict[str, Any], cfg: RdfConfig) -> list[ox.Quad]:
    """The quads of one aggregated triple (see the module docstring); none for ``NA``."""
    if triple["relation"] == NA:
        return []
    g = ox.NamedNode(cfg.graph)
    base = cfg.base_iri
    nodes = {}
    quads = []
    for role in ("subject", "object"):
        kb_id = triple.get(f"{role}_id")
        node = ox.NamedNode(entity_iri(str(triple[role]), kb_id, base))
        nodes[role] = node
        quads.append(ox.Quad(node, _LABEL, _literal(triple[f"{role}_name"]), g))
        if kb_id:
            quads.append(ox.Quad(node, _rb("kbId"), _literal(kb_id), g))
        if triple.get(f"{role}_type"):
            quads.append(ox.Quad(node, _rb("entityType"), _literal(triple[f"{role}_type"]), g))
    s, o = nodes["subject"], nodes["object"]
    r = ox.NamedNode(relation_iri(triple["relation"], base))
    quads.append(ox.Quad(s, r, o, g))
    stmt = _hash_iri(base, "statement", cfg.graph, s.value, r.value, o.value)
    quads += [
        ox.Quad(stmt, _REIFIES, ox.Triple(s, r, o), g),
        ox.Quad(stmt, _rb("confidence"), _literal(float(triple["confidence"])), g),
        ox.Quad(stmt, _rb("mentions"), _literal(int(triple["mentions"])), g),
    ]
    if triple.get("in_kb") is not None:
        quads.append(ox.Quad(stmt, _rb("inKb"), _literal(bool(triple["in_kb"])), g))
    for k, ev in enumerate(triple.get("evidence", ())):
        node = _hash_iri(base, "evidence", stmt.value, k, ev.get("source_file"), ev.get("line"))
        quads.append(ox.Quad(stmt, _DERIVED, node, g))
        sentence_id = ev.get("id") or f"{ev.get('source_file')}:{ev.get('line')}"
        fields = {
            "sourceFile": ev.get("source_file"),
            "line": ev.get("line"),
            "sentenceId": sentence_id,
            "sentence": ev.get("text"),
            "confidence": None if ev.get("confidence") is None else float(ev["confidence"]),
            "model": ev.get("model"),
        }
        quads += [
            ox.Quad(node, _rb(name), _literal(value), g)
            for name, value in fields.items()
            if value is not None
        ]
    return quads


def to_nquads(triples: Iterable[dict[str, Any]], cfg: RdfConfig) -> bytes:
    """N-Quads (RDF 1.2) of triples; `triple_quads` of each, in order."""
    quads = [q for t in triples for q in triple_quads(t, cfg)]
    return ox.serialize(quads, format=ox.RdfFormat.N_QUADS) if quads else b""
