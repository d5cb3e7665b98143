"""From extracted mentions to knowledge-graph triples: entity linking and aggregation.

`relbridge extract` writes one record per relation mention: a sentence, two
surface strings, a relation and a confidence, with provenance. A knowledge graph
wants one statement per fact, about entity ids, with a confidence and the
evidence for it. `aggregate_triples` gets there in two steps:

1. **Linking** (`EntityLinker`, optional): a surface string links to the KB
   entity whose alias it is, in any language, compared after Unicode (NFKC)
   normalisation, case folding and whitespace collapsing. When several entities
   share the alias, the mention's type (from the tagging head) picks one if
   exactly one candidate has it; otherwise the mention stays unlinked and its
   candidates are listed, since a wrong link writes a wrong fact.
2. **Aggregation**: mentions with the same (subject, relation, object), where
   an entity is its KB id when linked and its normalised surface otherwise,
   become one triple. Its confidence is the mentions' maximum (``max``: the
   at-least-one assumption of multi-instance learning, and never above what
   the model said of one sentence) or their noisy-or, ``1 - prod(1 - p)``
   (``noisy-or``: more mentions, more confidence; this assumes independent
   errors, which mentions of one model rarely have).

A triple reads ``{"subject", "subject_id", "subject_name", "relation", "object",
"object_id", "object_name", "confidence", "mentions", "in_kb", "evidence"}``:
``subject`` is the KB id when linked, else the most frequent surface string
(``subject_name``, the most frequent surface string, either way), and an
ambiguous, unlinked entity adds ``subject_candidates``.

Each triple keeps its ``mentions`` count and its ``max_evidence`` most confident
mentions (file, line, input id, sentence, surface strings, confidence, model),
and ``in_kb`` says whether a linked triple is already a KB fact, so that new
facts can be reviewed apart from known ones. Mentions below ``min_confidence``
are counted, not used, and so are records of no relation: `extract` writes
a ``relation: "NA"`` record for every marked pair whose two entities it finds
unrelated, and ``NA`` is never a fact (counted as ``no_relation``).
"""

from __future__ import annotations

import heapq
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from relbridge.data_specs.formats import KnowledgeBase
from relbridge.data_specs.relations import NA

AGGREGATIONS = ("max", "noisy-or")
EVIDENCE_KEYS = ("source_file", "line", "id", "text", "subject", "object", "confidence", "model")


def normalize_name(text: str) -> str:
    """The form in which surface strings and aliases are compared."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class TriplesConfig:
    """How mentions become triples.

    Attributes:
      min_confidence: mentions below this are counted and left out.
      aggregate: ``max`` or ``noisy-or`` (see the module docstring).
      max_evidence: most confident mentions kept per triple (all are counted).
      check_types: with a KB, a mention whose argument types (the linked
        entity's, else the tagger's) make a pair that the KB's facts of its
        relation never have (``per:employee_of`` between two ``PER``) is
        counted ``type_mismatch`` and left out. An untyped argument, or a
        relation without typed facts, passes.
    """

    min_confidence: float = 0.5
    aggregate: str = "max"
    max_evidence: int = 5
    check_types: bool = True

    def __post_init__(self):
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError("min_confidence must be in [0, 1]")
        if self.aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATIONS)}")
        if self.max_evidence < 0:
            raise ValueError("max_evidence must be >= 0")


@dataclass(frozen=True)
class Link:
    """A mention's entity: its KB id, or None with the ids it could be."""

    id: str | None
    candidates: tuple[str, ...] = ()


class EntityLinker:
    """Links surface strings to KB entities by exact (normalised) alias match, in any language."""

    def __init__(self, kb: KnowledgeBase):
        table: dict[str, set[str]] = {}
        for entity in kb.entities.values():
            for names in entity.aliases.values():
                for alias in names:
                    table.setdefault(normalize_name(alias), set()).add(entity.id)
        self._ids = {alias: tuple(sorted(ids)) for alias, ids in table.items()}
        self._types = {e.id: e.type for e in kb.entities.values()}

    def link(self, surface: str, entity_type: str = "") -> Link:
        ids = self._ids.get(normalize_name(surface), ())
        if len(ids) == 1:
            return Link(ids[0])
        typed = [i for i in ids if entity_type and self._types[i] == entity_type]
        if len(typed) == 1:
            return Link(typed[0])
        return Link(None, ids)


@dataclass
class _Triple:
    """The running aggregate of one (subject, relation, object)."""

    mentions: int = 0
    best: float = 0.0
    log_none: float = 0.0  # sum of log(1 - p): the noisy-or's complement
    names: tuple[Counter, Counter] = field(default_factory=lambda: (Counter(), Counter()))
    links: tuple[Link | None, Link | None] = (None, None)
    evidence: list = field(default_factory=list)  # a min-heap of (confidence, -order, record)


