"""BiLAF (Lu, Xie, Yang, Yan, NeurIPS 2024): core samples, then the boundaries of their pseudo-classes.

docs/methods.md §3. Stages: core selection with any registered selector (§3.1 step 1), pseudo-class
assignment to the nearest core (chunked, never an N×K matrix), IDC denoising per cluster (§3.3/3.4),
budget split (§3.5), iterative boundary selection with the ⌊n/a⌋ removal and the opponent penalty δ
(§3.6). Per-cluster work is vectorised and bounded by the cluster's size: distance blocks are
computed in row chunks of at most ``similarity.BLOCK_ELEMENTS`` elements.

Two modes:

* default — the paper's definitions: density distance over the k nearest *admitted* members (§3.3),
  IDC until every member is admitted, then the last ``⌊N_i·P_rm⌋`` inserted are dropped; the penalised
  score is the minimum over all opponents (eq. 7). Exactly B distinct samples for every input
  (§3.7): every pseudo-class gets 1 ≤ a ≤ n' samples, and if the denoised clusters hold fewer than B
  samples the rest is topped up by the lowest boundary score over the whole pool.
* ``reference_compat`` — the official code's output list, order included (§3.4, §3.6, §3.7): the
  density-distance indexing bug, ring 1 including the core, leftovers dropped, nearest-opponent-only
  penalty, its budget rounding, cores in ascending index order. Where the official code would crash
  or emit duplicates this raises :class:`InputError` instead.

Incremental selection: already-labeled rows are existing picks. They become extra pseudo-class
centres ("cores" that cost no budget): the split hands out ``B + L`` units over the ``K + L``
clusters, and a labeled centre's unit is its own (already labeled) sample, so exactly B new samples
are returned. Labeled rows are never returned.

Output order: clusters in ascending centre-row order, each cluster's picks in pick order (core
first). ``score`` is the (penalised) boundary score a pick had when it was taken; cores have NaN.
``Picks.tables["clusters"]`` holds one row per pseudo-class: ``pseudo_class``, ``center_row``,
``center_labeled``, ``size`` (assigned samples), ``denoised_size``, ``allocation``, ``removal_count``
(⌊n'/a⌋) and ``selected`` (new samples taken from it, top-ups included).
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from ..errors import InputError
from ..params import Interval, Params, parameter
from ..progress import progress_bar
from .core_count import parse_num_cores, requested_count, resolve_num_cores
from .registry import Picks, get_selector, list_selectors, register_selector, require
from .similarity import BLOCK_ELEMENTS, rows_per_block

# The official code masks a sample's own core with this distance (it matters when K = 1).
OWN_CORE_DISTANCE = 1e9 + 7
# Nearest centres listed per sample in the assignment pass; deeper opponent lists are recomputed.
NEAREST_CENTRES = 16
# Elements per block of the row norms in the assignment pass (stays in cache, no page faults).
NORM_BLOCK_ELEMENTS = 1 << 18
# Row blocks of a cluster's Gram matrix: only the blocks on and above the diagonal are multiplied.
GRAM_PARTS = 4
GRAM_MIN_ROWS = 64
# Elements of denoised distance matrices kept from the denoising for the boundary stage.
CACHE_ELEMENTS = 1 << 25


@dataclass(frozen=True)
class BilafParams(Params):
    """BiLAF parameters; defaults follow the paper and the authors' CIFAR script. ``num_cores`` is a
    count or a share of the pool (``"0.1%"``); None is the paper's rule for a pool of unknown kind,
    0.5% of the pool, at most half the budget (``core_count``).

    ``cores`` is the URI of an existing selection artifact used as the core set (its ``core`` rows
    if it has any, else all its rows), so that the cores are computed once and reused for every
    budget. ``core_params`` is a mapping of the core selector's parameters, e.g.
    ``{"iterations": 100, "pool_batch": 100000}`` (on the CLI: JSON or ``iterations=100,pool_batch=100000``).
    """

    num_cores: int | str | None = parameter(
        None, help="cores K: a count or a share of the pool ('0.1%'); None: 0.5% of the pool, at most B/2")
    core_selector: str = parameter("activeft", help="the registered method that picks the cores")
    cores: str | None = parameter(None, help="a selection artifact whose core rows are the cores (reuse)",
                                  resolves="selection")
    core_params: dict | None = parameter(None, help="the core selector's parameters (a mapping)")
    density_k: int = parameter(10, Interval(int, 1), "neighbours of the density used to denoise")
    ring_fraction: float = parameter(0.1, Interval(float, 0, 1, closed="neither"),
                                     "share of a cluster's outer ring removed by denoising per step")
    removal_ratio: float = parameter(0.1, Interval(float, 0, 1, closed="left"), "share of a cluster denoised away")
    opponent_penalty: float = parameter(1.1, Interval(float, 1), "penalty of repeated opponent classes (1: none)")
    min_cluster_for_denoise: int = parameter(10, Interval(int, 0), "clusters smaller than this are not denoised")
    reference_compat: bool = parameter(False, help="reproduce the official code's quirks (docs/selection.md)")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "num_cores", parse_num_cores(self.num_cores))
        registered = [name for name in list_selectors() if name != "bilaf"]
        require(self.core_selector in registered, "core_selector", self.core_selector,
                f"a registered method other than 'bilaf' ({', '.join(registered)})")
        self.core_selector_params()  # validates core_params now, not after minutes of work

    def core_selector_params(self):
        """The core selector's parameter record built from ``core_params``."""
        try:
            return get_selector(self.core_selector).make_params(**(self.core_params or {}))
        except InputError as err:
            raise InputError(f"parameter 'core_params' ({self.core_params!r}): {err}") from None


