"""Candidate pairs for raw-text extraction: which pairs of mentions are worth scoring.

Every unordered pair of a sentence's mentions is a candidate unless one of these
rules rules it out (each cheap, each documented in the record counts):

* **distance**: more than ``max_distance`` words lie between the two mentions. On
  KBP37 train, 99% of the related pairs are at most 26 words apart (median 5), so
  the default of 30 loses about 0.7% of them and most of the pairs of a long
  sentence;
* **types**: the relation schema admits no relation between the two mentions'
  types in either direction. The schema lists, per relation, the (subject type,
  object type) pairs it holds between, from the model's training labels or the
  KB's relation map. ``""`` in a signature admits any type, and an untyped mention
  (``ENT``, ``""``) fits any slot, so untyped mentions are never pruned by type;
  typed mentions must use the schema's vocabulary (the KB's types: PER, ORG, LOC, MISC).

Pairs never cross sentences: documents are split first (`relbridge.text.sentences`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Mention = tuple[int, int, str]  # word span [start, end) and entity type
Signature = tuple[str, str]  # (subject type, object type); "" matches any type

DEFAULT_MAX_DISTANCE = 30
UNTYPED = ("", "ENT")  # mention types that match any slot (the tagger's untyped ENT)


@dataclass(frozen=True)
class CandidateConfig:
    """How candidate pairs are pruned (see the module docstring)."""

    max_distance: int = DEFAULT_MAX_DISTANCE
    use_types: bool = True

    def __post_init__(self):
        if self.max_distance < 0:
            raise ValueError(f"max_distance must be >= 0, got {self.max_distance}")


class TypeSchema:
    """Which (subject type, object type) pairs some relation holds between.

    Args:
        signatures: per relation, its (subject type, object type) pairs; ``""``
            stands for any type. An empty mapping admits every pair.
    """

    def __init__(self, signatures: Mapping[str, Iterable[Signature]] = ()):
        self.signatures = {r: frozenset(map(tuple, s)) for r, s in dict(signatures).items()}

    def admits(self, subj_type: str, obj_type: str) -> bool:
        """Whether some relation may hold from a ``subj_type`` mention to an ``obj_type`` one."""
        if not self.signatures:
            return True
        s = "" if subj_type in UNTYPED else subj_type
        o = "" if obj_type in UNTYPED else obj_type
        if not s and not o:
            return True
        return any(
            (a in ("", s) or not s) and (b in ("", o) or not o)
            for sigs in self.signatures.values()
            for a, b in sigs
        )

    @classmethod
    def from_examples(cls, examples: Iterable[tuple[str, str, str]]) -> TypeSchema:
        """A schema from ``(relation, subject type, object type)`` training labels."""
        signatures: dict[str, set[Signature]] = {}
        for relation, subj, obj in examples:
            signatures.setdefault(relation, set()).add((subj or "", obj or ""))
        return cls(signatures)

    @classmethod
    def from_relation_names(cls, names: Iterable[str]) -> TypeSchema:
        """A schema from TAC-KBP style names: ``per:*`` holds of a PER subject, ``org:*`` of an ORG."""
        prefixes = {"per": "PER", "org": "ORG"}
        signatures: dict[str, set[Signature]] = {}
        for name in names:
            prefix = name.split(":", 1)[0] if ":" in name else ""
            if name != "NA" and name != "no_relation":
                signatures.setdefault(name, set()).add((prefixes.get(prefix, ""), ""))
        return cls(signatures)

    @classmethod
    def from_relation_map(cls, path: str) -> TypeSchema:
        """A schema from a KB's ``relation_map.json`` (see the wikidata-xfactr KB's SOURCE.md).

        Each rule maps a KB property to a relation with optional ``subject_type`` and
        ``object_type`` lists (null: any) in the KB's direction; ``reverse`` swaps them.
        """
        with open(path, encoding="utf-8") as f:
            rules = [rule for group in json.load(f).values() for rule in group]
        signatures: dict[str, set[Signature]] = {}
        for rule in rules:
            if not rule.get("kbp37"):
                continue
            subj, obj = rule.get("subject_type") or [""], rule.get("object_type") or [""]
            if rule.get("reverse"):
                subj, obj = obj, subj
            signatures.setdefault(rule["kbp37"], set()).update((s, o) for s in subj for o in obj)
        return cls(signatures)

    def refine(self, other: TypeSchema) -> TypeSchema:
        """The signatures both schemas allow, relation by relation (``""`` yields to a type).

        A relation only one schema knows keeps that schema's signatures.
        """

        def meet(a: str, b: str) -> str | None:
            return b if not a else a if not b or a == b else None

        merged: dict[str, set[Signature]] = {}
        for relation in set(self.signatures) | set(other.signatures):
            mine, theirs = self.signatures.get(relation), other.signatures.get(relation)
            if mine is None or theirs is None:
                merged[relation] = set(mine or theirs)
                continue
            merged[relation] = {
                (s, o)
                for a, b in mine
                for c, d in theirs
                if (s := meet(a, c)) is not None and (o := meet(b, d)) is not None
            }
        return TypeSchema(merged)

    def to_json(self) -> dict[str, list[list[str]]]:
        return {r: sorted(map(list, s)) for r, s in sorted(self.signatures.items())}


def distance(a: Mention, b: Mention) -> int:
    """Words strictly between two non-overlapping spans."""
    return max(a[0], b[0]) - min(a[1], b[1])


def candidate_pairs(
    mentions: Sequence[Mention], schema: TypeSchema, cfg: CandidateConfig = CandidateConfig()
) -> list[tuple[Mention, Mention]]:
    """The unordered mention pairs (first in word order) worth scoring, in word order.

    Two overlapping mentions (readings of one name, `relbridge.models.tagging.other_readings`)
    never pair.

    Time grows with the pairs within the distance, not with all pairs: in start
    order, the first mention too far after ``a`` ends ``a``'s partners (a long
    text's 1,000 mentions are 500k pairs, of which a few percent are near).
    """
    kept = []
    ordered = sorted(mentions)
    for i, a in enumerate(ordered):
        for b in (ordered[j] for j in range(i + 1, len(ordered))):
            if b[0] - a[1] > cfg.max_distance:  # = distance(a, b): b starts after a ends
                break
            if b[0] < a[1]:  # overlapping readings
                continue
            if cfg.use_types and not (schema.admits(a[2], b[2]) or schema.admits(b[2], a[2])):
                continue
            kept.append((a, b))
    return kept
