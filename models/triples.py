"""From extracted mentions to knowledge-graph triples: entity linking and aggregation.

`relbridge extract` writes one record per relation mention: a sentence, two
surface strings, a relation and a confidence, with provenance. A knowledge graph
wants one statement per fact, about entity ids, with a confidence and the
evidence for it. `aggregate_triples` gets there in two steps:

1. **Linking** (`EntityLinker`, optional): a surface string's candidates are
   the KB entities whose alias it is, in any language, compared after Unicode
   (NFKC) normalisation, case folding and whitespace collapsing. The
   mention's type (from the tagging head, or the KB mention finder) keeps the
   candidates of that type; when none has it, the mention stays unlinked
   (any-language lookup makes German ``Indien`` the Dutch alias of *Induan*,
   a geological stage typed ``MISC``; counted as ``type_conflicts``). One
   candidate links. If more than one is left, the
   relation context decides: a candidate that takes part in a KB fact with a
   candidate of the record's other argument wins (a fact of the record's own
   relation before any other fact, in either direction). When neither picks
   exactly one, the mention stays unlinked with its candidates listed, since
   a wrong link writes a wrong fact.
2. **Aggregation**: mentions with the same (subject, relation, object) become
   one triple. Its confidence is the mentions' maximum (``max``: the
   at-least-one assumption of multi-instance learning, and never above what
   the model said of one sentence) or their noisy-or, ``1 - prod(1 - p)``
   (``noisy-or``: more mentions, more confidence; this assumes independent
   errors, which mentions of one model rarely have).

**Node ids.** A linked entity is its KB id. An entity that links to none gets
a stable id from its name and type (`stable_id`): ``relbridge:`` followed by
the first 16 hex digits of the SHA-256 of ``NAME + "\\t" + TYPE``, both NFKC-
normalised, case-folded and whitespace-collapsed (`normalize_name`; the type
is the one in ``subject_type`` below, ``""`` when untyped). ``Angela  Merkel``,
``angela merkel`` and ``ANGELA MERKEL`` typed ``PER`` are one node, in every
run and every refresh, so a graph loaded from several runs never holds the
same unlinked entity twice; ``Paris`` typed ``PER`` and ``Paris`` typed ``LOC``
are two.

A triple reads ``{"subject", "subject_id", "subject_name", "subject_type",
"relation", "object", "object_id", "object_name", "object_type",
"confidence", "mentions", "in_kb", "evidence"}``: ``subject`` is the node id
(the KB id when linked, else the stable id), ``subject_id`` the KB id or
``None``, ``subject_name`` the most frequent surface string, ``subject_type``
the KB entity's type when linked, else the tagger's, else the type that all
its candidates share; an ambiguous, unlinked entity adds
``subject_candidates`` (the KB ids it could be).

Each triple keeps its ``mentions`` count and its ``max_evidence`` most confident
mentions (file, line, input id, sentence, surface strings, confidence, model),
and ``in_kb`` says whether a linked triple is already a KB fact, so that new
facts can be reviewed apart from known ones. Mentions below ``min_confidence``
are counted, not used, and so are records of no relation: `extract` writes
a ``relation: "NA"`` record for every marked pair whose two entities it finds
unrelated, and ``NA`` is never a fact (counted as ``no_relation``).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from relbridge.data_specs.kb_format import KnowledgeBase
from relbridge.data_specs.languages import is_function_word, lexicon
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
      langs: the languages of the records' text. A mention whose argument is
        one of their function words (spaCy's stop lists: ``his``, ``er``,
        ``elle``; not in capitals, `is_function_word`) is counted
        ``function_word_argument`` and left out: without coreference it names
        no entity, and its stable id would make every sentence's *his* one
        node. Empty: no such check.
    """

    min_confidence: float = 0.5
    aggregate: str = "max"
    max_evidence: int = 5
    check_types: bool = True
    langs: tuple[str, ...] = ()

    def __post_init__(self):
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError("min_confidence must be in [0, 1]")
        if self.aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATIONS)}")
        if self.max_evidence < 0:
            raise ValueError("max_evidence must be >= 0")


