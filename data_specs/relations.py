"""The relation inventory: relation names <-> class ids, with ``NA`` as id 0.

Relations are directed: a label names the relation from the subject argument to
the object argument. ``NA`` (no relation) is always class 0, as OpenNRE's
bag datasets expect. The inventory is saved inside every model directory
(``relations.json``) so a model always decodes its own ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

NA = "NA"

KBP37_RELATIONS = (
    "org:alternate_names",
    "org:city_of_headquarters",
    "org:country_of_headquarters",
    "org:founded",
    "org:founded_by",
    "org:members",
    "org:stateorprovince_of_headquarters",
    "org:subsidiaries",
    "org:top_members/employees",
    "per:alternate_names",
    "per:cities_of_residence",
    "per:countries_of_residence",
    "per:country_of_birth",
    "per:employee_of",
    "per:origin",
    "per:spouse",
    "per:stateorprovinces_of_residence",
    "per:title",
)
"""The 18 KBP37 / RELX relations (each used in both directions)."""


@dataclass(frozen=True)
class RelationInventory:
    """An ordered, duplicate-free list of relation names; ``names[0] == NA``."""

    names: tuple[str, ...]

    def __post_init__(self):
        if not self.names or self.names[0] != NA:
            raise ValueError(f"the inventory must start with {NA!r}, got {self.names[:1]}")
        if len(set(self.names)) != len(self.names):
            raise ValueError("duplicate relation names in the inventory")

    @classmethod
    def from_relations(cls, relations: Iterable[str]) -> RelationInventory:
        """Builds an inventory from any relation names; NA goes first, the rest sorted."""
        rest = sorted({r for r in relations if r != NA})
        return cls((NA, *rest))

    @property
    def rel2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @property
    def id2rel(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def __len__(self) -> int:
        return len(self.names)

    def id_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"relation {name!r} is not in the inventory") from None

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"relations": list(self.names)}, f, indent=2, ensure_ascii=False)

    @classmethod
    def load(cls, path: str) -> RelationInventory:
        with open(path, encoding="utf-8") as f:
            return cls(tuple(json.load(f)["relations"]))
