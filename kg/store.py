"""A persistent pyoxigraph store of run graphs: bulk loading and SPARQL queries.

    relbridge kg load --input OUT_OF_KG_BUILD --store STORE_DIR
    relbridge kg query --store STORE_DIR 'SELECT ...' [--format jsonl|csv]

`load_graphs` is the one writer: workers of ``kg build`` write N-Quads shards,
and this single process bulk-loads them. Every quad of a shard belongs to its
run's named graph; loading a run again first drops that graph, so a reload
replaces the run's statements and never duplicates them.

A load is atomic for the store's readers, as a run's output folder is
(`relbridge.pipeline.staging`): under the store's lock (``flock`` on
``.<name>.relbridge.lock`` beside it) the files are checked first (a bad one
stops the load with its ``FILE:LINE``), then the store is checkpointed into a
staging folder beside it (`pyoxigraph.Store.backup`: hard links to RocksDB's
immutable files, so cheap whatever the store's size), the run graphs are
dropped and the files bulk-loaded into that copy, and the copy is swapped in
with one ``renameat2(RENAME_EXCHANGE)``. A reader opening the store sees it
before or after, never a graph half loaded or dropped; a failure or a kill
midway leaves the store as it was (the next load removes the staged copy).
Why not pyoxigraph's own transactions: ``Store.load``/``extend``/``update`` are
atomic but hold the whole input in memory and cannot drop the old graph in the
same transaction (except as SPARQL ``INSERT DATA`` text), while ``bulk_load``
streams but is not atomic (a failure leaves part of the data written).

`query` opens the store read-only (any number of readers) and yields one dict
per solution, with the vocabulary's prefixes (`relbridge.kg.rdf.PREFIXES`)
declared for the query.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pyoxigraph as ox

from relbridge.data_specs.formats import InputError
from relbridge.kg.rdf import PREFIXES, XSD
from relbridge.pipeline.staging import remove_leftovers, staging_path
from relbridge.runtime.files import OutputLock, swap_in

logger = logging.getLogger(__name__)

NQUADS_SUFFIX = ".nq"


def nquads_files(path: str) -> list[str]:
    """The N-Quads files of a ``kg build`` output (``rdf/*.nq``), a folder of them, or one file."""
    if os.path.isfile(path):
        return [path]
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # staging folders of running jobs
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
                if not isinstance(quad.graph_name, ox.NamedNode):  # default graph, blank node
                    reason = "a quad outside a named graph: name the run's graph"
                    raise InputError(path, _statement_line(path, n), reason)
                graphs.add(quad.graph_name.value)
        except SyntaxError as error:
            raise InputError(path, getattr(error, "lineno", 0) or 0, str(error)) from None
    return graphs


def _statement_line(path: str, n: int) -> int:
    """The line of the ``n``-th quad of an N-Quads file (one a line; blank and comment lines
    hold none)."""
    with open(path, "rb") as f:
        statements = (k for k, text in enumerate(f, 1) if text.strip()[:1] not in (b"", b"#"))
        return next(itertools.islice(statements, n - 1, None), n)


def load_graphs(files: Sequence[str], store_dir: str) -> dict[str, Any]:
    """Bulk-loads N-Quads files into the store, replacing the graphs they hold, atomically.

    See the module docstring: the files are checked (graphs, syntax) before the
    store changes, and readers see the store before or after the load, never
    during it.

    Returns:
      ``{"graphs": [...], "files": n, "quads_before": n, "quads_after": n}``.

    Raises:
      InputError: a bad file, with its file and line (the store is unchanged).
      ValueError: another load holds the store.
    """
    graphs = set()
    for path in files:
        graphs |= graphs_of(path)
    store_dir = os.path.realpath(store_dir)  # one lock and one swap however it is named
    with OutputLock(store_dir, f"kg load (pid {os.getpid()})", flag="--store"):
        remove_leftovers(store_dir)
        # a fresh name: RocksDB refuses a path that a store left open by an error still locks
        staging = staging_path(store_dir, f"load-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            before, after = _load_into_copy(files, graphs, store_dir, staging)
            swap_in(staging, store_dir)
        finally:  # on an error: the next load removes what this cannot
            shutil.rmtree(staging, ignore_errors=True)
    return {"graphs": sorted(graphs), "files": len(files), "quads_before": before,
            "quads_after": after}  # fmt: skip


def _load_into_copy(
    files: Sequence[str], graphs: set[str], store_dir: str, staging: str
) -> tuple[int, int]:
    """Checkpoints the store into ``staging`` and replaces ``graphs`` there by ``files``.

    Returns the number of quads before and after. The store stays open (RocksDB's own lock) until the copy is complete, so no
    other writer changes it meanwhile; both are closed on return, also on an
    error (no other frame holds them, so the staged copy can be deleted).
    """
    store = staged = None
    try:
        store = ox.Store(store_dir) if os.path.isdir(store_dir) else None
        before = len(store) if store is not None else 0
        if store is not None:
            store.backup(staging)
        staged = ox.Store(staging)
        for graph in sorted(graphs):
            node = ox.NamedNode(graph)
            if staged.contains_named_graph(node):
                logger.info("replacing graph %s", graph)
                staged.remove_graph(node)
        for path in files:
            with _lines_named(path):
                staged.bulk_load(path=path, format=ox.RdfFormat.N_QUADS)
        staged.flush()
        return before, len(staged)
    finally:  # closes both, also on an error: the store free to swap or to load again
        del store, staged


@contextlib.contextmanager
def _lines_named(path: str) -> Iterator[None]:
    """Turns pyoxigraph's `SyntaxError` in ``path`` into an `InputError` naming file and line."""
    try:
        yield
    except SyntaxError as error:
        raise InputError(path, getattr(error, "lineno", 0) or 0, str(error)) from None


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
