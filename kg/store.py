"""A persistent pyoxigraph store of run graphs: bulk loading and SPARQL queries.

    relbridge kg load --input OUT_OF_KG_BUILD --store STORE_DIR
    relbridge kg query --store STORE_DIR 'SELECT ...' [--format jsonl|csv]

`load_graphs` is the one writer: workers of ``kg build`` write N-Quads shards,
and this single process bulk-loads them (pyoxigraph locks the directory, so a
second writer fails instead of interleaving). Every quad of a shard belongs to
its run's named graph; loading a run again first drops that graph, so a reload
replaces the run's statements and never duplicates them. `query` opens the store
read-only (any number of readers) and yields one dict per solution, with the
vocabulary's prefixes (`relbridge.kg.rdf.PREFIXES`) declared for the query.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pyoxigraph as ox

from relbridge.data_specs.formats import InputError
from relbridge.kg.rdf import PREFIXES, XSD

logger = logging.getLogger(__name__)

NQUADS_SUFFIX = ".nq"


def nquads_files(path: str) -> list[str]:
    """The N-Quads files of a ``kg build`` output (``rdf/*.nq``), a folder of them, or one file."""
    if os.path.isfile(path):
        return [path]
    found = []
    for root, _, files in os.walk(path):
        found += [os.path.join(root, f) for f in files if f.endswith(NQUADS_SUFFIX)]
    if not found:
        raise FileNotFoundError(f"{path}: no N-Quads files (*{NQUADS_SUFFIX}) to load")
    return sorted(found)


def graphs_of(path: str) -> set[str]:
    """The named graphs of an N-Quads file.

    Raises:
      InputError: a quad in the default graph (a run's quads all name its graph)
        or a syntax error, with its file and line.
    """
    graphs = set()
    with open(path, "rb") as f:
        try:
            for n, quad in enumerate(ox.parse(f, format=ox.RdfFormat.N_QUADS), 1):
                if isinstance(quad.graph_name, ox.DefaultGraph):
                    raise InputError(path, n, "a quad in the default graph: name the run's graph")
                graphs.add(quad.graph_name.value)
        except SyntaxError as error:
            raise InputError(path, getattr(error, "lineno", 0) or 0, str(error)) from None
    return graphs


def load_graphs(files: Sequence[str], store_dir: str) -> dict[str, Any]:
    """Bulk-loads N-Quads files into the store, replacing the graphs they hold.

    The files are checked (graphs, syntax) before the store changes.

    Returns:
      ``{"graphs": [...], "files": n, "quads_before": n, "quads_after": n}``.
    """
    graphs = set()
    for path in files:
        graphs |= graphs_of(path)
    store = ox.Store(store_dir)
    before = len(store)
    for graph in sorted(graphs):
        node = ox.NamedNode(graph)
        if store.contains_named_graph(node):
            logger.info("replacing graph %s", graph)
            store.remove_graph(node)
    for path in files:
        store.bulk_load(path=path, format=ox.RdfFormat.N_QUADS)
    store.flush()
    stats = {
        "graphs": sorted(graphs),
        "files": len(files),
        "quads_before": before,
        "quads_after": len(store),
    }
    del store  # releases the directory lock
    return stats


def _value(term: Any) -> Any:
    """A JSON value of an RDF term: numbers and booleans as such, IRIs and other literals as text."""
    if term is None:
        return None
    if isinstance(term, ox.Literal):
        kind = term.datatype.value
        try:
            if kind == XSD + "boolean":
                return term.value == "true"
            if kind in (XSD + "integer", XSD + "long", XSD + "int"):
                return int(term.value)
            if kind in (XSD + "double", XSD + "decimal", XSD + "float"):
                return float(term.value)
        except ValueError:
            pass
        return term.value
    if isinstance(term, ox.BlankNode):
        return f"_:{term.value}"
    if isinstance(term, ox.NamedNode):
        return term.value
    return str(term)  # a triple term


def query(store_dir: str, sparql: str) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """Runs a SPARQL query on a store (read-only).

    Returns:
      The column names and an iterator of rows: SELECT gives one dict per
      solution, ASK ``{"boolean": ...}``, CONSTRUCT/DESCRIBE one dict per triple.
    """
    if not os.path.isdir(store_dir):
        raise FileNotFoundError(f"{store_dir}: no store (relbridge kg load creates it)")
    store = ox.Store.read_only(store_dir)
    try:
        result = store.query(PREFIXES + sparql)
    except SyntaxError as error:
        raise ValueError(f"SPARQL: {error}") from None
    if isinstance(result, ox.QueryBoolean):
        return ["boolean"], iter([{"boolean": bool(result)}])
    if isinstance(result, ox.QueryTriples):
        cols = ["subject", "predicate", "object"]
        return cols, ({c: _value(getattr(t, c)) for c in cols} for t in result)
    cols = [v.value for v in result.variables]
    return cols, ({c: _value(s[c]) for c in cols} for s in result)


def csv_lines(columns: Sequence[str], rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """CSV (header first) of query rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for row in itertools.chain([list(columns)], ([r.get(c) for c in columns] for r in rows)):
        writer.writerow(["" if v is None else v for v in row])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
