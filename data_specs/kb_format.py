"""The knowledge base's files: entities with aliases, and directed triples.

Knowledge base: a directory with two files, each ``.tsv`` or ``.jsonl``, either
optionally gzip-compressed (``entities.jsonl.gz``); both are read as streams:
  * ``entities``: TSV ``id<TAB>type<TAB>lang<TAB>alias`` (one alias per line; an
    entity repeats its id on several lines), or JSONL
    ``{"id": "Q64", "type": "LOC", "aliases": {"en": ["Berlin"], "de": ["Berlin"]}}``
    (one line per entity). An id is a non-empty string; ``type`` a string
    (optional); ``aliases`` maps a language code to a *list* of non-empty
    strings (``{"en": "Tea"}``, ``null`` or a number is an error, never read as
    text). A JSONL id on two lines is an error unless both lines are the same
    (then a warning).
  * ``triples``: TSV ``subject<TAB>relation<TAB>object`` or JSONL
    ``{"subject": ..., "relation": ..., "object": ...}``, three non-empty
    strings. Triples are directed; both arguments must be entities.

The relation inventory: a triple's relation must be one the KB may state.
``NA`` never is (it means "no relation"). Which others, the KB declares:
  * ``relations.json`` in the directory, ``{"relations": ["per:spouse", ...]}``
    (the format of a model's ``relations.json``; ``NA`` in it is ignored): only
    these names;
  * else ``relation_map.json`` (a map from a source KB's properties to relations,
    as in ``shared/data/kb/wikidata-xfactr``): the names are that source's own
    property ids, so any name is allowed, and every reader of the KB sees its
    facts through the map's rules (`relbridge.data_specs.relation_map`);
  * else the 18 KBP37 relations (`relations.KBP37_RELATIONS`).

Lines are numbered from 1. Every parse error raises `InputError` naming the file
and line; blank lines and ``#`` comments (TSV) are skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from relbridge.data_specs.errors import InputError, unicode_text
from relbridge.data_specs.formats import open_lines
from relbridge.data_specs.relation_map import LEVELS_FILE, read_mapped_triples
from relbridge.data_specs.relations import KBP37_RELATIONS, NA

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entity:
    """A KB entity: id, coarse type (PER, ORG, LOC, ...) and aliases per language."""

    id: str
    type: str
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class KnowledgeBase:
    """Entities with aliases plus directed ``(subject, relation, object)`` triples."""

    entities: dict[str, Entity]
    triples: frozenset[tuple[str, str, str]]

    def aliases(self, lang: str) -> dict[str, list[str]]:
        """Maps each alias in ``lang`` to the ids of the entities it may name."""
        table: dict[str, list[str]] = defaultdict(list)
        for entity in self.entities.values():
            for alias in entity.aliases.get(lang, ()):
                table[alias].append(entity.id)
        return dict(table)

    def relation_index(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """Maps (subject id, object id) to the relations that hold, sorted."""
        index: dict[tuple[str, str], set[str]] = defaultdict(set)
        for s, r, o in self.triples:
            index[(s, o)].add(r)
        return {k: tuple(sorted(v)) for k, v in index.items()}

    @property
    def relations(self) -> tuple[str, ...]:
        return tuple(sorted({r for _, r, _ in self.triples}))

    def relation_signatures(self) -> dict[str, frozenset[tuple[str, str]]]:
        """Maps each relation to the (subject type, object type) pairs of its facts.

        Facts with an untyped argument add nothing.
        """
        table: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for s, r, o in self.triples:
            types = (
                (self.entities[s].type, self.entities[o].type)
                if s in self.entities and o in self.entities
                else ("", "")
            )
            if all(types):
                table[r].add(types)
        return {r: frozenset(pairs) for r, pairs in table.items()}


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, text in enumerate(lines, start=1):
        text = text.rstrip("\r\n")
        if text.strip() and not text.startswith("#"):
            yield number, text


def _json_object(text: str, source_file: str, line: int, keys: tuple[str, ...]) -> dict:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(source_file, line, f"invalid JSON: {e.msg}") from None
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        raise InputError(source_file, line, f"expected a JSON object with keys {', '.join(keys)}")
    return obj


def _text_field(value: Any, what: str, source_file: str, line: int, optional: bool = False) -> str:
    """A KB string field, stripped; null, numbers, lists and (unless optional) "" are errors."""
    if optional and value is None:
        return ""
    if not isinstance(value, str):
        got = "null" if value is None else type(value).__name__
        raise InputError(source_file, line, f"{what} must be a string, got {got}")
    value = unicode_text(value, what, source_file, line).strip()
    if not value and not optional:
        raise InputError(source_file, line, f"{what} is empty")
    return value


@dataclass(frozen=True)
class EntityLine:
    """What one line of an entities file says: an entity's id, type and some aliases."""

    line: int
    id: str
    type: str
    aliases: tuple[tuple[str, str], ...]  # (lang, alias) in the order written


