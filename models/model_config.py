"""What a relation extractor is made of, and the files of a model directory.

`ModelConfig` rebuilds a `relbridge.models.extractor.RelationExtractor`: the
encoder, the relation inventory, the entity types its tagger and typed markers
know, the marker style and mode, and the heads' settings. It is saved as JSON
beside the model (``extractor_config.json``) and needs no torch, so that flags,
configs and model directories can be read without loading a model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from relbridge.data_specs.relations import NA, RelationInventory

CONFIG_FILE = "extractor_config.json"
HEADS_FILE = "heads.pt"
RELATIONS_FILE = "relations.json"
ENCODER_DIR = "encoder"
MODEL_DIR = "model"
"""Where `relbridge train --output DIR` writes the model: ``DIR/model``."""
UNTYPED = "ENT"
"""The entity type of untyped mentions; always the first tag type."""

MARKER_STYLES = ("untyped", "typed")
MARKER_MODES = ("inline", "levitated")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a `RelationExtractor` (saved as JSON beside it)."""

    encoder: str = field(
        metadata={"help": "Hugging Face encoder directory or name (AutoModel/AutoTokenizer)."}
    )
    relations: tuple[str, ...] = field(
        default=(NA,),
        metadata={"help": "relation names, NA first (data_specs RelationInventory order)."},
    )
    entity_types: tuple[str, ...] = field(
        default=(),
        metadata={"help": "entity types besides the untyped 'ENT' (tags and typed markers)."},
    )
    marker_style: str = field(
        default="untyped",
        metadata={"help": "entity markers: 'untyped' ([E1]) or 'typed' ([E1:PER])."},
    )
    marker_mode: str = field(
        default="inline",
        metadata={
            "help": "'inline': markers inside the text, one encoder pass per pair; 'levitated': "
            "markers after the text, so extraction scores many pairs per pass (models/markers.py; "
            "about 4 RELX points lower after a short CPU training, see README)."
        },
    )
    max_seq_len: int = field(
        default=128,
        metadata={"help": "subword budget per input, markers included (64-256; 128 suits CPU)."},
    )
    dropout: float = field(default=0.1, metadata={"help": "dropout before both heads (0-0.3)."})
    relation_weight: float = field(default=1.0, metadata={"help": "relation loss weight (>= 0)."})
    tagging_weight: float = field(
        default=0.2,
        metadata={"help": "weight of the BIO tagging loss (>= 0; 0 skips tagging inputs)."},
    )
    tag_crf: bool = field(
        default=False,
        metadata={
            "help": "tagging head is a linear-chain CRF trained on partial labels "
            "(words no mention covers are unknown, not O; see models/partial_crf.py)."
        },
    )
    freeze_embeddings: bool = field(
        default=False,
        metadata={"help": "freeze the encoder's word embeddings (marker embeddings still train)."},
    )
    base_encoder: str = field(
        default="", metadata={"help": "provenance: the name the encoder was first loaded from."}
    )

    def __post_init__(self):
        if not self.encoder:
            raise ValueError("ModelConfig.encoder is empty")
        RelationInventory(tuple(self.relations))  # raises ValueError on a bad inventory
        if self.marker_style not in MARKER_STYLES:
            raise ValueError(
                f"marker_style must be one of {MARKER_STYLES}, got {self.marker_style!r}"
            )
        if self.marker_mode not in MARKER_MODES:
            raise ValueError(f"marker_mode must be one of {MARKER_MODES}, got {self.marker_mode!r}")
        if self.max_seq_len < 16:
            raise ValueError(f"max_seq_len must be >= 16, got {self.max_seq_len}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.relation_weight < 0 or self.tagging_weight < 0:
            raise ValueError("task weights must be >= 0")
        if self.relation_weight == 0 and self.tagging_weight == 0:
            raise ValueError("at least one task weight must be > 0")
        if UNTYPED in self.entity_types or len(set(self.entity_types)) != len(self.entity_types):
            raise ValueError(f"entity_types must be unique and must not contain {UNTYPED!r}")

    @property
    def inventory(self) -> RelationInventory:
        return RelationInventory(tuple(self.relations))

    @property
    def tag_types(self) -> tuple[str, ...]:
        return (UNTYPED, *self.entity_types)

    @property
    def tags(self) -> tuple[str, ...]:
        """BIO tag names: ``O``, then ``B-t``/``I-t`` for each type."""
        return ("O", *[f"{p}-{t}" for t in self.tag_types for p in ("B", "I")])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**kwargs)


def marker_tokens(cfg: ModelConfig) -> list[str]:
    """The marker strings added to the tokenizer, in a fixed order."""
    if cfg.marker_style == "untyped":
        return ["[E1]", "[/E1]", "[E2]", "[/E2]"]
    return [f"[{tag}:{t}]" for t in cfg.tag_types for tag in ("E1", "/E1", "E2", "/E2")]


def check_model_dir(directory: str, exists: Callable[[str], bool] = os.path.isfile) -> None:
    """Raises FileNotFoundError unless ``directory`` holds a trained model (its `CONFIG_FILE`).

    Commands call it before reading their data, so a wrong ``--model`` costs no time; given a
    training output folder (``relbridge train --output DIR``), the message names ``DIR/model``.
    ``exists`` tells whether a file is there: Beam's ``FileSystems.exists`` for a ``gs://``
    model (this module stays free of Beam).
    """
    if exists(os.path.join(directory, CONFIG_FILE)):
        return
    inner = os.path.join(directory, MODEL_DIR)
    hint = (
        f"; did you mean {inner}?"
        if exists(os.path.join(inner, CONFIG_FILE))
        else " ('relbridge train --output DIR' writes the model to DIR/model)"
    )
    raise FileNotFoundError(
        f"{directory} is not a trained relbridge model: it has no {CONFIG_FILE}{hint}"
    )
