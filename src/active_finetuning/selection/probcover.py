"""ProbCover — Yehuda, Dekel, Hacohen, Weinshall, "Active Learning Through a Covering Lens"
(NeurIPS 2022), as the authors' code (avihu111/TypiClust) does it.

Unit-norm features with Euclidean distances (‖x − y‖² = 2 − 2⟨x, y⟩); the δ-ball graph is built in
row chunks (never N×N); incremental: samples already labeled cover their balls before the first
pick and are never returned. docs/selection.md, "ProbCover".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..params import Interval, Params, parameter
from ..progress import progress_bar
from ..seeding import numpy_generator
from .clustering import kmeans
from .exact import dot_error, exact_matmul
from .neighbours import euclidean_from_similarity, nearest_other_group
from .registry import Picks, register_selector
from .similarity import rows_per_block


@dataclass(frozen=True)
class ProbCoverParams(Params):
    """ProbCover parameters (docs/selection.md, "ProbCover"). ``delta`` None: the largest ball
    radius whose balls are ``purity`` pure with respect to a k-means clustering into
    ``purity_clusters`` clusters (the paper uses the number of classes), estimated exactly on
    ``purity_sample`` random balls. Coverage uses the whole δ-ball graph, every pair closer than δ;
    ``max_edges`` bounds its memory (4 bytes an edge). ``graph_cache`` is an optional directory
    that keeps the graph between runs on the same features and δ."""

    delta: float | None = parameter(None, Interval(float, 0, closed="neither"),
                                    "ball radius (unit features: at most 2); None: estimated from purity")
    purity: float = parameter(0.95, Interval(float, 0, 1, closed="right"), "share of pure balls that sets delta")
    purity_clusters: int = parameter(10, Interval(int, 2), "k-means pseudo-classes of the purity estimate")
    purity_sample: int = parameter(5000, Interval(int, 1), "balls measured for the purity estimate")
    max_edges: int = parameter(250_000_000, Interval(int, 1), "edges of the ball graph at most (4 bytes each)")
    kmeans_max_iter: int = parameter(300, Interval(int, 0), "Lloyd iterations at most")
    graph_cache: str | None = parameter(None, help="a directory that keeps the ball graph between runs",
                                        resolves="cache")


@register_selector("probcover", ProbCoverParams)
def select_probcover(pool, budget: int, params: ProbCoverParams, *, seed: int, progress: bool = False) -> Picks:
    """ProbCover: greedy maximum coverage of δ-balls (NeurIPS 2022)."""
    features = pool.features
    n = pool.size
    rng = numpy_generator(seed)
    delta = params.delta
    if delta is None:
        pseudo = kmeans(features, min(params.purity_clusters, n), seed=seed, max_iter=params.kmeans_max_iter).labels
        sample = np.sort(rng.choice(n, min(n, params.purity_sample), replace=False))
        delta = purity_radius(features, pseudo, sample, params.purity)
    graph = BallGraph(*ball_graph(features, delta, params.max_edges, pool.cache, progress))
    picks, gains = graph.greedy_cover(budget, pool.labeled, rng, progress)
    info = {"delta": float(delta), "covered_fraction": float(graph.covered.mean()),
            "mean_ball_size": float(len(graph.targets) / n), "edges": int(len(graph.targets))}
    return Picks(indices=picks, score=gains.astype(np.float64), info=info)


def ball_graph(features: torch.Tensor, delta: float, max_edges: int, cache: Any = None,
               progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The δ-ball graph as CSR ``(start, targets)``: row x's ball is ``targets[start[x]:start[x+1]]``,
    every y with ‖x − y‖ < δ, x itself included, ascending. Symmetric, so it is also the list of
    balls that hold each point. Rows are compared in chunks (never N×N); pairs whose float32
    distance is within its rounding of δ are decided by the float64 distance. ``cache`` (an
    :class:`~active_finetuning.data.cache.ArrayCache`) keeps it between runs on the same features and δ."""
    key = None
    if cache is not None:
        digest = hashlib.blake2b(features.numpy().tobytes() + np.float64(delta).tobytes(), digest_size=12).hexdigest()
        key = f"balls-{digest}"
        stored = cache.load(key)
        if stored is not None:
            return stored["start"], stored["targets"]
    n, dim = features.shape
    threshold = 1 - delta * delta / 2  # ‖x − y‖ < δ ⇔ ⟨x, y⟩ > 1 − δ²/2 on unit rows
    rounding = 4 * dot_error(dim, torch.float32)  # the product's error and the rows' norms (≈ 1)
    counts = np.zeros(n, dtype=np.int64)
    parts, total = [], 0
    step = rows_per_block(n)
    for start in progress_bar(range(0, n, step), desc="probcover graph", enabled=progress):
        with exact_matmul():
            block = features[start : start + step] @ features.T
        sure = block > threshold + rounding
        near = (block > threshold - rounding) & ~sure
        rows, cols = near.nonzero(as_tuple=True)
        if len(rows):
            exact = _float64_distance(features, rows + start, cols) < delta
            sure[rows[exact], cols[exact]] = True
        local, targets = sure.nonzero(as_tuple=True)
        total += len(targets)
        if total > max_edges:
            raise InputError(f"probcover: the δ-ball graph for delta = {delta:.4g} has more than {max_edges} edges "
                             f"(mean ball above {total / (start + len(block)):.0f} samples); lower delta (or purity), "
                             "or raise max_edges (4 bytes an edge)")
        counts[start : start + len(block)] = torch.bincount(local, minlength=len(block)).numpy()
        parts.append(targets.to(torch.int32).numpy())
    start_of = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=start_of[1:])
    targets = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    if key is not None:
        cache.save(key, start=start_of, targets=targets)
    return start_of, targets