def iter_entity_lines(lines: Iterable[str], source_file: str) -> Iterator[EntityLine]:
    """Streams an entities file (TSV or JSONL by its extension, ``.gz`` allowed), line by line.

    Each line is checked on its own (see the module docstring for the rules);
    the first bad one raises `InputError`. Checks that span lines (duplicate
    ids, conflicting types) are the caller's.
    """
    is_json = _kb_extension(source_file) == ".jsonl"
    for line, text in _numbered(lines):
        if is_json:
            obj = _json_object(text, source_file, line, ("id", "aliases"))
            entity_id = _text_field(obj["id"], '"id"', source_file, line)
            entity_type = _text_field(obj.get("type"), '"type"', source_file, line, optional=True)
            if not isinstance(obj["aliases"], dict):
                raise InputError(
                    source_file, line, '"aliases" must map a language to a list of names'
                )
            pairs = []
            for lang, names in obj["aliases"].items():
                if not lang.strip():
                    raise InputError(source_file, line, f"empty language code in {entity_id}'s aliases")
                if not isinstance(names, list):
                    got = "a string" if isinstance(names, str) else type(names).__name__
                    raise InputError(
                        source_file,
                        line,
                        f'"aliases"."{lang}" of {entity_id} must be a list of names, got {got}',
                    )
                what = f'an alias of {entity_id} ("{lang}")'
                pairs += [(lang, _text_field(a, what, source_file, line)) for a in names]
        else:
            cols = text.split("\t")
            if len(cols) != 4:
                raise InputError(
                    source_file,
                    line,
                    f"expected id, type, lang, alias (4 columns), got {len(cols)}",
                )
            entity_id, entity_type, lang, alias = (c.strip() for c in cols)
            if not entity_id:
                raise InputError(source_file, line, "empty entity id")
            if not lang:
                raise InputError(source_file, line, f"empty language code for {entity_id}")
            if not alias:
                raise InputError(source_file, line, f"empty alias for entity {entity_id}")
            pairs = [(lang, alias)]
        yield EntityLine(line, entity_id, entity_type, tuple(dict.fromkeys(pairs)))


def parse_entities(lines: Iterable[str], source_file: str) -> dict[str, Entity]:
    """Parses an entities file (TSV or JSONL, by its extension).

    A JSONL id on two lines is an error, or a warning when both lines say the
    same; a TSV id repeats on purpose, one alias per line, with one type.
    """
    aliases: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    types: dict[str, str] = {}
    first: dict[str, EntityLine] = {}
    is_json = _kb_extension(source_file) == ".jsonl"
    for entry in iter_entity_lines(lines, source_file):
        entity_id, entity_type, line = entry.id, entry.type, entry.line
        if is_json and entity_id in first:
            check_duplicate_entity(first[entity_id], entry, source_file)
            continue
        first.setdefault(entity_id, entry)
        if entity_id in types and entity_type and types[entity_id] and types[entity_id] != entity_type:
            raise InputError(
                source_file,
                line,
                f"entity {entity_id} has type {entity_type!r}, earlier {types[entity_id]!r}",
            )
        types[entity_id] = types.get(entity_id) or entity_type
        for lang, alias in entry.aliases:
            if alias not in aliases[entity_id][lang]:
                aliases[entity_id][lang].append(alias)
        aliases[entity_id]  # an entity with no aliases still exists
    return {
        eid: Entity(eid, types[eid], {lang: tuple(names) for lang, names in aliases[eid].items()})
        for eid in types
    }


