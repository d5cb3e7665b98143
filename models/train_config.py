"""`TrainConfig`: the relation trainer's settings, grouped by what they are about.

* `DataConfig`: what is read and how it is sampled (shards, RELX files, dev
  split, NA subsampling, bags, tagging share, language temperature);
* `ModelConfig` (`relbridge.models.model_config`): the model itself, nested as
  it is saved beside the trained model; the trainer fills in what the data
  decides (relations, entity types) and the resolved encoder path;
* `OptimConfig`: how the weights move (epochs, batches, learning rates, AdamW,
  schedule, weight average, frozen layers, LoRA);
* `RunConfig`: where and how the run happens (output, seed, early stopping,
  checkpoints, device, precision, threads).

Outside the code the settings stay one flat namespace, as they always were:
every CLI flag (``--lr``, ``--model``), the ``--config`` JSON file, the saved
``train_config.json`` and a checkpoint's config use the flat names
(`TrainConfig.flat`, `TrainConfig.from_flat`); ``--model`` is
``ModelConfig.encoder``. Nested JSON (``{"optim": {"lr": 1e-4}}``) loads too.

    cfg = TrainConfig.from_flat(shards="out/shards", output="out/model", lr=1e-4)
    cfg.optim.lr, cfg.model.encoder, cfg.run.output
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from relbridge.models.model_config import ModelConfig
from relbridge.runtime.bundled_e5 import DEFAULT_MODEL

AGGREGATIONS = ("none", "attention", "average")
DEV_METRICS = ("micro_f1", "macro_f1", "relx_f1", "auc")


def _non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise ValueError(f"{name} must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    """What the trainer reads and how it draws training units from it."""

    shards: str = field(default="", metadata={"help": "shard directory or glob to train on."})
    relx_train: tuple[str, ...] = field(
        default=(),
        metadata={"help": "KBP37/RELX-format training files (instead of, or besides, shards)."},
    )
    tagging_shards: str = field(
        default="",
        metadata={
            "help": "shard directory or glob whose projected target-language mentions train the "
            "tagging head only (no relation pairs): name boundaries in languages the "
            "labelled data lacks."
        },
    )
    distill_shards: str = field(
        default="",
        metadata={
            "help": "shard directory or glob whose target-language pairs train by distillation "
            "only (needs distill_from; their distant labels are dropped): the teacher's reading "
            "of languages the labelled data lacks."
        },
    )
    dev: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "dev data: KBP37/RELX files or shard directories (default: dev_fraction)."
        },
    )
    dev_fraction: float = field(
        default=0.1,
        metadata={
            "help": "share of training sentence ids held out as dev when no dev is given (0-0.3)."
        },
    )
    max_train_instances: int = field(
        default=0, metadata={"help": "use at most N training pairs (0: all)."}
    )
    max_na_ratio: float = field(
        default=0.0,
        metadata={
            "help": "keep at most N relation-less training pairs per pair with a relation, drawn "
            "once by seed (0: all); distant supervision yields mostly NA pairs."
        },
    )
    unannotated_negatives: float = field(
        default=0.0,
        metadata={
            "help": "NA pairs of unannotated names drawn per KBP37/RELX training sentence "
            "(relbridge.models.negatives; 0-3): teaches raw-text extraction that most name "
            "pairs are unrelated."
        },
    )
    boundary_negatives: float = field(
        default=0.0,
        metadata={
            "help": "share of related KBP37/RELX training pairs that also train as NA with one "
            "argument cut a word short (relbridge.models.negatives; 0-1)."
        },
    )
    max_dev_instances: int = field(
        default=0,
        metadata={"help": "evaluate early stopping on at most N dev pairs (0: all; CPU budget)."},
    )
    aggregation: str = field(
        default="none",
        metadata={"help": "relation loss over: none (instances), attention or average (bags)."},
    )
    max_bag_size: int = field(default=8, metadata={"help": "bag members kept per bag (bag modes)."})
    tagging_ratio: float = field(
        default=0.25,
        metadata={
            "help": "tagging inputs drawn per epoch, as a share of relation inputs (0-1; each costs a pass)."
        },
    )
    lang_temperature: float = field(
        default=1.0,
        metadata={"help": "language sampling temperature (1: natural, larger: flatter; 1-5)."},
    )

    def __post_init__(self):
        object.__setattr__(self, "relx_train", tuple(self.relx_train))
        object.__setattr__(self, "dev", tuple(self.dev))
        if not self.shards and not self.relx_train:
            raise ValueError("give shards or relx_train")
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ValueError(f"dev_fraction must be in [0, 1), got {self.dev_fraction}")
        if self.max_bag_size < 1:
            raise ValueError(f"max_bag_size must be >= 1, got {self.max_bag_size}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.lang_temperature <= 0:
            raise ValueError("lang_temperature must be > 0")
        if not 0.0 <= self.tagging_ratio <= 1.0:
            raise ValueError("tagging_ratio must be in [0, 1]")
        _non_negative(self, "max_train_instances", "max_na_ratio", "max_dev_instances")
        if not 0.0 <= self.unannotated_negatives <= 3.0:
            raise ValueError("unannotated_negatives must be in [0, 3]")
        if not 0.0 <= self.boundary_negatives <= 1.0:
            raise ValueError("boundary_negatives must be in [0, 1]")


@dataclass(frozen=True)
class OptimConfig:
    """How the weights move: batches, learning rates, schedule, averaging, what is frozen."""

    epochs: int = field(default=3, metadata={"help": "passes over the training data (1-10)."})
    lr: float = field(default=5e-5, metadata={"help": "peak encoder learning rate (1e-5 - 1e-4)."})
    head_lr: float = field(
        default=1e-3, metadata={"help": "learning rate of the heads and markers (1e-4 - 3e-3)."}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (0-0.1)."})
    batch_size: int = field(
        default=16, metadata={"help": "inputs (or bags) per micro-batch (8-64)."}
    )
    grad_accum: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step (>= 1)."}
    )
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "share of steps with linear warm-up (0-0.2)."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0: off)."})
    freeze_layers: int = field(
        default=0,
        metadata={
            "help": "also freeze the embeddings block, the markers and the lowest N encoder layers "
            "(CPU speed: no backward pass below layer N)."
        },
    )
    layer_lr_decay: float = field(
        default=1.0,
        metadata={
            "help": "encoder layer k of L trains at lr x decay^(L-1-k), embeddings at "
            "lr x decay^L (1: one lr; 0.8-0.95 keeps lower, more multilingual layers closer "
            "to pre-training)."
        },
    )
    ema_decay: float = field(
        default=0.0,
        metadata={
            "help": "evaluate and keep an exponential moving average of the trainable weights "
            "instead of the last ones (0: off; 0.99-0.999). The decay after n steps is "
            "min(ema_decay, (1+n)/(10+n)): the average spans about the last n/9 steps until "
            "n = 9/(1-ema_decay) (1,790 steps for 0.995), then 1/(1-ema_decay) steps."
        },
    )
    distill_from: str = field(
        default="",
        metadata={
            "help": "a trained model folder (train's OUT/model) whose relation probabilities on "
            "the training pairs are soft targets besides the labels (knowledge distillation), "
            "e.g. an inline-marker model teaching a faster levitated one."
        },
    )
    heads_from: str = field(
        default="",
        metadata={
            "help": "a trained model folder whose tagger, relation head and markers the new model "
            "starts from where tags, relations and markers agree (with --model set to its "
            "encoder: training goes on from that model, e.g. in another marker mode)."
        },
    )
    distill_weight: float = field(
        default=1.0, metadata={"help": "weight of the distillation term in the relation loss."}
    )
    distill_tag_weight: float = field(
        default=0.0,
        metadata={
            "help": "with distill_from: weight (times tagging_weight) of a KL term that fits the "
            "tagger's word tag distributions to the teacher's (0: off)."
        },
    )
    distill_temperature: float = field(
        default=2.0, metadata={"help": "distillation temperature (1-4; higher: softer targets)."}
    )
    lora: bool = field(
        default=False, metadata={"help": "train LoRA adapters (peft) instead of the full encoder."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (4-64)."})
    lora_targets: tuple[str, ...] = field(
        default=("query", "value"),
        metadata={
            "help": "encoder module names LoRA adapts: BERT/XLM-R name them query, key, value, "
            "dense; other families differ (q_proj, v_proj, ...); 'all-linear' adapts every "
            "linear layer."
        },
    )

    def __post_init__(self):
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.head_lr <= 0:
            raise ValueError("learning rates must be > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise ValueError("layer_lr_decay must be in (0, 1]")
        if self.lora and not self.lora_targets:
            raise ValueError("lora needs at least one lora_targets module name")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.distill_temperature <= 0:
            raise ValueError("distill_temperature must be > 0")
        _non_negative(self, "freeze_layers", "distill_weight")


@dataclass(frozen=True)
class RunConfig:
    """Where the run writes, its seed, when it evaluates, saves and stops, what it runs on."""

    output: str = field(
        metadata={"help": "output directory: model/, checkpoint.pt, train_stats.json."}
    )
    seed: int = field(
        default=13, metadata={"help": "seed for initialisation, data order and dropout."}
    )
    patience: int = field(
        default=2,
        metadata={"help": "evaluations without dev improvement before stopping (0: never)."},
    )
    dev_metric: str = field(
        default="micro_f1", metadata={"help": f"early-stopping metric: {', '.join(DEV_METRICS)}."}
    )
    eval_every: int = field(
        default=0, metadata={"help": "evaluate dev every N optimizer steps (0: each epoch end)."}
    )
    save_every: int = field(
        default=200, metadata={"help": "checkpoint every N optimizer steps (0: epoch ends only)."}
    )
    stop_after_steps: int = field(
        default=0,
        metadata={
            "help": "checkpoint and stop after N optimizer steps in total (0: run to the end)."
        },
    )
    resume: bool = field(
        default=True, metadata={"help": "resume from <output>/checkpoint.pt when present."}
    )
    keep_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "keep the full checkpoint.pt (weights, optimizer) once training completes; "
            "without it only the run's settings and data fingerprint stay (a few KB)."
        },
    )
    bf16: bool = field(
        default=True,
        metadata={"help": "bf16 autocast on CUDA and on CPUs with native bf16 (AVX-512-BF16/AMX)."},
    )
    compile: bool = field(
        default=False, metadata={"help": "torch.compile the encoder (CUDA only)."}
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda."})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch default)."})
    progress: bool = field(default=True, metadata={"help": "show a tqdm progress bar."})

    def __post_init__(self):
        if not self.output:
            raise ValueError("output is required")
        if self.dev_metric not in DEV_METRICS:
            raise ValueError(f"dev_metric must be one of {DEV_METRICS}, got {self.dev_metric!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        _non_negative(self, "patience", "eval_every", "save_every", "stop_after_steps")


MODEL_SETTINGS = {
    "model": "encoder",
    "marker_style": "marker_style",
    "marker_mode": "marker_mode",
    "max_seq_len": "max_seq_len",
    "dropout": "dropout",
    "relation_weight": "relation_weight",
    "tagging_weight": "tagging_weight",
    "tag_crf": "tag_crf",
    "freeze_embeddings": "freeze_embeddings",
}
"""Flat setting name -> `ModelConfig` field, for the model fields a training run sets.

