"""ActiveFT (Xie et al., CVPR 2023): fit B centroids to the pool, then snap them to samples.

Follows, by default, the official code's loss and schedule (docs/selection.md, "ActiveFT"). The gradient is
computed in closed form rather than by autograd over the N×B similarity matrix:

* assignments ``k_i = argmax_j ⟨f_i, c_j⟩``, the float32 GEMM's argmax (the hard argmax is
  piecewise constant, so the gradient only needs ``k_i``): by default through bounds carried
  across iterations (``bounds.BoundedAssignment``), which re-score only the rows whose nearest
  centroid may have changed, with the fastest exact scorer of this machine (``screen``);
* the similarity of each sample to its own centroid, ``m_i``, one sampled dot product per sample
  (the same values whichever way the assignment was found), O(N·d);
* the pull on centroid ``k`` is the weighted sum of its samples, O(N·d), summed exactly (``pull``): the
  assignment's pass over the pool adds each row while it has it in cache;
* the repulsion needs only the B×B Gram matrix, processed in column chunks, O(B·chunk) memory.

So an iteration costs O(N·d + B²·d) plus the rows that are scored again, never an N×B or B×B
matrix held whole; every assignment path gives the same trajectory bit for bit.

``precision="float64"`` runs the same steps on a float64 copy of the pool (float64 scoring, sums,
loss and Adam state): over hundreds of iterations float32 rounding alone moves a few percent of the
picks, so this is the mode that reproduces a float64 dense reference pick for pick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import InputError
from ..progress import progress_bar
from .bounds import BoundedAssignment, make_assignment, own_similarity
from .clustering import d2_draw
from .exact import reusable_operand, sliced_products, sparse_rows
from .optim import Adam, cosine_learning_rates
from .products import fixed_gram, fixed_products
from .pull import Pull
from ..params import Interval, Params, parameter
from .registry import Picks, register_selector
from .screen import fastest_scorer, make_scorer
from ..seeding import numpy_generator, python_random
from .similarity import (
    BLOCK_ELEMENTS,
    nearest_by_similarity,
    row_norms,
    rows_per_block,
    snap_to_unique_samples,
)


@dataclass(frozen=True)
class ActiveFTParams(Params):
    """ActiveFT parameters (docs/selection.md, "ActiveFT"); defaults follow the authors' CIFAR script."""

    iterations: int = parameter(300, Interval(int, 0), "Adam steps on the centroids")
    temperature: float = parameter(0.07, Interval(float, 0, closed="neither"), "τ of the softmax over centroids")
    balance: float = parameter(1.0, Interval(float, 0, closed="neither"), "λ, weight of the diversity term")
    lr: float = parameter(1e-3, Interval(float, 0, closed="neither"), "Adam's learning rate")
    loss_form: Literal["official", "paper"] = parameter("official", help="the official code's loss or the paper's")
    renormalize: Literal["forward", "project"] = parameter(
        "forward", help="normalise centroids in the forward pass (official) or project them after each step")
    scheduler: Literal["none", "cosine"] = parameter("none", help="learning-rate schedule")
    pool_batch: int | None = parameter(None, Interval(int, 1), "rows drawn per step (ImageNet scale); None: all")
    chunk_size: int | None = parameter(None, Interval(int, 1), "rows per scoring block; None: automatic")
    snap_topk: int = parameter(64, Interval(int, 1), "candidates per centroid when snapping to samples")
    assignment: Literal["auto", "bounded", "full"] = parameter(
        "auto", help="nearest-centroid search: carried bounds, every row, or the fastest exact one")
    screen: Literal["auto", "bfloat16", "none"] = parameter(
        "auto", help="scorer of the rows searched: a bfloat16 screen, plain float32 GEMM, or timed")
    precision: Literal["float32", "float64"] = parameter("float32", help="precision of the trajectory")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.precision == "float64" else torch.float32