def check_duplicate_entity(earlier: EntityLine, entry: EntityLine, source_file: str) -> None:
    """A JSONL entity stated twice: a warning if both lines say the same, else `InputError`."""
    if (earlier.type, earlier.aliases) == (entry.type, entry.aliases):
        logger.warning(
            "%s:%d: entity %s repeats line %d word for word; the repeat is ignored",
            source_file,
            entry.line,
            entry.id,
            earlier.line,
        )
        return
    raise InputError(
        source_file,
        entry.line,
        f"duplicate entity id {entry.id} (first on line {earlier.line}, with other content)",
    )


RELATIONS_FILE = "relations.json"
"""A KB's declared relation inventory: ``{"relations": ["rel", ...]}``."""
RELATION_MAP_FILE = "relation_map.json"
"""A map from a source KB's properties (Wikidata ``P108``) to relations; see the docstring."""


def check_relation(relation: str, inventory: frozenset[str] | None, source_file: str, line: int):
    """Raises `InputError` for ``NA`` or a relation outside ``inventory`` (``None``: any name)."""
    if relation == NA:
        raise InputError(
            source_file,
            line,
            f"{NA!r} is not a relation (it means no relation holds): leave the triple out",
        )
    if inventory is not None and relation not in inventory:
        raise InputError(
            source_file,
            line,
            f"relation {relation!r} is not in the KB's relation inventory; declare the KB's "
            f"relations in {RELATIONS_FILE} beside it (see relbridge.data_specs.kb_format)",
        )


def iter_triple_lines(
    lines: Iterable[str], source_file: str, inventory: frozenset[str] | None = None
) -> Iterator[tuple[int, tuple[str, str, str]]]:
    """Streams a triples file (TSV or JSONL, ``.gz`` allowed): ``(line, (subject, relation, object))``."""
    is_json = _kb_extension(source_file) == ".jsonl"
    for line, text in _numbered(lines):
        if is_json:
            obj = _json_object(text, source_file, line, ("subject", "relation", "object"))
            triple = tuple(
                _text_field(obj[k], f'"{k}"', source_file, line)
                for k in ("subject", "relation", "object")
            )
        else:
            triple = tuple(c.strip() for c in text.split("\t"))
            if len(triple) != 3 or not all(triple):
                raise InputError(
                    source_file, line, "expected subject, relation, object (3 non-empty columns)"
                )
        check_relation(triple[1], inventory, source_file, line)
        yield line, triple


def parse_triples(
    lines: Iterable[str], source_file: str, inventory: frozenset[str] | None = None
) -> dict[tuple[str, str, str], int]:
    """Parses a triples file (TSV or JSONL, by its extension).

    Returns:
      Each distinct triple mapped to the first line that states it.
    """
    triples: dict[tuple[str, str, str], int] = {}
    for line, triple in iter_triple_lines(lines, source_file, inventory):
        triples.setdefault(triple, line)
    return triples


def _kb_extension(path: str) -> str:
    """``.jsonl`` or ``.tsv`` of a KB file name, with or without ``.gz``."""
    name = os.path.basename(path)
    name = name[:-3] if name.endswith(".gz") else name
    return os.path.splitext(name)[1]


@dataclass(frozen=True)
class KbFiles:
    """A KB directory's files: entities, triples and the optional inventory declarations."""

    entities: str
    triples: str
    relations: str | None = None
    relation_map: str | None = None
    levels: str | None = None

    @property
    def all(self) -> tuple[str, ...]:
        paths = (self.entities, self.triples, self.relations, self.relation_map, self.levels)
        return tuple(p for p in paths if p)


