"""The harvested alias file: target-language names that projection found for KB entities.

Distant supervision finds a KB entity in the source sentence by one of its
aliases, and projection carries that mention onto target words. Those words are
a name of the entity in the target language, which the KB often lacks (the
Wikidata slice in ``shared/data/kb`` has no German alias at all). `relbridge
run` records them (``pipeline/harvest.py``) in ``aliases.jsonl`` beside the
shards, one KB entity per line, in the KB's ``entities.jsonl`` format plus the
evidence for each name::

    {"id": "Q30", "type": "LOC", "aliases": {"de": ["USA", "Vereinigten Staaten"]},
     "harvested": {"de": [{"alias": "USA", "count": 12, "confidence": 0.93,
                           "pair_ids": ["news:3", "news:17"]}, ...]}}

``aliases`` lists each language's names, most often projected first (ties
alphabetically); ``harvested`` gives each name's ``count`` (projected
mentions), ``confidence`` (their mean projection confidence, rounded to 4
digits) and ``pair_ids`` (the first `MAX_PAIR_IDS` in sorted order, so that
the file is the same whatever order the runner processed the pairs in). The
file is a valid entities file of a KB directory as it is; `load_alias_files`
reads it with thresholds on count and confidence, and `add_aliases` adds the
names to a KB (``relbridge extract --kb DIR --kb-aliases FILE``, ``relbridge
triples --kb DIR --kb-aliases FILE``). A plain entities line (no
``harvested``) is read too; its aliases pass every threshold.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from relbridge.data_specs.formats import InputError, open_lines
from relbridge.data_specs.kb_format import Entity, KnowledgeBase
from relbridge.data_specs.schema import ProjectedMention, ShardRow

logger = logging.getLogger(__name__)

MAX_PAIR_IDS = 20
"""Pair ids kept per harvested name (the count covers all of them)."""


def looks_like_name(text: str) -> bool:
    """Whether a source mention's text can be a name: it has a letter, and a capital
    if its script has case (``human`` and ``2019`` are not; ``iPhone``, ``习近平`` are).

    >>> [looks_like_name(t) for t in ("human", "2019", "iPhone", "习近平", "U.S.")]
    [False, False, True, True, True]
    """
    letters = [c for c in text if c.isalpha()]
    cased = [c for c in letters if c.lower() != c.upper()]
    return bool(letters) and (not cased or any(c.isupper() for c in cased))


def name_problem(row: ShardRow, mention: ProjectedMention) -> str | None:
    """Why a projected mention's words are not a name of its KB entity, or None if they are.

    ``"retyped"``: projection gave it another type than its source (``belgischen``
    for *Belgium*, ``MISC``); ``"not_a_name"``: its source text is no name
    (`looks_like_name`: raw KB aliases such as ``human`` or ``attack`` match
    common words, whose translations ``Menschen`` or ``Angriff`` are no names
    either). The harvested aliases and the tagger's projected training mentions
    (`relbridge.models.units.projected_tagging`) keep only names.
    """
    source = row.src_mentions[mention.source_index]
    if mention.type != source.type:
        return "retyped"
    if not looks_like_name(source.text or " ".join(row.src_tokens[source.start : source.end])):
        return "not_a_name"
    return None


@dataclass(frozen=True)
class HarvestedName:
    """One target-language name of a KB entity, with what it rests on."""

    entity_id: str
    entity_type: str
    lang: str
    alias: str
    count: int
    confidence: float  # mean projection confidence of the `count` mentions
    pair_ids: tuple[str, ...] = ()
    harvested: bool = True  # False: a plain entities line's alias, which no threshold drops


def entity_lines(names: Iterable[HarvestedName]) -> list[dict]:
    """The alias file's lines (one per entity, sorted by id) for some harvested names."""
    by_entity: dict[str, list[HarvestedName]] = defaultdict(list)
    types: dict[str, str] = {}
    for name in names:
        by_entity[name.entity_id].append(name)
        types[name.entity_id] = types.get(name.entity_id) or name.entity_type
    lines = []
    for entity_id in sorted(by_entity):
        aliases: dict[str, list[str]] = defaultdict(list)
        harvested: dict[str, list[dict]] = defaultdict(list)
        for n in sorted(by_entity[entity_id], key=lambda n: (n.lang, -n.count, n.alias)):
            aliases[n.lang].append(n.alias)
            harvested[n.lang].append(
                {
                    "alias": n.alias,
                    "count": n.count,
                    "confidence": round(n.confidence, 4),
                    "pair_ids": sorted(n.pair_ids)[:MAX_PAIR_IDS],
                }
            )
        lines.append(
            {
                "id": entity_id,
                "type": types[entity_id],
                "aliases": dict(aliases),
                "harvested": dict(harvested),
            }
        )
    return lines


