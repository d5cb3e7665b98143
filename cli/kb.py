"""`relbridge kb`: build a KB's index; convert a Wikidata dump into a KB.

``relbridge kb build --kb DIR --output INDEX [--profile en ...]`` builds the
read-only index that ``relbridge run --kb INDEX`` and ``relbridge extract --kb
INDEX`` open (`relbridge.kb`); both also build it themselves into a cache
when given a KB directory. ``relbridge kb wikidata --dump latest-all.json.gz
--output DIR --langs en,de [--relation-map relation_map.json]`` writes a KB
directory from a Wikidata JSON dump.
"""

from __future__ import annotations

import argparse
import json

from relbridge.runtime.flags import comma_list


def register(subparsers) -> None:
    parser = subparsers.add_parser("kb", help="build a KB index; convert a Wikidata dump to a KB")
    commands = parser.add_subparsers(dest="kb_command", metavar="KB_COMMAND", required=True)
    build = commands.add_parser(
        "build",
        help="build a KB directory into one read-only index file",
        description="Streams and checks the KB (one FILE:LINE error for a bad line) and writes an "
        "index with one alias table per --profile. A profile is LANG[:ALIAS_LANGS|*][:cased|"
        "folded][:skip-function-words|all-words]: the text's language, whose aliases (default: "
        "LANG's; * for every language), and case. `relbridge run` needs SRC (or SRC:SRC:folded "
        "with --case-insensitive); `relbridge extract --kb --lang L` needs L:* (or L:A,B with "
        "--kb-alias-langs A,B).",
    )
    build.add_argument("--kb", required=True, help="KB directory (local or gs://)")
    build.add_argument("--output", required=True, help="index file to write (local)")
    build.add_argument(
        "--profile",
        action="append",
        required=True,
        help="a matching profile (repeatable), e.g. en for `run --src-lang en`, en:* for "
        "`extract --lang en`",
    )
    build.set_defaults(func=_build)
    wikidata = commands.add_parser(
        "wikidata",
        help="convert a Wikidata JSON dump (one entity per line) into a KB directory",
        description="Reads latest-all.json[.gz] as a stream and writes entities.jsonl.gz and "
        "triples.jsonl.gz: labels and aliases in --langs, item-valued claims of the kept "
        "properties between kept entities (see relbridge.kb.wikidata).",
    )
    wikidata.add_argument("--dump", required=True, help="latest-all.json or .json.gz")
    wikidata.add_argument("--output", required=True, help="KB directory to write")
    wikidata.add_argument(
        "--langs", required=True, type=comma_list(), help="alias languages, e.g. en,de,fr"
    )
    wikidata.add_argument(
        "--properties",
        type=comma_list(),
        default=(),
        help="comma-separated property ids to keep (default: all)",
    )
    wikidata.add_argument(
        "--relation-map",
        default="",
        help="a relation_map.json: keep its properties and copy it beside the KB (default: none, every property)",
    )
    wikidata.set_defaults(func=_wikidata)


def _build(args: argparse.Namespace) -> int:
    from relbridge.kb import MatchProfile, build_index
    from relbridge.kb.source import kb_fingerprint, listdir, open_text

    profiles = [MatchProfile.parse(spec) for spec in args.profile]
    meta = build_index(
        args.kb,
        args.output,
        profiles,
        kb_fingerprint(args.kb),
        open_text=open_text,
        listdir=listdir,
    )
    keys = ("entities", "triples", "alias_langs", "profiles")
    print(json.dumps({"output": args.output, **{k: meta[k] for k in keys}}))
    return 0


def _wikidata(args: argparse.Namespace) -> int:
    from relbridge.kb.wikidata import WikidataConfig, convert_dump

    cfg = WikidataConfig(
        langs=args.langs,
        properties=args.properties,
        relation_map=args.relation_map,
    )
    print(json.dumps(convert_dump(args.dump, args.output, cfg)))
    return 0