def find_kb_files(listing: Iterable[str]) -> KbFiles:
    """Picks a KB directory's files from its file names (see the module docstring)."""
    names = {os.path.basename(p): p for p in listing}
    found = []
    for stem in ("entities", "triples"):
        candidates = [f"{stem}{ext}{gz}" for ext in (".jsonl", ".tsv") for gz in ("", ".gz")]
        hits = [names[n] for n in candidates if n in names]
        if len(hits) != 1:
            raise FileNotFoundError(
                f"a KB directory needs exactly one of {' / '.join(candidates)}, found {len(hits)}"
            )
        found.append(hits[0])
    return KbFiles(
        *found, names.get(RELATIONS_FILE), names.get(RELATION_MAP_FILE), names.get(LEVELS_FILE)
    )


def relation_inventory(files: KbFiles, read_text: Callable[[str], str]) -> frozenset[str] | None:
    """The relation names a KB's triples may use; ``None`` when any name may be used.

    ``relations.json`` declares them; a ``relation_map.json`` (and no
    ``relations.json``) says that the names are a source KB's own properties,
    which the map turns into relations, so any name goes; otherwise they are
    the KBP37 relations.
    """
    if files.relations:
        text = read_text(files.relations)
        try:
            names = json.loads(text)["relations"]
        except (json.JSONDecodeError, KeyError, TypeError):
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise InputError(files.relations, 1, 'expected {"relations": ["name", ...]}')
        return frozenset(n.strip() for n in names) - {NA}
    if files.relation_map:
        return None
    return frozenset(KBP37_RELATIONS)


def kb_sources(
    kb_dir: str,
    open_text: Callable[[str], AbstractContextManager[Iterable[str]]],
    listdir: Callable[[str], list[str]] | None = None,
) -> tuple[KbFiles, frozenset[str] | None]:
    """A KB directory's files and the relation names its triples may use."""
    listing = listdir(kb_dir) if listdir else [os.path.join(kb_dir, n) for n in os.listdir(kb_dir)]
    files = find_kb_files(listing)

    def read_text(path: str) -> str:
        with open_text(path) as f:
            return "".join(f)

    return files, relation_inventory(files, read_text)


def load_kb(
    kb_dir: str,
    open_text: Callable[[str], AbstractContextManager[Iterable[str]]] | None = None,
    listdir=None,
) -> KnowledgeBase:
    """Loads a KB directory into memory (small KBs; large ones go through `relbridge.kb`).

    Args:
      kb_dir: directory holding ``entities.{tsv,jsonl}[.gz]``, ``triples.{tsv,jsonl}[.gz]``
        and optionally ``relations.json`` or ``relation_map.json`` (whose
        rules then turn the facts into relations: `relbridge.data_specs.relation_map`).
      open_text: opens a path as a context manager over its text lines (default:
        `open_lines`, local files, gzip by extension); the pipeline passes one
        backed by Beam's filesystems so gs:// paths work.
      listdir: lists the paths in ``kb_dir`` (default: `os.listdir`).

    Returns:
      The knowledge base. Triples whose subject or object is not an entity raise
      `InputError`, since they could never match a mention.
    """
    open_text = open_text or open_lines
    files, inventory = kb_sources(kb_dir, open_text, listdir)
    with open_text(files.entities) as f:
        entities = parse_entities(f, files.entities)
    with open_text(files.triples) as f:
        triples = parse_triples(f, files.triples, inventory)
    for (s, r, o), line in triples.items():
        for arg in (s, o):
            if arg not in entities:
                raise InputError(
                    files.triples, line, f"triple ({s}, {r}, {o}) names unknown entity {arg}"
                )
    if files.relation_map:
        types = {e.id: e.type for e in entities.values()}
        mapped = read_mapped_triples(files.relation_map, files.levels, open_text, triples, types)
        return KnowledgeBase(entities, mapped)
    return KnowledgeBase(entities, frozenset(triples))
