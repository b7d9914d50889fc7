"""Adam and its cosine schedule for ActiveFT's centroids, without ``torch.optim.Optimizer``.

The first ``torch.optim.Adam`` of a process imports ``torch._dynamo`` (its methods are wrapped to
disable compilation): 1.3-2 s of every ``select`` on two cores, more than a whole selection
on a small pool (benchmarks/RESULTS.md, "Reading a features artifact"). The step itself is
torch's: the functional ``torch.optim.adam.adam`` that ``torch.optim.Adam.step`` calls on CPU, with
the same state and the same defaults, so the trajectory is the same bits (tests compare them
step by step, and the cosine schedule with ``CosineAnnealingLR``'s).
"""

from __future__ import annotations

import math

import torch
from torch.optim.adam import adam


class Adam:
    """``torch.optim.Adam([param], lr)`` with its defaults (betas 0.9, 0.999, eps 1e-8), for one
    parameter updated in place; ``lr`` may be changed between steps."""

    def __init__(self, param: torch.Tensor, lr: float):
        self.param, self.lr = param, lr
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)
        # torch keeps the step count as a scalar tensor of the default floating type.
        self.step_count = torch.tensor(0.0, dtype=torch.get_default_dtype())

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        adam([self.param], [grad], [self.exp_avg], [self.exp_avg_sq], [], [self.step_count],
             foreach=False, amsgrad=False, beta1=0.9, beta2=0.999, lr=self.lr, weight_decay=0.0, eps=1e-8,
             maximize=False)


def cosine_learning_rates(base: float, steps: int, eta_min: float = 1e-6) -> list[float]:
    """The learning rate before each of ``steps`` steps under ``CosineAnnealingLR(T_max=steps,
    eta_min)`` stepped once per step: its recursive form, the same floats as torch's scheduler."""
    t_max = max(1, steps)
    rates = [base]
    for epoch in range(1, steps):
        lr = rates[-1]
        if (epoch - 1 - t_max) % (2 * t_max) == 0:
            lr = lr + (base - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        else:
            lr = (1 + math.cos(math.pi * epoch / t_max)) / (1 + math.cos(math.pi * (epoch - 1) / t_max)) \
                * (lr - eta_min) + eta_min
        rates.append(lr)
    return rates[:steps]
