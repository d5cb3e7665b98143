"""A Wikidata JSON dump -> a relbridge KB directory, streamed.

The dump (``latest-all.json.gz``, https://dumps.wikimedia.org/wikidatawiki/entities/)
is one JSON array with one entity per line. `convert_dump` keeps:

  * items (``Q...``; properties and lexemes are skipped) with a label or alias
    in ``langs``: their aliases are the label first, then the aliases, per
    language, trimmed and without repeats;
  * a coarse type from the item's ``P31`` (instance of) classes by `TYPE_OF_CLASS`
    (``Q5`` human -> ``PER``, ...), else ``""``;
  * item-valued statements (``wikibase-entityid``) of the kept properties
    (``properties``, and those of a ``relation_map.json``; none given: all),
    not deprecated, whose object is also a kept item: the triples
    ``(subject, P.., object)``.

It writes ``entities.jsonl.gz`` and ``triples.jsonl.gz`` and declares the
relation inventory (`relbridge.data_specs.kb_format`): a copy of the relation
map as ``relation_map.json``, or else ``relations.json`` with the properties
that occur. Memory stays bounded: kept ids and candidate triples are staged
in a temporary SQLite file and joined at the end. The directory appears
complete or not at all.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from relbridge.data_specs.formats import InputError, open_lines
from relbridge.data_specs.kb_format import RELATION_MAP_FILE, RELATIONS_FILE

logger = logging.getLogger(__name__)

TYPE_OF_CLASS = {
    "Q5": "PER",  # human
    "Q15632617": "PER",  # fictional human
    "Q43229": "ORG",  # organization
    "Q4830453": "ORG",  # business
    "Q783794": "ORG",  # company
    "Q891723": "ORG",  # public company
    "Q3918": "ORG",  # university
    "Q7278": "ORG",  # political party
    "Q215380": "ORG",  # musical group
    "Q11032": "ORG",  # newspaper
    "Q515": "LOC",  # city
    "Q1549591": "LOC",  # big city
    "Q6256": "LOC",  # country
    "Q3624078": "LOC",  # sovereign state
    "Q35657": "LOC",  # U.S. state
    "Q10864048": "LOC",  # first-level administrative division
    "Q486972": "LOC",  # human settlement
}
"""P31 classes that give an entity's coarse type; the first class found wins."""


@dataclass(frozen=True)
class WikidataConfig:
    """What to keep of a dump.

    Attributes:
      langs: alias languages to keep (Wikidata codes: ``en``, ``de``, ``zh``).
      properties: property ids whose item-valued statements become triples;
        empty: those of ``relation_map`` or, without one, every property.
      relation_map: a ``relation_map.json`` (property -> relation rules) to
        keep the properties of and copy beside the KB.
    """

    langs: tuple[str, ...]
    properties: tuple[str, ...] = ()
    relation_map: str = ""

    def __post_init__(self):
        if not self.langs:
            raise ValueError("give at least one alias language")


def dump_entities(path: str) -> Iterator[tuple[int, dict]]:
    """``(line, entity)`` of each entity line of a dump (``[``/``]`` lines and commas skipped)."""
    with open_lines(path) as lines:
        for number, text in enumerate(lines, 1):
            text = text.strip().rstrip(",")
            if text in ("", "[", "]"):
                continue
            try:
                entity = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(path, number, f"invalid JSON: {e.msg}") from None
            if not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
                raise InputError(path, number, "expected a Wikidata entity object with an id")
            yield number, entity


def entity_aliases(entity: dict, langs: tuple[str, ...]) -> dict[str, list[str]]:
    """The label, then the aliases, per kept language; trimmed, whitespace collapsed, no repeats."""
    out: dict[str, list[str]] = {}
    labels, aliases = entity.get("labels") or {}, entity.get("aliases") or {}
    for lang in langs:
        names = [labels.get(lang, {}).get("value", "")]
        names += [a.get("value", "") for a in aliases.get(lang, [])]
        kept = list(dict.fromkeys(" ".join(str(n).split()) for n in names))
        kept = [n for n in kept if n]
        if kept:
            out[lang] = kept
    return out