The others (relations, entity types, base encoder) come from the data and the run."""

MODEL_HELP = {
    "model": "encoder name or directory, resolved by runtime.encoders.resolve_model.",
    "freeze_embeddings": "freeze the word-embedding matrix (cheap AdamW on CPU; markers still train).",
    "tag_crf": "tagging head: a CRF trained on partial labels, words no mention covers unknown "
    "(default); --no-tag-crf: per-word softmax, those words taught as O.",
}
"""Help that differs from `ModelConfig`'s own, for the training flags."""


def default_model() -> ModelConfig:
    """The model a run trains unless told otherwise: multilingual e5-small, embeddings frozen.

    Its tagging head is the partial-label CRF (`relbridge.models.partial_crf`):
    distant and KBP37 labels cover only some names, so unlabelled words are unknown.
    """
    return ModelConfig(encoder=DEFAULT_MODEL, freeze_embeddings=True, tag_crf=True)


GROUPS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "run": RunConfig}


def _group_fields(group: str) -> dict[str, str]:
    """Flat setting name -> field name, for one group."""
    if group == "model":
        return dict(MODEL_SETTINGS)
    return {f.name: f.name for f in dataclasses.fields(GROUPS[group])}


FLAT = {flat: (group, name) for group in GROUPS for flat, name in _group_fields(group).items()}
"""Every flat setting name -> (group, field name)."""


