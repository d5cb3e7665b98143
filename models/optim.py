"""Optimisation of the relation extractor: what trains, at which rate, and the weight average.

* `freeze_lower`: freeze the embeddings block, markers and lowest layers (CPU speed);
* `apply_lora`: LoRA adapters (peft) instead of the full encoder;
* `make_optimizer`: AdamW with the heads at ``head_lr`` and the encoder at ``lr``,
  layer-wise decayed (`encoder_lr_scale`); the grouping rule and the schedule
  (`make_scheduler`) are `relbridge.runtime.optim`'s, shared with aligner fine-tuning;
* `WeightAverage`: an exponential moving average of the trainable weights.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import torch

from relbridge.models.extractor import RelationExtractor
from relbridge.models.train_config import OptimConfig
from relbridge.runtime.optim import adamw_param_groups, linear_warmup_decay


def freeze_lower(model: RelationExtractor, n_layers: int) -> None:
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


def apply_lora(model: RelationExtractor, cfg: OptimConfig) -> None:
    """Wraps the encoder in LoRA adapters of rank ``lora_r`` on ``lora_targets``."""
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


def make_optimizer(model: RelationExtractor, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW: heads at ``head_lr``; encoder at ``lr`` (layer-wise decayed), no decay on 1-d weights.

    The heads are exempt from the no-decay rule (their biases decay too), as they always were.
    """
    n_layers = model.encoder.config.num_hidden_layers

    def is_head(name: str) -> bool:
        return not name.startswith("encoder.")

    def lr(name: str) -> float:
        if is_head(name):
            return cfg.head_lr
        return cfg.lr * encoder_lr_scale(name, n_layers, cfg.layer_lr_decay)

    groups = adamw_param_groups(model.named_parameters(), lr, cfg.weight_decay, exempt=is_head)
    return torch.optim.AdamW(groups)


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig):
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0."""
    return linear_warmup_decay(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)


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
