"""`relbridge kg build | load | query | export`: extracted relations as a knowledge graph.

* ``kg build --model DIR --input 'PATH_OR_GLOB' --output DIR [--kb DIR --lang en] [Beam flags]``:
  the Beam job from raw text to mention records, triples and RDF N-Quads
  (`relbridge.kg.build`);
* ``kg load --input DIR --store STORE_DIR``: bulk-loads N-Quads into a pyoxigraph
  store, replacing the graphs of runs loaded before, atomically for the
  store's readers (`relbridge.kg.store`);
* ``kg query --store STORE_DIR 'SPARQL' [--format jsonl|csv]``;
* ``kg export --store STORE_DIR --format neo4j|quickstatements --output PATH``.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    kg = subparsers.add_parser("kg", help="knowledge graph: build (Beam), load, query, export")
    sub = kg.add_subparsers(dest="kg_command", metavar="KG_COMMAND", required=True)

    p = sub.add_parser(
        "build",
        allow_abbrev=False,  # a Beam flag that is a prefix of one of ours goes to Beam
        help="Beam job: raw text -> mention records, triples, RDF N-Quads",
        description="Reads text or JSONL (any Beam filesystem path or glob), splits sentences, "
        "finds mentions, extracts relations with RunInference, links and aggregates them and "
        "writes records, triples, N-Quads shards, dead letters, stats.json and COMPLETED to "
        "--output. Flags not listed here go to Beam's PipelineOptions, e.g. --runner "
        "DataflowRunner ... or --direct_running_mode multi_processing --direct_num_workers 2.",
    )
    from relbridge.kg.options import add_build_arguments

    add_build_arguments(p)
    p.set_defaults(func=_build, accepts_extra_args=True)

    p = sub.add_parser(
        "load", help="bulk-load N-Quads into a pyoxigraph store; replaces a run's graph atomically"
    )
    p.add_argument("--input", required=True, help="a kg build output, a folder of .nq, or a file")
    p.add_argument("--store", required=True, help="store directory (created when missing)")
    p.set_defaults(func=_load)

    p = sub.add_parser("query", help="run a SPARQL query on a store")
    p.add_argument("--store", required=True)
    p.add_argument("sparql", help="the query; prefixes rb: prov: rdf: rdfs: xsd: wd: are declared")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl",
                   help="output format (default: jsonl)")  # fmt: skip
    p.set_defaults(func=_query)

    p = sub.add_parser("export", help="export a store for Neo4j or Wikidata QuickStatements")
    p.add_argument("--store", required=True)
    p.add_argument("--format", choices=("neo4j", "quickstatements"), required=True)
    p.add_argument("--output", required=True, help="neo4j: a directory; quickstatements: a file")
    p.add_argument("--graph", help="export only this named graph (default: all)")
    p.add_argument("--stated-in", help="quickstatements: the S248 (stated in) item, e.g. Q... (default: none)")
    p.add_argument(
        "--property-map",
        help="quickstatements: JSON file {relation: Wikidata property} (default: KBP37's)",
    )
    p.set_defaults(func=_export)


def _build(args: argparse.Namespace) -> int:
    from relbridge.kg.build import run_config
    from relbridge.kg.options import config_from_args

    stats = run_config(config_from_args(args), args.extra_args)
    keys = ("run_id", "graph", "lines", "sentences", "records", "triples", "dead_letters")
    print(json.dumps({**{k: stats.get(k) for k in keys}, "balanced": stats["balanced"]}))
    return 0 if stats["balanced"] else 1


def _load(args: argparse.Namespace) -> int:
    from relbridge.kg.store import load_graphs, nquads_files

    print(json.dumps(load_graphs(nquads_files(args.input), args.store)))
    return 0


def _query(args: argparse.Namespace) -> int:
    from relbridge.kg.store import csv_lines, query

    columns, rows = query(args.store, args.sparql)
    if args.format == "csv":
        sys.stdout.writelines(csv_lines(columns, rows))
    else:
        sys.stdout.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return 0


def _export(args: argparse.Namespace) -> int:
    from relbridge.kg.export import KBP37_PROPERTIES, export_neo4j, export_quickstatements

    if args.format == "neo4j":
        counts = export_neo4j(args.store, args.output, args.graph)
    else:
        properties = KBP37_PROPERTIES
        if args.property_map:
            with open(args.property_map, encoding="utf-8") as f:
                try:
                    properties = json.load(f)
                except json.JSONDecodeError as e:
                    properties = f"not JSON ({e.msg})"
            if not isinstance(properties, dict) or not all(
                isinstance(v, str) for v in properties.values()
            ):
                raise ValueError(
                    f"{args.property_map}:1: expected {{relation: Wikidata property}}, "
                    f"got {str(properties)[:60]}"
                )
        counts = export_quickstatements(
            args.store, args.output, properties, args.stated_in, args.graph
        )
    print(json.dumps({**counts, "output": args.output}))
    return 0