def setting_fields() -> list[tuple[str, dataclasses.Field, Any, str]]:
    """``(flat name, field, type, help)`` of every setting, group by group (for the CLI)."""
    out = []
    for flat, (group, name) in FLAT.items():
        cls = GROUPS[group]
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        hint = typing.get_type_hints(cls)[name]
        out.append((flat, f, hint, MODEL_HELP.get(flat, f.metadata.get("help", ""))))
    return out


def _check_type(flat: str, value: Any, hint: Any) -> None:
    """A setting of another type than its field's (a JSON file's ``"epochs": "3"``) is an error."""
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint in (int, float):  # an int is a float too; a bool is neither
        ok = isinstance(value, int if hint is int else int | float) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    else:  # tuple[str, ...]
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    if not ok:
        wanted = hint.__name__ if hint in (bool, int, float, str) else "a list of strings"
        raise ValueError(f"{flat} must be {wanted}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings in four groups; the defaults suit a few thousand sentences on 2 CPU cores."""

    data: DataConfig
    run: RunConfig
    model: ModelConfig = field(default_factory=default_model)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @classmethod
    def from_flat(cls, **settings: Any) -> TrainConfig:
        """A config from flat names (``output=``, ``shards=``, ``lr=``, ``model=``...)."""
        unknown = set(settings) - set(FLAT)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        by_group: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
        for flat, value in settings.items():
            group, name = FLAT[flat]
            by_group[group][name] = tuple(value) if isinstance(value, list) else value
        if "output" not in by_group["run"]:
            raise ValueError("output is required")
        model = dataclasses.replace(default_model(), **by_group["model"])
        return cls(
            data=DataConfig(**by_group["data"]),
            run=RunConfig(**by_group["run"]),
            model=model,
            optim=OptimConfig(**by_group["optim"]),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """Flat names (the ``--config`` file, ``train_config.json``) or nested groups.

        Raises:
          ValueError: an unknown name, or a value of another JSON type than the setting's.
        """
        flat = {k: v for k, v in data.items() if k not in GROUPS}
        for group in GROUPS.keys() & data.keys():
            if not isinstance(data[group], dict):
                if group == "model":  # the flat encoder name
                    flat[group] = data[group]
                    continue
                raise ValueError(f"TrainConfig group {group!r} must be a JSON object")
            names = {name: flat_name for flat_name, name in _group_fields(group).items()}
            unknown = set(data[group]) - set(names)
            if unknown:
                raise ValueError(f"unknown TrainConfig {group} fields: {sorted(unknown)}")
            flat.update({names[k]: v for k, v in data[group].items()})
        hints = {name: hint for name, _, hint, _ in setting_fields()}
        for name, value in flat.items():
            if name in hints:  # an unknown name is from_flat's error
                _check_type(name, value, hints[name])
        return cls.from_flat(**flat)

    def flat(self) -> dict[str, Any]:
        """The settings under their flat names, JSON-ready (tuples as lists)."""
        out = {}
        for flat, (group, name) in FLAT.items():
            value = getattr(getattr(self, group), name)
            out[flat] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **settings: Any) -> TrainConfig:
        """A copy with some flat settings changed (``cfg.replace(stop_after_steps=4)``)."""
        return TrainConfig.from_flat(**{**self.flat(), **settings})

    @staticmethod
    def setting_default(flat: str) -> Any:
        """The default of one flat setting (what a run that did not know it behaved as)."""
        group, name = FLAT[flat]
        if group == "model":
            return getattr(default_model(), name)
        f = next(f for f in dataclasses.fields(GROUPS[group]) if f.name == name)
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None
