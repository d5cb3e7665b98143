"""Relation maps: a source KB's properties read as the relations a model learns.

A KB built from Wikidata states facts with property ids (``Q1 P108 Q2``); the
extractor learns KBP37-style relations (``per:employee_of``). A KB directory
may therefore hold ``relation_map.json`` (the format of
``shared/data/kb/wikidata-xfactr``): for each property, an ordered list of
rules, of which the first that matches a fact decides its relation::

    {"P159": [{"kbp37": "org:city_of_headquarters", "reverse": false,
               "subject_type": null, "object_type": null, "object_level": ["city"]}, ...]}

``subject_type`` / ``object_type`` (lists of entity types, ``null``: any) test
the *source* fact's subject and object; ``object_level`` tests its object's
level in ``location_levels.tsv`` (``id<TAB>city|stateorprovince|country``, an
optional file beside the map); ``reverse`` swaps the arguments (``Q_band P527
Q_member`` becomes ``Q_member per:employee_of Q_band``). A fact whose property
has no rule that matches is not a fact of the mapped inventory and is dropped
(`map_triple` returns ``None``), so distant supervision labels its pair ``NA``
unless another fact holds.

Both readers stream and check every line (`InputError` names file and line).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass

from relbridge.data_specs.errors import InputError

logger = logging.getLogger(__name__)

LEVELS_FILE = "location_levels.tsv"
"""Location levels beside a ``relation_map.json``: ``id<TAB>level`` per line."""


@dataclass(frozen=True)
class MapRule:
    """One rule: the relation it gives and the conditions on the source fact (``None``: any)."""

    relation: str
    reverse: bool = False
    subject_types: frozenset[str] | None = None
    object_types: frozenset[str] | None = None
    object_levels: frozenset[str] | None = None

    def matches(self, subject_type: str, object_type: str, object_level: str | None) -> bool:
        return (
            (self.subject_types is None or subject_type in self.subject_types)
            and (self.object_types is None or object_type in self.object_types)
            and (self.object_levels is None or object_level in self.object_levels)
        )


RelationMap = Mapping[str, tuple[MapRule, ...]]
"""A source property -> its rules, in order."""


def parse_relation_map(text: str, source_file: str) -> dict[str, tuple[MapRule, ...]]:
    """Parses a ``relation_map.json`` (see the module docstring); errors name the file."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(source_file, e.lineno, f"not JSON: {e.msg}") from None
    if not isinstance(raw, dict):
        raise InputError(source_file, 1, 'expected {"property": [rule, ...], ...}')
    return {prop: tuple(_rule(r, prop, source_file) for r in _rules(rules, prop, source_file))
            for prop, rules in raw.items()}


def _rules(rules, prop: str, source_file: str) -> list:
    if not isinstance(rules, list):
        raise InputError(source_file, 1, f"{prop}: expected a list of rules")
    return rules


def _rule(raw, prop: str, source_file: str) -> MapRule:
    relation = raw.get("kbp37", raw.get("relation")) if isinstance(raw, dict) else None
    if not isinstance(relation, str) or not relation.strip():
        raise InputError(source_file, 1, f'{prop}: a rule needs a relation name ("kbp37")')
    reverse = raw.get("reverse", False)
    if not isinstance(reverse, bool):
        raise InputError(source_file, 1, f'{prop}: "reverse" must be true or false')
    return MapRule(
        relation.strip(),
        reverse,
        *(_names(raw.get(k), k, prop, source_file)
          for k in ("subject_type", "object_type", "object_level")),
    )


def _names(value, key: str, prop: str, source_file: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(source_file, 1, f'{prop}: "{key}" must be null or a list of names')
    return frozenset(value)


def iter_levels(lines: Iterable[str], source_file: str) -> Iterator[tuple[str, str]]:
    """Streams ``location_levels.tsv``: ``(entity id, level)``; blank and ``#`` lines skipped."""
    for line, text in enumerate(lines, 1):
        text = text.rstrip("\r\n")
        if not text.strip() or text.startswith("#"):
            continue
        cols = [c.strip() for c in text.split("\t")]
        if len(cols) != 2 or not all(cols):
            raise InputError(source_file, line, "expected id<TAB>level (2 non-empty columns)")
        yield cols[0], cols[1]


def map_triple(
    rules: RelationMap,
    triple: tuple[str, str, str],
    subject_type: str,
    object_type: str,
    object_level: str | None,
) -> tuple[str, str, str] | None:
    """The mapped ``(subject, relation, object)`` of a source fact, or ``None`` if no rule matches."""
    s, prop, o = triple
    for rule in rules.get(prop, ()):
        if rule.matches(subject_type, object_type, object_level):
            return (o, rule.relation, s) if rule.reverse else (s, rule.relation, o)
    return None


def read_relation_map(
    path: str, open_text: Callable[[str], AbstractContextManager[Iterable[str]]]
) -> dict[str, tuple[MapRule, ...]]:
    """Reads and parses a ``relation_map.json`` (any opener: local, gzip, Beam filesystems)."""
    with open_text(path) as f:
        return parse_relation_map("".join(f), path)


def read_mapped_triples(
    map_path: str,
    levels_path: str | None,
    open_text: Callable[[str], AbstractContextManager[Iterable[str]]],
    triples: Iterable[tuple[str, str, str]],
    types: Mapping[str, str],
) -> frozenset[tuple[str, str, str]]:
    """A small KB's facts read through its map (in memory; `relbridge.kb.index` streams)."""
    rules = read_relation_map(map_path, open_text)
    levels: dict[str, str] = {}
    if levels_path:
        with open_text(levels_path) as f:
            levels = dict(iter_levels(f, levels_path))
    triples = list(triples)
    mapped = frozenset(
        m
        for s, r, o in triples
        if (m := map_triple(rules, (s, r, o), types.get(s, ""), types.get(o, ""), levels.get(o)))
    )
    logger.info(
        "%s: %d of %d facts map to %d relations",
        map_path,
        len(mapped),
        len(triples),
        len({r for _, r, _ in mapped}),
    )
    return mapped