@register_selector("bilaf", BilafParams)
def select_bilaf(pool, budget: int, params: BilafParams, *, seed: int, progress: bool = False) -> Picks:
    """BiLAF: core samples, then the samples nearest their pseudo-class boundaries (NeurIPS 2024)."""
    return run_bilaf(pool, budget, params, seed=seed, progress=progress)


def run_bilaf(pool, budget: int, params: BilafParams, *, seed: int, progress: bool = False,
              timings: dict | None = None) -> Picks:
    """The whole selection; ``timings`` (optional) receives the seconds spent in each stage."""
    timings = {} if timings is None else timings
    started = time.perf_counter()
    cores, info = core_rows(pool, budget, params, seed=seed, progress=progress)
    timings["cores"] = time.perf_counter() - started
    picks = boundary_selection(pool.features, cores, budget, params, labeled=pool.labeled,
                               progress=progress, timings=timings)
    picks.info = {**info, **picks.info}
    return picks


# ----------------------------------------------------------------------------------------------
# stage 1: the core set (§3.1 step 1)


def core_rows(pool, budget: int, params: BilafParams, *, seed: int, progress: bool = False):
    """Core pool rows in ascending order (§3.1: pseudo-class m is the m-th core) and info."""
    labeled = set(pool.labeled.tolist())
    if params.cores is not None:
        given = pool.inputs["cores"]  # the artifact, placed on the pool by select()
        chosen = given.role == "core"
        rows = np.asarray(given.indices[chosen] if chosen.any() else given.indices, dtype=np.int64)
        if params.num_cores is not None and requested_count(params.num_cores, pool.size) != len(rows):
            raise InputError(f"parameter 'num_cores' is {params.num_cores} but the cores artifact "
                             f"{params.cores!r} holds {len(rows)} cores; omit num_cores or make them agree")
        if labeled & set(rows.tolist()):
            raise InputError(f"the cores artifact {params.cores!r} contains already-labeled samples; "
                             "labeled samples are pseudo-class centres already — pass cores from the pool "
                             "of unlabeled samples")
        info = {"cores_from": "artifact"}
    else:
        count = resolve_num_cores(params.num_cores, pool.size, budget)
        spec = get_selector(params.core_selector)
        core_picks = spec.fn(pool, count, params.core_selector_params(), seed=seed, progress=progress)
        rows = np.asarray(core_picks.indices, dtype=np.int64)
        info = {"cores_from": params.core_selector, "core_info": core_picks.info}
    if len(rows) > budget:
        raise InputError(f"{len(rows)} cores exceed the budget ({budget}); the budget includes the cores "
                         "— lower num_cores or raise the budget")
    if len(np.unique(rows)) != len(rows):
        raise RuntimeError("the core selector returned duplicate rows")
    rows = np.sort(rows)
    return rows, {**info, "num_cores": int(len(rows))}


# ----------------------------------------------------------------------------------------------
# stages 2–5 given the cores


