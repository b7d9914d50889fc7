"""A straightforward dense ActiveFT (docs/methods.md §2.2, 2.4–2.6): the test oracle and benchmark baseline.

It has the shape of the official code: autograd over the full N×B similarity matrix, ``exp`` then
``max`` over it, the centroid Gram matrix with one detached factor, Adam on the raw parameters with
normalisation inside the forward pass, then greedy duplicate-free snapping in centroid order with a
full descending sort of each centroid's similarity row.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def dense_activeft(features: torch.Tensor, budget: int, seed: int = 0, iterations: int = 300,
                   temperature: float = 0.07, balance: float = 1.0, lr: float = 1e-3,
                   on_iteration=None, dtype: torch.dtype = torch.float32, pool_batch: int | None = None,
                   renormalize: str = "forward", scheduler: str = "none"):
    """Return (centroid-order picks, final loss value). ``features`` must have unit rows.

    ``dtype`` float64 follows the same trajectory with float32's rounding errors 2⁻²⁹ times smaller:
    the benchmark uses it to see how far float32 rounding alone moves the picks. The options:
    ``pool_batch`` rows drawn without replacement each iteration (``numpy.random.default_rng(seed)``,
    sorted), ``renormalize="project"`` puts θ back on the sphere after every step,
    ``scheduler="cosine"`` anneals the learning rate to 1e-6 over the iterations.
    """
    features = features.to(dtype)
    n = features.shape[0]
    init = random.Random(seed).sample(range(n), budget)
    theta = features[init].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    annealing = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, iterations), eta_min=1e-6)
                 if scheduler == "cosine" else None)
    sampler = np.random.default_rng(seed)
    pool = features
    loss_value = float("nan")
    for it in range(iterations):
        if pool_batch is not None and pool_batch < n:
            pool = features[torch.from_numpy(np.sort(sampler.choice(n, pool_batch, replace=False)))]
        centroids = theta / theta.norm(dim=1, keepdim=True)
        prod_exp = torch.exp(pool @ centroids.T / temperature)
        positive, assigned = prod_exp.max(dim=1)
        gram_exp = torch.exp(centroids.detach() @ centroids.T / temperature)
        repulsion = gram_exp.sum(dim=0)
        loss = -(torch.log(positive) - torch.log(positive + repulsion[assigned] * balance)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if annealing is not None:
            annealing.step()
        if renormalize == "project":
            with torch.no_grad():
                theta /= theta.norm(dim=1, keepdim=True)
        loss_value = float(loss.detach())
        if on_iteration is not None:
            on_iteration(it, theta.detach(), assigned)
    with torch.no_grad():
        centroids = theta / theta.norm(dim=1, keepdim=True)
        similarity = centroids @ features.T
        taken: set[int] = set()
        picks = []
        for row in similarity:
            for index in torch.argsort(row, descending=True).tolist():
                if index not in taken:
                    taken.add(index)
                    picks.append(index)
                    break
    return picks, loss_value