@register_selector("activeft", ActiveFTParams)
def select_activeft(pool, budget: int, params: ActiveFTParams, *, seed: int, progress: bool = False) -> Picks:
    """ActiveFT: distribution-matching centroids snapped to distinct samples (CVPR 2023)."""
    features = pool.features.to(params.dtype)  # precision="float64" holds a float64 copy: 8·N·d bytes
    n = features.shape[0]
    if len(pool.labeled):
        init = _init_away_from_labeled(features, pool.labeled, budget, seed)
    else:
        # random.Random(seed).sample(range(N), B), as the authors' script draws the initial centroids.
        init = python_random(seed).sample(range(n), budget)
    fixed = torch.from_numpy(pool.labeled).long()
    theta = features[init].clone()
    result = fit_centroids(features, theta, params, seed=seed, progress=progress, fixed=features[fixed])
    centroids = torch.nn.functional.normalize(result.theta, dim=1)
    # The assignment's bounds, brought to these centroids, tell which rows can be near each (docs/selection.md,
    # "Snapping to samples"); without them, one pass over the pool.
    reaching = None
    if isinstance(result.search, BoundedAssignment):
        reaching = result.search.reaching(torch.cat([centroids, features[fixed]]), len(centroids), params.snap_topk)
    result.search = None  # the assignment's state (~100 MB for 50,000 × 500) is not needed past this point
    picks = snap_to_unique_samples(centroids, features, topk=params.snap_topk, excluded=pool.labeled,
                                   reaching=reaching)
    info = {"final_loss": result.final_loss, "initial_rows": init[:16] if n > 0 else [],
            "assignment": result.assignment, "snap": "pool" if reaching is None else "bounds"}
    return Picks(indices=picks, role="pick", info=info)


def _init_away_from_labeled(features: torch.Tensor, labeled: np.ndarray, budget: int, seed: int) -> list[int]:
    """Incremental selection: draw the new centroids by D² sampling from the labeled set onwards.

    A uniform draw puts centroids inside regions the labeled samples already cover, and
    the optimiser only moves them locally; k-means++-style sampling, seeded by the labeled samples,
    starts them where the labeled set is missing. Deterministic for a seed, O(N) memory.
    """
    rng = numpy_generator(seed)
    _, nearest = nearest_by_similarity(features, features[torch.from_numpy(labeled)])
    distance = (2 - 2 * nearest.double()).clamp_min_(0)  # squared Euclidean on unit rows
    distance[torch.from_numpy(labeled)] = 0
    chosen: list[int] = []
    for _ in range(budget):
        row = d2_draw(distance.numpy(), rng, taken=np.concatenate([labeled, chosen]))
        chosen.append(row)
        torch.minimum(distance, (2 - 2 * (features @ features[row]).double()).clamp_min_(0), out=distance)
        distance[row] = 0
    return chosen


@dataclass
class FitResult:
    theta: torch.Tensor
    final_loss: float
    assignment: dict
    search: object = None  # the assignment path, with its state after the last iteration


def fit_centroids(
    features: torch.Tensor,
    theta: torch.Tensor,
    params: ActiveFTParams,
    *,
    seed: int = 0,
    progress: bool = False,
    fixed: torch.Tensor | None = None,
) -> FitResult:
    """Optimise centroid parameters ``theta`` (B×d) on unit ``features`` (N×d).

    ``fixed`` (L×d unit rows, may be empty) are centroids that take part in the assignment and the
    repulsion but never move: the already-labeled samples of an incremental selection.
    """
    n = features.shape[0]
    theta = theta.detach().to(params.dtype, copy=True)
    optimizer = Adam(theta, params.lr)
    rates = cosine_learning_rates(params.lr, params.iterations) if params.scheduler == "cosine" else None
    fixed = fixed.to(params.dtype) if fixed is not None and len(fixed) else None
    batch = min(params.pool_batch, n) if params.pool_batch else None
    sampler = numpy_generator(seed)
    centers = theta.shape[0] + (0 if fixed is None else len(fixed))
    assign = _assignment(features, centers, params, batch)
    pull = Pull(features, centers, float(assign.scorer.norm.max())) if features.dtype == torch.float32 else None
    loss_value = float("nan")
    bar = progress_bar(range(params.iterations), desc="activeft", enabled=progress)
    for step in bar:
        subset = None
        if batch is not None and batch < n:
            subset = torch.from_numpy(np.sort(sampler.choice(n, batch, replace=False)))
        with torch.no_grad():
            norms = theta.norm(dim=1, keepdim=True)
            centroids = theta / norms
            everything = centroids if fixed is None else torch.cat([centroids, fixed])
            # The Gram matrix first: the pull's weights need it, and the assignment's pass adds the pull.
            logits = _Logits(everything, params.temperature, params.chunk_size) if params.loss_form == "official" else None
            log_r = None if logits is None else _log_repulsion(logits)
            if pull is not None:
                pull.start(_shift(log_r, params, centers), params.temperature, n if subset is None else len(subset))
            assigned, own = assign(everything, subset, pull)
            grad_c, loss_value = _centroid_gradient(features, centroids, fixed, params, assigned, own, subset,
                                                    logits, log_r, pull)
            _require_finite(loss_value, grad_c)
            # Chain rule through c = θ/‖θ‖ (normalisation inside the forward pass).
            radial = (grad_c * centroids).sum(dim=1, keepdim=True)
            grad_theta = (grad_c - radial * centroids) / norms
        if rates is not None:
            optimizer.lr = rates[step]
        optimizer.step(grad_theta)
        if params.renormalize == "project":
            theta /= theta.norm(dim=1, keepdim=True)
        if progress:
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
    visited = max(1, assign.counts["visited"])
    summary = {"mode": assign.mode, "scorer": assign.scorer.name,
               "rows_scored": assign.counts["scored"] / visited,
               "rows_tightened": assign.counts["tightened"] / visited}
    return FitResult(theta, loss_value, summary, assign)


