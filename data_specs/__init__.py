"""relbridge's single source of truth: what the data is.

Shard schema (`schema`), corpus formats (`formats`), the KB's files (`kb_format`), the relation
inventory (`relations`), RELX/KBP37 files (`relx`) and language facts
(`languages`). Every other layer imports from here and nothing here imports
them: the pipeline writes `SHARD_SCHEMA`, the trainer reads it. Nothing here
imports torch or Beam; what running a model needs is `relbridge.runtime`.
"""

from relbridge.data_specs.formats import BitextRecord, InputError
from relbridge.data_specs.kb_format import Entity, KnowledgeBase, load_kb
from relbridge.data_specs.relations import NA, RelationInventory
from relbridge.data_specs.schema import (
    SCHEMA_VERSION,
    SHARD_SCHEMA,
    Mention,
    ProjectedMention,
    RelationInstance,
    ShardRow,
    read_shards,
)

__all__ = [
    "NA",
    "SCHEMA_VERSION",
    "SHARD_SCHEMA",
    "BitextRecord",
    "Entity",
    "InputError",
    "KnowledgeBase",
    "Mention",
    "ProjectedMention",
    "RelationInstance",
    "RelationInventory",
    "ShardRow",
    "load_kb",
    "read_shards",
]