def stable_id(name: str, entity_type: str = "") -> str:
    """The node id of an entity that links to no KB entity (see the module docstring).

    >>> stable_id("Angela  Merkel", "PER") == stable_id("ANGELA MERKEL", "per")
    True
    >>> stable_id("Paris", "PER") == stable_id("Paris", "LOC")
    False
    """
    key = f"{normalize_name(name)}\t{normalize_name(entity_type)}"
    return "relbridge:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Link:
    """A mention's entity: its KB id, or None with the ids it could be.

    ``how`` says what decided a link: ``alias`` (the only candidate),
    ``type`` (the only candidate of the mention's type) or ``facts`` (the
    only candidate with a KB fact beside the other argument); an unlinked
    mention has ``type_conflict`` when no candidate has its type.
    """

    id: str | None
    candidates: tuple[str, ...] = ()
    how: str = ""


class EntityLinker:
    """Links surface strings to KB entities by normalised alias, type and relation context.

    Args:
      kb: the knowledge base; aliases of every language are looked up.
    """

    def __init__(self, kb: KnowledgeBase):
        table: dict[str, set[str]] = {}
        for entity in kb.entities.values():
            for names in entity.aliases.values():
                for alias in names:
                    table.setdefault(normalize_name(alias), set()).add(entity.id)
        self._ids = {alias: tuple(sorted(ids)) for alias, ids in table.items()}
        self._types = {e.id: e.type for e in kb.entities.values()}
        self._facts = kb.relation_index()  # (subject id, object id) -> relations

    def candidates(self, surface: str, entity_type: str = "") -> tuple[tuple[str, ...], str]:
        """The KB ids a surface string may name, narrowed by the mention's type.

        Returns:
          ``(ids, how)``: ``type`` when the type narrowed them to those of that
          type (or untyped); ``type_conflict`` when every candidate has another
          type (the ids are returned, and must not be linked: ``Indien`` typed
          ``LOC`` is not *Induan*, a geological stage whose Dutch alias it is);
          else ``alias``.
        """
        ids = self._ids.get(normalize_name(surface), ())
        if not entity_type or not ids:
            return ids, "alias"
        fitting = tuple(i for i in ids if self._types[i] in (entity_type, ""))
        if not fitting:
            return ids, "type_conflict"
        return (fitting, "type") if len(fitting) < len(ids) else (ids, "alias")

    def link(self, surface: str, entity_type: str = "") -> Link:
        """Links one mention by its alias and type alone."""
        ids, how = self.candidates(surface, entity_type)
        if len(ids) == 1 and how != "type_conflict":
            return Link(ids[0], how=how)
        return Link(None, ids, how="type_conflict" if how == "type_conflict" else "")

    def link_pair(
        self,
        subject: str,
        obj: str,
        relation: str = "",
        types: tuple[str, str] = ("", ""),
    ) -> tuple[Link, Link]:
        """Links a record's two arguments, each helping to disambiguate the other.

        Args:
          subject: the subject's surface string.
          obj: the object's surface string.
          relation: the record's relation: a KB fact of it between two
            candidates counts more than a fact of another relation.
          types: the arguments' types (``""``: untyped).

        Returns:
          The subject's and the object's `Link`.
        """
        sides = [self.candidates(surface, t) for surface, t in zip((subject, obj), types)]
        (subj_ids, _), (obj_ids, _) = sides
        # a side whose candidates all have another type never links, nor vouches for the other
        open_ = [how != "type_conflict" for _, how in sides]
        chosen: list[str | None] = [
            ids[0] if len(ids) == 1 and ok else None for (ids, _), ok in zip(sides, open_)
        ]
        if None in chosen and all(open_) and subj_ids and obj_ids:
            scored = [
                (self._context(s, o, relation), s, o) for s in subj_ids for o in obj_ids if s != o
            ]
            best = max((score for score, _, _ in scored), default=0)
            if best:
                winners = [
                    {s for c, s, _ in scored if c == best},
                    {o for c, _, o in scored if c == best},
                ]
                for k, ids in enumerate(winners):
                    if chosen[k] is None and open_[k] and len(ids) == 1:
                        chosen[k] = ids.pop()
                        sides[k] = (sides[k][0], "facts")
        return tuple(
            Link(c, how=how) if c else Link(None, ids, how if how == "type_conflict" else "")
            for c, (ids, how) in zip(chosen, sides)
        )

    def type_of(self, link: Link, tagged: str = "") -> str:
        """A linked entity's KB type; else the tagger's, else the type all candidates share."""
        if link.id:
            return self._types[link.id]
        shared = {self._types[i] for i in link.candidates}
        return tagged or (shared.pop() if len(shared) == 1 else "")

    def _context(self, s: str, o: str, relation: str) -> int:
        """2: ``(s, relation, o)`` is a KB fact; 1: another fact joins them; 0: none."""
        forward = self._facts.get((s, o), ())
        if relation and relation in forward:
            return 2
        return 1 if forward or (o, s) in self._facts else 0