@dataclass
class _Cluster:
    members: np.ndarray  # pool rows, ascending
    center: int  # position of the centre in ``members``
    labeled: bool  # centre is an already-labeled sample
    denoised: np.ndarray | None = None  # pool rows after IDC, insertion order
    allocation: int = 0
    removal: int = 0
    distances: torch.Tensor | None = None  # denoised n'×n' distances, kept while the cache has room


def boundary_selection(features: torch.Tensor, cores: np.ndarray, budget: int, params: BilafParams, *,
                       labeled: np.ndarray | None = None, progress: bool = False,
                       timings: dict | None = None) -> Picks:
    """BiLAF after the core stage: ``budget`` samples (cores included) from unit ``features``."""
    timings = {} if timings is None else timings
    compat = params.reference_compat
    labeled = np.zeros(0, dtype=np.int64) if labeled is None else np.asarray(labeled, dtype=np.int64)
    if compat and len(labeled):
        raise InputError("reference_compat has no incremental mode (the reference code knows no labeled "
                         "set); drop --labeled or use the default mode")
    cores = np.sort(np.asarray(cores, dtype=np.int64))
    if len(cores) > budget:
        raise InputError(f"{len(cores)} cores exceed the budget ({budget}); lower num_cores")
    if np.isin(cores, labeled).any():
        raise InputError("some cores are already labeled; labeled samples are pseudo-class centres "
                         "already — pass cores from the unlabeled samples")
    centers = np.sort(np.concatenate([cores, labeled]))
    is_labeled = np.isin(centers, labeled)
    dtype = torch.float64 if compat else torch.float32  # compat: the reference computes in float64

    clock = time.perf_counter()
    clusters, near = _assign(features, centers, is_labeled, compat)
    timings["assignment"] = time.perf_counter() - clock

    clock = time.perf_counter()
    _denoise(features, clusters, params, dtype, progress)
    timings["denoise"] = time.perf_counter() - clock

    sizes = np.asarray([len(c.denoised) for c in clusters], dtype=np.int64)
    if compat:
        allocation = reference_budget_split(sizes, budget)
        _check_reference_allocation(allocation, sizes)
    else:
        allocation = capped_budget_split(sizes, budget + int(is_labeled.sum()))

    clock = time.perf_counter()
    rows, scores, classes = _select_boundaries(features, clusters, centers, allocation, params, dtype,
                                               near, progress)
    timings["boundary"] = time.perf_counter() - clock

    if compat and len(np.unique(rows)) != len(rows):
        raise InputError("the reference code emits duplicate samples for these inputs (identical features "
                         "inside a pseudo-class); use the default mode, which guarantees distinct samples")
    top_up = budget - len(rows)
    if top_up > 0:  # §3.7: the denoised clusters hold fewer than B samples
        clock = time.perf_counter()
        extra, extra_scores, extra_classes = _top_up(features, clusters, centers, rows, labeled, top_up)
        rows = np.concatenate([rows, extra])
        scores = np.concatenate([scores, extra_scores])
        classes = np.concatenate([classes, extra_classes])
        timings["top_up"] = time.perf_counter() - clock

    role = np.where(np.isin(rows, cores), "core", "boundary").astype(object)
    info = {"num_centers": int(len(centers)), "top_up": int(max(top_up, 0)),
            "reference_compat": bool(compat)}
    return Picks(indices=rows.astype(np.int64), role=role, score=scores.astype(np.float64),
                 pseudo_class=classes, info=info, tables={"clusters": _cluster_table(clusters, centers, classes)})


def _denoise(features, clusters, params: BilafParams, dtype, progress: bool) -> None:
    cache_room = CACHE_ELEMENTS
    for m, cluster in enumerate(progress_bar(clusters, desc="bilaf denoise", enabled=progress)):
        local, matrix = _idc(features[cluster.members].to(dtype), cluster.center, params)
        if matrix is not None and len(local) ** 2 <= cache_room:  # reused by the boundary stage
            cluster.distances = torch.from_numpy(matrix.numpy()[np.ix_(local, local)])
            cache_room -= len(local) ** 2
        if params.reference_compat and cluster.center not in local:
            raise InputError(f"denoising removed the core of pseudo-class {m} (row "
                             f"{cluster.members[cluster.center]}); the reference code fails there (it "
                             "silently uses another sample, then its own check fails); lower "
                             "removal_ratio or use the default mode")
        cluster.denoised = cluster.members[local]


