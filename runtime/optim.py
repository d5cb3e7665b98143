"""AdamW parameter groups and the linear warm-up/decay schedule, shared by both trainers.

The relation trainer (`relbridge.models`) and aligner fine-tuning
(`relbridge.alignment.finetune`) step AdamW the same way:

* **no weight decay on 1-d parameters** (biases and normalisation weights,
  whatever a model family names them), the usual rule since BERT;
* a learning rate per parameter (layer-wise decay, heads at their own rate),
  parameters with the same ``(lr, weight_decay)`` sharing one group;
* a linear warm-up over the first steps, then linear decay to 0.

    groups = adamw_param_groups(model.named_parameters(), lr=1e-4, weight_decay=0.01)
    optimizer = torch.optim.AdamW(groups)
    scheduler = linear_warmup_decay(optimizer, warmup_steps=10, total_steps=100)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def decays(name: str, param) -> bool:
    """Whether AdamW's weight decay applies to ``param``: not to 1-d tensors (biases, norms)."""
    return param.ndim >= 2


def adamw_param_groups(
    named_parameters: Iterable[tuple[str, Any]],
    lr: float | Callable[[str], float],
    weight_decay: float,
    exempt: Callable[[str], bool] | None = None,
) -> list[dict[str, Any]]:
    """AdamW groups over the parameters that require grad.

    Args:
      named_parameters: ``model.named_parameters()``.
      lr: one learning rate, or a function of the parameter name.
      weight_decay: the decay of every parameter that `decays`.
      exempt: names to which the no-decay rule does not apply (they decay
        even when 1-d); the relation trainer keeps its heads' biases decayed.

    Returns:
      One ``{"params", "lr", "weight_decay"}`` group per distinct pair, in the
      order the parameters first use them.
    """
    groups: dict[tuple[float, float], list] = {}
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        rate = lr(name) if callable(lr) else lr
        decayed = decays(name, p) or (exempt is not None and exempt(name))
        groups.setdefault((rate, weight_decay if decayed else 0.0), []).append(p)
    return [{"params": ps, "lr": rate, "weight_decay": wd} for (rate, wd), ps in groups.items()]


def linear_warmup_decay(optimizer, warmup_steps: int, total_steps: int):
    """A `LambdaLR`: factor ``(s+1)/(warmup+1)`` while warming up, then linear decay to 0."""
    import torch

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