@dataclass
class _Triple:
    """The running aggregate of one (subject, relation, object)."""

    mentions: int = 0
    best: float = 0.0
    log_none: float = 0.0  # sum of log(1 - p): the noisy-or's complement
    names: tuple[Counter, Counter] = field(default_factory=lambda: (Counter(), Counter()))
    candidates: tuple[set, set] = field(default_factory=lambda: (set(), set()))
    evidence: list = field(default_factory=list)  # a min-heap of (confidence, -order, record)


ROLES = ("subject", "object")
COUNT_KEYS = (
    "records",
    "used",
    "no_relation",
    "below_threshold",
    "type_mismatch",
    "function_word_argument",
    "triples",
    "in_kb",
    "new",
    "unlinked",
    "arguments_linked",
    "arguments_ambiguous",
    "arguments_unknown",
    "linked_by_type",
    "linked_by_facts",
    "type_conflicts",
)


def _check_record(record: Any, where: str) -> dict:
    keys = ("subject", "relation", "object", "confidence")
    if not isinstance(record, dict) or any(k not in record for k in keys):
        raise ValueError(f"{where}: expected an extract record with {', '.join(keys)}")
    for key in keys[:3]:
        if not isinstance(record[key], str) or not record[key].strip():
            raise ValueError(f"{where}: {key} must be a non-empty string, got {record[key]!r}")
    p = record["confidence"]
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise ValueError(f"{where}: confidence must be a number in [0, 1]")
    return record


class TripleKeys:
    """What aggregation makes of one record: its outcome, and the triple it joins.

    ``keys(record)`` returns ``(outcome, key, links)``: outcome ``no_relation``,
    ``below_threshold``, ``function_word_argument`` or ``type_mismatch`` (key
    None: the record makes no triple), or ``used`` with the key ``((node, KB id,
    type) of the subject, relation, (node, KB id, type) of the object)`` and the
    two arguments' `Link`s. A record's key depends on the record and the KB
    alone, so records can be sent to their triple's worker before they are
    merged (`relbridge.kg.aggregate`).

    Args:
      cfg: thresholds, the type check and the function-word languages.
      kb: links entities when given (the linker is built once, here).
    """

    def __init__(self, cfg: TriplesConfig = TriplesConfig(), kb: KnowledgeBase | None = None):
        self.cfg = cfg
        self.linker = EntityLinker(kb) if kb is not None else None
        self.signatures = kb.relation_signatures() if kb is not None and cfg.check_types else {}
        self.stop_words = frozenset().union(*(lexicon(lang)[0] for lang in cfg.langs))

    def __call__(self, record: dict) -> tuple[str, tuple | None, tuple[Link, ...]]:
        if record["relation"] == NA:
            return "no_relation", None, ()
        if float(record["confidence"]) < self.cfg.min_confidence:
            return "below_threshold", None, ()
        if any(is_function_word(record[role].split(), self.stop_words) for role in ROLES):
            return "function_word_argument", None, ()
        linker = self.linker
        tagged = tuple(str(record.get(f"{role}_type") or "") for role in ROLES)
        links = (
            linker.link_pair(record["subject"], record["object"], record["relation"], tagged)
            if linker
            else (Link(None), Link(None))
        )
        types = tuple(linker.type_of(link, t) if linker else t for link, t in zip(links, tagged))
        allowed = self.signatures.get(record["relation"])
        if allowed and all(types) and types not in allowed:
            return "type_mismatch", None, links
        subj, obj = (
            (link.id, link.id, t) if link.id else (stable_id(record[role], t), None, t)
            for role, link, t in zip(ROLES, links, types)
        )
        return "used", (subj, record["relation"], obj), links


