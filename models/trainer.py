"""Training loop for `RelationExtractor`: `train(TrainConfig) -> dict`.

Reads shards (all languages, both sides) or KBP37/RELX files, holds out a dev
split (given files, or a fraction of sentence ids by stable hash), and trains
the relation and tagging heads jointly with AdamW, linear warm-up and linear
decay, gradient accumulation and early stopping on the dev metric. With
``aggregation`` = ``attention``/``average`` the relation loss is computed on
distant-supervision bags (OpenNRE ``scope``) instead of single instances.

Everything that a resumed run needs goes into ``<output>/checkpoint.pt``
(trainable weights, optimizer, scheduler, epoch and step, RNG states, early
stopping state), written to a temporary file and renamed, so a run killed at any
point resumes from its last checkpoint and ends with the same result as an
uninterrupted one. The best model (by dev metric) is ``<output>/model``
(`RelationExtractor.save_pretrained`).

Run it with ``relbridge train --shards DIR --output DIR`` or::

    from relbridge.models.trainer import TrainConfig, train
    stats = train(TrainConfig(shards="out/shards", output="out/model"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from relbridge.data_specs.batching import length_bucketed_batches
from relbridge.data_specs.devices import native_bf16
from relbridge.data_specs.relations import NA, RelationInventory
from relbridge.models.data import (
    LanguageBalancedSampler,
    RelationData,
    hash_fraction,
    make_bags,
    read_data,
)
from relbridge.models.extractor import Encoded, ModelConfig, RelationExtractor, masked_cross_entropy

logger = logging.getLogger(__name__)

AGGREGATIONS = ("none", "attention", "average")
DEV_METRICS = ("micro_f1", "macro_f1", "relx_f1", "auc")
DEFAULT_MODEL = "intfloat/multilingual-e5-small"
CHECKPOINT = "checkpoint.pt"
MODEL_DIR = "model"
TRAIN_CONFIG = "train_config.json"
# Config fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = {"stop_after_steps", "resume", "progress", "num_threads"}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults suit a few thousand sentences on 2 CPU cores."""

    output: str = field(
        metadata={"help": "output directory: model/, checkpoint.pt, train_stats.json."}
    )
    shards: str = field(default="", metadata={"help": "shard directory or glob to train on."})
    relx_train: tuple[str, ...] = field(
        default=(),
        metadata={"help": "KBP37/RELX-format training files (instead of, or besides, shards)."},
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
    model: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "help": "encoder name or directory, resolved by data_specs.encoders.resolve_model."
        },
    )
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
    aggregation: str = field(
        default="none",
        metadata={"help": "relation loss over: none (instances), attention or average (bags)."},
    )
    max_bag_size: int = field(default=8, metadata={"help": "bag members kept per bag (bag modes)."})
    marker_style: str = field(
        default="untyped", metadata={"help": "entity markers: untyped or typed."}
    )
    relation_weight: float = field(default=1.0, metadata={"help": "relation task weight (>= 0)."})
    tagging_weight: float = field(
        default=0.2, metadata={"help": "BIO tagging task weight (>= 0; 0: no tagging)."}
    )
    tagging_ratio: float = field(
        default=0.25,
        metadata={
            "help": "tagging inputs drawn per epoch, as a share of relation inputs (0-1; each costs a pass)."
        },
    )
    tagging_loss: str = field(
        default="partial_crf",
        metadata={
            "help": "partial_crf (a CRF head; unlabelled words unknown, see models/partial_crf.py) "
            "or softmax (per-word cross-entropy; unlabelled words O)."
        },
    )
    lang_temperature: float = field(
        default=1.0,
        metadata={"help": "language sampling temperature (1: natural, larger: flatter; 1-5)."},
    )
    seed: int = field(
        default=13, metadata={"help": "seed for initialisation, data order and dropout."}
    )
    freeze_embeddings: bool = field(
        default=True,
        metadata={
            "help": "freeze the word-embedding matrix (cheap AdamW on CPU; markers still train)."
        },
    )
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
    max_seq_len: int = field(
        default=128, metadata={"help": "subwords per input, markers included (64-256)."}
    )
    dropout: float = field(default=0.1, metadata={"help": "head dropout (0-0.3)."})
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
    max_dev_instances: int = field(
        default=0,
        metadata={"help": "evaluate early stopping on at most N dev pairs (0: all; CPU budget)."},
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
        if not self.shards and not self.relx_train:
            raise ValueError("give shards or relx_train")
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ValueError(f"dev_fraction must be in [0, 1), got {self.dev_fraction}")
        for name in ("epochs", "batch_size", "grad_accum", "max_bag_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.head_lr <= 0:
            raise ValueError("learning rates must be > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.dev_metric not in DEV_METRICS:
            raise ValueError(f"dev_metric must be one of {DEV_METRICS}, got {self.dev_metric!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.lang_temperature <= 0:
            raise ValueError("lang_temperature must be > 0")
        if self.tagging_loss not in ("partial_crf", "softmax"):
            raise ValueError("tagging_loss must be partial_crf or softmax")
        if not 0.0 <= self.tagging_ratio <= 1.0:
            raise ValueError("tagging_ratio must be in [0, 1]")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            raise ValueError("layer_lr_decay must be in (0, 1]")
        if self.lora and not self.lora_targets:
            raise ValueError("lora needs at least one lora_targets module name")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in (
            "patience",
            "eval_every",
            "save_every",
            "stop_after_steps",
            "freeze_layers",
            "max_train_instances",
            "max_na_ratio",
            "max_dev_instances",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def resolve_encoder(name: str) -> str:
    """A directory `AutoModel` can load: `data_specs.encoders.resolve_model` (bundled e5 offline)."""
    from relbridge.data_specs.encoders import resolve_model

    return str(resolve_model(name))


# ---------------------------------------------------------------------- data


def subsample_na(pairs: Sequence, ratio: float, seed: int) -> list:
    """Every pair with a relation and at most ``ratio`` times as many NA-only pairs, in order."""
    na = [i for i, p in enumerate(pairs) if {p.label_12, p.label_21} <= {NA, None}]
    keep_na = int(ratio * (len(pairs) - len(na)))
    if len(na) <= keep_na:
        return list(pairs)
    dropped = set(na) - set(random.Random(seed).sample(na, keep_na))
    return [p for i, p in enumerate(pairs) if i not in dropped]


def load_training_data(cfg: TrainConfig) -> tuple[RelationData, RelationData]:
    """Reads the training data and the dev split (given files, or a hash split by sentence id)."""
    train = RelationData()
    if cfg.shards:
        train.extend(read_data(cfg.shards, "shards"))
    for path in cfg.relx_train:
        train.extend(read_data(path, "relx"))
    if cfg.dev:
        dev = RelationData()
        for path in cfg.dev:
            dev.extend(read_data(path))
    elif cfg.dev_fraction > 0:
        held = {p.id for p in train.pairs if hash_fraction(p.id, cfg.seed) < cfg.dev_fraction}
        dev = train.filter(held)
        train = RelationData(
            [p for p in train.pairs if p.id not in held],
            [t for t in train.tags if t.id not in held],
        )
    else:
        dev = RelationData()
    if cfg.max_na_ratio:
        train = RelationData(subsample_na(train.pairs, cfg.max_na_ratio, cfg.seed), train.tags)
    if cfg.max_train_instances and len(train.pairs) > cfg.max_train_instances:
        rng = random.Random(cfg.seed)
        keep = sorted(rng.sample(range(len(train.pairs)), cfg.max_train_instances))
        train = RelationData([train.pairs[i] for i in keep], train.tags)
    if cfg.max_dev_instances and len(dev.pairs) > cfg.max_dev_instances:
        rng = random.Random(f"{cfg.seed}:dev")
        keep = sorted(rng.sample(range(len(dev.pairs)), cfg.max_dev_instances))
        # The tagging scores follow the sampled pairs: tagging every dev sentence at
        # each evaluation would cost more than the relation scores.
        kept = {dev.pairs[i].id for i in keep}
        dev = RelationData([dev.pairs[i] for i in keep], [t for t in dev.tags if t.id in kept])
    if not train.pairs:
        raise ValueError("no training pairs")
    return train, dev


@dataclass(frozen=True)
class _Unit:
    """One sampled training unit: a pair input, a tagging input, or a bag."""

    kind: str  # "pair" | "tag" | "bag"
    index: int
    lang: str


def _build_units(
    model: RelationExtractor, data: RelationData, cfg: TrainConfig
) -> tuple[list[_Unit], list[Encoded], list[Encoded], list]:
    """Encodes the training data once and lists its sampling units.

    Returns (units, pair encodings, tagging encodings, bags). Pair units and bag
    members index the pair encodings, which hold only the pairs that fit
    ``max_seq_len``; ``data`` itself is left as it was.
    """
    pair_enc, kept = [], []
    for p in data.pairs:
        try:
            enc = model.encode_pair(
                p.tokens, p.e1, p.e2, p.label_12, p.label_21, p.e1_type, p.e2_type
            )
        except ValueError as e:  # an entity longer than max_seq_len: nothing to learn from
            logger.debug("skipping training pair %s: %s", p.id, e)
            continue
        pair_enc.append(enc)
        kept.append(p)
    if len(kept) < len(data.pairs):
        logger.warning(
            "skipped %d of %d training pairs whose entities do not fit max_seq_len=%d",
            len(data.pairs) - len(kept), len(data.pairs), cfg.max_seq_len,
        )  # fmt: skip
    tag_enc = []
    if cfg.tagging_weight > 0 and cfg.tagging_ratio > 0:
        # With the CRF head, words that no mention covers are unknown, not O.
        tag_enc = [model.encode_tags(t.tokens, t.mentions, model.cfg.tag_crf) for t in data.tags]
    units: list[_Unit] = []
    bags = []
    if cfg.aggregation == "none":
        units += [_Unit("pair", i, p.lang) for i, p in enumerate(kept)]
    else:
        bags = make_bags(kept)
        for b, bag in enumerate(bags):
            langs = [kept[i].lang for i, _ in bag.members]
            units.append(_Unit("bag", b, max(set(langs), key=langs.count)))
    units += [_Unit("tag", i, t.lang) for i, t in enumerate(data.tags[: len(tag_enc)])]
    return units, pair_enc, tag_enc, bags


class _UnitSampler:
    """Per-epoch micro-batches: relation units and tagging units, each language-balanced.

    Relation units (pairs or bags) are drawn once per epoch on average (temperature
    sampling over languages); tagging units add ``tagging_ratio`` times as many
    draws. Within chunks of 32 batches, inputs of similar length share a batch
    (less padding), and the batches are shuffled. The result depends only on
    (seed, epoch), which is what makes a resumed run identical.
    """

    def __init__(self, units: list[_Unit], lengths: list[int], cfg: TrainConfig):
        self.units, self.lengths, self.cfg = units, lengths, cfg
        self.rel_idx = [i for i, u in enumerate(units) if u.kind != "tag"]
        self.tag_idx = [i for i, u in enumerate(units) if u.kind == "tag"]
        self.rel = LanguageBalancedSampler(
            [units[i].lang for i in self.rel_idx], cfg.lang_temperature, cfg.seed
        )
        n_tags = round(cfg.tagging_ratio * len(self.rel_idx)) if self.tag_idx else 0
        self.tag = (
            LanguageBalancedSampler(
                [units[i].lang for i in self.tag_idx], cfg.lang_temperature, cfg.seed + 1, n_tags
            )
            if n_tags
            else None
        )

    def batches(self, epoch: int) -> list[list[int]]:
        drawn = [self.rel_idx[i] for i in self.rel.order(epoch)]
        if self.tag is not None:
            drawn += [self.tag_idx[i] for i in self.tag.order(epoch)]
        rng = random.Random(f"{self.cfg.seed}:batches:{epoch}")
        return length_bucketed_batches(drawn, self.lengths, self.cfg.batch_size, rng)


# ---------------------------------------------------------------------- model setup


def _freeze_lower(model: RelationExtractor, n_layers: int) -> None:
    """Freezes the embeddings block, the marker table and the lowest ``n_layers`` layers.

    The marker embeddings enter below layer 1, so while they train the backward
    pass runs through every layer; frozen with the lower layers, it stops at
    layer ``n_layers`` (about 1.5x faster with 8 of 12 layers frozen on CPU).
    The markers keep their distinct initial vectors, which the trained upper
    layers learn to read. BERT-like encoders only (.embeddings, .encoder.layer).
    """
    if n_layers <= 0:
        return
    encoder = model.encoder
    embeddings = getattr(encoder, "embeddings", None)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if embeddings is None or layers is None:
        raise ValueError(
            f"freeze_layers needs a BERT-like encoder (.embeddings, .encoder.layer), got {type(encoder)}"
        )
    for p in embeddings.parameters():
        p.requires_grad_(False)
    for layer in layers[: min(n_layers, len(layers))]:
        for p in layer.parameters():
            p.requires_grad_(False)
    model.marker_embeddings.weight.requires_grad_(False)


def _apply_lora(model: RelationExtractor, cfg: TrainConfig) -> None:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=2 * cfg.lora_r,
        lora_dropout=0.05,
        target_modules="all-linear"
        if cfg.lora_targets == ("all-linear",)
        else list(cfg.lora_targets),
    )
    model.encoder = get_peft_model(model.encoder, lora)


_LAYER_INDEX = re.compile(r"\.layer\.(\d+)\.")


def encoder_lr_scale(name: str, n_layers: int, decay: float) -> float:
    """Learning-rate factor of encoder parameter ``name`` under layer-wise decay.

    Layer ``k`` (0-based, of ``n_layers``) gets ``decay ** (n_layers - 1 - k)``,
    the embeddings ``decay ** n_layers``, anything else (pooler) 1.

    >>> encoder_lr_scale("encoder.encoder.layer.10.output.dense.weight", 12, 0.5)
    0.5
    >>> encoder_lr_scale("encoder.embeddings.LayerNorm.weight", 2, 0.5)
    0.25
    """
    if decay == 1.0:
        return 1.0
    found = _LAYER_INDEX.search(name)
    if found:
        return decay ** (n_layers - 1 - int(found.group(1)))
    if ".embeddings." in name:
        return decay**n_layers
    return 1.0


def _optimizer(model: RelationExtractor, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW: heads at ``head_lr``; encoder at ``lr`` (layer-wise decayed), no decay on 1-d weights."""
    n_layers = model.encoder.config.num_hidden_layers
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if not name.startswith("encoder."):
            key = (cfg.head_lr, cfg.weight_decay)
        else:
            lr = cfg.lr * encoder_lr_scale(name, n_layers, cfg.layer_lr_decay)
            key = (lr, 0.0 if p.ndim < 2 else cfg.weight_decay)
        groups.setdefault(key, []).append(p)
    return torch.optim.AdamW(
        [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    )


def _scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _trainable_state(model: RelationExtractor) -> dict[str, torch.Tensor]:
    """Trainable weights plus all head weights (frozen encoder weights are rebuilt from the base)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {
        k: v
        for k, v in model.state_dict().items()
        if k in trainable or not k.startswith("encoder.")
    }


class WeightAverage:
    """An exponential moving average of a model's trainable weights (Polyak averaging).

    After each optimizer step ``shadow = d * shadow + (1 - d) * weight`` with
    ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (the
    ``num_updates`` warm-up of TensorFlow's ExponentialMovingAverage), so the
    first steps, taken from a random head, fade out quickly instead of being
    remembered for ``1 / (1 - decay)`` steps. Until ``n = 9 / (1 - decay)``
    the warm-up governs and the average spans roughly the last ``n / 9``
    steps, a window that grows with the run; only longer runs reach the fixed
    ``1 / (1 - decay)``-step window. Averaging the weights along the
    end of a run lands in a flatter region than its last point; for zero-shot
    cross-lingual transfer that is worth about a point (Izmailov et al. 2018,
    "Averaging Weights Leads to Wider Optima"; Schmidt et al. 2023, "Free
    Lunch: Robust Cross-Lingual Transfer via Model Checkpoint Averaging").

    The shadow is kept in fp32 on the model's device; `applied` swaps it in
    (for dev evaluation and saving) and restores the trained weights after.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {
            n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad
        }

    def _params(self, model: torch.nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
        params = dict(model.named_parameters())
        return [(self.shadow[n], params[n]) for n in self.shadow]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in self._params(model):
            avg.lerp_(p.detach().float(), 1.0 - d)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Within the block the model holds the averaged weights."""
        pairs = self._params(model)
        with torch.no_grad():
            trained = [p.detach().clone() for _, p in pairs]
            for avg, p in pairs:
                p.copy_(avg)
        try:
            yield model
        finally:
            with torch.no_grad():
                for (_, p), w in zip(pairs, trained):
                    p.copy_(w)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["shadow"].keys() != self.shadow.keys():
            raise ValueError("weight average does not match the model's trainable weights")
        self.updates = state["updates"]
        for n, t in state["shadow"].items():
            self.shadow[n].copy_(t)


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: Any, path: str) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_model_dir(model: RelationExtractor, cfg: TrainConfig) -> str:
    """Writes ``<output>/model`` via a temporary directory, replacing the old one.

    The training config goes beside the model (``train_config.json``), so every
    saved model says how it was trained.
    """
    final = os.path.join(cfg.output, MODEL_DIR)
    tmp, old = final + ".tmp", final + ".old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    with open(os.path.join(tmp, TRAIN_CONFIG), "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=2)
    if os.path.exists(final):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _hardware(device: torch.device) -> dict[str, Any]:
    """What the run ran on, for reports: CPU cores and threads, or the GPU's name."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _data_fingerprint(train_data: RelationData, dev_data: RelationData) -> str:
    """A hash of every training and dev instance, so a resume can tell the data changed.

    The settings alone cannot: a refresh or a rerun of the pipeline rewrites
    the same shard folder, and resuming would then mix two datasets.
    """
    digest = hashlib.sha1()
    for data in (train_data, dev_data):
        for item in (*data.pairs, *data.tags):
            digest.update(repr(item).encode())
        digest.update(b"|")
    return digest.hexdigest()


def _config_diff(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """Settings that differ between a checkpoint and ``cfg`` (and forbid resuming).

    A setting the checkpoint does not have was added to `TrainConfig` after
    it was written; the run that wrote it behaved as the setting's default
    does, so only a non-default value counts as a change.
    """
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))
    missing = object()
    diff = []
    for f in dataclasses.fields(cfg):
        if f.name in _RESUMABLE_CHANGES:
            continue
        old = saved.get(f.name, missing)
        if old is missing:
            if f.default is not dataclasses.MISSING:
                old = f.default
            elif f.default_factory is not dataclasses.MISSING:
                old = f.default_factory()
            old = json.loads(json.dumps(old))
        if old != now[f.name]:
            diff.append(f.name)
    return diff


# ---------------------------------------------------------------------- loop


def _micro_batch_loss(
    model: RelationExtractor,
    units: list[_Unit],
    batch_units: Sequence[int],
    pair_enc: list[Encoded],
    tag_enc: list[Encoded],
    bags: list,
    cfg: TrainConfig,
    device: torch.device,
) -> torch.Tensor:
    """The weighted multi-task loss of one micro-batch of units."""
    items: list[Encoded] = []
    bag_units = []
    pair_rows: dict[int, int] = {}
    for u in (units[i] for i in batch_units):
        if u.kind == "pair":
            items.append(pair_enc[u.index])
        elif u.kind == "tag":
            items.append(tag_enc[u.index])
        else:
            bag_units.append(u.index)
            for i, _ in bags[u.index].members[: cfg.max_bag_size]:
                if i not in pair_rows:
                    pair_rows[i] = len(items)
                    # Bag mode: instance labels are replaced by the bag label below.
                    items.append(dataclasses.replace(pair_enc[i], rel_labels=(-100, -100)))
    batch = {k: v.to(device) for k, v in model.collate(items).items()}
    out = model(batch, labels=True)
    if not bag_units:
        return out["loss"]
    # Bags: gather each member's directed representation, then aggregate. (N, 2H)
    rows, dirs, scope = [], [], []
    for b in bag_units:
        members = bags[b].members[: cfg.max_bag_size]
        scope.append((len(rows), len(rows) + len(members)))
        rows += [pair_rows[i] for i, _ in members]
        dirs += [d for _, d in members]
    reps = out["pair_reps"][torch.tensor(rows, device=device), torch.tensor(dirs, device=device)]
    rel2id = model.inventory.rel2id
    bag_labels = torch.tensor([rel2id[bags[b].label] for b in bag_units], device=device)
    bag_logits = model.aggregate_bags(reps, scope, cfg.aggregation, bag_labels)  # (nbags, R)
    tag_loss = model.tagging_loss(out["tag_logits"], batch["tag_labels"])
    rel_loss = masked_cross_entropy(bag_logits, bag_labels)
    return model.cfg.relation_weight * rel_loss + model.cfg.tagging_weight * tag_loss


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Trains a `RelationExtractor` and returns run statistics.

    Args:
      cfg: the training configuration.

    Returns:
      A dict with ``model_dir`` (the best model), ``best_dev`` (its dev metrics),
      ``history`` (one dev evaluation per entry), counts, wall time, throughput,
      ``completed`` (False when stopped by ``stop_after_steps``) and
      ``stopped_early``.
    """
    from tqdm.auto import tqdm

    from relbridge.models.evaluate import evaluate_model

    started = time.perf_counter()
    os.makedirs(cfg.output, exist_ok=True)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device(
        "cuda"
        if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    train_data, dev_data = load_training_data(cfg)
    inventory = RelationInventory.from_relations(train_data.relations() | dev_data.relations())
    model_cfg = ModelConfig(
        encoder=resolve_encoder(cfg.model),
        relations=inventory.names,
        entity_types=tuple(sorted(train_data.entity_types() - {"ENT"})),
        marker_style=cfg.marker_style,
        max_seq_len=cfg.max_seq_len,
        dropout=cfg.dropout,
        relation_weight=cfg.relation_weight,
        tagging_weight=cfg.tagging_weight,
        tag_crf=cfg.tagging_loss == "partial_crf",
        freeze_embeddings=cfg.freeze_embeddings,
        base_encoder=cfg.model,
    )
    model = RelationExtractor(model_cfg)
    _freeze_lower(model, cfg.freeze_layers)
    if cfg.lora:
        _apply_lora(model, cfg)
    model.to(device)
    units, pair_enc, tag_enc, bags = _build_units(model, train_data, cfg)
    lengths = [
        len(pair_enc[u.index].input_ids)
        if u.kind == "pair"
        else len(tag_enc[u.index].input_ids)
        if u.kind == "tag"
        else sum(len(pair_enc[i].input_ids) for i, _ in bags[u.index].members[: cfg.max_bag_size])
        for u in units
    ]
    sampler = _UnitSampler(units, lengths, cfg)
    steps_per_epoch = math.ceil(len(sampler.batches(0)) / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = _optimizer(model, cfg)
    scheduler = _scheduler(optimizer, total_steps, cfg.warmup_ratio)
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None

    def averaged():
        """Context in which the model holds the weights to evaluate and keep."""
        return average.applied(model) if average else contextlib.nullcontext(model)

    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "training on %d pairs, %d tagging inputs, %d bags (%s); dev %d pairs; %d relations; "
        "%d steps; %.1fM trainable parameters; device %s",
        len(pair_enc), len(tag_enc), len(bags), dict(train_data.languages()), len(dev_data.pairs),
        len(inventory), total_steps, n_trainable / 1e6, device,
    )  # fmt: skip
    use_cuda = device.type == "cuda"
    if use_cuda and cfg.compile:
        model.encoder.compile()  # in place: state-dict keys stay unprefixed
    use_bf16 = cfg.bf16 and native_bf16(device.type)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # Resumable state.
    state = {
        "epoch": 0,
        "step_in_epoch": 0,
        "global_step": 0,
        "best": None,
        "bad_evals": 0,
        "history": [],
    }
    ckpt_path = os.path.join(cfg.output, CHECKPOINT)
    data_id = _data_fingerprint(train_data, dev_data)
    if cfg.resume and os.path.exists(ckpt_path):
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        diff = _config_diff(ckpt["config"], cfg)
        if diff:
            raise ValueError(
                f"{ckpt_path} was written with different settings ({diff}); use another output"
            )
        if ckpt.get("data", data_id) != data_id:  # checkpoints before this check have none
            raise ValueError(
                f"{ckpt_path} was trained on other data: "
                f"{' '.join(filter(None, (cfg.shards, *cfg.relx_train, *cfg.dev)))} changed "
                "since (rewritten or refreshed shards?); use another output or --no-resume"
            )
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
        if unexpected or [k for k in missing if k in _trainable_state(model)]:
            raise ValueError(f"checkpoint does not match the model: {unexpected or missing}")
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if average:
            average.load_state_dict(ckpt["average"])
        state = ckpt["state"]
        _set_rng_state(ckpt["rng"])
        logger.info(
            "resumed from %s at epoch %d step %d", ckpt_path, state["epoch"], state["step_in_epoch"]
        )

    def save_checkpoint() -> None:
        _atomic_save(
            {
                "model": _trainable_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "average": average.state_dict() if average else None,
                "state": state,
                "rng": _rng_state(),
                "config": json.loads(json.dumps(dataclasses.asdict(cfg))),
                "data": data_id,
                "model_config": model_cfg.to_json(),
            },
            ckpt_path,
        )

    def evaluate_dev() -> bool:
        """Evaluates dev, saves the best model; returns True when patience ran out."""
        if not dev_data.pairs:
            return False
        with averaged():
            metrics = evaluate_model(model, dev_data, batch_size=2 * cfg.batch_size)["overall"]
            value = metrics.get(cfg.dev_metric, metrics["micro_f1"])
            entry = {"epoch": state["epoch"], "global_step": state["global_step"], **metrics}
            state["history"].append(entry)
            logger.info("dev at step %d: %s=%.2f", state["global_step"], cfg.dev_metric, value)
            improved = state["best"] is None or value > state["best"][cfg.dev_metric]
            if improved:
                _save_model_dir(model, cfg)
        model.train()
        if improved:
            state["best"] = {**entry, cfg.dev_metric: value}
            state["bad_evals"] = 0
        else:
            state["bad_evals"] += 1
        return cfg.patience > 0 and state["bad_evals"] >= cfg.patience

    model.train()
    seen = tokens = 0
    train_s = 0.0  # time in optimizer steps only (dev evaluation and checkpoints excluded)
    last_loss: float | None = None  # training loss of the last optimizer step of this call
    loop_started = time.perf_counter()
    bar = tqdm(
        total=total_steps,
        initial=state["global_step"],
        disable=not cfg.progress,
        desc="train",
        unit="step",
    )
    stopped_early = state.get("stopped_early", False)
    interrupted = False
    while state["epoch"] < cfg.epochs and not stopped_early and not interrupted:
        batches = sampler.batches(state["epoch"])
        for step in range(state["step_in_epoch"], steps_per_epoch):
            micro = batches[step * cfg.grad_accum : (step + 1) * cfg.grad_accum]
            if not micro:
                break
            total_units = sum(len(m) for m in micro)
            loss_sum = 0.0
            step_started = time.perf_counter()
            for m in micro:
                with autocast:
                    loss = _micro_batch_loss(model, units, m, pair_enc, tag_enc, bags, cfg, device)
                (loss * len(m) / total_units).backward()
                loss_sum += loss.item() * len(m)
            last_loss = loss_sum / total_units
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm
                )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if average:
                average.update(model)
            train_s += time.perf_counter() - step_started
            state["global_step"] += 1
            state["step_in_epoch"] = step + 1
            seen += total_units
            tokens += sum(lengths[i] for m in micro for i in m)
            bar.set_postfix(
                loss=f"{loss_sum / total_units:.4f}",
                ex_s=f"{seen / train_s:.1f}",
                tok_s=f"{tokens / train_s:.0f}",
                refresh=False,
            )
            bar.update(1)
            if cfg.eval_every and state["global_step"] % cfg.eval_every == 0 and evaluate_dev():
                stopped_early = True
            if stopped_early or (cfg.save_every and state["global_step"] % cfg.save_every == 0):
                state["stopped_early"] = stopped_early
                save_checkpoint()
            if stopped_early:
                break
            if cfg.stop_after_steps and state["global_step"] >= cfg.stop_after_steps:
                save_checkpoint()
                interrupted = True
                break
        if interrupted or stopped_early:
            break
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        # Every epoch end without eval_every; with it, the final step too unless just evaluated.
        history = state["history"]
        just_evaluated = bool(history) and history[-1]["global_step"] == state["global_step"]
        final = state["epoch"] == cfg.epochs
        if not just_evaluated and (not cfg.eval_every or final) and evaluate_dev():
            stopped_early = True
        state["stopped_early"] = stopped_early
        save_checkpoint()
    bar.close()

    completed = not interrupted
    if completed and (not dev_data.pairs or state["best"] is None):
        with averaged():
            _save_model_dir(model, cfg)  # no dev: the final (averaged) model is the result
    stats = {
        "model_dir": os.path.join(cfg.output, MODEL_DIR),
        "completed": completed,
        "stopped_early": stopped_early,
        "epochs_run": state["epoch"],
        "global_step": state["global_step"],
        "total_steps": total_steps,
        "train_pairs": len(pair_enc),
        "train_pairs_skipped": len(train_data.pairs) - len(pair_enc),
        "train_tagging_inputs": len(tag_enc),
        "train_bags": len(bags),
        "dev_pairs": len(dev_data.pairs),
        "languages": dict(train_data.languages()),
        "relations": len(inventory),
        "trainable_parameters": n_trainable,
        "dev_metric": cfg.dev_metric,
        "best_dev": state["best"],
        "history": state["history"],
        "examples_per_s": round(seen / train_s, 2) if train_s > 0 and seen else None,
        "tokens_per_s": round(tokens / train_s, 1) if train_s > 0 and tokens else None,
        "train_step_s": round(train_s, 1),
        "loop_s": round(time.perf_counter() - loop_started, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "device": str(device),
        "hardware": _hardware(device),
        "bf16_autocast": use_bf16,
        "ema_decay": cfg.ema_decay,
        "final_loss": last_loss,
    }
    with open(os.path.join(cfg.output, "train_stats.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=2)
    with open(os.path.join(cfg.output, TRAIN_CONFIG), "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=2)
    return stats