def _select_boundaries(features, clusters, centers, allocation, params: BilafParams, dtype, near,
                       progress: bool):
    rows, scores, classes = [], [], []
    center_features = features[centers]
    for m, cluster in enumerate(progress_bar(clusters, desc="bilaf boundary", enabled=progress)):
        cluster.allocation = int(allocation[m])
        cluster.removal = len(cluster.denoised) // cluster.allocation
        members = features[cluster.denoised].to(dtype)
        start = int(np.flatnonzero(cluster.denoised == cluster.members[cluster.center])[0])
        listed = (near[0][cluster.denoised], near[1][cluster.denoised])
        local, local_scores = _select_in_cluster(members, start, m, center_features, cluster.allocation,
                                                 params, cluster.distances, listed)
        cluster.distances = None
        if cluster.labeled:  # its centre is an existing pick, not a new one
            local, local_scores = local[1:], local_scores[1:]
        rows.append(cluster.denoised[local])
        scores.append(local_scores)
        classes.append(np.full(len(local), m, dtype=np.int64))
    return np.concatenate(rows), np.concatenate(scores), np.concatenate(classes)


@torch.no_grad()
def _nearest_centres(features: torch.Tensor, centers: torch.Tensor, depth: int):
    """One chunked pass: each row's nearest centre (largest inner product, ties → lowest index) and
    its ``depth`` nearest centres with float32 distances (reused for the opponents, §3.2 eq. 5)."""
    n, count = features.shape[0], centers.shape[0]
    depth = min(depth, count)
    nearest = torch.empty(n, dtype=torch.int64)
    top_index = torch.empty((n, depth), dtype=torch.int32)
    top_distance = torch.empty((n, depth), dtype=torch.float32)
    center_sq = (centers * centers).sum(1)
    for block in _row_blocks(n, count):
        similarity = features[block] @ centers.T
        nearest[block] = similarity.max(dim=1).indices
        value, where = torch.topk(similarity, depth, dim=1, sorted=True)
        squared = _squared_norms(features[block])[:, None] + center_sq[where] - 2 * value
        top_distance[block] = squared.clamp_min_(0).sqrt_()
        top_index[block] = where.int()
    return nearest.numpy(), top_index.numpy(), top_distance.numpy()


