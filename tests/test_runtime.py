"""runtime: one AdamW grouping rule and one warm-up/decay schedule for both trainers."""

import pytest
import torch

from relbridge.runtime.optim import adamw_param_groups, linear_warmup_decay


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(3, 3)  # weight 2-d, bias 1-d
        self.norm = torch.nn.LayerNorm(3)  # 1-d weight and bias, named unlike "LayerNorm"
        self.head = torch.nn.Linear(3, 2)
        self.frozen = torch.nn.Linear(3, 3)
        self.frozen.requires_grad_(False)


def _decay_of(groups):
    return {id(p): g["weight_decay"] for g in groups for p in g["params"]}


def test_no_decay_on_one_dimensional_parameters_whatever_their_name():
    net = _Net()
    groups = adamw_param_groups(net.named_parameters(), lr=1e-3, weight_decay=0.1)
    decay = _decay_of(groups)
    assert decay[id(net.encoder.weight)] == 0.1 and decay[id(net.head.weight)] == 0.1
    assert decay[id(net.encoder.bias)] == decay[id(net.norm.weight)] == 0.0
    assert id(net.frozen.weight) not in decay  # frozen parameters are left out
    assert len(groups) == 2 and all(g["lr"] == 1e-3 for g in groups)


def test_per_name_learning_rates_and_exempt_names_share_groups():
    net = _Net()

    def is_head(name):
        return name.startswith("head.")

    groups = adamw_param_groups(
        net.named_parameters(), lambda n: 1e-2 if is_head(n) else 1e-3, 0.1, exempt=is_head
    )
    by_param = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert by_param[id(net.head.bias)] == (1e-2, 0.1)  # exempt: decays although 1-d
    assert by_param[id(net.norm.bias)] == (1e-3, 0.0)
    assert sorted((g["lr"], g["weight_decay"]) for g in groups) == [
        (1e-3, 0.0), (1e-3, 0.1), (1e-2, 0.1)
    ]  # fmt: skip


def test_linear_warmup_then_decay_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_warmup_decay(opt, warmup_steps=2, total_steps=6)
    seen = []
    for _ in range(7):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25, 0.0])