def _assignment(features: torch.Tensor, centers: int, params: ActiveFTParams, batch: int | None):
    """The assignment path (docs/selection.md, "Exact assignment"). ``auto``: bounds carried across iterations
    when the whole pool is used every iteration, scoring the few rows that need it with the GEMM
    (measured: the bfloat16 screen's fixed costs outweigh its cheaper product on so few rows, even
    on CPUs with bfloat16 instructions); with ``pool_batch`` every batch row is scored (a row is
    visited too rarely for its bounds to stay tight), by the fastest exact scorer of this machine."""
    mode = params.assignment
    if mode == "auto":
        mode = "bounded" if batch is None or batch >= features.shape[0] else "full"
    screen = {"bfloat16": "bfloat16-screen", "none": "gemm"}.get(params.screen)
    if screen is None:
        screen = "gemm" if mode == "bounded" else fastest_scorer(features.dtype, features.shape[1], centers)
    return make_assignment(make_scorer(screen, features, params.chunk_size), mode)


def _require_finite(loss_value: float, grad: torch.Tensor) -> None:
    # The largest magnitude is finite only if every element is (a NaN propagates through ``amax``): one
    # reduction, where ``isfinite(...).all()`` makes a mask first (~0.7 ms a step for 500 × 1,280).
    if not (math.isfinite(loss_value) and math.isfinite(float(grad.abs().amax()) if grad.numel() else 0.0)):
        raise InputError(
            f"activeft: the loss or its gradient is not finite (loss {loss_value!r}); the features or "
            "the parameters overflow (a very small temperature, or a very large lr); raise temperature "
            "or lower lr")


def _centroid_gradient(features, centroids, fixed, params: ActiveFTParams, assigned=None, own=None, subset=None,
                       logits=None, log_r=None, pull: Pull | None = None):
    """Gradient of the loss with respect to the unit centroids, and the loss value, over the rows
    ``subset`` of ``features`` (all rows when ``None``).

    ``assigned`` (each row's nearest centroid), ``own`` (its similarity to it) and ``pull`` (the pull's sums
    and weights) come from the assignment path; by default the dense GEMM and the sampled products compute
    them. ``logits`` and ``log_r``: the Gram matrix's, if the caller has them.
    """
    tau = params.temperature
    b = centroids.shape[0]
    everything = centroids if fixed is None else torch.cat([centroids, fixed])
    chunk = params.chunk_size
    rows = torch.arange(features.shape[0]) if subset is None else subset
    if assigned is None:
        assigned = nearest_by_similarity(features[rows], everything, chunk)[0]
    if own is None:
        own = own_similarity(features, everything, rows, assigned)
    n = len(assigned)
    positive = own / tau  # m_i
    if params.loss_form == "official":
        logits = _Logits(everything, tau, chunk) if logits is None else logits
        log_r = _log_repulsion(logits) if log_r is None else log_r  # log R_j over moving and fixed centroids
        shift = _shift(log_r, params, everything.shape[0])
        z = shift[assigned] - positive
        sums, weight = _pulled(features, rows, assigned, own, shift, params, pull, z)  # weight: dℓ_i/dz_i
        loss_value = _mean(_blockwise(torch.nn.functional.softplus, z))  # ℓ_i = softplus(z_i)
        grad = -sums / (n * tau)
        per_center = torch.zeros(everything.shape[0], dtype=weight.dtype).index_add_(0, assigned, weight) / n
        grad += _repulsion_gradient(logits, per_center)
    else:  # the paper's two-term loss (self term excluded, no stop-gradient)
        shift = _shift(None, params, everything.shape[0])
        grad = -_pulled(features, rows, assigned, own, shift, params, pull, None)[0] / (n * tau)
        repulsion_grad, repulsion_value = _paper_repulsion(everything, tau, chunk)
        grad += params.balance / b * repulsion_grad
        loss_value = -_mean(positive) + params.balance * repulsion_value / b
    return grad[:b], loss_value