def _float64_distance(features, rows, cols) -> np.ndarray:
    """‖f_r − f_c‖ in float64 for the given pairs, a few thousand at a time."""
    out = np.empty(len(rows))
    for first in range(0, len(rows), 4096):
        part = slice(first, first + 4096)
        difference = features[rows[part]].double() - features[cols[part]].double()
        out[part] = torch.linalg.vector_norm(difference, dim=1).numpy()
    return out


def purity_radius(features: torch.Tensor, pseudo: torch.Tensor, sample: np.ndarray, purity: float) -> float:
    """The largest δ for which at least ``purity`` of the δ-balls are pure (ProbCover §4).

    The ball B(x, δ) = {y : ‖x − y‖ < δ} is pure when every member shares x's pseudo-class, i.e.
    when δ ≤ r_x, the exact distance from x to the nearest sample of another pseudo-class. The
    share of pure balls is measured on the balls around ``sample`` rows (a chunked exact search of
    len(sample) × N, not N × N).
    """
    similarity = nearest_other_group(features, pseudo, torch.from_numpy(sample))
    radius = np.sort(euclidean_from_similarity(similarity).double().numpy())
    radius[~np.isfinite(radius)] = 2.0  # one pseudo-class: every ball of the unit sphere is pure
    need = int(np.ceil(purity * len(radius)))
    return float(radius[len(radius) - need])


@dataclass
class BallGraph:
    """The δ-ball graph (``ball_graph``) and the coverage state of a greedy cover."""

    start: np.ndarray  # (N + 1,) ball of x is targets[start[x]:start[x + 1]]
    targets: np.ndarray  # (E,) int32
    covered: np.ndarray | None = None  # (N,) bool

    def __post_init__(self) -> None:
        if self.covered is None:
            self.covered = np.zeros(len(self.start) - 1, dtype=bool)

    def _ball(self, row: int) -> np.ndarray:
        return self.targets[self.start[row] : self.start[row + 1]]

    def _cover(self, row: int, gain: np.ndarray) -> None:
        """Mark the ball of ``row`` covered and withdraw those points from every ball's gain (the
        balls that hold a point are the point's own ball: the graph is symmetric)."""
        reached = self._ball(row)
        fresh = reached[~self.covered[reached]]
        if len(fresh) == 0:
            return
        self.covered[fresh] = True
        lengths = self.start[fresh + 1] - self.start[fresh]
        offsets = np.repeat(self.start[fresh] - np.cumsum(lengths) + lengths, lengths)
        holders = self.targets[offsets + np.arange(lengths.sum())]
        gain -= np.bincount(holders, minlength=len(gain))

    def greedy_cover(self, budget: int, labeled: np.ndarray, rng: np.random.Generator, progress: bool = False):
        """Pick ``budget`` balls, each covering the most uncovered points (ties → lowest row);
        labeled balls are covered first.

        Once every point is covered the remaining picks are uniform among the unpicked (as the
        authors' code does). Returns (rows, gains).
        """
        n = len(self.covered)
        gain = np.diff(self.start).astype(np.int64)
        available = np.ones(n, dtype=bool)
        for row in labeled:
            self._cover(int(row), gain)
            available[row] = False
        picks, gains = [], []
        for _ in progress_bar(range(budget), desc="probcover", enabled=progress):
            masked = np.where(available, gain, -1)
            row = int(masked.argmax())
            if masked[row] <= 0:
                break
            picks.append(row)
            gains.append(int(masked[row]))
            available[row] = False
            self._cover(row, gain)
        if len(picks) < budget:
            rest = np.flatnonzero(available)
            extra = rest[rng.choice(len(rest), budget - len(picks), replace=False)]
            picks.extend(int(r) for r in extra)
            gains.extend([0] * len(extra))
        return np.asarray(picks, dtype=np.int64), np.asarray(gains)