def item_claims(entity: dict, properties: frozenset[str] | None) -> Iterator[tuple[str, str]]:
    """``(property, object item id)`` of each non-deprecated item-valued statement."""
    for prop, statements in (entity.get("claims") or {}).items():
        if properties is not None and prop not in properties:
            continue
        for statement in statements:
            snak = statement.get("mainsnak") or {}
            value = (snak.get("datavalue") or {}).get("value")
            if (
                statement.get("rank") != "deprecated"
                and snak.get("snaktype") == "value"
                and isinstance(value, dict)
                and value.get("entity-type") == "item"
                and isinstance(value.get("id"), str)
            ):
                yield prop, value["id"]


def entity_type(entity: dict) -> str:
    for _, cls in item_claims(entity, frozenset({"P31"})):
        if cls in TYPE_OF_CLASS:
            return TYPE_OF_CLASS[cls]
    return ""


def convert_dump(dump: str, output: str, cfg: WikidataConfig) -> dict:
    """Converts a dump into a KB directory at ``output``; returns the counts."""
    properties = set(cfg.properties)
    if cfg.relation_map:
        with open(cfg.relation_map, encoding="utf-8") as f:
            properties |= set(json.load(f))
    keep = frozenset(properties) if properties else None
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".wikidata-", dir=parent)
    try:
        counts = _convert(dump, work, cfg, keep)
        if os.path.exists(output):
            raise FileExistsError(f"{output} exists; remove it or choose another --output")
        os.rename(work, output)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    logger.info("Wikidata %s -> %s: %s", dump, output, counts)
    return {"output": output, **counts}


def _convert(dump: str, work: str, cfg: WikidataConfig, keep: frozenset[str] | None) -> dict:
    con = sqlite3.connect(os.path.join(work, "staging.sqlite"))
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("CREATE TABLE kept(id TEXT PRIMARY KEY) WITHOUT ROWID")
    con.execute("CREATE TABLE claims(s TEXT, p TEXT, o TEXT)")
    seen = skipped = 0
    with gzip.open(os.path.join(work, "entities.jsonl.gz"), "wt", encoding="utf-8") as out:
        for _, entity in dump_entities(dump):
            seen += 1
            if entity.get("type", "item") != "item" or not entity["id"].startswith("Q"):
                skipped += 1
                continue
            aliases = entity_aliases(entity, cfg.langs)
            if not aliases:
                skipped += 1
                continue
            record = {"id": entity["id"], "type": entity_type(entity), "aliases": aliases}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            con.execute("INSERT OR IGNORE INTO kept VALUES (?)", (entity["id"],))
            con.executemany(
                "INSERT INTO claims VALUES (?, ?, ?)",
                [(entity["id"], p, o) for p, o in item_claims(entity, keep) if o != entity["id"]],
            )
    relations = set()
    triples = 0
    with gzip.open(os.path.join(work, "triples.jsonl.gz"), "wt", encoding="utf-8") as out:
        for s, p, o in con.execute(
            "SELECT DISTINCT s, p, o FROM claims WHERE o IN (SELECT id FROM kept) ORDER BY p, s, o"
        ):
            out.write(json.dumps({"subject": s, "relation": p, "object": o}) + "\n")
            relations.add(p)
            triples += 1
    (kept,) = con.execute("SELECT count(*) FROM kept").fetchone()
    con.close()
    os.remove(os.path.join(work, "staging.sqlite"))
    if cfg.relation_map:
        shutil.copyfile(cfg.relation_map, os.path.join(work, RELATION_MAP_FILE))
    else:
        with open(os.path.join(work, RELATIONS_FILE), "w", encoding="utf-8") as f:
            json.dump({"relations": sorted(relations)}, f, indent=2)
    return {"dump_entities": seen, "entities": kept, "skipped": skipped, "triples": triples}