# Element-wise work on at most this many elements runs on one thread (torch's grain size is 32,768).
SERIAL_ELEMENTS = 1 << 14


def _blockwise(function, values: torch.Tensor) -> torch.Tensor:
    """``function`` applied to fixed blocks of ``values``, so that the result does not depend on
    the number of threads: torch splits one large call between threads at offsets that depend on
    their number, and elements at a split go through the scalar code of ``exp``-based functions,
    which rounds differently from the vectorised code (1 ulp, enough to move the trajectory)."""
    if values.numel() <= SERIAL_ELEMENTS:
        return function(values)
    return torch.cat([function(part) for part in values.split(SERIAL_ELEMENTS)])


def _mean(values: torch.Tensor) -> float:
    """Mean in a fixed summation order (float64 partial sums of fixed blocks), whatever the threads."""
    return sum(float(part.double().sum()) for part in values.split(SERIAL_ELEMENTS)) / max(1, values.numel())


def _shift(log_r, params: ActiveFTParams, centers: int) -> torch.Tensor:
    """Per centroid j, ``log λ + log R_j``: a row's ``z_i`` is this at its centroid minus ``m_i`` (the official
    loss); ``+inf`` for the paper's, whose pull gives every row the weight 1."""
    if log_r is None:
        return torch.full((centers,), math.inf, dtype=torch.float32)
    return math.log(params.balance) + log_r


def _pulled(features, rows, assigned, own, shift, params: ActiveFTParams, pull: Pull | None, z):
    """The pull's sums ``Σ_{i: k_i = j} w_i f_i`` and weights ``w_i = σ(z_i)`` (1 where ``z`` is ``None``):
    made by the assignment into ``pull`` where it was given; else float32 rows summed exactly here
    (``pull.Pull``, the same bits), float64 rows in row order (``_assigned_sum``)."""
    if pull is not None:
        return pull.sums, pull.weights
    centers = len(shift)
    if features.dtype == torch.float32:
        made = Pull(features, centers, float(row_norms(features).max()) if len(features) else 0.0)
        made.start(shift, params.temperature, len(rows))
        made.finish(rows, assigned, own, None)
        return made.sums, made.weights
    weight = torch.ones(len(assigned), dtype=features.dtype) if z is None else _blockwise(torch.sigmoid, z)
    return _assigned_sum(features, rows, assigned, weight, centers), weight


def _assigned_sum(features, rows, assigned, weight, centers: int) -> torch.Tensor:
    """Σ_{i: k_i = j} w_i f_i over the float64 ``features[rows]`` for every centroid j, O(N·d), reading the
    rows in place: each centroid's sum is made by one thread in row order (a CSR product), so the bits do
    not depend on the thread count."""
    order = torch.argsort(assigned, stable=True)
    crow = torch.zeros(centers + 1, dtype=torch.int64)  # where each centroid's rows start in ``order``
    torch.cumsum(torch.bincount(assigned, minlength=centers), 0, out=crow[1:])
    return sparse_rows(crow, rows[order], weight[order], (centers, features.shape[0])) @ features


def _column_chunks(b: int, chunk: int | None):
    step = chunk or rows_per_block(b)
    for start in range(0, b, step):
        yield slice(start, min(b, start + step))