def _squared_norms(x: torch.Tensor) -> torch.Tensor:
    """``(x * x).sum(1)`` in row blocks that stay in cache (the same per-row sums)."""
    out = torch.empty(x.shape[0], dtype=x.dtype)
    step = max(1, NORM_BLOCK_ELEMENTS // max(1, x.shape[1]))
    for start in range(0, x.shape[0], step):
        part = x[start : start + step]
        out[start : start + step] = (part * part).sum(1)
    return out


def _assign(features, centers, is_labeled, compat):
    """§3.1 step 2: every sample joins its nearest centre (ties → lowest m); a centre its own.
    Also returns the rows' nearest-centre lists (index, distance)."""
    center_features = features[centers]
    # Unit rows: the Euclidean nearest centre is the one with the largest inner product.
    depth = 2 if compat else NEAREST_CENTRES  # compat keeps only the nearest other centre (§3.6)
    nearest, top_index, top_distance = _nearest_centres(features, center_features, depth)
    own = np.arange(len(centers))
    for m in np.flatnonzero(nearest[centers] != own):
        twin = int(nearest[centers[m]])
        if compat and torch.equal(center_features[m], center_features[twin]):
            raise InputError(f"cores {centers[twin]} and {centers[m]} have identical features; the "
                             "reference code fails there (a core outside its own cluster); use the "
                             "default mode, which keeps every core in its own pseudo-class")
    nearest[centers] = own  # identical or float-rounding twins: a centre stays in its own cluster
    order = np.argsort(nearest, kind="stable")
    bounds = np.searchsorted(nearest[order], np.arange(len(centers) + 1))
    clusters = []
    for m, center in enumerate(centers):
        members = order[bounds[m]:bounds[m + 1]]
        clusters.append(_Cluster(members, int(np.flatnonzero(members == center)[0]), bool(is_labeled[m])))
    return clusters, (top_index, top_distance)


def _cluster_table(clusters, centers, classes) -> pa.Table:
    def column(values, dtype=np.int64):
        return pa.array(np.asarray(values, dtype=dtype))

    return pa.table({
        "pseudo_class": column(np.arange(len(clusters))),
        "center_row": column(centers),
        "center_labeled": column([c.labeled for c in clusters], bool),
        "size": column([len(c.members) for c in clusters]),
        "denoised_size": column([len(c.denoised) for c in clusters]),
        "allocation": column([c.allocation for c in clusters]),
        "removal_count": column([c.removal for c in clusters]),
        "selected": column(np.bincount(classes, minlength=len(clusters))),
    })


# ----------------------------------------------------------------------------------------------
# distances, in row blocks


def pairwise_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``‖a_i − b_j‖`` (Gram form; callers keep ``len(a)·len(b)`` bounded)."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * (a @ b.T)
    return squared.clamp_min_(0).sqrt_()


def local_distances(x: torch.Tensor) -> torch.Tensor | None:
    """The cluster's n×n distance matrix (zero diagonal) when it fits one block, else None."""
    n = x.shape[0]
    if n * n > BLOCK_ELEMENTS:
        return None
    norms = (x * x).sum(1)
    distance = (norms[:, None] + norms[None, :] - 2 * _symmetric_gram(x)).clamp_min_(0).sqrt_()
    distance.fill_diagonal_(0.0)
    return distance


def _symmetric_gram(x: torch.Tensor) -> torch.Tensor:
    """``x @ x.T`` from the blocks on and above the diagonal (about 5/8 of the products), mirrored."""
    n = x.shape[0]
    gram = torch.empty((n, n), dtype=x.dtype)
    step = max(GRAM_MIN_ROWS, -(-n // GRAM_PARTS))
    for start in range(0, n, step):
        block = x[start : start + step] @ x[start:].T
        gram[start : start + step, start:] = block
        gram[start + step :, start : start + step] = block[:, step:].T
    return gram


def _row_blocks(rows: int, columns: int):
    step = rows_per_block(columns)
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


# ----------------------------------------------------------------------------------------------
# stage 3: IDC denoising (§3.3 paper, §3.4 reference)


def _idc(x: torch.Tensor, center: int, params: BilafParams):
    """Local indices of the denoised cluster ``x`` in insertion order, and the local distance
    matrix when the cluster is small enough to hold one (else None)."""
    n = x.shape[0]
    compat = params.reference_compat
    matrix = local_distances(x)  # None for a large cluster: distances are then computed per ring
    if n < params.min_cluster_for_denoise:  # §3.4: small clusters are kept whole
        if compat:
            return np.arange(n), matrix
        return np.concatenate([[center], np.delete(np.arange(n), center)]), matrix
    ring = max(1, int(n * params.ring_fraction))
    if compat:
        # §3.4: ring 1 = the r members nearest the core by plain distance, the core among them.
        to_core = (matrix[center] if matrix is not None else pairwise_distance(x[center:center + 1], x)[0]).numpy()
        to_core[center] = 0.0
        admitted = list(np.lexsort((np.arange(n), to_core))[:ring])
        rings_left = n // ring - 1  # leftovers after ⌊n/r⌋ rings never enter
    else:
        admitted = [center]  # §3.3: U starts as {c_i}; rings of r follow until all are in
        rings_left = n
    remaining = np.setdiff1d(np.arange(n), admitted)
    nearest = _NearestAdmitted(x, remaining, params.density_k, matrix)
    nearest.add(admitted, 0)
    while len(remaining) and rings_left > 0:
        density = nearest.density(compat)
        take = min(ring, len(remaining))
        chosen = np.lexsort((remaining, density))[:take]  # ascending density distance, ties → index
        new = remaining[chosen]
        keep = np.ones(len(remaining), dtype=bool)
        keep[chosen] = False
        remaining = remaining[keep]
        nearest.keep(keep)
        nearest.add(new, len(admitted))
        admitted.extend(new.tolist())
        rings_left -= 1
    admitted = np.asarray(admitted, dtype=np.int64)
    if compat:  # §3.4: keep ⌊|U|·(1 − P_rm)⌋ of the admitted list
        kept = int(len(admitted) * (1 - params.removal_ratio))
    else:  # §3.3: drop the last ⌊N_i·P_rm⌋ inserted
        kept = n - int(n * params.removal_ratio)
    return admitted[:kept], matrix


class _NearestAdmitted:
    """For each remaining candidate, its k smallest distances to admitted members and their positions.

    Merged ring by ring (O(candidates·(k + ring)) per ring), so no n×n matrix is held whole. The
    bookkeeping is in numpy: a ring's arrays are small and numpy's per-call cost is a fraction of torch's.
    """

    def __init__(self, x: torch.Tensor, remaining: np.ndarray, k: int, matrix: torch.Tensor | None):
        self.x, self.k = x, k
        self.matrix = matrix.numpy() if matrix is not None else None
        self.rows = remaining
        self.values = np.empty((len(remaining), 0), dtype=x.numpy().dtype)
        self.positions = np.empty((len(remaining), 0), dtype=np.int64)

    def keep(self, mask: np.ndarray) -> None:
        self.rows, self.values, self.positions = self.rows[mask], self.values[mask], self.positions[mask]

    def add(self, new, first_position: int) -> None:
        if not len(self.rows):
            return
        new = np.asarray(new, dtype=np.int64)
        width = min(self.k, self.values.shape[1] + len(new))
        values = np.empty((len(self.rows), width), dtype=self.values.dtype)
        positions = np.empty((len(self.rows), width), dtype=np.int64)
        for block in _row_blocks(len(self.rows), len(new)):
            values[block], positions[block] = self._merged(self._distances(self.rows[block], new),
                                                           self.values[block], self.positions[block], first_position)
        self.values, self.positions = values, positions

    def _distances(self, rows: np.ndarray, new: np.ndarray) -> np.ndarray:
        if self.matrix is not None:
            return self.matrix[rows[:, None], new]
        return pairwise_distance(self.x[torch.from_numpy(rows)], self.x[torch.from_numpy(new)]).numpy()

    def _merged(self, distance, values, positions, first_position: int):
        """The k smallest of the kept ``values`` and the new ``distance`` columns, ascending (ties →
        earlier admitted), with their positions in the admitted list."""
        merged = np.concatenate([values, distance], axis=1)
        listed = np.broadcast_to(np.arange(first_position, first_position + distance.shape[1]), distance.shape)
        where = np.concatenate([positions, listed], axis=1)
        top = min(self.k, merged.shape[1])
        index = np.argpartition(merged, top - 1, axis=1)[:, :top] if merged.shape[1] > top else \
            np.broadcast_to(np.arange(top), merged.shape)
        row = np.arange(len(merged))[:, None]
        index = index[row, np.lexsort((index, merged[row, index]))]
        return merged[row, index], where[row, index]

    def density(self, compat: bool) -> np.ndarray:
        """ρ over the k nearest admitted members (§3.3), or the reference's misindexed value (§3.4)."""
        if not compat:
            return torch.from_numpy(self.values).mean(dim=1).numpy()
        # §3.4 indexing bug: the positions of the k nearest admitted members, within the admitted
        # list, are read as local indices of the candidate's own distance row.
        if self.matrix is not None:
            return torch.from_numpy(self.matrix[self.rows[:, None], self.positions]).mean(dim=1).numpy()
        rows, positions = torch.from_numpy(self.rows), torch.from_numpy(self.positions)
        out = torch.empty(len(rows), dtype=self.x.dtype)
        k = positions.shape[1]
        for block in _row_blocks(len(rows), k * self.x.shape[1]):
            own = self.x[rows[block]]
            misread = self.x[positions[block]]  # (rows, k, d)
            squared = (own * own).sum(1)[:, None] + (misread * misread).sum(2) - 2 * torch.einsum(
                "rd,rkd->rk", own, misread)
            distance = squared.clamp_min_(0).sqrt_()
            distance[positions[block] == rows[block, None]] = 0.0
            out[block] = distance.mean(dim=1)
        return out.numpy()


# ----------------------------------------------------------------------------------------------
# stage 4: budget split (§3.5)


def reference_budget_split(sizes: np.ndarray, budget: int) -> np.ndarray:
    """§3.5 as the reference code does it: floors, then one unit at a time to the smallest
    allocation (ties → larger proportion, then lowest index). Zero allocations are possible."""
    sizes = np.asarray(sizes)
    proportions = 1.0 * sizes / sizes.sum()
    allocation = np.floor(proportions * budget).astype(np.int64)
    heap = [(int(a), -float(p), m) for m, (a, p) in enumerate(zip(allocation, proportions))]
    heapq.heapify(heap)
    for _ in range(budget - int(allocation.sum())):
        a, negative_p, m = heapq.heappop(heap)
        allocation[m] += 1
        heapq.heappush(heap, (a + 1, negative_p, m))
    return allocation


def capped_budget_split(sizes: np.ndarray, budget: int) -> np.ndarray:
    """§3.5 with the §3.7 guarantees: every cluster gets 1 ≤ a ≤ its size, the total is
    ``min(budget, Σ sizes)``; needs ``budget ≥ len(sizes)``. Same rounding rule as the reference."""
    sizes = np.asarray(sizes, dtype=np.int64)
    proportions = sizes / sizes.sum()
    allocation = np.clip(np.floor(proportions * budget).astype(np.int64), 1, sizes)
    target = min(budget, int(sizes.sum()))
    # Over (ones added to empty allocations): take from the largest allocations first.
    heap = [(-int(a), float(p), -m) for m, (a, p) in enumerate(zip(allocation, proportions)) if a > 1]
    heapq.heapify(heap)
    while allocation.sum() > target:
        negative_a, p, negative_m = heapq.heappop(heap)
        allocation[-negative_m] -= 1
        if -negative_a - 1 > 1:
            heapq.heappush(heap, (negative_a + 1, p, negative_m))
    heap = [(int(a), -float(p), m) for m, (a, p) in enumerate(zip(allocation, proportions)) if a < sizes[m]]
    heapq.heapify(heap)
    while allocation.sum() < target:
        a, negative_p, m = heapq.heappop(heap)
        allocation[m] += 1
        if a + 1 < sizes[m]:
            heapq.heappush(heap, (a + 1, negative_p, m))
    return allocation


def _check_reference_allocation(allocation: np.ndarray, sizes: np.ndarray) -> None:
    zero = np.flatnonzero(allocation == 0)
    if len(zero):
        raise InputError(f"the budget split gives pseudo-class {zero[0]} (denoised size {sizes[zero[0]]}) "
                         "0 samples; the reference code crashes there (division by zero); raise the "
                         "budget, lower num_cores, or use the default mode (every pseudo-class keeps its core)")
    over = np.flatnonzero(allocation > sizes)
    if len(over):
        m = over[0]
        raise InputError(f"the budget split gives pseudo-class {m} {allocation[m]} samples but it has only "
                         f"{sizes[m]} after denoising; the reference code emits duplicates there; lower "
                         "the budget or use the default mode (allocations capped, distinct samples)")


# ----------------------------------------------------------------------------------------------
# stage 5: boundary selection inside one cluster (§3.6)


def _select_in_cluster(x: torch.Tensor, start: int, m: int, centers: torch.Tensor, allocation: int,
                       params: BilafParams, matrix: torch.Tensor | None = None, listed=None):
    """Local picks (``start`` first) and their scores in the denoised cluster ``x``; ``centers``
    are the float32 unit centre features, ``matrix`` the cluster's distances if already known."""
    n = x.shape[0]
    matrix = local_distances(x) if matrix is None else matrix
    intra = torch.empty(n, dtype=x.dtype)  # §3.2 eq. 4: mean over all members, self included
    for block in _row_blocks(n, n):
        intra[block] = (matrix[block] if matrix is not None else pairwise_distance(x[block], x)).sum(1) / n
    intra = intra.numpy()
    compat = params.reference_compat
    opponents = _Opponents(x, m, centers, 1 if compat else min(allocation, centers.shape[0] - 1), compat,
                           listed)
    penalty = np.ones(centers.shape[0])
    removal = n // allocation
    alive = np.arange(n)
    picks, scores = [start], [np.nan]
    penalised = 0
    while len(picks) < allocation:
        node = picks[-1]
        if matrix is not None:
            to_node = matrix[node].numpy()[alive]
        else:
            to_node = pairwise_distance(x[node:node + 1], x[torch.from_numpy(alive)])[0].numpy()
        to_node[alive == node] = 0.0
        order = np.lexsort((alive, to_node))
        if not compat:  # the pick itself always leaves, even when an identical twin ties with it
            first = np.flatnonzero(alive[order] == node)[0]
            order = np.concatenate([[order[first]], np.delete(order, first)])
        alive = alive[order][removal:]  # §3.6: the ⌊n'/a⌋ nearest to the newest pick leave
        if node != start:
            opponent = opponents.nearest[node]
            penalised += penalty[opponent] == 1.0
            penalty[opponent] *= params.opponent_penalty
        score = opponents.score(alive, intra, penalty, penalised)
        best = int(np.argmin(score))  # ties → earliest in the (distance to the newest pick) order
        picks.append(int(alive[best]))
        scores.append(float(score[best]))
    return np.asarray(picks, dtype=np.int64), np.asarray(scores)


class _Opponents:
    """Each member's nearest other centres (§3.2 eq. 5), sorted by distance.

    Reference mode keeps only the nearest (the penalty follows it, §3.6). Default mode keeps the
    ``depth`` nearest, enough for eq. 7's minimum over all opponents: a score only grows with the
    distance and with the penalty, so the minimum lies within the prefix that ends at the first
    unpenalised opponent, and at most ``allocation − 1 < depth`` opponents are ever penalised.
    """

    def __init__(self, x: torch.Tensor, m: int, centers: torch.Tensor, depth: int, compat: bool, listed=None):
        n = x.shape[0]
        self.depth = depth
        self.distance = np.empty((n, depth))
        self.index = np.empty((n, depth), dtype=np.int64)
        if compat and centers.shape[0] == 1:  # no other core: the reference's mask value stands
            self.distance[:], self.index[:] = OWN_CORE_DISTANCE, m
        elif listed is not None and depth and depth < listed[0].shape[1]:
            # The assignment pass listed each row's nearest centres: drop its own, keep the order.
            index, distance = listed
            others = np.argsort(index == m, axis=1, kind="stable")[:, :depth]
            self.index[:] = np.take_along_axis(index, others, axis=1)
            self.distance[:] = np.take_along_axis(distance, others, axis=1)
        else:
            ranking = x.float()  # float32 products rank the centres
            for block in _row_blocks(n, centers.shape[0]) if depth else ():
                distance = pairwise_distance(ranking[block], centers)
                distance[:, m] = float("inf")
                value, where = torch.topk(distance, depth, dim=1, largest=False, sorted=True)
                self.distance[block], self.index[block] = value.numpy(), where.numpy()
        if compat and centers.shape[0] > 1:  # the reference's float64 distance to the kept opponent
            opponent = torch.from_numpy(self.index[:, 0])
            self.distance[:, 0] = torch.linalg.vector_norm(x - centers[opponent].to(x.dtype), dim=1).numpy()
        self.nearest = self.index[:, 0] if depth else np.full(n, m)

    def score(self, rows: np.ndarray, intra: np.ndarray, penalty: np.ndarray, penalised: int) -> np.ndarray:
        """The boundary score (§3.2 eq. 6/7) of ``rows``; smaller is closer to a boundary."""
        if self.depth == 0:  # a single pseudo-class has no boundary: every score is 1
            return np.ones(len(rows))
        columns = min(self.depth, penalised + 1)
        distance = self.distance[rows, :columns]
        own = intra[rows, None]
        ratio = (distance * penalty[self.index[rows, :columns]] - own) / np.maximum(distance, own)
        return ratio.min(axis=1)


# ----------------------------------------------------------------------------------------------
# §3.7: top-up when the denoised clusters hold fewer samples than the budget


def _top_up(features, clusters, centers, taken, labeled, count):
    """The ``count`` unpicked, unlabeled samples with the lowest boundary score (ties → row)."""
    center_features = features[centers]
    excluded = np.zeros(features.shape[0], dtype=bool)
    excluded[taken] = True
    excluded[labeled] = True
    rows, scores, classes = [], [], []
    for m, cluster in enumerate(clusters):
        candidates = cluster.members[~excluded[cluster.members]]
        if not len(candidates):
            continue
        reference = features[cluster.denoised]
        x = features[candidates]
        intra = torch.empty(len(candidates))
        inter = torch.empty(len(candidates))
        for block in _row_blocks(len(candidates), max(len(reference), len(centers))):
            intra[block] = pairwise_distance(x[block], reference).mean(1)
            distance = pairwise_distance(x[block], center_features)
            distance[:, m] = float("inf")
            inter[block] = distance.min(1).values
        score = torch.where(torch.isinf(inter), torch.ones_like(inter),
                            (inter - intra) / torch.maximum(inter, intra))
        rows.append(candidates)
        scores.append(score.double().numpy())
        classes.append(np.full(len(candidates), m, dtype=np.int64))
    rows, scores, classes = np.concatenate(rows), np.concatenate(scores), np.concatenate(classes)
    best = np.lexsort((rows, scores))[:count]
    return rows[best], scores[best], classes[best]