def parse_alias_lines(lines: Iterable[str], source_file: str) -> Iterator[HarvestedName]:
    """The names of an alias file (or of a KB's ``entities.jsonl``).

    Raises:
      InputError: a line that is not such an entity (naming the file and line).
    """
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(source_file, number, f"invalid JSON: {e.msg}") from None
        yield from _names(obj, source_file, number)


def _names(obj, source_file: str, line: int) -> Iterator[HarvestedName]:
    def bad(reason: str) -> InputError:
        return InputError(source_file, line, reason)

    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
        raise bad('expected an entity {"id": "...", "type": "...", "aliases": {...}}')
    entity_id, entity_type = obj["id"], obj.get("type") or ""
    if not isinstance(entity_type, str):
        raise bad('"type" must be a string')
    harvested = obj.get("harvested")
    plain = harvested is None
    if plain:  # a plain entities line
        harvested = {
            lang: [{"alias": a, "count": 1, "confidence": 1.0} for a in names]
            for lang, names in _mapping(obj.get("aliases"), '"aliases"', bad).items()
        }
    for lang, entries in _mapping(harvested, '"harvested"', bad).items():
        for entry in entries:
            if not isinstance(entry, dict):
                raise bad(f'entity {entity_id}: a harvested name must be an object '
                          f'{{"alias": ..., "count": ..., "confidence": ...}}, got {entry!r}')  # fmt: skip
            alias = entry.get("alias")
            if not isinstance(alias, str) or not alias.strip():
                raise bad(f"entity {entity_id}: an alias must be a non-empty string, got {alias!r}")
            count, conf = entry.get("count", 1), entry.get("confidence", 1.0)
            pair_ids = entry.get("pair_ids", [])
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise bad(f"entity {entity_id}: count must be a positive integer")
            if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0 <= conf <= 1:
                raise bad(f"entity {entity_id}: confidence must be a number in [0, 1]")
            if not isinstance(pair_ids, list) or not all(isinstance(p, str) for p in pair_ids):
                raise bad(f"entity {entity_id}: pair_ids must be a list of strings")
            yield HarvestedName(
                entity_id, entity_type, lang, " ".join(alias.split()), count, float(conf),
                tuple(pair_ids), not plain,
            )  # fmt: skip


def _mapping(value, what: str, bad) -> dict[str, list]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, list) for k, v in value.items()
    ):
        raise bad(f"{what} must map a language to a list")
    return value


def load_alias_files(
    paths: Sequence[str], min_count: int = 1, min_confidence: float = 0.0
) -> dict[str, Entity]:
    """Entities with the harvested names that pass the thresholds, from alias files.

    Args:
      paths: alias files (local paths; ``.gz`` is read too).
      min_count: keep harvested names projected at least this often.
      min_confidence: keep harvested names whose mean projection confidence
        is at least this (names of plain entities lines are always kept).

    Returns:
      Entity id -> `Entity` holding only the kept names (merged over the files).
    """
    aliases: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    types: dict[str, str] = {}
    for path in paths:
        with open_lines(path) as f:
            for name in parse_alias_lines(f, path):
                types[name.entity_id] = types.get(name.entity_id) or name.entity_type
                kept = not name.harvested or (
                    name.count >= min_count and name.confidence >= min_confidence
                )
                if kept and name.alias not in aliases[name.entity_id][name.lang]:
                    aliases[name.entity_id][name.lang].append(name.alias)
    return {
        eid: Entity(eid, types[eid], {lang: tuple(v) for lang, v in by_lang.items()})
        for eid, by_lang in aliases.items()
        if by_lang
    }


def add_aliases(kb: KnowledgeBase, extra: dict[str, Entity]) -> KnowledgeBase:
    """A KB whose entities also have ``extra``'s aliases.

    An entity of ``extra`` that the KB lacks is left out (with a warning): its
    id may name something else in this KB, and it takes part in no fact.
    """
    entities = dict(kb.entities)
    unknown = sorted(set(extra) - set(entities))
    if unknown:
        logger.warning(
            "%d harvested entities are not in the KB and are left out, e.g. %s",
            len(unknown),
            ", ".join(unknown[:5]),
        )
    added = 0
    for eid, entity in extra.items():
        if eid not in entities:
            continue
        merged = {lang: list(names) for lang, names in entities[eid].aliases.items()}
        for lang, names in entity.aliases.items():
            new = [n for n in names if n not in merged.get(lang, ())]
            merged.setdefault(lang, []).extend(new)
            added += len(new)
        entities[eid] = replace(
            entities[eid], aliases={lang: tuple(v) for lang, v in merged.items()}
        )
    logger.info("harvested aliases: %d added to %d KB entities", added, len(extra) - len(unknown))
    return replace(kb, entities=entities)