class _Logits:
    """The scaled Gram matrix ``⟨c_j, c_l⟩/τ`` in row chunks (chunk × B); computed once and kept
    for both of its uses when it fits in one block (its tiles on and above the diagonal, mirrored), else
    computed again for each. Its products, and the repulsion's, do not depend on the thread count
    (``_products``): a float32 GEMM's last bits do on some BLAS builds, and through Adam they would
    change the picks. When kept, the repulsion's product ``softmax(⟨c_j, c_l⟩/τ) · C`` (B × d) is made
    at once too (``pulled``)."""

    def __init__(self, centroids, tau, chunk):
        self.centroids, self.tau, self.chunk = centroids, tau, chunk
        # Right operands of every chunk's products, prepared once (float64 ones sliced, float32 ones contiguous).
        self.pull_right = _operand(centroids.T)
        b = centroids.shape[0]
        self.kept = self.pulled = None
        if b * b <= BLOCK_ELEMENTS:  # the whole matrix at once, as a Gram matrix (symmetric, half the products)
            gram = _gram(centroids)
            whole, weights = torch.empty_like(gram), torch.empty_like(gram)
            # Scaled and softmaxed in blocks small enough for torch to run on this thread: a parallel torch call
            # leaves its OpenMP threads spinning for a while on the cores the next product's threads need.
            for rows in _column_chunks(b, max(1, SERIAL_ELEMENTS // max(b, 1))):
                torch.div(gram[rows], tau, out=whole[rows])
                weights[rows] = torch.softmax(whole[rows], dim=1)
            self.pulled = _products(weights, self.pull_right)
            self.kept = [(rows, whole[rows]) for rows in _column_chunks(b, chunk)]
        else:
            self.right = _operand(centroids)

    def __iter__(self):
        if self.kept:
            yield from self.kept
            return
        for rows in _column_chunks(self.centroids.shape[0], self.chunk):
            yield rows, _products(self.centroids[rows], self.right) / self.tau


def _products(left: torch.Tensor, right) -> torch.Tensor:
    """``left @ right.T`` with the same bits on any thread count (docs/selection.md, "The same bits with any
    number of threads"): float32 as one compiled dot product per element (``products``), float64 as error-free
    sums of exact slice products (``exact.sliced_products``; ``right`` may be prepared by ``_operand``)."""
    if left.dtype == torch.float64:
        return sliced_products(left, right)
    return fixed_products(left, right)


def _gram(values: torch.Tensor) -> torch.Tensor:
    """``_products(values, values)``, the same bits, for about half the work."""
    return sliced_products(values, values) if values.dtype == torch.float64 else fixed_gram(values)


def _operand(values: torch.Tensor):
    """``values`` prepared as the right operand of many ``_products``."""
    return reusable_operand(values) if values.dtype == torch.float64 else values.contiguous()


def _log_repulsion(logits: _Logits):
    """log R_j = log Σ_l exp(⟨c_l, c_j⟩/τ), self term included."""
    log_r = torch.empty(logits.centroids.shape[0], dtype=logits.centroids.dtype)
    for rows, block in logits:
        log_r[rows] = torch.logsumexp(block, dim=1)
    return log_r


def _repulsion_gradient(logits: _Logits, per_center):
    """Σ_i (σ(z_i)/N) ∂log R_{k_i}/∂c_{k_i}, with the other factor stop-gradient (docs/selection.md, "ActiveFT").

    The Gram blocks are (chunk × B) and reduced along their contiguous rows: torch's softmax over
    the other dimension sums in an order that depends on the thread count, which would make the
    trajectory (and the picks) differ between 1 and 2 threads.
    """
    if logits.pulled is not None:
        return logits.pulled * (per_center[:, None] / logits.tau)
    grad = torch.zeros_like(logits.centroids)
    for rows, block in logits:
        weights = torch.softmax(block, dim=1)  # (chunk, B)
        grad[rows] = _products(weights, logits.pull_right) * (per_center[rows, None] / logits.tau)
    return grad


def _paper_repulsion(centroids, tau, chunk):
    """Σ_j log Σ_{l≠j} exp(⟨c_j, c_l⟩/τ) and its gradient (the paper's form), both Gram factors live."""
    b = centroids.shape[0]
    grad = torch.zeros_like(centroids)
    total = 0.0
    right, pull_right = _operand(centroids), _operand(centroids.T)
    for rows in _column_chunks(b, chunk):
        logits = _products(centroids[rows], right) / tau
        logits[torch.arange(logits.shape[0]), torch.arange(rows.start, rows.stop)] = float("-inf")
        total += float(torch.logsumexp(logits, dim=1).sum())
        weights = torch.softmax(logits, dim=1)  # Q_jl for j in rows
        grad[rows] += _products(weights, pull_right) / tau
        grad += _products(weights.T, centroids[rows].T) / tau
    return grad, total