def aggregate_triples(
    records: Iterable[tuple[str, dict]],
    cfg: TriplesConfig = TriplesConfig(),
    kb: KnowledgeBase | None = None,
    keys: TripleKeys | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Aggregates extract records into triples.

    Args:
      records: ``(where, record)``, ``where`` naming the record's file and line
        for error messages; records are `extract`'s (``NA`` records are
        counted as ``no_relation``, never made triples).
      cfg: thresholds and the aggregation.
      kb: links entities and marks known facts when given.
      keys: `TripleKeys` of ``cfg`` and ``kb`` built earlier (its linker is
        costly for a large KB); None builds them.

    Returns:
      The triples, most confident first (ties by key, so the order is stable),
      and counts: ``records`` = ``used`` + ``no_relation`` + ``below_threshold``
      + ``function_word_argument`` + ``type_mismatch``; ``triples``, of which
      ``in_kb`` and ``new`` (both entities linked) and ``unlinked``; and per
      argument of a used record, ``arguments_linked`` (of which
      ``linked_by_type`` and ``linked_by_facts`` needed the type or the
      relation context), ``arguments_ambiguous`` (candidates left unlinked,
      of which ``type_conflicts`` have none of the mention's type) and
      ``arguments_unknown`` (no alias matches).
    """
    keys = keys or TripleKeys(cfg, kb)
    facts = kb.triples if kb is not None else frozenset()
    triples: dict[tuple, _Triple] = {}
    counts = Counter({k: 0 for k in COUNT_KEYS})
    for order, (where, record) in enumerate(records):
        record = _check_record(record, where)
        counts["records"] += 1
        outcome, key, links = keys(record)
        counts[outcome] += 1
        if outcome != "used":
            continue
        p = float(record["confidence"])
        for link in links:
            kind = "linked" if link.id else "ambiguous" if link.candidates else "unknown"
            counts[f"arguments_{kind}"] += 1
            if link.how in ("type", "facts"):
                counts[f"linked_by_{link.how}"] += 1
            counts["type_conflicts"] += link.how == "type_conflict"
        t = triples.setdefault(key, _Triple())
        t.mentions += 1
        t.best = max(t.best, p)
        t.log_none += math.log1p(-p) if p < 1 else -math.inf
        for names, candidates, role, link in zip(t.names, t.candidates, ROLES, links):
            names[record[role]] += 1
            candidates.update(link.candidates)
        entry = (p, -order, {k: record[k] for k in EVIDENCE_KEYS if k in record})
        if len(t.evidence) < cfg.max_evidence:
            heapq.heappush(t.evidence, entry)
        elif cfg.max_evidence:
            heapq.heappushpop(t.evidence, entry)
    out = []
    for (subj, relation, obj), t in triples.items():
        confidence = t.best if cfg.aggregate == "max" else 1.0 - math.exp(t.log_none)
        triple: dict[str, Any] = {}
        for role, (node, kb_id, entity_type), names, candidates in zip(
            ROLES, (subj, obj), t.names, t.candidates
        ):
            triple[role] = node
            triple[f"{role}_id"] = kb_id
            triple[f"{role}_name"] = _most_common(names)
            triple[f"{role}_type"] = entity_type
            if candidates and kb_id is None:
                triple[f"{role}_candidates"] = sorted(candidates)
        triple["relation"] = relation
        triple["confidence"] = round(confidence, 6)
        triple["mentions"] = t.mentions
        linked = subj[1] is not None and obj[1] is not None
        triple["in_kb"] = (
            (subj[1], relation, obj[1]) in facts if kb is not None and linked else None
        )
        triple["evidence"] = [e for _, _, e in sorted(t.evidence, reverse=True)]
        out.append(triple)
        counts["triples"] += 1
        counts["in_kb" if triple["in_kb"] else "new" if linked else "unlinked"] += 1
    out.sort(key=lambda r: (-r["confidence"], r["subject"], r["relation"], r["object"]))
    return out, {k: counts[k] for k in COUNT_KEYS}


def _most_common(names: Counter) -> str:
    """The most frequent surface string; ties go to the alphabetically first, for stable output."""
    return min(names.items(), key=lambda kv: (-kv[1], kv[0]))[0]