def _check_record(record: Any, where: str) -> dict:
    keys = ("subject", "relation", "object", "confidence")
    if not isinstance(record, dict) or any(k not in record for k in keys):
        raise ValueError(f"{where}: expected an extract record with {', '.join(keys)}")
    if not isinstance(record["confidence"], int | float) or not 0 <= record["confidence"] <= 1:
        raise ValueError(f"{where}: confidence must be a number in [0, 1]")
    return record


def aggregate_triples(
    records: Iterable[tuple[str, dict]],
    cfg: TriplesConfig = TriplesConfig(),
    kb: KnowledgeBase | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Aggregates extract records into triples.

    Args:
      records: ``(where, record)``, ``where`` naming the record's file and line
        for error messages; records are `extract`'s (``NA`` records are
        counted as ``no_relation``, never made triples).
      cfg: thresholds and the aggregation.
      kb: links entities and marks known facts when given.

    Returns:
      The triples, most confident first (ties by key, so the order is stable),
      and counts: ``records`` = ``used`` + ``no_relation`` +
      ``below_threshold`` + ``type_mismatch``; ``triples``, of which ``in_kb`` and ``new`` (both
      entities linked) and ``unlinked``.
    """
    linker = EntityLinker(kb) if kb is not None else None
    facts = kb.triples if kb is not None else frozenset()
    signatures = kb.relation_signatures() if kb is not None and cfg.check_types else {}
    triples: dict[tuple, _Triple] = {}
    counts = Counter(records=0, used=0, no_relation=0, below_threshold=0, type_mismatch=0)
    for order, (where, record) in enumerate(records):
        record = _check_record(record, where)
        counts["records"] += 1
        if record["relation"] == NA:
            counts["no_relation"] += 1
            continue
        p = float(record["confidence"])
        if p < cfg.min_confidence:
            counts["below_threshold"] += 1
            continue
        links = tuple(
            linker.link(record[role], record.get(f"{role}_type", "")) if linker else Link(None)
            for role in ("subject", "object")
        )
        types = tuple(
            kb.entities[link.id].type if link.id else str(record.get(f"{role}_type") or "")
            for role, link in zip(("subject", "object"), links)
        )
        allowed = signatures.get(record["relation"])
        if allowed and all(types) and types not in allowed:
            counts["type_mismatch"] += 1
            continue
        counts["used"] += 1
        key = tuple(
            ("id", link.id) if link.id else ("name", normalize_name(record[role]))
            for role, link in zip(("subject", "object"), links)
        )
        t = triples.setdefault((key[0], record["relation"], key[1]), _Triple())
        t.mentions += 1
        t.best = max(t.best, p)
        t.log_none += math.log1p(-p) if p < 1 else -math.inf
        for names, role in zip(t.names, ("subject", "object")):
            names[record[role]] += 1
        t.links = links
        entry = (p, -order, {k: record[k] for k in EVIDENCE_KEYS if k in record})
        if len(t.evidence) < cfg.max_evidence:
            heapq.heappush(t.evidence, entry)
        elif cfg.max_evidence:
            heapq.heappushpop(t.evidence, entry)
    out = []
    for (subj, relation, obj), t in triples.items():
        confidence = t.best if cfg.aggregate == "max" else 1.0 - math.exp(t.log_none)
        triple: dict[str, Any] = {}
        for role, (kind, value), names, link in zip(
            ("subject", "object"), (subj, obj), t.names, t.links
        ):
            name = _most_common(names)
            triple[role] = value if kind == "id" else name
            triple[f"{role}_id"] = value if kind == "id" else None
            triple[f"{role}_name"] = name
            if link.candidates and kind == "name":
                triple[f"{role}_candidates"] = list(link.candidates)
        triple["relation"] = relation
        triple["confidence"] = round(confidence, 6)
        triple["mentions"] = t.mentions
        linked = subj[0] == "id" and obj[0] == "id"
        triple["in_kb"] = (
            (subj[1], relation, obj[1]) in facts if kb is not None and linked else None
        )
        triple["evidence"] = [e for _, _, e in sorted(t.evidence, reverse=True)]
        out.append(triple)
        counts["triples"] += 1
        counts["in_kb" if triple["in_kb"] else "new" if linked else "unlinked"] += 1
    out.sort(key=lambda r: (-r["confidence"], str(r["subject"]), r["relation"], str(r["object"])))
    return out, {
        k: counts[k]
        for k in (
            "records",
            "used",
            "no_relation",
            "below_threshold",
            "type_mismatch",
            "triples",
            "in_kb",
            "new",
            "unlinked",
        )
    }


def _most_common(names: Counter) -> str:
    """The most frequent surface string; ties go to the alphabetically first, for stable output."""
    return min(names.items(), key=lambda kv: (-kv[1], kv[0]))[0]
